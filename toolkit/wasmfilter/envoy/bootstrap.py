"""Envoy bootstraps rendered from the jinja2 templates in templates/envoy/: the listener, the HTTP connection
manager with the filter fragments, the route table, the upstream clusters and the admin API."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from wasmfilter.envoy.hardening import SAFE, RequestHardening
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
    # What the HTTP connection manager does before any filter (safe by default; docs/security.md).
    hardening: RequestHardening = SAFE

    def render(self) -> str:
        text = _env().get_template("bootstrap.yaml.j2").render(
            upstreams=self.upstreams, http_filters=self.http_filters, listener_host=self.listener_host,
            listener_port=self.listener_port, admin_host=self.admin_host, admin_port=self.admin_port,
            cluster_header=CLUSTER_HEADER, routes=self.routes, hardening=self.hardening)
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
