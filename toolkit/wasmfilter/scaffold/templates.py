"""The templates `wasmfilter new` offers and which of their files a project gets. A template IS a reference crate
in filters/ (blank, auth, ratelimit, routing), described by its Cargo.toml; `walk` lists a crate's files (or those
of templates/scaffold/, the rendered files every project gets) with what is never copied left out: Cargo.toml,
Cargo.lock, target/ and dot-files of a crate, editor and Python leftovers anywhere."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from wasmfilter import paths
from wasmfilter.errors import TemplateError, UsageError

# The templates, in the order `--list` shows them. Each is the reference crate of the same name in filters/;
# one that is not in this installation (or checkout) is simply not offered.
TEMPLATE_NAMES = ("blank", "auth", "ratelimit", "routing")
SCAFFOLD = "scaffold"  # templates/scaffold: the rendered files every project gets
# Files of a reference crate that are not copied: Cargo.toml is rendered (templates/scaffold/Cargo.toml.jinja),
# the lock file and build output belong to the workspace.
NOT_COPIED = {"Cargo.toml", "Cargo.lock", "target", "__pycache__"}


@dataclass(frozen=True)


class Template:
    name: str
    description: str
    crate_dir: Path


def list_templates(filters_dir: Path | None = None) -> list[Template]:
    """The templates this installation offers, each with the one-line description from its crate's Cargo.toml."""
    root = filters_dir or paths.data_dir("filters")
    found = []
    for name in TEMPLATE_NAMES:
        crate = root / name
        if (crate / "Cargo.toml").is_file() and (crate / "filter.yaml").is_file():
            found.append(Template(name, crate_toml(crate).get("package", {}).get("description", ""), crate))
    return found


def get_template(name: str, filters_dir: Path | None = None) -> Template:
    templates = {t.name: t for t in list_templates(filters_dir)}
    if name not in templates:
        raise UsageError(f"unknown template '{name}'",
                         fix="choose one of: " + ", ".join(templates) + " (`wasmfilter new --list`)")
    return templates[name]


def crate_toml(crate: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((crate / "Cargo.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TemplateError(f"cannot read {crate / 'Cargo.toml'}: {e}", fix="reinstall wasmfilter") from e


def walk(root: Path) -> list[tuple[PurePosixPath, Path]]:
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


def is_exec(path: Path) -> bool:
    return os.access(path, os.X_OK)
