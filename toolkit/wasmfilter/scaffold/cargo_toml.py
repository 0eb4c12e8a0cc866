"""What the project's Cargo.toml is rendered from (templates/scaffold/Cargo.toml.jinja): the reference crate's
manifest with every `x.workspace = true` resolved from filters/Cargo.toml, the workspace's release profiles (their
per-package overrides kept only for packages the crate really builds), and the shared crates (workspace path
dependencies such as filters/common) the project must vendor, each checked to be copyable as it is."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from wasmfilter.errors import TemplateError
from wasmfilter.scaffold.templates import Template, crate_toml


def cargo_context(template: Template, filters_root: Path) -> dict[str, Any]:
    """The reference crate's Cargo.toml with every `x.workspace = true` resolved from filters/Cargo.toml."""
    crate = crate_toml(template.crate_dir)
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


def _lock_closure(lock_file: Path, root: str) -> set[str] | None:
    """Names of every package ROOT depends on, transitively, according to the workspace's Cargo.lock."""
    from wasmfilter.build.standalone import lock_closure

    return lock_closure(lock_file, [root])
