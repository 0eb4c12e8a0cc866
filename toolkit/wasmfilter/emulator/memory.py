"""The guest's linear memory as the host functions see it: reads, little-endian writes, and returning data to the
guest the way proxy-wasm-cpp-host does (allocate with the guest's `malloc`/`proxy_on_memory_allocate`, write the
pointer and size). Also the pairs serialisation every header map, property map and local reply uses:
u32 count, then count × (u32 key length, u32 value length), then each key and value followed by a NUL byte."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable

import wasmtime
from wasmtime import _ffi as ffi

Pairs = list[tuple[bytes, bytes]]


class OutOfBounds(Exception):
    """A pointer/size the guest passed is outside its memory: the host function returns InvalidMemoryAccess."""


class GuestMemory:
    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory, malloc: Callable[[int], int]):
        self.store = store
        self.memory = memory
        self._malloc = malloc
        self._context = store._context()
        self._ref = ctypes.byref(memory._memory)

    def _base(self, ptr: int, size: int) -> int:
        """The host address of guest address PTR (memory may move when it grows: asked every time)."""
        if ptr < 0 or size < 0 or ptr + size > ffi.wasmtime_memory_data_size(self._context, self._ref):
            raise OutOfBounds(f"{size} bytes at {ptr}")
        base = ctypes.addressof(ffi.wasmtime_memory_data(self._context, self._ref).contents)
        return base + ptr

    def read(self, ptr: int, size: int) -> bytes:
        if size == 0:
            return b""
        return ctypes.string_at(self._base(ptr, size), size)

    def write(self, ptr: int, data: bytes) -> None:
        address = self._base(ptr, len(data))
        if data:
            ctypes.memmove(address, data, len(data))

    def write_u32(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<I", value & 0xFFFFFFFF))

    def write_u64(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def read_u32(self, ptr: int) -> int:
        return int(struct.unpack("<I", self.read(ptr, 4))[0])

    def give(self, data: bytes, ptr_ptr: int, size_ptr: int) -> None:
        """Copy DATA into guest memory it allocates and store where and how long (cpp-host's copyToPointerSize:
        an empty value is pointer 0, size 0 — no allocation)."""
        ptr = 0
        if data:
            ptr = self._malloc(len(data))
            if not ptr:
                raise OutOfBounds(f"the guest's allocator returned null for {len(data)} bytes")
            self.write(ptr, data)
        self.write_u32(ptr_ptr, ptr)
        self.write_u32(size_ptr, len(data))


def encode_pairs(pairs: Pairs) -> bytes:
    """cpp-host's marshalPairs."""
    if not pairs:
        return b""
    head = [struct.pack("<I", len(pairs))]
    head += [struct.pack("<II", len(k), len(v)) for k, v in pairs]
    body = [part for k, v in pairs for part in (k, b"\0", v, b"\0")]
    return b"".join(head + body)


def decode_pairs(data: bytes) -> Pairs:
    """cpp-host's toPairs: a buffer too short for its own count is read as no pairs."""
    if len(data) < 4:
        return []
    (count,) = struct.unpack_from("<I", data, 0)
    if 4 + count * 8 > len(data):
        return []
    sizes = [struct.unpack_from("<II", data, 4 + 8 * i) for i in range(count)]
    pos = 4 + 8 * count
    out: Pairs = []
    for key_len, value_len in sizes:
        key = data[pos:pos + key_len]
        pos += key_len + 1
        value = data[pos:pos + value_len]
        pos += value_len + 1
        out.append((key, value))
    return out
