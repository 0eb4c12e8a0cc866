"""One Wasm VM of a plugin on wasmtime: the engine (fuel metering, optional wasmtime compilation cache), compiled
modules kept per content digest, the memory cap, instantiation with the host functions, `_initialize`/`_start`, and
calls into the guest whose traps become `WasmTrap` with the panic message the module logged before it aborted."""

from __future__ import annotations

import ctypes
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wasmtime
import wasmtime._func
from wasmtime import _ffi as ffi  # the C API, for calls without wasmtime-py's per-call type lookups

from wasmfilter.emulator.memory import GuestMemory
from wasmfilter.errors import EmulatorError, WasmTrap

DEFAULT_FUEL = 2_000_000_000  # instructions (roughly) one callback may run before it is stopped as a hang
DEFAULT_MEMORY_MB = 256  # V8 in Envoy allows 4 GiB; a cap keeps a runaway allocation from eating the machine


@dataclass(frozen=True)
class Limits:
    """What one callback may use: FUEL (wasmtime fuel units, ~ instructions; 0 = unlimited) and the linear
    memory cap in MiB."""
    fuel: int = DEFAULT_FUEL
    memory_mb: int = DEFAULT_MEMORY_MB


@functools.cache
def engine(cache: bool = True) -> wasmtime.Engine:
    """One engine per cache setting (fuel metering on: a callback stuck in a loop ends with a clear error).
    CACHE: wasmtime's own compilation cache on disk (its default location); unavailable → off."""
    config = wasmtime.Config()
    config.consume_fuel = True
    # Traps by explicit checks, not by signals: a test process also runs other native libraries and Envoy's tools,
    # and a wasm trap (a Rust panic is `unreachable`) must never depend on which SIGILL/SIGSEGV handler is
    # installed at that moment (seen: the whole pytest process killed by SIGILL in the full suite).
    config.signals_based_traps = False
    if cache:
        try:
            config.cache = True
        except wasmtime.WasmtimeError:
            pass
    return wasmtime.Engine(config)


_MODULES: dict[tuple[str, bool], wasmtime.Module] = {}


def compile_module(data: bytes, *, cache: bool = True, name: str = "module") -> wasmtime.Module:
    """Compile DATA once per process (kept by its sha256); a bad module is one line."""
    key = (hashlib.sha256(data).hexdigest(), cache)
    module = _MODULES.get(key)
    if module is None:
        if data[:4] != b"\0asm":
            raise EmulatorError(f"'{name}' is not a WebAssembly module (it does not start with the \\0asm magic)",
                                fix="pass the .wasm that `wasmfilter build` printed")
        try:
            module = wasmtime.Module(engine(cache), data)
        except wasmtime.WasmtimeError as e:
            first = str(e).strip().splitlines()[0]
            raise EmulatorError(f"'{name}' is not a valid WebAssembly module ({first})",
                                fix="rebuild it with `wasmfilter build`") from e
        _MODULES[key] = module
    return module


def forget_compiled() -> None:
    """Drop the in-process module cache (the benchmarks measure cold compiles with it)."""
    _MODULES.clear()


_HOST_FUNCS: dict[int, tuple[Callable[..., Any], list[bool]]] = {}
_next_host_func = [1]


@ffi.wasmtime_func_callback_t
def _trampoline(idx: int | None, caller: Any, params: Any, nparams: int, results: Any, nresults: int) -> int | None:
    """Host functions' entry from wasm: raw i32/i64 arguments in, one i32 out (every proxy-wasm host function's
    shape), a Python exception handed to wasmtime-py's own mechanism so the call raises it."""
    try:
        func, wide = _HOST_FUNCS[idx or 0]
        out = func(*[params[i].of.i64 if w else params[i].of.i32 for i, w in enumerate(wide)])
        if nresults:
            results[0].kind = ffi.WASMTIME_I32.value
            results[0].of.i32 = int(out) & 0xFFFFFFFF
        return 0
    except Exception as e:
        wasmtime._func.LAST_EXCEPTION = e
        trap = wasmtime.Trap("python exception")._consume()
        return ctypes.cast(trap, ctypes.c_void_p).value


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _finalize(idx: int | None) -> None:
    _HOST_FUNCS.pop(idx or 0, None)


def define_host_func(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType,
                     func: Callable[..., Any]) -> None:
    """Linker.define_func without wasmtime-py's per-call Caller and Val objects (~20 µs a call)."""
    idx = _next_host_func[0]
    _next_host_func[0] += 1
    _HOST_FUNCS[idx] = (func, [p == wasmtime.ValType.i64() for p in ty.params])
    module_bytes, name_bytes = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func(linker.ptr(), ctypes.create_string_buffer(module_bytes),
                                            len(module_bytes), ctypes.create_string_buffer(name_bytes),
                                            len(name_bytes), ty.ptr(), _trampoline, idx, _finalize)
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


class GuestFunc:
    """An exported function called straight through the C API with its type looked up once: wasmtime-py's
    `Func.__call__` asks for the type on every call (~40 µs), which dominated a request's cost."""

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func):
        ty = func.type(store)
        self._store = store
        self._func = func
        self._kinds = [ffi.WASMTIME_I64.value if p == wasmtime.ValType.i64() else ffi.WASMTIME_I32.value
                       for p in ty.params]
        self._nresults = len(ty.results)
        self._i64 = ffi.WASMTIME_I64.value
        self._context = store._context()
        self._ref = ctypes.byref(func._func)

    def __call__(self, *args: int) -> int | None:
        n = len(self._kinds)
        params: Any = (ffi.wasmtime_val_t * n)()
        for i, (kind, value) in enumerate(zip(self._kinds, args)):
            params[i].kind = kind
            if kind == self._i64:
                params[i].of.i64 = value
            else:
                params[i].of.i32 = value
        results: Any = (ffi.wasmtime_val_t * max(self._nresults, 1))()
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ffi.wasmtime_func_call(self._context, self._ref, params, n, results, self._nresults,
                                       ctypes.byref(trap))
        if error:
            wasmtime._func.maybe_raise_last_exn()
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            trapped = wasmtime.Trap._from_ptr(trap)
            wasmtime._func.maybe_raise_last_exn()
            raise trapped
        if not self._nresults:
            return None
        if results[0].kind == self._i64:
            return int(results[0].of.i64)
        return int(results[0].of.i32) & 0xFFFFFFFF


class Vm:
    """An instance of the module in its own store. `panic_message` reads the log lines of the current call."""

    def __init__(self, module: wasmtime.Module, linker: wasmtime.Linker, limits: Limits,
                 panic_message: Callable[[], str | None], *, cache: bool = True):
        self.limits = limits
        self.store = wasmtime.Store(engine(cache))
        self.store.set_limits(memory_size=limits.memory_mb * 1024 * 1024)
        self._refuel()
        self._panic_message = panic_message
        self.failed: WasmTrap | None = None
        self.inject: set[str] = set()
        try:
            self.instance = linker.instantiate(self.store, module)
        except wasmtime.Trap as e:
            raise self._trap("instantiation", e) from e
        except wasmtime.WasmtimeError as e:
            raise EmulatorError(f"the module cannot be instantiated: {str(e).strip().splitlines()[0]}",
                                fix="check its imports with `wasmfilter check`") from e
        exports = dict(self.instance.exports(self.store).items())
        self.exports: dict[str, Any] = {k: GuestFunc(self.store, v) if isinstance(v, wasmtime.Func) else v
                                        for k, v in exports.items()}
        memory = self.exports.get("memory")
        malloc = self.exports.get("malloc") or self.exports.get("proxy_on_memory_allocate")
        if not isinstance(memory, wasmtime.Memory) or not isinstance(malloc, GuestFunc):
            raise EmulatorError("the module exports no 'memory' or no allocator (malloc / proxy_on_memory_allocate)",
                                fix="build it with a proxy-wasm SDK as a wasm32-wasip1 cdylib")
        self.memory = GuestMemory(self.store, memory, lambda size: int(malloc(size) or 0))

    def _refuel(self) -> None:
        self.store.set_fuel(self._budget())

    def _budget(self) -> int:
        return self.limits.fuel or 2**63 - 1

    def fuel_used(self) -> int:
        """Fuel the last call consumed (wasm instructions, the guest's allocator run by host calls included)."""
        return self._budget() - self.store.get_fuel()

    def has(self, name: str) -> bool:
        return name in self.exports

    def call(self, name: str, *args: int) -> int | None:
        """Call export NAME (absent → None, as cpp-host skips a callback the module does not export)."""
        func = self.exports.get(name)
        if func is None:
            return None
        if self.failed is not None:
            raise self.failed
        if name in self.inject:  # the trap a test asked for, as if the callback's first instruction trapped
            self.inject.discard(name)
            self.failed = WasmTrap(f"{name} trapped: trap injected by the test", callback=name,
                                   trap="injected", fix="the test asked for it (host.inject_trap)")
            raise self.failed
        self._refuel()
        try:
            result = func(*args)
        except wasmtime.Trap as e:
            self.failed = self._trap(name, e)
            raise self.failed from e
        except EmulatorError as e:  # a host function refused (e.g. one the emulator lacks): the guest is stopped
            self.failed = WasmTrap(f"{name} stopped: {e.problem}", callback=name, trap=e.problem, fix=e.fix)
            raise self.failed from e
        except wasmtime.WasmtimeError as e:  # e.g. a host function raised: the guest cannot go on either
            self.failed = WasmTrap(f"{name} failed: {str(e).strip().splitlines()[0]}", callback=name, trap=str(e))
            raise self.failed from e
        return result

    def _trap(self, callback: str, e: wasmtime.Trap) -> WasmTrap:
        code = e.trap_code
        lines = [line.strip() for line in (e.message or str(e)).strip().splitlines() if line.strip()]
        message = lines[-1].removeprefix("wasm trap: ") if lines else "trap"
        if code is not None and "backtrace" in message:
            message = code.name.lower().replace("_", " ")
        panic = self._panic_message()
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return WasmTrap(f"{callback} did not return within its fuel budget ({self.limits.fuel:,} units): "
                            "an endless loop?", callback=callback, trap="out of fuel",
                            fix="fix the loop, or raise the budget (FilterHost.load(..., fuel=N))")
        if panic:
            return WasmTrap(f"{callback} panicked: {panic}", callback=callback, panic=panic, trap=message)
        fix = None
        if "memory" in message or code == wasmtime.TrapCode.UNREACHABLE:
            fix = (f"if it allocates without bound, it hit the {self.limits.memory_mb} MiB memory cap "
                   "(FilterHost.load(..., memory_mb=N))")
        return WasmTrap(f"{callback} trapped: {message}", callback=callback, trap=message, fix=fix)
