"""`envoy --mode validate`: a config checked by the Envoy that will run it, and the most telling line of any
Envoy failure (`envoy_reason`), used by every error that carries Envoy's log."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.errors import ConfigInvalidError, tail


def validate(config: str | Path, binary: EnvoyBinary | None = None) -> str:
    """`envoy --mode validate`: returns Envoy's OK line, raises ConfigInvalidError with Envoy's reason."""
    binary = binary or resolve()
    path = Path(config)
    if not path.is_file():
        raise ConfigInvalidError(f"'{path}' does not exist", fix="write one with `wasmfilter config -o FILE`")
    returncode, text = validate_output(path, binary)
    if returncode != 0:
        raise ConfigInvalidError(f"Envoy rejected '{path}': {envoy_reason(text)}",
                                 fix="fix the field Envoy names", detail=tail(text, 30))
    return text.strip().splitlines()[-1] if text.strip() else "OK"


def validate_output(path: Path, binary: EnvoyBinary) -> tuple[int, str]:
    """`envoy --mode validate -c PATH`: its exit code and everything it printed (the Wasm modules' logs included)."""
    out = subprocess.run([str(binary.path), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id",
                          "-l", "warning", "--component-log-level", "wasm:info"],
                         capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout + out.stderr


def envoy_reason(log: str) -> str:
    """The most telling line of an Envoy failure: the filter's own error, else Envoy's last critical line."""
    lines = log.strip().splitlines()
    if "Envoy was compiled without support for it" in log and "envoy.wasm.runtime.v8" in log:
        return ("this Envoy binary has no V8 Wasm runtime (it was built without it), so it cannot run Wasm "
                "filters: use another Envoy version (e.g. --envoy-version 1.40.0)")
    for marker in ("invalid ", "Plugin Crash", "wasm log"):
        for line in reversed(lines):
            if marker in line and ("error" in line or "critical" in line):
                return _strip_prefix(line)
    for line in reversed(lines):
        if "[critical]" in line or "[error]" in line:
            return _strip_prefix(line)
    return _strip_prefix(lines[-1]) if lines else "no output"


def _strip_prefix(line: str) -> str:
    # "[date][pid][level][component] [file:line] message" -> "message"
    message = line.split("] ")[-1].strip() if line.startswith("[") else line.strip()
    if message.startswith("wasm log ") and ": " in message:
        # "wasm log <plugin> <root_id>: text" -> "text"
        message = message.split(": ", 1)[1]
    return message


def validate_text(text: str, binary: EnvoyBinary | None = None) -> str:
    """Validate generated config text; errors speak of "the generated config", not a temp file."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="wasmfilter-") as fh:
        fh.write(text)
        fh.flush()
        try:
            return validate(fh.name, binary)
        except ConfigInvalidError as e:
            raise ConfigInvalidError(e.problem.replace(f"'{fh.name}'", "the generated config"),
                                     fix="fix the plugin configuration or option Envoy names", detail=e.detail) from e
