"""Writing a planned project to disk, all or nothing: every directory and file this run creates is recorded, and a
failure part-way (disk full, permissions, a name too long, a symlink pointing out of the destination) removes them
and restores the files --force overwrote, then reports one line."""

from __future__ import annotations

import shutil
from pathlib import Path

from wasmfilter.errors import UsageError, WasmfilterError
from wasmfilter.scaffold.plan import PlannedFile


def write(dest: Path, files: list[PlannedFile]) -> None:
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
