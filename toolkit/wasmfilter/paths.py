"""Where the toolkit's data lives: inside the installed wheel, or in the source checkout."""

from __future__ import annotations

from pathlib import Path

from wasmfilter.settings import current

PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_ROOT = PACKAGE_DIR.parent.parent  # toolkit/wasmfilter -> repo root


def data_dir(name: str) -> Path:
    """`templates` or `filters`: the wheel's copy when installed, the checkout's when editable."""
    installed = PACKAGE_DIR / "_data" / name
    return installed if installed.is_dir() else _SOURCE_ROOT / name


def cache_dir() -> Path:
    path = current().cache_dir
    path.mkdir(parents=True, exist_ok=True)
    return path
