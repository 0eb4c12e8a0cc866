"""Every file of a new project, planned in memory (nothing is written here), and the rules that make it.

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
are (the lock pins the dependency versions the reference filter is tested with). `*.jinja` files are rendered
(suffix dropped) in a sandbox with StrictUndefined; other files there are copied byte for byte; path components are
rendered too (one that renders empty drops the file). A scaffold file wins over a reference file at the same path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from wasmfilter import __version__, paths
from wasmfilter.errors import TemplateError, UsageError
from wasmfilter.scaffold import install_source
from wasmfilter.scaffold.cargo_toml import cargo_context
from wasmfilter.scaffold.localize import localize
from wasmfilter.scaffold.names import crate_ident, validate_name
from wasmfilter.scaffold.render import JINJA_SUFFIX, environment, render_file, render_path
from wasmfilter.scaffold.templates import SCAFFOLD, Template, is_exec, walk


@dataclass(frozen=True)


class PlannedFile:
    path: PurePosixPath  # relative to the destination
    data: bytes
    source: str  # "copied from filters/auth/src/lib.rs", "rendered from scaffold/Cargo.toml.jinja", ...
    executable: bool = False


def plan(template: Template, name: str, *, templates_dir: Path | None = None,
         filters_dir: Path | None = None) -> list[PlannedFile]:
    """Every file of the new project, rendered, with its relative path. Writes nothing."""
    filters_root = filters_dir or template.crate_dir.parent
    scaffold_dir = (templates_dir or paths.data_dir("templates")) / SCAFFOLD
    if not scaffold_dir.is_dir():
        raise TemplateError(f"the scaffold templates are missing ({scaffold_dir})", fix="reinstall wasmfilter")
    cargo = cargo_context(template, filters_root)
    vendored = cargo.pop("vendored")
    validate_name(name, forbidden=set(cargo["dependencies"]) | set(cargo["dev_dependencies"]))

    files: dict[PurePosixPath, PlannedFile] = {}
    readme = b""
    for rel, src in walk(template.crate_dir):
        data = src.read_bytes()
        if rel == PurePosixPath("README.md"):
            readme = data  # embedded into the rendered README (templates/scaffold/README.md.jinja)
            continue
        data = rename(data, rel, template.name, name)
        files[rel] = PlannedFile(rel, data, f"copied from {template.crate_dir.name}/{rel}", is_exec(src))
    for shared_crate in vendored:
        files.update(_vendor(filters_root, shared_crate))

    context = {
        "name": name,
        "ident": crate_ident(name),
        "template": template.name,
        "description": template.description,
        "wasmfilter_version": __version__,
        "reference_readme": localize(_readme_body(rename(readme, PurePosixPath("README.md"), template.name, name)),
                                     template.name, crate_ident(name)),
        "wasmfilter_install": install_source.current(),
        "envoy_versions": ci_envoy_versions(),
        "manifest": _manifest_of(files),
        "cargo": cargo,
    }
    env = environment(scaffold_dir)
    for rel, src in walk(scaffold_dir):
        target = render_path(env, rel, context)
        if target is None:
            continue
        if src.name.endswith(JINJA_SUFFIX):
            target = target.with_name(target.name[: -len(JINJA_SUFFIX)])
            data = render_file(env, rel, context).encode()
            how = f"rendered from scaffold/{rel}"
        else:
            data = src.read_bytes()
            how = f"copied from scaffold/{rel}"
        files[target] = PlannedFile(target, data, how, is_exec(src))
    # Byte for byte from the workspace: clippy.toml (the same allow-in-tests settings) and Cargo.lock, so the new
    # project builds the dependency versions the reference filter is tested with, not whatever is newest today
    # (cargo drops the entries it does not need on the first build and keeps the versions of the others).
    for shared in ("clippy.toml", "Cargo.lock"):
        source = filters_root / shared
        if source.is_file():
            files[PurePosixPath(shared)] = PlannedFile(PurePosixPath(shared), source.read_bytes(),
                                                       f"copied from filters/{shared}")
    for f in files.values():
        check_inside(f.path)
    return [files[p] for p in sorted(files)]


def ci_envoy_versions() -> list[str]:
    """The minors the CI matrix runs, 1.36 up to the pinned Envoy's (`--envoy-version 1.38` picks that minor's newest
    patch with V8 when CI runs, so the workflow needs no edit when a patch is released)."""
    from wasmfilter.envoy.binary import pinned_version
    from wasmfilter.envoy.versions import FIRST_MINOR, key

    major, last = key(pinned_version())[:2]
    return [f"{major}.{m}" for m in range(FIRST_MINOR[1], last + 1)] if major == FIRST_MINOR[0] else [
        f"{major}.{last}"]


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


def _vendor(filters_root: Path, rel: str) -> dict[PurePosixPath, PlannedFile]:
    """The shared crate filters/REL, byte for byte (its Cargo.toml too, not its build output), as REL/**."""
    root = filters_root / rel
    found = [(PurePosixPath("Cargo.toml"), root / "Cargo.toml"), *walk(root)]
    out = {}
    for sub_rel, src in found:
        target = PurePosixPath(rel) / sub_rel
        out[target] = PlannedFile(target, src.read_bytes(), f"copied from filters/{rel}/{sub_rel}", is_exec(src))
    return out


def check_inside(rel: PurePosixPath) -> None:
    if rel.is_absolute() or str(rel).startswith(("/", "\\")) or ".." in rel.parts or "\\" in str(rel) \
            or rel == PurePosixPath("."):
        raise UsageError(f"refusing to write '{rel}': the path leaves the destination directory",
                         fix="file names must stay inside the new project (no '..', no absolute paths)")
