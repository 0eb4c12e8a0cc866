"""`wasmfilter new TEMPLATE NAME`: a standalone filter project that builds and passes its own scenarios.

The entry point of the scaffold stage: it checks the input (name, template, destination), plans every file in
memory (plan.py: what is copied, renamed and rendered) and writes them (write.py). Bad input (name, template,
destination, a template error) writes nothing; a failure while writing removes what this run created and restores
what --force overwrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wasmfilter.errors import UsageError
from wasmfilter.scaffold.names import validate_name
from wasmfilter.scaffold.plan import PlannedFile, plan
from wasmfilter.scaffold.templates import Template, get_template
from wasmfilter.scaffold.write import write


@dataclass


class NewResult:
    template: Template
    name: str
    destination: Path
    files: list[PlannedFile] = field(default_factory=list)
    dry_run: bool = False


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
    write(dest, files)
    return result
