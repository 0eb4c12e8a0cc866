"""`wasmfilter new TEMPLATE NAME`: a standalone filter project that builds and passes its own scenarios.

One source of truth. A template IS a reference crate in filters/ (blank, auth, ratelimit, routing): `new` copies
that crate's files (src/**, scenarios/**, filter.yaml, README, anything else except Cargo.toml, Cargo.lock,
target/ and dot-files) byte for byte, applying only these renames to UTF-8 text files:

  1. filter.yaml: the `name:` and `root_id:` lines name the new filter;
  2. every text file: the word `wasmfilter_<template>` (the reference filter's metric namespace, e.g.
     `wasmfilter_auth.allowed` or `const PREFIX: &str = "wasmfilter_routing"`) becomes `<name>` with underscores
     for hyphens, so the new filter's counters (`wasmcustom.<name>.*` in Envoy) never mix with the reference's.

Shared crates (filters/common): a workspace dependency with a `path` (`wasmfilter-common = { path = "common" }`)
is vendored: that crate's directory is copied byte for byte, Cargo.toml included, to the same path in the project
(`<project>/common/`), and the rendered Cargo.toml keeps `path = "common"`. Such a crate's Cargo.toml must not
inherit anything from the workspace.

Only what really varies is a jinja2 file, in templates/scaffold/: Cargo.toml (the reference crate's manifest with
the workspace-inherited package fields, dependencies, lints and release profile spelled out), README.md, .gitignore,
the CI workflow and the example plugin configuration. The workspace's clippy.toml and Cargo.lock are copied as they
are (the lock pins the dependency versions the reference filter is tested with). `*.jinja` files are rendered (suffix dropped) in a sandbox
with StrictUndefined; other files there are copied byte for byte; path components are rendered too (one that
renders empty drops the file). A scaffold file wins over a reference file at the same path.

Everything is rendered in memory first; bad input (name, template, destination, a template error) writes nothing.
A failure while writing removes what this run created and restores what --force overwrote.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

from wasmfilter import __version__, paths
from wasmfilter.errors import UsageError, WasmfilterError

# The templates, in the order `--list` shows them. Each is the reference crate of the same name in filters/;
# one that is not in this installation (or checkout) is simply not offered.
TEMPLATE_NAMES = ("blank", "auth", "ratelimit", "routing")
SCAFFOLD = "scaffold"  # templates/scaffold: the rendered files every project gets
JINJA_SUFFIX = ".jinja"
# Files of a reference crate that are not copied: Cargo.toml is rendered (templates/scaffold/Cargo.toml.jinja),
# the lock file and build output belong to the workspace.
NOT_COPIED = {"Cargo.toml", "Cargo.lock", "target", "__pycache__"}

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# Strict and reserved keywords (2024 edition): cargo refuses them as package names.
RUST_KEYWORDS = frozenset("""
    as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut
    pub ref return self static struct super trait true type unsafe use where while
    abstract become box do final gen macro override priv try typeof unsized virtual yield
""".split())
# Names cargo refuses or that clash with the sysroot crates -Zbuild-std compiles, or with cargo's target layout.
RESERVED_NAMES = frozenset("""
    std core alloc proc_macro test compiler_builtins panic_abort panic_unwind unwind
    build deps examples incremental
    con prn aux nul com1 com2 com3 com4 com5 com6 com7 com8 com9 lpt1 lpt2 lpt3 lpt4 lpt5 lpt6 lpt7 lpt8 lpt9
""".split())


class TemplateError(WasmfilterError):
    """A template could not be rendered (a bug in the template, not in the user's input)."""


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    crate_dir: Path


@dataclass(frozen=True)
class PlannedFile:
    path: PurePosixPath  # relative to the destination
    data: bytes
    source: str  # "copied from filters/auth/src/lib.rs", "rendered from scaffold/Cargo.toml.jinja", ...
    executable: bool = False


@dataclass
class NewResult:
    template: Template
    name: str
    destination: Path
    files: list[PlannedFile] = field(default_factory=list)
    dry_run: bool = False


# --- templates -------------------------------------------------------------------------------------------------

def list_templates(filters_dir: Path | None = None) -> list[Template]:
    """The templates this installation offers, each with the one-line description from its crate's Cargo.toml."""
    root = filters_dir or paths.data_dir("filters")
    found = []
    for name in TEMPLATE_NAMES:
        crate = root / name
        if (crate / "Cargo.toml").is_file() and (crate / "filter.yaml").is_file():
            found.append(Template(name, _crate_toml(crate).get("package", {}).get("description", ""), crate))
    return found


def get_template(name: str, filters_dir: Path | None = None) -> Template:
    templates = {t.name: t for t in list_templates(filters_dir)}
    if name not in templates:
        raise UsageError(f"unknown template '{name}'",
                         fix="choose one of: " + ", ".join(templates) + " (`wasmfilter new --list`)")
    return templates[name]


def _crate_toml(crate: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((crate / "Cargo.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TemplateError(f"cannot read {crate / 'Cargo.toml'}: {e}", fix="reinstall wasmfilter") from e


# --- names -----------------------------------------------------------------------------------------------------

def crate_ident(name: str) -> str:
    return name.replace("-", "_")


def validate_name(name: str, *, forbidden: set[str] | frozenset[str] = frozenset()) -> None:
    """NAME becomes the crate name, the manifest name, the root_id and the metric prefix."""
    fix = "use lower-case letters, digits, '-' or '_', starting with a letter (e.g. my-filter)"
    if not name:
        raise UsageError("the filter name is empty", fix=fix)
    if "/" in name or "\\" in name or name.startswith(".") or os.path.isabs(name):
        raise UsageError(f"the filter name '{name}' is a path, not a name",
                         fix="pass a plain name; choose the directory with --dir")
    if not NAME_RE.match(name):
        why = ("starts with a digit" if name[0].isdigit() else
               "has upper-case letters" if name.lower() != name else
               "is longer than 63 characters" if len(name) > 63 else
               "has characters other than a-z, 0-9, '-' and '_'")
        raise UsageError(f"the filter name '{name}' {why}", fix=fix)
    ident = crate_ident(name)
    if ident in RUST_KEYWORDS or name in RUST_KEYWORDS:
        raise UsageError(f"the filter name '{name}' is a Rust keyword", fix="choose another name")
    if ident in RESERVED_NAMES or name in RESERVED_NAMES:
        raise UsageError(f"the filter name '{name}' is reserved by Rust or cargo", fix="choose another name")
    if ident in {crate_ident(f) for f in forbidden}:
        raise UsageError(f"the filter name '{name}' is the name of one of its dependencies",
                         fix="choose another name")


# --- planning (everything in memory) ----------------------------------------------------------------------------

def plan(template: Template, name: str, *, templates_dir: Path | None = None,
         filters_dir: Path | None = None) -> list[PlannedFile]:
    """Every file of the new project, rendered, with its relative path. Writes nothing."""
    filters_root = filters_dir or template.crate_dir.parent
    scaffold_dir = (templates_dir or paths.data_dir("templates")) / SCAFFOLD
    if not scaffold_dir.is_dir():
        raise TemplateError(f"the scaffold templates are missing ({scaffold_dir})", fix="reinstall wasmfilter")
    cargo = _cargo_context(template, filters_root)
    vendored = cargo.pop("vendored")
    validate_name(name, forbidden=set(cargo["dependencies"]) | set(cargo["dev_dependencies"]))

    files: dict[PurePosixPath, PlannedFile] = {}
    readme = b""
    for rel, src in _walk(template.crate_dir):
        data = src.read_bytes()
        if rel == PurePosixPath("README.md"):
            readme = data  # embedded into the rendered README (templates/scaffold/README.md.jinja)
            continue
        data = rename(data, rel, template.name, name)
        files[rel] = PlannedFile(rel, data, f"copied from {template.crate_dir.name}/{rel}", _is_exec(src))
    for shared_crate in vendored:
        files.update(_vendor(filters_root, shared_crate))

    context = {
        "name": name,
        "ident": crate_ident(name),
        "template": template.name,
        "description": template.description,
        "wasmfilter_version": __version__,
        "reference_readme": _readme_body(rename(readme, PurePosixPath("README.md"), template.name, name)),
        "manifest": _manifest_of(files),
        "cargo": cargo,
    }
    env = _environment(scaffold_dir)
    for rel, src in _walk(scaffold_dir):
        target = _render_path(env, rel, context)
        if target is None:
            continue
        if src.name.endswith(JINJA_SUFFIX):
            target = target.with_name(target.name[: -len(JINJA_SUFFIX)])
            data = _render_file(env, rel, context).encode()
            how = f"rendered from scaffold/{rel}"
        else:
            data = src.read_bytes()
            how = f"copied from scaffold/{rel}"
        files[target] = PlannedFile(target, data, how, _is_exec(src))
    # Byte for byte from the workspace: clippy.toml (the same allow-in-tests settings) and Cargo.lock, so the new
    # project builds the dependency versions the reference filter is tested with, not whatever is newest today
    # (cargo drops the entries it does not need on the first build and keeps the versions of the others).
    for shared in ("clippy.toml", "Cargo.lock"):
        source = filters_root / shared
        if source.is_file():
            files[PurePosixPath(shared)] = PlannedFile(PurePosixPath(shared), source.read_bytes(),
                                                       f"copied from filters/{shared}")
    for f in files.values():
        _check_inside(f.path)
    return [files[p] for p in sorted(files)]


def rename(data: bytes, rel: PurePosixPath, template: str, name: str) -> bytes:
    """The documented renames (module docstring). Non-UTF-8 files are returned untouched."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    if rel == PurePosixPath("filter.yaml"):
        text = re.sub(rf"^(name|root_id):([ \t]*){re.escape(template)}[ \t]*$", rf"\g<1>:\g<2>{name}", text,
                      flags=re.MULTILINE)
    text = re.sub(rf"\bwasmfilter_{re.escape(crate_ident(template))}\b", crate_ident(name), text)
    return text.encode("utf-8")


def _walk(root: Path) -> list[tuple[PurePosixPath, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        top = here == root
        dirnames[:] = sorted(d for d in dirnames
                             if not (top and d in NOT_COPIED) and d != "__pycache__" and not _hidden(d, root))
        for fname in sorted(filenames):
            if top and fname in NOT_COPIED and root.name != SCAFFOLD:
                continue
            if _hidden(fname, root) or fname.endswith((".pyc", "~")):
                continue
            src = here / fname
            out.append((PurePosixPath(src.relative_to(root).as_posix()), src))
    return out


def _hidden(name: str, root: Path) -> bool:
    # Reference crates: dot-files are editor/tool state. The scaffold deliberately holds .gitignore.jinja, .github/.
    return name.startswith(".") and root.name != SCAFFOLD


def _is_exec(path: Path) -> bool:
    return os.access(path, os.X_OK)


def _readme_body(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip("\n")
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):  # the reference's own title; the project README has its own
        lines = lines[1:]
    return "\n".join(lines).strip("\n")


def _manifest_of(files: dict[PurePosixPath, PlannedFile]) -> dict[str, Any]:
    f = files.get(PurePosixPath("filter.yaml"))
    if f is None:
        raise TemplateError("the template has no filter.yaml", fix="reinstall wasmfilter")
    try:
        data = yaml.safe_load(f.data) or {}
    except yaml.YAMLError as e:
        raise TemplateError(f"the template's filter.yaml is not valid YAML: {e}", fix="reinstall wasmfilter") from e
    return data if isinstance(data, dict) else {}


def _cargo_context(template: Template, filters_root: Path) -> dict[str, Any]:
    """The reference crate's Cargo.toml with every `x.workspace = true` resolved from filters/Cargo.toml."""
    crate = _crate_toml(template.crate_dir)
    workspace_file = filters_root / "Cargo.toml"
    workspace = tomllib.loads(workspace_file.read_text()).get("workspace", {}) if workspace_file.is_file() else {}
    ws_package = workspace.get("package", {})
    ws_deps = workspace.get("dependencies", {})
    known = {"package", "lib", "features", "dependencies", "dev-dependencies", "build-dependencies", "lints"}
    unknown = sorted(set(crate) - known)
    if unknown:
        raise TemplateError(f"template '{template.name}': Cargo.toml section(s) {', '.join(unknown)} are not "
                            "supported by the scaffold", fix="extend templates/scaffold/Cargo.toml.jinja")

    package = {}
    for key, value in crate.get("package", {}).items():
        if key == "name":
            continue
        if isinstance(value, dict) and value.get("workspace") is True:
            if key not in ws_package:
                raise TemplateError(f"template '{template.name}': package.{key} is inherited from a workspace "
                                    "that does not define it", fix="fix filters/Cargo.toml")
            value = ws_package[key]
        package[key] = value

    vendored: list[str] = []  # workspace path dependencies (shared crates), copied into the project

    def deps(table: dict[str, Any]) -> dict[str, Any]:
        resolved = {}
        for dep, spec in table.items():
            inherited = isinstance(spec, dict) and spec.get("workspace") is True
            if inherited:
                if dep not in ws_deps:
                    raise TemplateError(f"template '{template.name}': dependency '{dep}' is inherited from a "
                                        "workspace that does not define it", fix="fix filters/Cargo.toml")
                base = ws_deps[dep]
                base = dict(base) if isinstance(base, dict) else {"version": base}
                extra = {k: v for k, v in spec.items() if k != "workspace"}
                if "features" in extra:
                    extra["features"] = list(dict.fromkeys([*base.get("features", []), *extra["features"]]))
                spec = {**base, **extra}
            if isinstance(spec, dict) and spec.get("path") is not None and inherited:
                vendored.append(_vendored_dir(template, dep, spec["path"], filters_root))
            elif isinstance(spec, dict) and "path" in spec:
                raise TemplateError(f"template '{template.name}': dependency '{dep}' is a path dependency, which "
                                    "a standalone project cannot reach", fix="publish it or inline it")
            if isinstance(spec, dict) and list(spec) == ["version"]:
                spec = spec["version"]
            resolved[dep] = spec
        return resolved

    lints = crate.get("lints", {})
    if lints.get("workspace") is True:
        lints = workspace.get("lints", {})
    profiles = tomllib.loads(workspace_file.read_text()).get("profile", {}) if workspace_file.is_file() else {}
    # Per-package profile overrides (e.g. [profile.release.package.p256]) only for packages this crate really
    # builds (from the workspace lock): cargo warns about an override that matches nothing.
    used = _lock_closure(filters_root / "Cargo.lock", crate.get("package", {}).get("name", template.name))
    for settings in profiles.values():
        if isinstance(settings.get("package"), dict) and used is not None:
            kept = {k: v for k, v in settings["package"].items() if k == "*" or k in used}
            if kept:
                settings["package"] = kept
            else:
                del settings["package"]
    return {
        "package": package,
        "lib": crate.get("lib", {}),
        "features": crate.get("features", {}),
        "dependencies": deps(crate.get("dependencies", {})),
        "dev_dependencies": deps(crate.get("dev-dependencies", {})),
        "build_dependencies": deps(crate.get("build-dependencies", {})),
        "lints": lints,
        "profiles": profiles,
        "vendored": list(dict.fromkeys(vendored)),
    }


def _vendored_dir(template: Template, dep: str, path: Any, filters_root: Path) -> str:
    """A workspace path dependency the project can vendor: a crate directly in filters/ whose Cargo.toml inherits
    nothing from the workspace (it is copied verbatim). Returns its directory name (= its path in the project)."""
    rel = PurePosixPath(str(path))
    crate = filters_root / str(path)
    if len(rel.parts) != 1 or rel.parts[0] in {".", ".."} or not (crate / "Cargo.toml").is_file():
        raise TemplateError(f"template '{template.name}': dependency '{dep}' is a path dependency outside "
                            "filters/, which a standalone project cannot reach",
                            fix="make it a crate directly in filters/ (like filters/common)")
    text = (crate / "Cargo.toml").read_text()
    if re.search(r"(?m)^\s*[\w.-]*\bworkspace\s*=\s*true|\.workspace\s*=", text):
        raise TemplateError(f"template '{template.name}': the shared crate filters/{rel} inherits from the "
                            "workspace, so it cannot be copied into a standalone project",
                            fix=f"spell out the inherited fields in filters/{rel}/Cargo.toml")
    return rel.as_posix()


def _vendor(filters_root: Path, rel: str) -> dict[PurePosixPath, PlannedFile]:
    """The shared crate filters/REL, byte for byte (its Cargo.toml too, not its build output), as REL/**."""
    root = filters_root / rel
    found = [(PurePosixPath("Cargo.toml"), root / "Cargo.toml"), *_walk(root)]
    out = {}
    for sub_rel, src in found:
        target = PurePosixPath(rel) / sub_rel
        out[target] = PlannedFile(target, src.read_bytes(), f"copied from filters/{rel}/{sub_rel}", _is_exec(src))
    return out


def _lock_closure(lock_file: Path, root: str) -> set[str] | None:
    """Names of every package ROOT depends on, transitively, according to the workspace's Cargo.lock."""
    if not lock_file.is_file():
        return None
    try:
        packages = tomllib.loads(lock_file.read_text()).get("package", [])
    except tomllib.TOMLDecodeError:
        return None
    deps: dict[str, set[str]] = {}
    for pkg in packages:
        deps.setdefault(pkg.get("name", ""), set()).update(d.split()[0] for d in pkg.get("dependencies", []))
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(deps.get(name, ()))
    return seen


# --- rendering -------------------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any) -> str:
    """A TOML literal for a str/bool/int/float/list/dict (inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TemplateError(f"cannot write {value!r} as TOML", fix="extend wasmfilter.scaffold.toml_value")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _environment(scaffold_dir: Path) -> SandboxedEnvironment:
    env = SandboxedEnvironment(loader=jinja2.FileSystemLoader(str(scaffold_dir)), undefined=jinja2.StrictUndefined,
                               keep_trailing_newline=True, autoescape=False)
    env.filters["toml"] = toml_value
    env.filters["toml_key"] = toml_key
    env.filters["json"] = lambda v, indent=2: json.dumps(v, indent=indent, ensure_ascii=False)
    return env


def _render_file(env: SandboxedEnvironment, rel: PurePosixPath, context: dict[str, Any]) -> str:
    try:
        return env.get_template(rel.as_posix()).render(context)
    except jinja2.TemplateError as e:
        where = f"{rel}:{e.lineno}" if getattr(e, "lineno", None) else str(rel)
        raise TemplateError(f"template {where}: {e.message or type(e).__name__}",
                            fix="fix the template (templates/scaffold)") from e


def _render_path(env: SandboxedEnvironment, rel: PurePosixPath, context: dict[str, Any]) -> PurePosixPath | None:
    parts = []
    for part in rel.parts:
        if "{{" in part or "{%" in part:
            try:
                part = env.from_string(part).render(context)
            except jinja2.TemplateError as e:
                raise TemplateError(f"template path {rel}: {e.message or type(e).__name__}",
                                    fix="fix the template file name (templates/scaffold)") from e
            if not part:
                return None  # a name that renders empty drops the file (a conditional file)
        parts.extend(PurePosixPath(part).parts)  # "../x" or "/x" here is refused by _check_inside
    return PurePosixPath(*parts)


def _check_inside(rel: PurePosixPath) -> None:
    if rel.is_absolute() or str(rel).startswith(("/", "\\")) or ".." in rel.parts or "\\" in str(rel) \
            or rel == PurePosixPath("."):
        raise UsageError(f"refusing to write '{rel}': the path leaves the destination directory",
                         fix="file names must stay inside the new project (no '..', no absolute paths)")


# --- writing ---------------------------------------------------------------------------------------------------

def new(template: str, name: str, destination: str | Path | None = None, *, force: bool = False,
        dry_run: bool = False, templates_dir: Path | None = None, filters_dir: Path | None = None) -> NewResult:
    """Create project NAME from TEMPLATE in DESTINATION (default ./NAME). Bad input raises UsageError and writes
    nothing; a failure while writing removes what this run created (and restores files --force overwrote)."""
    validate_name(name)
    tpl = get_template(template, filters_dir)
    dest = Path(destination) if destination is not None else Path.cwd() / name
    dest = dest.absolute()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"'{dest}' exists and is not a directory", fix="choose another --dir")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise UsageError(f"'{dest}' exists and is not empty", fix="choose another --dir, or pass --force to write "
                         "into it (files with the same names are overwritten)")
    files = plan(tpl, name, templates_dir=templates_dir, filters_dir=filters_dir)
    result = NewResult(tpl, name, dest, files, dry_run)
    if dry_run:
        return result
    _write(dest, files)
    return result


def _write(dest: Path, files: list[PlannedFile]) -> None:
    created: list[Path] = []  # files and directories this run created, in creation order
    overwritten: dict[Path, bytes] = {}
    try:
        for missing in reversed([dest, *dest.parents]):
            if not missing.exists():
                missing.mkdir()
                created.append(missing)
        real_dest = dest.resolve()
        for f in files:
            target = dest / f.path
            parent = target.parent
            for d in reversed([p for p in [parent, *parent.parents] if p != dest and dest in p.parents]):
                if not d.exists():
                    d.mkdir()
                    created.append(d)
            if real_dest not in target.parent.resolve().parents and target.parent.resolve() != real_dest:
                raise UsageError(f"refusing to write '{f.path}': it resolves outside '{dest}' (a symlink?)",
                                 fix="remove the symlink or choose another --dir")
            if target.is_symlink():
                raise UsageError(f"refusing to write '{f.path}': it is a symlink in the destination",
                                 fix="remove it or choose another --dir")
            if target.exists() and target.is_file():
                overwritten[target] = target.read_bytes()
            else:
                created.append(target)
            target.write_bytes(f.data)
            if f.executable:
                target.chmod(target.stat().st_mode | 0o111)
    except BaseException as e:
        _rollback(created, overwritten)
        if isinstance(e, WasmfilterError):
            raise
        if isinstance(e, OSError):
            raise UsageError(f"cannot write the project into '{dest}': {e.strerror or e} "
                             f"({e.filename or dest}); nothing was left behind",
                             fix="fix the destination (space, permissions, name length) and run again") from e
        raise


def _rollback(created: list[Path], overwritten: dict[Path, bytes]) -> None:
    for path, data in overwritten.items():
        try:
            path.write_bytes(data)
        except OSError:
            pass
    for path in reversed(created):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass
