"""Properties (`proxy_get_property` / `proxy_set_property`) with Envoy's encodings (`Context::findValue`,
`serializeValue`): strings as their bytes, integers as 8-byte little-endian int64/uint64, booleans as one byte,
timestamps and durations as int64 nanoseconds, maps (headers) in the pairs format, `node` as its protobuf bytes.
A path is its segments joined by NUL. `set_property(name, v)` is filter state that `get_property(name)` reads back.

The documented set (docs/emulator.md): request.{path,url_path,host,scheme,method,headers[.<name>],referer,useragent,
time,id,protocol,query}, response.{code,code_details,flags,headers[.<name>],trailers,size}, source.{address,port},
destination.{address,port}, connection.{id,mtls}, upstream.{address,port}, node, node.id, node.cluster, plugin_name,
plugin_root_id, plugin_vm_id, cluster_name, route_name, listener_direction."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wasmfilter.emulator.codes import Result
from wasmfilter.emulator.memory import encode_pairs

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.context import Context
    from wasmfilter.emulator.host import FilterHost

NODE_ID = "wasmfilter"  # the generated bootstrap's node id and cluster


def int64(value: int) -> bytes:
    return struct.pack("<q", value)


def uint64(value: int) -> bytes:
    return struct.pack("<Q", value)


def _proto_string(field: int, text: str) -> bytes:
    data = text.encode()
    return bytes([field << 3 | 2, len(data)]) + data


def encode(value: Any) -> bytes:
    """A Python value in Envoy's encoding (bool before int: a bool is an int in Python)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return int64(value)
    if isinstance(value, list):  # header pairs
        return encode_pairs([(str(k).encode(), str(v).encode()) for k, v in value])
    raise TypeError(f"no Envoy encoding for {type(value).__name__}")


def lookup(host: FilterHost, ctx: Context, path: list[str]) -> bytes | None:
    """The encoded value at PATH for context CTX, or None (NotFound)."""
    if not path:
        return None
    top, rest = path[0], path[1:]
    stream = ctx.stream
    plugin = host.plugin
    simple: dict[str, Any] = {"plugin_name": plugin.name, "plugin_root_id": plugin.root_id,
                              "plugin_vm_id": plugin.vm_id, "listener_direction": 0}
    if top in simple and not rest:
        return encode(simple[top])
    if top == "node":
        node = {"id": NODE_ID, "cluster": NODE_ID}
        if not rest:
            return _proto_string(1, NODE_ID) + _proto_string(2, NODE_ID)
        return encode(node[rest[0]]) if len(rest) == 1 and rest[0] in node else None
    if stream is None:
        return None
    if top in stream.filter_state and not rest:
        return stream.filter_state[top]
    tree = stream.property_tree()
    value: Any = tree.get(top)
    for part in rest:
        if isinstance(value, list):  # a header map: one header, repeated values joined with "," (HeadersWrapper)
            values = [v for k, v in value if k == part.lower()]
            value = ",".join(values) if values else None
            continue
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if value is None or isinstance(value, dict):
        return None
    return encode(value)


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory

    def get_property(path_ptr: int, path_size: int, value_ptr_ptr: int, value_size_ptr: int) -> int:
        raw = mem().read(path_ptr, path_size)
        parts = [p.decode("utf-8", "replace") for p in raw.split(b"\0")]
        while parts and parts[-1] == "":
            parts.pop()
        value = lookup(host, host.context(), parts)
        if value is None:
            return Result.NOT_FOUND
        mem().give(value, value_ptr_ptr, value_size_ptr)
        return Result.OK

    def set_property(key_ptr: int, key_size: int, value_ptr: int, value_size: int) -> int:
        stream = host.context().stream
        if stream is None:
            return Result.NOT_FOUND
        key = mem().read(key_ptr, key_size).decode("utf-8", "replace").rstrip("\0")
        stream.filter_state[key] = mem().read(value_ptr, value_size)
        return Result.OK

    return {"proxy_get_property": get_property, "proxy_set_property": set_property}
