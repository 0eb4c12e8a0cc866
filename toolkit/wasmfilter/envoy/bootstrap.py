"""Render Envoy bootstraps from the jinja2 templates in templates/envoy/, and validate them with Envoy."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.errors import ConfigInvalidError, tail
from wasmfilter.manifest import FailurePolicy, Manifest
from wasmfilter.paths import data_dir

CLUSTER_HEADER = "x-wasmfilter-cluster"


@dataclass(frozen=True)
class Upstream:
    name: str
    host: str
    port: int

    @property
    def static(self) -> bool:
        return self.host.replace(".", "").isdigit()


@dataclass(frozen=True)
class WasmFilter:
    name: str
    wasm_path: str
    plugin_config: Any
    root_id: str = ""
    failure_policy: FailurePolicy = FailurePolicy.FAIL_CLOSED
    reload_backoff_ms: int = 1000
    vm_id: str = ""

    @classmethod
    def from_manifest(cls, manifest: Manifest, wasm_path: str | Path, *, plugin_config: Any = None,
                      failure_policy: FailurePolicy | None = None, allow_fail_open: bool = False) -> WasmFilter:
        return cls(name=manifest.name, wasm_path=str(wasm_path),
                   plugin_config=manifest.config if plugin_config is None else plugin_config,
                   root_id=manifest.effective_root_id,
                   failure_policy=manifest.failure_policy_for_run(allow_fail_open=allow_fail_open,
                                                                  override=failure_policy),
                   reload_backoff_ms=manifest.reload_backoff_ms, vm_id=manifest.name)

    def fragment(self) -> str:
        return _env().get_template("wasm_filter.yaml.j2").render(
            name=self.name, root_id=self.root_id or self.name, vm_id=self.vm_id or self.name,
            wasm_path=self.wasm_path, plugin_config=self.plugin_config,
            failure_policy=self.failure_policy.value, reload_backoff_ms=self.reload_backoff_ms)


@dataclass
class Bootstrap:
    upstreams: list[Upstream]
    http_filters: list[str] = field(default_factory=list)  # rendered YAML list items
    listener_host: str = "127.0.0.1"
    listener_port: int = 0
    admin_host: str = "127.0.0.1"
    admin_port: int = 0
    # Rendered route items that replace the default route table when given (the bench answers with
    # direct_response routes after the filter chain, and its native routing variant matches headers there).
    routes: list[str] = field(default_factory=list)

    def render(self) -> str:
        text = _env().get_template("bootstrap.yaml.j2").render(
            upstreams=self.upstreams, http_filters=self.http_filters, listener_host=self.listener_host,
            listener_port=self.listener_port, admin_host=self.admin_host, admin_port=self.admin_port,
            cluster_header=CLUSTER_HEADER, routes=self.routes)
        yaml.safe_load(text)  # a template bug shows here, not as an Envoy parse error
        return text


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(data_dir("templates") / "envoy"),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True, autoescape=False)


def template_fragment(name: str, **values: Any) -> str:
    """Another HTTP filter fragment from templates/envoy/ (e.g. a native filter the bench compares with)."""
    return _env().get_template(name).render(**values)


def validate(config: str | Path, binary: EnvoyBinary | None = None) -> str:
    """`envoy --mode validate`: returns Envoy's OK line, raises ConfigInvalidError with Envoy's reason."""
    binary = binary or resolve()
    path = Path(config)
    if not path.is_file():
        raise ConfigInvalidError(f"'{path}' does not exist", fix="write one with `wasmfilter config -o FILE`")
    out = subprocess.run([str(binary.path), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id",
                          "-l", "warning", "--component-log-level", "wasm:info"],
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise ConfigInvalidError(f"Envoy rejected '{path}': {envoy_reason(text)}",
                                 fix="fix the field Envoy names", detail=tail(text, 30))
    return text.strip().splitlines()[-1] if text.strip() else "OK"


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
