"""Callback exports a filter declares it never receives (`never_receives:` in filter.yaml, docs/size.md): the
groups of proxy-wasm 0.2.1 callbacks they name, and their removal from a module with binaryen's wasm-metadce
before the size build's final wasm-opt, so the code only they reach (through the SDK dispatcher's vtables) goes too.

The proxy-wasm SDK exports every callback and imports every host function, so what a filter never receives cannot
be read from its module: it is declared. The list is negative: forgetting a group only leaves code in. The
callbacks Envoy always calls (context create, vm_start, configure, the HTTP lifecycle, done, log, delete, memory
allocation, _initialize/_start, memory) belong to no group and are never removed. The host checks each callback
export before calling it (proxy-wasm-cpp-host), so a removed one is a callback skipped, not a failed load."""

from __future__ import annotations

import enum
import json
import subprocess
import tempfile
from pathlib import Path

from wasmfilter.errors import CargoBuildError, tail
from wasmfilter.subprocesses import require


class CallbackGroup(str, enum.Enum):
    GRPC = "grpc"
    HTTP_CALL = "http_call"
    QUEUE = "queue"
    TICK = "tick"
    STREAM = "stream"


# Export names as proxy-wasm-rust-sdk 0.2 (src/dispatcher.rs) defines them for ABI 0.2.1.
GROUP_EXPORTS: dict[CallbackGroup, tuple[str, ...]] = {
    CallbackGroup.GRPC: ("proxy_on_grpc_receive_initial_metadata", "proxy_on_grpc_receive",
                         "proxy_on_grpc_receive_trailing_metadata", "proxy_on_grpc_close"),
    CallbackGroup.HTTP_CALL: ("proxy_on_http_call_response",),
    CallbackGroup.QUEUE: ("proxy_on_queue_ready",),
    CallbackGroup.TICK: ("proxy_on_tick",),
    CallbackGroup.STREAM: ("proxy_on_new_connection", "proxy_on_downstream_data",
                           "proxy_on_downstream_connection_close", "proxy_on_upstream_data",
                           "proxy_on_upstream_connection_close"),
}


def stripped_exports(groups: list[CallbackGroup] | tuple[CallbackGroup, ...]) -> tuple[str, ...]:
    """The export names GROUPS stand for, sorted, each once."""
    return tuple(sorted({name for group in groups for name in GROUP_EXPORTS[group]}))


def wasm_metadce_path() -> str:
    return require("wasm-metadce", "never_receives in filter.yaml needs wasm-metadce (binaryen), which is not "
                   "installed", fix="apt-get install binaryen (or build without --opt)")


def remove_exports(src: Path, dst: Path, names: tuple[str, ...], features: tuple[str, ...]) -> None:
    """SRC without the exports NAMES and whatever only they reached, written to DST. Every other export is a root of
    wasm-metadce's reachability graph; an export left out of the graph is removed. FEATURES: the --enable-* flags
    the module needs to validate."""
    from wasmfilter.build.abi import inspect  # wasmtime: imported only when a module is stripped

    keep = [name for name in inspect(src).exports if name not in names]
    graph = [{"name": f"export:{name}", "root": True, "export": name} for name in keep]
    with tempfile.TemporaryDirectory(prefix="wasmfilter-metadce-") as tmp:
        graph_file = Path(tmp) / "graph.json"
        graph_file.write_text(json.dumps(graph))
        out = subprocess.run([wasm_metadce_path(), *features, "--graph-file", str(graph_file), str(src),
                              "-o", str(dst)], capture_output=True, text=True)
    if out.returncode != 0:
        raise CargoBuildError("wasm-metadce failed", fix="drop never_receives from filter.yaml, or update binaryen",
                              detail=tail(out.stderr + out.stdout, 30))
