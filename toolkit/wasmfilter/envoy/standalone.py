"""`wasmfilter config`: a standalone Envoy bootstrap for a filter, ready for `envoy -c`."""

from __future__ import annotations

from pathlib import Path

from wasmfilter.build.cargo import build
from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
from wasmfilter.errors import UsageError
from wasmfilter.manifest import load_manifest


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"'{value}' is not HOST:PORT", fix="write it like 127.0.0.1:8000")
    return host, int(port)


def bootstrap_for(path: str | Path | None = None, *, wasm: str | Path | None = None, port: int = 10000,
                  admin_port: int = 9901, upstream: str = "127.0.0.1:8000", allow_fail_open: bool = False,
                  listener_host: str = "127.0.0.1", admin_host: str = "127.0.0.1", xds: str | None = None) -> str:
    """XDS (HOST:PORT): delivery="ecds", the filter is a config_discovery stub served by the ADS server there
    (docs/dev.md); no module is built or named."""
    manifest = load_manifest(path)
    if xds is not None:
        xds_host, xds_port = parse_host_port(xds)
        host, up_port = parse_host_port(upstream)
        stub = WasmFilter.from_manifest(manifest, "", allow_fail_open=allow_fail_open).ecds_fragment()
        return Bootstrap(upstreams=[Upstream(name, host, up_port) for name in manifest.upstreams], http_filters=[stub],
                         listener_host=listener_host, listener_port=port, admin_host=admin_host,
                         admin_port=admin_port, xds_host=xds_host, xds_port=xds_port).render()
    if wasm is None:
        wasm = build(manifest.crate_dir).wasm
    elif not Path(wasm).is_file():
        raise UsageError(f"'{wasm}' does not exist", fix="build it with `wasmfilter build` or drop --wasm")
    host, up_port = parse_host_port(upstream)
    upstreams = [Upstream(name, host, up_port) for name in manifest.upstreams]
    fragment = WasmFilter.from_manifest(manifest, Path(wasm).resolve(), allow_fail_open=allow_fail_open).fragment()
    return Bootstrap(upstreams=upstreams, http_filters=[fragment], listener_host=listener_host, listener_port=port,
                     admin_host=admin_host, admin_port=admin_port).render()
