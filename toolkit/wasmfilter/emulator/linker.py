"""The host functions a module imports, linked by name from the area modules (headers, buffers, properties, …)
after checking the module: it must be proxy-wasm (one `proxy_abi_version_*` export), and every import must be one
the emulator provides with Envoy's signature (build/abi.py's tables). An import the emulator lacks is one line that
says whether Envoy has it; WASI functions Envoy does not implement link a stub that traps when called, like Envoy's."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import wasmtime

from wasmfilter.build.abi import ABI_SPECIFIC_HOST_FUNCTIONS, ABI_VERSIONS, HOST_FUNCTIONS, WASI_FUNCTIONS, WASI_MODULES
from wasmfilter.emulator import (
    buffers,
    clock,
    control,
    headers,
    http_call,
    logs,
    metrics,
    properties,
    queues,
    shared_data,
    wasi,
)
from wasmfilter.emulator.codes import WASI_EFAULT, Result
from wasmfilter.emulator.memory import OutOfBounds
from wasmfilter.emulator.meter import Meter
from wasmfilter.emulator.vm import define_host_func
from wasmfilter.errors import EmulatorError

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost

_AREAS = (headers, buffers, properties, metrics, shared_data, queues, http_call, clock, logs, control)
_I32 = wasmtime.ValType.i32()


def abi_version(module: wasmtime.Module, name: str) -> str:
    exports = {e.name for e in module.exports}
    versions = [v for v in ABI_VERSIONS if v in exports]
    if len(versions) != 1:
        raise EmulatorError(f"'{name}' is not a proxy-wasm module: it exports "
                            f"{'no' if not versions else 'more than one'} proxy_abi_version_* marker",
                            fix="build it with a proxy-wasm SDK (0.2.1 ABI), e.g. `wasmfilter build`")
    return versions[0]


def _guard(func: Callable[..., Any], i32_params: list[bool], fault: int) -> Callable[..., Any]:
    """Arguments declared i32 arrive signed from wasmtime: make them the u32 the ABI means; a pointer outside the
    guest's memory is the ABI's error code, not a Python exception."""

    def call(*args: int) -> Any:
        try:
            return func(*[a & 0xFFFFFFFF if is32 else a for a, is32 in zip(args, i32_params)])
        except OutOfBounds:
            return fault

    return call


def _counted(func: Callable[..., Any], meter: Meter, name: str) -> Callable[..., Any]:
    def call(*args: int) -> Any:
        meter.host_call(name)
        return func(*args)

    return call


def _missing(name: str) -> Callable[..., Any]:
    def missing(*args: int) -> Any:
        raise EmulatorError(f"the module called env.{name}, which the emulator lacks (Envoy has it)",
                            fix="test this path through Envoy (--backend process)")

    return missing


def _wasi_stub(name: str) -> Callable[..., Any]:
    def stub(*args: int) -> Any:
        raise EmulatorError(f"the module called WASI {name}, which Envoy does not implement (its stub fails too)",
                            fix="avoid the std API that needs it (files, threads, sockets)")

    return stub


def build(host: FilterHost, module: wasmtime.Module, engine: wasmtime.Engine, name: str) -> wasmtime.Linker:
    version = abi_version(module, name)
    env: dict[str, Callable[..., Any]] = {}
    for area in _AREAS:
        env.update(area.functions(host))
    wasi_funcs = wasi.functions(host)
    envoy_env = HOST_FUNCTIONS | ABI_SPECIFIC_HOST_FUNCTIONS.get(version, {})
    linker = wasmtime.Linker(engine)
    for imp in module.imports:
        ty = imp.type
        if not isinstance(ty, wasmtime.FuncType):
            raise EmulatorError(f"'{name}' imports {imp.module}.{imp.name}, which is not a function; neither the "
                                "emulator nor Envoy provides it", fix="import only env.proxy_* and WASI functions")
        i32s = [p == _I32 for p in ty.params]
        if imp.module == "env":
            func = env.get(imp.name or "")
            if imp.name not in envoy_env:
                raise EmulatorError(f"'{name}' imports env.{imp.name}, which the emulator lacks (Envoy does not "
                                    "provide it either)", fix="remove the import: Envoy would refuse the module too")
            if func is None:  # Envoy has it, the emulator does not: a call (not the import) is the error
                func = _missing(imp.name or "")
                host.not_emulated.append(f"env.{imp.name}")
            guarded = _guard(func, i32s, Result.INVALID_MEMORY_ACCESS)
            if host.meter is not None:
                guarded = _counted(guarded, host.meter, imp.name or "")
            define_host_func(linker, "env", imp.name or "", ty, guarded)
        elif imp.module in WASI_MODULES:
            wfunc = wasi_funcs.get(imp.name or "") if imp.name in WASI_FUNCTIONS else None
            target = _guard(wfunc, i32s, WASI_EFAULT) if wfunc is not None else _wasi_stub(imp.name or "")
            define_host_func(linker, imp.module, imp.name or "", ty, target)
        else:
            raise EmulatorError(f"'{name}' imports {imp.module}.{imp.name}, which neither the emulator nor Envoy "
                                "provides (only env.proxy_* and WASI preview1 exist)",
                                fix="remove that import")
    return linker
