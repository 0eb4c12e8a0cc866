"""Filters in any language: a filter.yaml with `wasm: module.wasm` (a prebuilt module, no cargo) and optionally
`build: [command, ...]` that writes it (clang, tinygo, asc, ...), run in the filter's directory. `build()` of
build/cargo.py hands such a manifest here; the result is the same BuildResult a cargo build gives."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from wasmfilter.errors import BuildCommandError, ToolchainError, UsageError, tail
from wasmfilter.files import sha256_file
from wasmfilter.manifest import MANIFEST_NAME, Manifest, load_manifest

Progress = Callable[[str], None]


def prebuilt_manifest(path: str | Path | None) -> Manifest | None:
    """The manifest at PATH (a filter directory or its filter.yaml) when it names a prebuilt module, else None."""
    target = Path(path) if path is not None else Path.cwd()
    file = target if target.is_file() and target.name.endswith((".yaml", ".yml")) else target / MANIFEST_NAME
    if not file.is_file():
        return None
    manifest = load_manifest(file)
    return manifest if manifest.wasm is not None else None


def run_build_command(manifest: Manifest, progress: Progress | None = None) -> str:
    """MANIFEST's `build:` command in its directory; its output, or BuildCommandError carrying it."""
    command = manifest.build or []
    if progress:
        progress(" ".join(command))
    try:
        proc = subprocess.run(command, cwd=manifest.directory, capture_output=True, text=True)
    except OSError as e:
        raise ToolchainError(f"cannot run '{command[0]}' (the build command of filter '{manifest.name}'): "
                             f"{e.strerror}", fix="install it (e.g. `make toolchain` for clang) or correct "
                             "`build:` in filter.yaml") from e
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise BuildCommandError(f"the build command of filter '{manifest.name}' failed (exit {proc.returncode}): "
                                f"{command[0]}", fix="fix the errors shown below", detail=tail(output, 60))
    return output


def build_prebuilt(manifest: Manifest, *, features: tuple[str, ...] = (), opt: bool = False,
                   progress: Progress | None = None) -> tuple[Path, float]:
    """Run MANIFEST's build command (if any) and return its module and the seconds it took; the module must then
    exist. FEATURES and OPT are cargo's: refused, with what to do instead."""
    module = manifest.wasm_path
    assert module is not None
    if features:
        raise UsageError(f"filter '{manifest.name}' is a prebuilt module (wasm:), which has no cargo features "
                         f"({', '.join(features)})", fix="drop --features, or the scenario file's `features:`")
    if opt:
        raise UsageError(f"--opt is cargo's size build; filter '{manifest.name}' is a prebuilt module (wasm:)",
                         fix="optimise in its `build:` command (e.g. add `wasm-opt -Oz` to it)")
    start = time.perf_counter()
    if manifest.build:
        run_build_command(manifest, progress)
    if not module.is_file():
        if manifest.build:
            raise BuildCommandError(f"the build command of filter '{manifest.name}' succeeded but wrote no "
                                    f"module at '{manifest.wasm}'",
                                    fix="make `build:` write the file `wasm:` names")
        raise UsageError(f"wasm module '{module}' does not exist",
                         fix="build it first, or add a `build:` command to filter.yaml")
    return module, time.perf_counter() - start


def module_digest(module: Path) -> tuple[int, str]:
    return module.stat().st_size, sha256_file(module)
