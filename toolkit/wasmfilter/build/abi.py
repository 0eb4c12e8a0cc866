"""ABI lint: will Envoy's proxy-wasm host load this module? Said in a sentence, before Envoy sees it.

The host's tables below follow proxy-wasm-cpp-host (`include/proxy-wasm/exports.h`, `src/wasm.cc`), the
host Envoy embeds; `tests/test_abi.py` checks them against the real Envoy binary."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from wasmfilter.errors import AbiError, UsageError

ABI_VERSIONS = ("proxy_abi_version_0_1_0", "proxy_abi_version_0_2_0", "proxy_abi_version_0_2_1")

# Host functions and their signatures: i = i32 (a Word on wasm32), I = i64; "params>results".
_ENV_SIGNATURES = {
    "log": "iii>i", "get_status": "iii>i", "set_property": "iiii>i", "get_property": "iiii>i",
    "send_local_response": "iiiiiiii>i", "get_shared_data": "iiiii>i", "set_shared_data": "iiiii>i",
    "register_shared_queue": "iii>i", "resolve_shared_queue": "iiiii>i", "dequeue_shared_queue": "iii>i",
    "enqueue_shared_queue": "iii>i", "get_header_map_value": "iiiii>i", "add_header_map_value": "iiiii>i",
    "replace_header_map_value": "iiiii>i", "remove_header_map_value": "iii>i", "get_header_map_pairs": "iii>i",
    "set_header_map_pairs": "iii>i", "get_header_map_size": "ii>i", "get_buffer_status": "iii>i",
    "get_buffer_bytes": "iiiii>i", "set_buffer_bytes": "iiiii>i", "http_call": "iiiiiiiiii>i",
    "grpc_call": "iiiiiiiiiiii>i", "grpc_stream": "iiiiiiiii>i", "grpc_close": "i>i", "grpc_cancel": "i>i",
    "grpc_send": "iiii>i", "set_tick_period_milliseconds": "i>i", "get_current_time_nanoseconds": "i>i",
    "define_metric": "iiii>i", "increment_metric": "iI>i", "record_metric": "iI>i", "get_metric": "ii>i",
    "set_effective_context": "i>i", "done": ">i", "call_foreign_function": "iiiiii>i",
}
HOST_FUNCTIONS = {f"proxy_{name}": sig for name, sig in _ENV_SIGNATURES.items()} | {
    "pthread_equal": "ii>i", "emscripten_notify_memory_growth": "i>"}

ABI_SPECIFIC_HOST_FUNCTIONS = {
    "proxy_abi_version_0_1_0": {"proxy_get_configuration": "ii>i", "proxy_continue_request": ">i",
                                "proxy_continue_response": ">i", "proxy_clear_route_cache": ">i"},
    "proxy_abi_version_0_2_0": {"proxy_continue_stream": "i>i", "proxy_close_stream": "i>i"},
    "proxy_abi_version_0_2_1": {"proxy_continue_stream": "i>i", "proxy_close_stream": "i>i",
                                "proxy_get_log_level": "i>i"},
}

# WASI preview1 functions Envoy implements. Envoy still loads a module importing any other WASI
# function (measured with Envoy 1.40: it links a stub), but the call fails at run time.
WASI_FUNCTIONS = {
    "fd_write": "iiii>i", "fd_read": "iiii>i", "fd_seek": "iIii>i", "fd_close": "i>i", "fd_fdstat_get": "ii>i",
    "environ_get": "ii>i", "environ_sizes_get": "ii>i", "args_get": "ii>i", "args_sizes_get": "ii>i",
    "clock_time_get": "iIi>i", "random_get": "ii>i", "proc_exit": "i>", "path_open": "iiiiiIIii>i",
    "fd_prestat_get": "ii>i", "fd_prestat_dir_name": "iii>i",
}
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
    host: str = ""  # with --envoy-version: one line on what that Envoy provides of what the module uses

    @property
    def ok(self) -> bool:
        return not self.errors


@functools.cache
def _engine() -> wasmtime.Engine:
    # wasmtime compiles the module to list its imports with types; unoptimised compilation is ~40% faster.
    config = wasmtime.Config()
    config.cranelift_opt_level = "none"
    return wasmtime.Engine(config)


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
        module = wasmtime.Module(_engine(), data)
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

    allowed_env = HOST_FUNCTIONS | ABI_SPECIFIC_HOST_FUNCTIONS.get(report.abi_version or "", {})
    other_abi = {name for table in ABI_SPECIFIC_HOST_FUNCTIONS.values() for name in table}
    for imp in module.imports:
        name = f"{imp.module}.{imp.name}"
        if imp.module == "env":
            if imp.name in allowed_env:
                _check_signature(report, name, imp.type, allowed_env[imp.name])
            elif imp.name in other_abi and report.abi_version:
                report.errors.append(f"imports {name}, which Envoy provides only to another ABI version than "
                                     f"{report.abi_version}")
            else:
                report.errors.append(f"imports {name}, which Envoy does not provide")
        elif imp.module in WASI_MODULES:
            if imp.name in WASI_FUNCTIONS:
                _check_signature(report, name, imp.type, WASI_FUNCTIONS[imp.name])
            else:
                report.warnings.append(f"imports {name}, which Envoy does not implement: the module loads but "
                                       "that call fails at run time (avoid the std APIs that need it: files, "
                                       "threads, sockets)")
        else:
            report.errors.append(f"imports {name} from module '{imp.module}', which Envoy does not provide "
                                 "(only 'env' proxy_* functions and WASI preview1 exist)")
    return report


_VALTYPES = {"i32": "i", "i64": "I", "f32": "f", "f64": "F"}


def _signature(func_type: object) -> str:
    if not isinstance(func_type, wasmtime.FuncType):
        return "not a function"
    params = "".join(_VALTYPES.get(str(t), "?") for t in func_type.params)
    results = "".join(_VALTYPES.get(str(t), "?") for t in func_type.results)
    return f"{params}>{results}"


def _readable(sig: str) -> str:
    params, _, results = sig.partition(">")
    names = {"i": "i32", "I": "i64", "f": "f32", "F": "f64", "?": "?"}
    return f"({', '.join(names[c] for c in params)}) -> ({', '.join(names[c] for c in results)})"


def _check_signature(report: AbiReport, name: str, func_type: object, expected: str) -> None:
    got = _signature(func_type)
    if got != expected:
        shown = got if got == "not a function" else _readable(got)
        report.errors.append(f"imports {name} as {shown}, but Envoy provides {_readable(expected)}")


def check(path: str | Path, *, strict: bool = False, envoy_version: str | None = None) -> AbiReport:
    """`inspect`, raising AbiError with the first reason when Envoy would refuse the module
    (STRICT: also when a warning says a call would fail at run time). ENVOY_VERSION: also against what that
    version's host provides (build/host_support.py)."""
    report = inspect(path)
    if envoy_version is not None:
        from wasmfilter.build.host_support import check_host

        check_host(report, envoy_version)
    problems = report.errors + (report.warnings if strict else [])
    if problems:
        verdict = "would not load in Envoy" if report.errors else "fails the strict ABI check"
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise AbiError(f"'{report.path}' {verdict}: it {problems[0]}{more}", detail="\n".join(problems))
    return report
