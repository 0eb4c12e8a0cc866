"""A running test stack: echo upstream(s) plus an Envoy with the filter, on a chosen backend."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
from wasmfilter.envoy.process import EnvoyProcess
from wasmfilter.envoy.protocol import Envoy
from wasmfilter.errors import UsageError
from wasmfilter.harness.upstream import EchoUpstream
from wasmfilter.manifest import FailurePolicy, Manifest


@dataclass
class StackSpec:
    """Everything that decides how Envoy is started; equal specs can share one Envoy."""
    manifest: Manifest
    wasm_path: Path
    plugin_config: Any = None
    failure_policy: FailurePolicy | None = None
    allow_fail_open: bool = False
    concurrency: int = 2
    listener_port: int = 0
    extra_http_filters: list[str] = field(default_factory=list)  # rendered fragments placed before the Wasm filter

    def wasm_filter(self, wasm_path: str | None = None) -> WasmFilter:
        return WasmFilter.from_manifest(self.manifest, wasm_path or self.wasm_path, plugin_config=self.plugin_config,
                                        failure_policy=self.failure_policy, allow_fail_open=self.allow_fail_open)


class Stack:
    def __init__(self, envoy: Envoy, upstream_names: list[str], closer: ExitStack):
        self.envoy = envoy
        self.upstream_names = upstream_names
        self._closer = closer

    @property
    def url(self) -> str:
        return self.envoy.listener_url

    def stop(self) -> None:
        self._closer.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _process_stack(spec: StackSpec, binary: EnvoyBinary) -> Stack:
    from wasmfilter.envoy.protocol import ensure_port_free

    ensure_port_free("127.0.0.1", spec.listener_port)
    closer = ExitStack()
    try:
        upstreams = [closer.enter_context(EchoUpstream(name)) for name in spec.manifest.upstreams]
        bootstrap = Bootstrap(upstreams=[Upstream(u.name, u.host, u.port) for u in upstreams],
                              http_filters=[*spec.extra_http_filters, spec.wasm_filter().fragment()],
                              listener_port=spec.listener_port)
        envoy = closer.enter_context(EnvoyProcess(bootstrap.render(), binary=binary, concurrency=spec.concurrency))
    except BaseException:
        closer.close()
        raise
    return Stack(envoy, list(spec.manifest.upstreams), closer)


StackFactory = Callable[[StackSpec, EnvoyBinary], Stack]
BACKENDS: dict[str, StackFactory] = {"process": _process_stack}


def start_stack(spec: StackSpec, *, backend: str = "process", binary: EnvoyBinary | None = None) -> Stack:
    factory = BACKENDS.get(backend)
    if factory is None:
        _load_optional_backends()
        factory = BACKENDS.get(backend)
    if factory is None:
        raise UsageError(f"unknown backend '{backend}'", fix="use one of: " + ", ".join(sorted(BACKENDS)))
    return factory(spec, binary or resolve(spec.manifest.envoy_version))


def _load_optional_backends() -> None:
    try:
        from wasmfilter.envoy import container  # noqa: F401 - registers the docker backend
    except ImportError:
        pass
