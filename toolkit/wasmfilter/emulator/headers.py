"""Header maps with Envoy's semantics (Http::HeaderMapImpl as the Wasm context uses it): names lower-cased,
pseudo-headers kept before the others, inline headers (user-agent, x-forwarded-for, content-type, …) coalesced with
",", `get` answers the first value only (Envoy's documented ABI gap), `replace` (setCopy) rewrites the first entry and
keeps later ones, `remove` drops every entry, `set pairs` removes all then adds; and the
`env.proxy_*_header_map_*` host functions over the maps of the current context."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from wasmfilter.emulator.codes import MapType, Result
from wasmfilter.emulator.memory import decode_pairs, encode_pairs

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost


# Envoy's inline headers (envoy/http/header_map.h, INLINE_REQ_* / INLINE_RESP_*): adding one that exists appends
# ",value" to it instead of a second entry — for the codec reading a client's repeated header and for a filter alike.
_BOTH = ("connection", "content-type", "x-envoy-decorator-operation", "keep-alive", "proxy-connection", "proxy-status",
         "x-request-id", "transfer-encoding", "upgrade", "via", "content-length")
REQUEST_INLINE = frozenset(_BOTH + (
    "x-client-trace-id", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node",
    "x-envoy-external-address", "x-envoy-force-trace", "x-envoy-hedge-on-per-try-timeout", "x-envoy-internal",
    "x-envoy-ip-tags", "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names", "x-envoy-original-path", "x-envoy-original-url",
    "x-envoy-upstream-alt-stat-name", "x-envoy-upstream-rq-timeout-alt-response", "expect", "x-forwarded-client-cert",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "grpc-timeout", ":authority", ":method", ":path",
    ":protocol", ":scheme", "te", "user-agent", "x-envoy-attempt-count"))
RESPONSE_INLINE = frozenset(_BOTH + (
    "date", "x-envoy-degraded", "x-envoy-immediate-health-check-fail", "x-envoy-ratelimited", "x-envoy-upstream-canary",
    "x-envoy-upstream-healthchecked-cluster", "location", "server", "x-envoy-upstream-service-time", ":status",
    "grpc-status", "grpc-message"))


class HeaderMap:
    def __init__(self, pairs: Iterable[tuple[str, str]] = (), inline: frozenset[str] = frozenset()):
        self.entries: list[tuple[str, str]] = []
        self.inline = inline
        for k, v in pairs:
            self.add(k, v)

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        if key in self.inline:
            for i, (k, old) in enumerate(self.entries):
                if k == key:
                    self.entries[i] = (key, f"{old},{value}" if old else value)
                    return
        if key.startswith(":"):
            at = sum(1 for k, _ in self.entries if k.startswith(":"))
            self.entries.insert(at, (key, value))
        else:
            self.entries.append((key, value))

    def get(self, name: str) -> str | None:
        key = name.lower()
        return next((v for k, v in self.entries if k == key), None)

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self.entries if k == key]

    def replace(self, name: str, value: str) -> None:
        key = name.lower()
        for i, (k, _) in enumerate(self.entries):
            if k == key:
                self.entries[i] = (key, value)
                return
        self.add(key, value)

    def remove(self, name: str) -> None:
        key = name.lower()
        self.entries = [(k, v) for k, v in self.entries if k != key]

    def set_pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.entries = []
        for k, v in pairs:
            self.add(k, v)

    def byte_size(self) -> int:
        return sum(len(k.encode()) + len(v.encode()) for k, v in self.entries)

    def pairs(self) -> list[tuple[str, str]]:
        return list(self.entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"HeaderMap({self.entries!r})"


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory

    def writable(kind: int) -> HeaderMap | None:
        return host.context().writable_map(kind) if 0 <= kind <= MapType.RESPONSE_TRAILERS else None

    def readable(kind: int) -> HeaderMap | None:
        return host.context().readable_map(kind) if 0 <= kind <= max(MapType) else None

    def get_value(kind: int, key_ptr: int, key_size: int, value_ptr_ptr: int, value_size_ptr: int) -> int:
        if kind > max(MapType):
            return Result.BAD_ARGUMENT
        m = readable(kind)
        if m is None:
            return Result.BAD_ARGUMENT
        value = m.get(_text(mem().read(key_ptr, key_size)))
        if value is None:
            return Result.NOT_FOUND
        mem().give(_bytes(value), value_ptr_ptr, value_size_ptr)
        return Result.OK

    def add_value(kind: int, key_ptr: int, key_size: int, value_ptr: int, value_size: int) -> int:
        m = writable(kind)
        if m is None:
            return Result.BAD_ARGUMENT
        m.add(_text(mem().read(key_ptr, key_size)), _text(mem().read(value_ptr, value_size)))
        host.context().headers_changed(kind)
        return Result.OK

    def replace_value(kind: int, key_ptr: int, key_size: int, value_ptr: int, value_size: int) -> int:
        m = writable(kind)
        if m is None:
            return Result.BAD_ARGUMENT
        m.replace(_text(mem().read(key_ptr, key_size)), _text(mem().read(value_ptr, value_size)))
        host.context().headers_changed(kind)
        return Result.OK

    def remove_value(kind: int, key_ptr: int, key_size: int) -> int:
        m = writable(kind)
        if m is None:
            return Result.BAD_ARGUMENT
        m.remove(_text(mem().read(key_ptr, key_size)))
        host.context().headers_changed(kind)
        return Result.OK

    def get_pairs(kind: int, ptr_ptr: int, size_ptr: int) -> int:
        if kind > max(MapType):
            return Result.BAD_ARGUMENT
        m = readable(kind)
        pairs = [] if m is None else [(_bytes(k), _bytes(v)) for k, v in m.pairs()]
        mem().give(encode_pairs(pairs), ptr_ptr, size_ptr)
        return Result.OK

    def set_pairs(kind: int, ptr: int, size: int) -> int:
        m = writable(kind)
        if m is None:
            return Result.BAD_ARGUMENT
        m.set_pairs((_text(k), _text(v)) for k, v in decode_pairs(mem().read(ptr, size)))
        host.context().headers_changed(kind)
        return Result.OK

    def get_size(kind: int, size_ptr: int) -> int:
        m = writable(kind)
        if m is None:
            return Result.BAD_ARGUMENT
        mem().write_u32(size_ptr, m.byte_size())
        return Result.OK

    return {"proxy_get_header_map_value": get_value, "proxy_add_header_map_value": add_value,
            "proxy_replace_header_map_value": replace_value, "proxy_remove_header_map_value": remove_value,
            "proxy_get_header_map_pairs": get_pairs, "proxy_set_header_map_pairs": set_pairs,
            "proxy_get_header_map_size": get_size}
