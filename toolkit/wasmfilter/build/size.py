"""The size build (`wasmfilter build --opt`, docs/size.md): wasm-opt over the size-flagged cargo artifact (after the
callback exports filter.yaml declares never received are removed, build/exports.py), skipped when its output is
already up to date with the same input, tools, arguments and removed exports."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from wasmfilter.build import exports
from wasmfilter.errors import CargoBuildError, tail
from wasmfilter.files import sha256_file
from wasmfilter.subprocesses import require

# Rust 1.96's wasm32 targets emit these post-MVP features; V8 in Envoy supports them all. Without them wasm-opt
# rejects the module ("error validating input"). --converge repeats -Oz until it gains nothing: ~200 B more off
# each module for ~2.5 s more wasm-opt (docs/size.md).
WASM_OPT_ARGS = ("-Oz", "--converge", "--strip-debug", "--enable-bulk-memory", "--enable-sign-ext",
                 "--enable-mutable-globals", "--enable-nontrapping-float-to-int", "--enable-multivalue",
                 "--enable-reference-types")
_FEATURE_ARGS = tuple(arg for arg in WASM_OPT_ARGS if arg.startswith("--enable-"))


def wasm_opt_path() -> str:
    return require("wasm-opt", "--opt needs wasm-opt, which is not installed",
                   fix="apt-get install binaryen (or build without --opt)")


def wasm_opt_cached(src: Path, dst: Path, *, strip: tuple[str, ...] = ()) -> None:
    """wasm-opt SRC to DST, first removing the exports STRIP (build/exports.py), skipped when DST was made from the
    same SRC bytes by the same wasm-opt and arguments with the same exports removed (a stamp file beside DST), so a
    no-op --opt build costs a cargo no-op, not a whole wasm-opt run."""
    wasm_opt = wasm_opt_path()
    version = subprocess.run([wasm_opt, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    removed = [f"remove-export {name}" for name in strip]
    if strip:
        exports.wasm_metadce_path()  # missing tool: say so, also when the stamp is up to date
    key = "\n".join([sha256_file(src), version, *WASM_OPT_ARGS, *removed]) + "\n"
    stamp = dst.with_name(dst.name + ".stamp")
    if dst.exists() and stamp.exists() and stamp.read_text() == key:
        return
    stamp.unlink(missing_ok=True)
    if strip:
        with tempfile.TemporaryDirectory(prefix="wasmfilter-strip-") as tmp:
            stripped = Path(tmp) / src.name
            exports.remove_exports(src, stripped, strip, _FEATURE_ARGS)
            _wasm_opt(stripped, dst)
    else:
        _wasm_opt(src, dst)
    stamp.write_text(key)


def _wasm_opt(src: Path, dst: Path) -> None:
    out = subprocess.run([wasm_opt_path(), *WASM_OPT_ARGS, str(src), "-o", str(dst)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise CargoBuildError("wasm-opt failed", fix="build without --opt, or update binaryen",
                              detail=tail(out.stderr + out.stdout, 30))
