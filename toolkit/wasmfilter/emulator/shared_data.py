"""Shared data with proxy-wasm-cpp-host's rules (src/shared_data.cc): one key space per vm_id, shared by every
worker's VM and surviving a VM reload; each write gets the next CAS number (starting at 1, never 0); a write with a
non-zero CAS that is not the key's current one fails with CasMismatch; a write with CAS 0, or to a missing key,
always succeeds; a read of a missing key is NotFound."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from wasmfilter.emulator.codes import Result

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost


class SharedData:
    def __init__(self) -> None:
        self.data: dict[str, dict[bytes, tuple[bytes, int]]] = {}
        self._cas = 1

    def _next_cas(self) -> int:
        cas = self._cas
        self._cas = (self._cas + 1) & 0xFFFFFFFF or 1
        return cas

    def get(self, vm_id: str, key: bytes) -> tuple[bytes, int] | None:
        return self.data.get(vm_id, {}).get(key)

    def set(self, vm_id: str, key: bytes, value: bytes, cas: int) -> Result:
        space = self.data.setdefault(vm_id, {})
        current = space.get(key)
        if current is not None and cas and cas != current[1]:
            return Result.CAS_MISMATCH
        space[key] = (value, self._next_cas())
        return Result.OK


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory

    def get_shared_data(key_ptr: int, key_size: int, value_ptr_ptr: int, value_size_ptr: int, cas_ptr: int) -> int:
        found = host.shared.get(host.plugin.vm_id, mem().read(key_ptr, key_size))
        if found is None:
            return Result.NOT_FOUND
        mem().give(found[0], value_ptr_ptr, value_size_ptr)
        mem().write_u32(cas_ptr, found[1])
        return Result.OK

    def set_shared_data(key_ptr: int, key_size: int, value_ptr: int, value_size: int, cas: int) -> int:
        return host.shared.set(host.plugin.vm_id, mem().read(key_ptr, key_size), mem().read(value_ptr, value_size),
                               cas)

    return {"proxy_get_shared_data": get_shared_data, "proxy_set_shared_data": set_shared_data}
