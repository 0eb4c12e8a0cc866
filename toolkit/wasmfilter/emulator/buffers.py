"""Buffers as Envoy exposes them (`Context::getBuffer`, `Buffer::copyFrom`): the request/response body the callback
may read and edit (with Envoy's rules for set: prepend, replace all, append — anything else is BadArgument), and the
read-only ones (http_call/gRPC answers, VM and plugin configuration, foreign-function call data); the
`env.proxy_*_buffer_*` host functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from wasmfilter.emulator.codes import BufferType, Result

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost


class Buffer:
    def __init__(self, data: bytes = b"", *, mutable: bool = True):
        self.data = bytearray(data)
        self.mutable = mutable

    def set(self, start: int, length: int, data: bytes) -> Result:
        """Envoy's Buffer::copyFrom."""
        if not self.mutable:
            return Result.BAD_ARGUMENT
        size = len(self.data)
        if start == 0:
            if length == 0:
                self.data[0:0] = data
                return Result.OK
            if length >= size:
                self.data = bytearray(data)
                return Result.OK
            return Result.BAD_ARGUMENT
        if start >= size:
            self.data += data
            return Result.OK
        return Result.BAD_ARGUMENT

    def __len__(self) -> int:
        return len(self.data)

    def __bytes__(self) -> bytes:
        return bytes(self.data)


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory

    def find(kind: int) -> Buffer | None:
        return host.context().buffer(kind) if 0 <= kind <= max(BufferType) else None

    def get_bytes(kind: int, start: int, length: int, ptr_ptr: int, size_ptr: int) -> int:
        if kind > max(BufferType):
            return Result.BAD_ARGUMENT
        buf = find(kind)
        if buf is None:
            return Result.NOT_FOUND
        if start + length > len(buf):
            length = len(buf) - start
        if length > 0:
            mem().give(bytes(buf.data[start:start + length]), ptr_ptr, size_ptr)
        return Result.OK

    def get_status(kind: int, length_ptr: int, flags_ptr: int) -> int:
        if kind > max(BufferType):
            return Result.BAD_ARGUMENT
        buf = find(kind)
        if buf is None:
            return Result.NOT_FOUND
        mem().write_u32(length_ptr, len(buf))
        mem().write_u32(flags_ptr, 0)
        return Result.OK

    def set_bytes(kind: int, start: int, length: int, data_ptr: int, data_size: int) -> int:
        if kind > max(BufferType):
            return Result.BAD_ARGUMENT
        buf = find(kind)
        if buf is None:
            return Result.NOT_FOUND
        return buf.set(start, length, mem().read(data_ptr, data_size))

    return {"proxy_get_buffer_bytes": get_bytes, "proxy_get_buffer_status": get_status,
            "proxy_set_buffer_bytes": set_bytes}
