"""Contexts as cpp-host/Envoy keep them: the root context of a worker's VM (ticks, the callout answer being
delivered, the plugin configuration while `on_configure` runs) and one HTTP context per stream; which header maps
and buffers a callback may read or write at that moment (absent map → BadArgument, absent buffer → NotFound)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasmfilter.emulator.buffers import Buffer
from wasmfilter.emulator.codes import BufferType, MapType
from wasmfilter.emulator.headers import HeaderMap
from wasmfilter.emulator.http_call import response_map

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.http_call import Call
    from wasmfilter.emulator.stream import Stream
    from wasmfilter.emulator.worker import Worker


class Context:
    def __init__(self, worker: Worker, context_id: int, root_context_id: int, stream: Stream | None = None):
        self.worker = worker
        self.id = context_id
        self.root_context_id = root_context_id or context_id
        self.stream = stream
        self.tick_period_ns = 0
        self.next_tick_ns: int | None = None
        self.callout: Call | None = None  # the answer being delivered to this root context
        self.plugin_configuration: bytes | None = None  # only while on_configure runs
        self.call_data: Buffer | None = None  # only while on_foreign_function runs

    @property
    def is_root(self) -> bool:
        return self.root_context_id == self.id

    def root(self) -> Context:
        return self.worker.contexts.get(self.root_context_id, self)

    def writable_map(self, kind: int) -> HeaderMap | None:
        s = self.stream
        if s is None:
            return None
        if kind == MapType.REQUEST_HEADERS:
            return s.request_headers
        if kind == MapType.REQUEST_TRAILERS:
            return s.request_trailers
        if kind == MapType.RESPONSE_HEADERS:
            return s.response_headers
        if kind == MapType.RESPONSE_TRAILERS:
            return s.response_trailers
        return None

    def readable_map(self, kind: int) -> HeaderMap | None:
        if kind <= MapType.RESPONSE_TRAILERS:
            return self.writable_map(kind)
        callout = self.root().callout
        if kind == MapType.HTTP_CALL_RESPONSE_HEADERS and callout is not None and callout.kind == "http":
            return response_map(callout.answer)
        if kind == MapType.HTTP_CALL_RESPONSE_TRAILERS and callout is not None and callout.kind == "http":
            return response_map(callout.answer, trailers=True)
        if kind in (MapType.GRPC_RECEIVE_INITIAL_METADATA, MapType.GRPC_RECEIVE_TRAILING_METADATA) and \
                callout is not None and callout.kind == "grpc" and callout.answer is not None:
            return HeaderMap(callout.answer.headers if kind == MapType.GRPC_RECEIVE_INITIAL_METADATA
                             else callout.answer.trailers)
        return None

    def buffer(self, kind: int) -> Buffer | None:
        s = self.stream
        if kind == BufferType.HTTP_REQUEST_BODY:
            return s.request_body if s is not None else None
        if kind == BufferType.HTTP_RESPONSE_BODY:
            return s.response_body if s is not None else None
        if kind in (BufferType.HTTP_CALL_RESPONSE_BODY, BufferType.GRPC_RECEIVE_BUFFER):
            callout = self.root().callout
            want = "http" if kind == BufferType.HTTP_CALL_RESPONSE_BODY else "grpc"
            if callout is None or callout.answer is None or callout.kind != want or callout.answer.reset:
                return None
            return Buffer(callout.answer.body, mutable=False)
        if kind == BufferType.VM_CONFIGURATION:
            return Buffer(self.worker.host.plugin.vm_configuration, mutable=False)
        if kind == BufferType.PLUGIN_CONFIGURATION:
            config = self.root().plugin_configuration
            return None if config is None else Buffer(config, mutable=False)
        if kind == BufferType.CALL_DATA:
            return self.call_data
        return None

    def headers_changed(self, kind: int) -> None:
        """Envoy clears the route cache on every request-header mutation by the Wasm filter."""
        if kind == MapType.REQUEST_HEADERS and self.stream is not None:
            self.stream.route_cache_cleared += 1
