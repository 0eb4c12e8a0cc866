"""One HTTP stream through the filter in Envoy's order: context created, request headers, body chunks (each with
end_of_stream; `Pause` on a chunk buffers it, as StopIterationAndBuffer), trailers, the upstream (route table +
answer), response headers / body / trailers, then log → done → delete. `Pause` waits for `continue_stream`; a local
reply stops the iteration once the callback returns and goes back through the filter's response callbacks; a trap
answers 503 with an empty body. The `Stream` is also what a test asserts on (action, headers, upstream, reply, logs)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wasmfilter.emulator.buffers import Buffer
from wasmfilter.emulator.codes import Action, StreamType
from wasmfilter.emulator.headers import REQUEST_INLINE, RESPONSE_INLINE, HeaderMap
from wasmfilter.emulator.properties import int64

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.control import LocalReply
    from wasmfilter.emulator.logs import LogLine
    from wasmfilter.emulator.worker import Worker
    from wasmfilter.errors import WasmTrap


def joined(headers: list[tuple[str, str]], name: str) -> str | None:
    """Every value of header NAME joined with ", " (how a client reads a repeated header), None if absent."""
    values = [v for k, v in headers if k == name.lower()]
    return ", ".join(values) if values else None


@dataclass
class Request:
    """What the client sends. CHUNKS splits the body as the callbacks see it (default: one chunk)."""
    method: str = "GET"
    path: str = "/"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] | None = None
    client_address: str = "127.0.0.1:40000"


@dataclass
class UpstreamRequest:
    """What the upstream saw: the cluster the route table picked, and the request after the filter."""
    cluster: str
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return joined(self.headers, name)


@dataclass
class Response:
    """What the client got."""
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return joined(self.headers, name)


Upstream = Callable[[UpstreamRequest], Response]
_ACTIONS = {a.value: a for a in Action}


class Stream:
    def __init__(self, worker: Worker, context_id: int, request: Request):
        self.worker = worker
        self.context_id = context_id
        self.request = request
        self.request_headers: HeaderMap | None = None
        self.request_trailers: HeaderMap | None = None
        self.response_headers: HeaderMap | None = None
        self.response_trailers: HeaderMap | None = None
        self.request_body = Buffer()
        self.response_body = Buffer()
        self.filter_state: dict[str, bytes] = {}
        self.local_reply: LocalReply | None = None
        self.upstream: UpstreamRequest | None = None
        self.response: Response | None = None
        self.actions: dict[str, list[Action]] = {}
        self.trap: WasmTrap | None = None
        self.reset = False
        self.route_cache_cleared = 0
        self.waiting: StreamType | None = None
        self.filter_skipped = False  # FAIL_OPEN after a crash: the filter is not in the chain
        self._continue: set[StreamType] = set()
        self._steps: deque[Callable[[], None]] = deque()
        self._local_sent = False
        self._passed_body = b""  # request body the filter let through so far
        self._pending_response_body = b""
        self.created = False
        self.finished = False

    # --- what a test reads -----------------------------------------------------------------------------------

    @property
    def status(self) -> int:
        return self.response.status if self.response else 0

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self.response.headers if self.response else []

    @property
    def body(self) -> bytes:
        return self.response.body if self.response else b""

    def header(self, name: str) -> str | None:
        return self.response.header(name) if self.response else None

    def action(self, callback: str = "on_request_headers") -> Action | None:
        """The last action CALLBACK returned (`on_request_headers`, `on_request_body`, …), None if not called."""
        got = self.actions.get(callback)
        return got[-1] if got else None

    @property
    def reply_pending(self) -> bool:
        return self.local_reply is not None and not self._local_sent and not self.finished

    @property
    def can_run(self) -> bool:
        return bool(self._steps) and self.waiting is None and not self.finished

    @property
    def paused(self) -> bool:
        return self.waiting is not None and not self.finished

    @property
    def logs(self) -> list[LogLine]:
        return [line for line in self.worker.host.logs if line.context_id == self.context_id
                and line.worker == self.worker.index]

    # --- the lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        r = self.request
        chunks = r.chunks if r.chunks is not None else ([r.body] if r.body else [])
        ends_with_headers = not chunks and not r.trailers
        self._steps.append(lambda: self._headers(ends_with_headers))
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1 and not r.trailers
            self._steps.append(lambda c=chunk, e=last: self._body(c, e))  # type: ignore[misc]
        if r.trailers:
            self._steps.append(self._trailers)
        self._steps.append(self._route)
        self.run()

    def run(self) -> None:
        while self._steps and self.waiting is None and not self.finished:
            self._steps.popleft()()

    def continue_requested(self, kind: StreamType) -> None:
        if self.waiting == kind:
            self.waiting = None
        else:
            self._continue.add(kind)

    def _callback(self, name: str, *args: int, phase: StreamType) -> bool:
        """Call proxy_NAME; False when the stream stopped (trap, local reply, reset, pause)."""
        if self.filter_skipped or self.finished:
            return True
        result = self.worker.call_http(self, "proxy_" + name, *args)
        if self.trap is not None:
            return self.filter_skipped  # FAIL_OPEN goes on without the filter; otherwise the stream ended
        action = _ACTIONS.get(result or 0, Action.CONTINUE)
        if result is not None:
            self.actions.setdefault(name, []).append(action)
        if self.reset:
            self.finish_reset()
            return False
        if self.local_reply is not None and not self._local_sent:
            self.send_local_reply()
            return False
        if action != Action.CONTINUE and name.endswith(("headers", "trailers")) or \
                action != Action.CONTINUE and args[-1]:
            if phase in self._continue:
                self._continue.discard(phase)
            else:
                self.waiting = phase
            return False
        return True

    def _headers(self, end_of_stream: bool) -> None:
        self.request_headers = HeaderMap(self.worker.host.downstream_headers(self.request), REQUEST_INLINE)
        if self.filter_skipped:
            return
        self.worker.create_http_context(self)
        if self.finished:
            return
        self._callback("on_request_headers", len(self.request_headers), int(end_of_stream),
                       phase=StreamType.REQUEST)

    def _body(self, chunk: bytes, end_of_stream: bool) -> None:
        """The callback sees the buffered body plus this chunk; Continue passes it on, Pause (not at the end)
        keeps buffering (StopIterationAndBuffer)."""
        self.request_body.data += chunk
        if not self._callback("on_request_body", len(self.request_body), int(end_of_stream),
                              phase=StreamType.REQUEST):
            return
        if self.filter_skipped or self.action("on_request_body") == Action.CONTINUE:
            self._passed_body += bytes(self.request_body)
            self.request_body = Buffer()

    def _trailers(self) -> None:
        self.request_trailers = HeaderMap(self.request.trailers)
        self._callback("on_request_trailers", len(self.request_trailers), phase=StreamType.REQUEST)

    def _route(self) -> None:
        assert self.request_headers is not None
        body = self._passed_body + bytes(self.request_body)
        response = self.worker.host.route(self, self.request_headers, body)
        self.response_headers = HeaderMap([(":status", str(response.status)), *response.headers], RESPONSE_INLINE)
        self.response_body = Buffer()
        self._pending_response_body = response.body
        self._steps.append(lambda: self._response_headers(not response.body))
        if response.body:
            self._steps.append(self._response_body)
        self._steps.append(self._finish)

    def _response_headers(self, end_of_stream: bool) -> None:
        assert self.response_headers is not None
        self._callback("on_response_headers", len(self.response_headers), int(end_of_stream),
                       phase=StreamType.RESPONSE)

    def _response_body(self) -> None:
        self.response_body.data += self._pending_response_body
        self._callback("on_response_body", len(self.response_body), 1, phase=StreamType.RESPONSE)

    def _finish(self) -> None:
        assert self.response_headers is not None
        status = int(self.response_headers.get(":status") or 0)
        headers = [(k, v) for k, v in self.response_headers.pairs() if not k.startswith(":")]
        self.response = Response(status, headers, bytes(self.response_body))
        self.complete()

    def complete(self) -> None:
        """Access log, then done, then delete (Envoy's order at the end of a stream)."""
        if self.created and self.trap is None and not self.filter_skipped:
            for name in ("proxy_on_log", "proxy_on_done", "proxy_on_delete"):
                self.worker.call_http(self, name)
                if self.trap is not None:
                    break
        self.finished = True
        self.worker.forget(self)

    # --- ways a stream ends early ------------------------------------------------------------------------------

    def send_local_reply(self) -> None:
        """Envoy sends the reply after the callback returned; on the request path it goes through this filter's
        response callbacks (its context exists), on the response path it replaces the response directly."""
        reply = self.local_reply
        assert reply is not None
        self._local_sent = True
        self._steps.clear()
        self.waiting = None
        on_request_path = self.response_headers is None
        self.response_headers = HeaderMap(self.worker.host.local_reply_headers(reply), RESPONSE_INLINE)
        self.response_body = Buffer()
        if on_request_path:
            self._pending_response_body = reply.body
            self._steps.append(lambda: self._response_headers(not reply.body))
            if reply.body:
                self._steps.append(self._response_body)
        else:
            self.response_body = Buffer(reply.body)
        self._steps.append(self._finish)

    def fail(self, trap: WasmTrap) -> None:
        """A trap in this stream's callback (cpp-host's CHECK_FAIL_HTTP after the call): under FAIL_OPEN the stream
        goes on without the filter; otherwise Envoy answers 503 with an empty body and calls nothing more."""
        self.trap = trap
        if self.worker.host.plugin.failure_policy == "FAIL_OPEN":
            self.filter_skipped = True
            self.waiting = None
            return
        self._steps.clear()
        self.waiting = None
        self.response = self.worker.host.failure_response()
        self.finished = True
        self.worker.forget(self)

    def finish_reset(self) -> None:
        self._steps.clear()
        self.waiting = None
        self.response = None
        self.complete()

    def property_tree(self) -> dict[str, object]:
        """The values `get_property` walks (properties.py documents the set)."""
        req = self.request_headers or HeaderMap()
        path = req.get(":path") or ""
        resp = self.response_headers
        address, _, port = self.request.client_address.rpartition(":")
        tree: dict[str, object] = {
            "request": {"path": path, "url_path": path.split("?", 1)[0], "host": req.get(":authority"),
                        "scheme": req.get(":scheme"), "method": req.get(":method"), "headers": req.pairs(),
                        "referer": req.get("referer"), "useragent": req.get("user-agent"),
                        "id": req.get("x-request-id"), "protocol": "HTTP/1.1",
                        "query": path.split("?", 1)[1] if "?" in path else "",
                        "time": int64(self.worker.host.clock.now_ns)},
            "source": {"address": self.request.client_address, "port": int(port or 0)},
            "destination": {"address": "127.0.0.1:10000", "port": 10000},
            "connection": {"id": self.context_id, "mtls": False},
            "route_name": "",
        }
        if self.upstream is not None:
            tree["cluster_name"] = self.upstream.cluster
            tree["upstream"] = {"address": f"{address}:8000", "port": 8000}
        if resp is not None:
            tree["response"] = {"code": int(resp.get(":status") or 0), "headers": resp.pairs(),
                                "code_details": "via_upstream" if self.local_reply is None else "wasm_local_reply",
                                "flags": 0, "size": len(self.response_body),
                                "trailers": self.response_trailers.pairs() if self.response_trailers else []}
        return tree
