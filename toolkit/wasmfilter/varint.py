"""Unsigned LEB128: the integers of the Wasm binary format (build/symbols.py) and protobuf's varints (the emulator's
foreign-function and gRPC-service arguments) are the same encoding, read here once."""

from __future__ import annotations


def read(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned LEB128 integer at POS of DATA and the position after it; ValueError if it is truncated or longer
    than 64 bits."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
