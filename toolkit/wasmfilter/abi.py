"""ABI lint: will Envoy's proxy-wasm host load this module? Said in a sentence, before Envoy sees it.

The host's tables below follow proxy-wasm-cpp-host (`include/proxy-wasm/exports.h`, `src/wasm.cc`), the
host Envoy embeds; `tests/test_abi.py` checks them against the real Envoy binary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from wasmfilter.errors import AbiError, UsageError

ABI_VERSIONS = ("proxy_abi_version_0_1_0", "proxy_abi_version_0_2_0", "proxy_abi_version_0_2_1")

HOST_FUNCTIONS = frozenset("proxy_" + name for name in (
    "log get_status set_property get_property send_local_response get_shared_data set_shared_data "
    "register_shared_queue resolve_shared_queue dequeue_shared_queue enqueue_shared_queue "
    "get_header_map_value add_header_map_value replace_header_map_value remove_header_map_value "
    "get_header_map_pairs set_header_map_pairs get_header_map_size get_buffer_status get_buffer_bytes "
    "set_buffer_bytes http_call grpc_call grpc_stream grpc_close grpc_cancel grpc_send "
    "set_tick_period_milliseconds get_current_time_nanoseconds define_metric increment_metric record_metric "
    "get_metric set_effective_context done call_foreign_function").split()) | {"pthread_equal",
                                                                             "emscripten_notify_memory_growth"}

ABI_SPECIFIC_HOST_FUNCTIONS = {
    "proxy_abi_version_0_1_0": {"proxy_get_configuration", "proxy_continue_request", "proxy_continue_response",
                                "proxy_clear_route_cache"},
    "proxy_abi_version_0_2_0": {"proxy_continue_stream", "proxy_close_stream"},
    "proxy_abi_version_0_2_1": {"proxy_continue_stream", "proxy_close_stream", "proxy_get_log_level"},
}

WASI_FUNCTIONS = frozenset(
    "fd_write fd_read fd_seek fd_close fd_fdstat_get environ_get environ_sizes_get args_get args_sizes_get "
    "clock_time_get random_get proc_exit path_open fd_prestat_get fd_prestat_dir_name".split())
WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")

HTTP_CALLBACKS = ("proxy_on_request_headers", "proxy_on_response_headers", "proxy_on_request_body",
                  "proxy_on_response_body")


@dataclass
class AbiReport:
    path: Path
    abi_version: str | None = None
    imports: list[str] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def inspect(path: str | Path) -> AbiReport:
    """Parse and validate the module and list every reason Envoy would refuse it."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"'{file}' does not exist", fix="pass the path of a built .wasm (see `wasmfilter build`)")
    data = file.read_bytes()
    if data[:4] != b"\0asm":
        raise AbiError(f"'{file}' is not a WebAssembly module (it does not start with the \\0asm magic)",
                       fix="pass the .wasm that `wasmfilter build` printed")
    try:
        module = wasmtime.Module(wasmtime.Engine(), data)
    except wasmtime.WasmtimeError as e:
        first = str(e).strip().splitlines()[0]
        raise AbiError(f"'{file}' is not a valid WebAssembly module ({first})",
                       fix="rebuild it with `wasmfilter build`") from e

    report = AbiReport(path=file)
    exports = {e.name: e.type for e in module.exports}
    report.exports = sorted(exports)
    report.imports = [f"{i.module}.{i.name}" for i in module.imports]

    versions = [v for v in ABI_VERSIONS if v in exports]
    if not versions:
        report.errors.append("exports no proxy_abi_version_* marker, so it is not a proxy-wasm module "
                             "(build it with the proxy-wasm SDK)")
    elif len(versions) > 1:
        report.errors.append(f"exports several ABI versions ({', '.join(versions)}); Envoy needs exactly one")
    report.abi_version = versions[0] if len(versions) == 1 else None

    if "_initialize" not in exports and "_start" not in exports:
        report.errors.append("exports neither _initialize nor _start, so Envoy cannot start the module "
                             "(build a cdylib for wasm32-wasip1)")
    if "malloc" not in exports and "proxy_on_memory_allocate" not in exports:
        report.errors.append("exports neither malloc nor proxy_on_memory_allocate; Envoy fails with "
                             "'Wasm module is missing malloc function'")
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        report.errors.append("exports no linear memory named 'memory'")
    if "proxy_on_context_create" not in exports:
        report.errors.append("exports no proxy_on_context_create, so Envoy can create no filter context")
    if not any(cb in exports for cb in HTTP_CALLBACKS) and "proxy_on_new_connection" not in exports:
        report.warnings.append("exports no HTTP or network callback (proxy_on_request_headers, …): "
                               "the filter will see no traffic")

    allowed_env = HOST_FUNCTIONS | ABI_SPECIFIC_HOST_FUNCTIONS.get(report.abi_version or "", set())
    for imp in module.imports:
        name = f"{imp.module}.{imp.name}"
        if imp.module == "env":
            if imp.name not in allowed_env:
                why = ("exists only for another ABI version than " + report.abi_version
                       if report.abi_version and any(imp.name in s for s in ABI_SPECIFIC_HOST_FUNCTIONS.values())
                       else "which Envoy does not provide")
                report.errors.append(f"imports {name}, {why}")
        elif imp.module in WASI_MODULES:
            if imp.name not in WASI_FUNCTIONS:
                report.errors.append(f"imports {name}, which Envoy does not provide "
                                     "(avoid the std API that needs it, e.g. files, threads or sockets)")
        else:
            report.errors.append(f"imports {name} from module '{imp.module}', which Envoy does not provide "
                                 "(only 'env' proxy_* functions and WASI preview1 exist)")
    return report


def check(path: str | Path) -> AbiReport:
    """`inspect`, raising AbiError with the first reason when Envoy would refuse the module."""
    report = inspect(path)
    if not report.ok:
        more = f" (and {len(report.errors) - 1} more problem(s))" if len(report.errors) > 1 else ""
        raise AbiError(f"'{report.path}' would not load in Envoy: it {report.errors[0]}{more}",
                       detail="\n".join(report.errors))
    return report
