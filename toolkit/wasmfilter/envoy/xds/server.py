"""The ADS server (grpcio, generic handlers, envoy-data-plane messages): resources by name, a version per push, a
nonce per response, and each push's outcome — ACKed, NACKed with Envoy's `error_detail`, or superseded — recorded
and waited for. In-process, on a free loopback port unless told one; the caller starts and stops it (`with`)."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from wasmfilter.envoy.xds.resources import ECDS_TYPE
from wasmfilter.errors import PushRejected, XdsError

if TYPE_CHECKING:  # pragma: no cover
    import grpc
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
    from envoy_data_plane.google.protobuf import Any as AnyMessage

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
PENDING, ACKED, NACKED, SUPERSEDED = "pending", "acked", "nacked", "superseded"


@dataclass
class Push:
    """One push of one resource and what Envoy made of it."""
    name: str
    version: str
    description: str
    started: float = field(default_factory=time.perf_counter)
    state: str = PENDING
    nonce: str = ""
    error_detail: str = ""
    finished: float = 0.0
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def seconds(self) -> float:
        """Push to ACK/NACK."""
        return (self.finished or time.perf_counter()) - self.started

    def settle(self, state: str, detail: str = "", finished: float | None = None) -> None:
        if self.state == PENDING:
            self.state, self.error_detail, self.finished = state, detail, finished or time.perf_counter()
            self.done.set()


@dataclass
class _Stream:
    """One ADS stream from one Envoy: what it subscribed to and which pushes each nonce carried."""
    outbox: queue.Queue[bytes | None] = field(default_factory=queue.Queue)
    names: set[str] | None = None
    sent: dict[str, list[Push]] = field(default_factory=dict)
    node: str = ""


def wait_for(push: Push, timeout: float, *, connected: Callable[[], bool]) -> Push:
    """PUSH once Envoy answered it; PushRejected (Envoy's reason, one line) on a NACK, XdsError without an answer."""
    if not push.done.wait(timeout):
        who = "the connected Envoy" if connected() else "no Envoy connected to it"
        raise XdsError(f"push of {push.description} (version {push.version}) got no answer within {timeout:g} s "
                       f"({who})", fix="check that Envoy is running with this server in its bootstrap")
    if push.state == NACKED:
        raise PushRejected(f"Envoy rejected {push.description} (version {push.version}): {push.error_detail}",
                           fix="the last good filter keeps serving; fix the module or its config and push again")
    if push.state == SUPERSEDED:
        raise XdsError(f"push of {push.description} (version {push.version}) was superseded by a newer one",
                       fix="wait for each push before the next")
    return push


def one_line(text: str) -> str:
    return " ".join(text.split())


class XdsServer:
    """`with XdsServer() as xds: xds.apply(name, resource)`. PORT 0 takes a free one; a busy port is one error."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.pushes: list[Push] = []
        self._resources: dict[str, tuple[Push, AnyMessage]] = {}
        self._streams: list[_Stream] = []
        self._lock = threading.Lock()
        self._versions = itertools.count(1)
        self._nonces = itertools.count(1)
        self._connected = threading.Event()
        self._server: grpc.Server | None = None

    # ------------------------------------------------------------------------------------------ life cycle

    def start(self) -> Self:
        import grpc

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="wasmfilter-xds"))
        handler = grpc.stream_stream_rpc_method_handler(self._serve, request_deserializer=_parse_request,
                                                        response_serializer=lambda data: data)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            ADS_SERVICE, {"StreamAggregatedResources": handler}),))
        try:
            bound = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError as e:
            bound = 0
            reason = str(e)
        else:
            reason = "the address is in use"
        if not bound:
            server.stop(0)
            raise XdsError(f"the xDS server cannot listen on {self.host}:{self.port} ({reason})",
                           fix="pick another port, or 0 for a free one, or stop what holds it")
        self.port = bound
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        with self._lock:
            for stream in self._streams:
                stream.outbox.put(None)
        server.stop(grace=0).wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------------------------------ pushes

    def push(self, name: str, resource: AnyMessage, description: str = "") -> Push:
        """Make RESOURCE the current version of NAME and send it to every stream subscribed to it."""
        with self._lock:
            push = Push(name, str(next(self._versions)), description or name)
            previous = self._resources.get(name)
            if previous is not None and not previous[0].nonce:
                previous[0].settle(SUPERSEDED)  # never sent: a newer push took its place
            self._resources[name] = (push, resource)
            self.pushes.append(push)
            for stream in self._streams:
                if stream.names is not None and name in stream.names:
                    self._send(stream)
        return push

    def wait(self, push: Push, timeout: float = 30.0) -> Push:
        """PUSH once Envoy answered it; PushRejected (Envoy's reason, one line) on a NACK."""
        return wait_for(push, timeout, connected=self._connected.is_set)

    def apply(self, name: str, resource: AnyMessage, description: str = "", timeout: float = 30.0) -> Push:
        return self.wait(self.push(name, resource, description), timeout)

    def wait_connected(self, timeout: float | None = 10.0) -> bool:
        return self._connected.wait(timeout)

    # ------------------------------------------------------------------------------------------ the stream

    def _send(self, stream: _Stream) -> None:
        """Send STREAM every subscribed resource there is (state of the world), under a fresh nonce. Holds the lock."""
        from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse

        current = [self._resources[n] for n in sorted(stream.names or ()) if n in self._resources]
        if not current:
            return
        nonce = str(next(self._nonces))
        version = max((p.version for p, _ in current), key=int)
        for push, _ in current:
            push.nonce = push.nonce or nonce
        stream.sent[nonce] = [p for p, _ in current]
        response = DiscoveryResponse(version_info=version, resources=[r for _, r in current], type_url=ECDS_TYPE,
                                     nonce=nonce)
        stream.outbox.put(bytes(response))

    def _serve(self, requests: Iterator[DiscoveryRequest], context: Any) -> Iterator[bytes]:
        stream = _Stream()
        with self._lock:
            self._streams.append(stream)
        reader = threading.Thread(target=self._read, args=(stream, requests), daemon=True,
                                  name="wasmfilter-xds-reader")
        reader.start()
        try:
            while True:
                item = stream.outbox.get()
                if item is None:
                    return
                yield item
        finally:
            with self._lock:
                self._streams.remove(stream)

    def _read(self, stream: _Stream, requests: Iterator[DiscoveryRequest]) -> None:
        try:
            for request in requests:
                self._on_request(stream, request)
        except Exception:  # the stream ended (Envoy went away, or the server stops)
            pass
        finally:
            stream.outbox.put(None)

    def _on_request(self, stream: _Stream, request: DiscoveryRequest) -> None:
        if request.node is not None and request.node.id:
            stream.node = request.node.id
        if request.type_url != ECDS_TYPE:
            return  # this server serves the Wasm filter only
        with self._lock:
            carried = stream.sent.pop(request.response_nonce, []) if request.response_nonce else []
            error = request.error_detail
            for push in carried:
                if error is not None and (error.code or error.message):
                    push.settle(NACKED, one_line(error.message) or f"gRPC status {error.code}")
                else:
                    push.settle(ACKED)
            names = set(request.resource_names)
            if not request.response_nonce or names != stream.names:
                stream.names = names
                self._send(stream)
        self._connected.set()


def _parse_request(data: bytes) -> DiscoveryRequest:
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

    return DiscoveryRequest.parse(data)
