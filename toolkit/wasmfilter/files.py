"""Files the toolkit writes or fingerprints for the user: written atomically and never over an existing file unless
asked, and content digests."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from wasmfilter.errors import UsageError


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refuse_existing(path: str | Path, *, force: bool = False) -> None:
    """Before any work: a one-line error if PATH exists and FORCE is not given (nothing is overwritten)."""
    if Path(path).exists() and not force:
        raise UsageError(f"'{path}' already exists", fix="pass --force to overwrite it, or choose another -o")


def write_new(path: str | Path, text: str, *, force: bool = False) -> None:
    """Write atomically; never replace an existing file unless FORCE."""
    target = Path(path)
    refuse_existing(target, force=force)
    if not target.parent.is_dir():
        raise UsageError(f"directory '{target.parent}' does not exist", fix="create it first")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, target)
