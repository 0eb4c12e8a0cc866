"""Callouts: `proxy_http_call` and `proxy_grpc_call` answered from a script instead of a network, with Envoy's
rules — an unknown cluster or a negative timeout is BadArgument, a request without :method/:path/:authority is
BadArgument, tokens count from 1 (gRPC: odd), gRPC's service argument is a serialised GrpcService (else
ParseFailure), the answer arrives on the root context (`proxy_on_http_call_response` with the header, body and
trailer counts; `proxy_on_grpc_receive` / `proxy_on_grpc_close`) after the calling callback has returned, a delayed
answer when the test clock reaches it, a timeout as Envoy's 504 "upstream request timeout", a reset as the failure
callback with no headers. Every call is recorded (`host.calls`); a scripted answer no call used is an error."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wasmfilter.emulator.codes import Result
from wasmfilter.emulator.headers import HeaderMap
from wasmfilter.emulator.memory import decode_pairs
from wasmfilter.varint import read as _varint

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost


@dataclass
class Answer:
    """What a scripted upstream answers. TIMEOUT: it never does (the call ends at its timeout with 504);
    RESET: the connection is reset (the failure callback). GRPC_STATUS: a gRPC call's status (0 = OK)."""
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    delay_s: float = 0.0
    timeout: bool = False
    reset: bool = False
    grpc_status: int = 0


@dataclass
class Rule:
    """Answer calls to CLUSTER (and, when given, this method / path prefix) with ANSWER."""
    cluster: str
    answer: Answer
    method: str | None = None
    path: str | None = None
    used: int = 0

    def matches(self, cluster: str, method: str, path: str) -> bool:
        return (cluster == self.cluster and (self.method is None or self.method.upper() == method.upper())
                and (self.path is None or path.startswith(self.path)))

    def describe(self) -> str:
        what = " ".join(p for p in (self.method, self.path) if p)
        return f"cluster '{self.cluster}'" + (f" {what}" if what else "")


@dataclass
class Call:
    """One callout the filter made: what it sent and how it was answered."""
    kind: str  # "http" or "grpc"
    token: int
    cluster: str
    headers: list[tuple[str, str]]
    body: bytes
    timeout_ms: int
    worker: int
    root_context_id: int
    answer: Answer | None = None
    due_ns: int = 0
    delivered: bool = False

    @property
    def method(self) -> str:
        return next((v for k, v in self.headers if k == ":method"), "")

    @property
    def path(self) -> str:
        return next((v for k, v in self.headers if k == ":path"), "")


def echo_answer(cluster: str, call_headers: list[tuple[str, str]], body: bytes) -> Answer:
    """The echo upstream's answer (harness/upstream.py) when no rule speaks for a known cluster."""
    method = next((v for k, v in call_headers if k == ":method"), "GET")
    path = next((v for k, v in call_headers if k == ":path"), "/")
    payload = json.dumps({"upstream": cluster, "method": method, "path": path,
                          "headers": [[k, v] for k, v in call_headers if not k.startswith(":")],
                          "body": body.decode("utf-8", "replace")}).encode()
    return Answer(headers=[("content-type", "application/json"), ("x-wasmfilter-upstream", cluster)], body=payload)


class Callouts:
    def __init__(self, clusters: list[str]):
        self.rules: list[Rule] = []
        self.clusters = set(clusters)
        self.calls: list[Call] = []
        self.script: Callable[[Call], Answer | None] | None = None  # answer rules (emulator/scripted.py)
        self._next_token = 1
        self._next_grpc = 1

    def add(self, rule: Rule) -> None:
        self.rules.append(rule)
        self.clusters.add(rule.cluster)

    def answer_for(self, call: Call) -> Answer:
        """The test's own rules (`host.answer`) first, then the scenario's answer rules, else the echo answer."""
        for rule in self.rules:
            if rule.matches(call.cluster, call.method, call.path):
                rule.used += 1
                return rule.answer
        scripted = self.script(call) if self.script is not None else None
        return scripted or echo_answer(call.cluster, call.headers, call.body)

    def unused(self) -> list[Rule]:
        return [r for r in self.rules if not r.used]

    def token(self, kind: str = "http") -> int:
        """HTTP call tokens count 1, 2, 3, …; gRPC call tokens are odd (Envoy keeps even ones for streams)."""
        if kind == "grpc":
            token = self._next_grpc
            self._next_grpc = (self._next_grpc + 2) % 0xFFFFFFFF
            return token
        token = self._next_token
        self._next_token = self._next_token % 0xFFFFFFFF + 1
        return token


def grpc_cluster(service: bytes) -> str | None:
    """The cluster of a serialised `envoy.config.core.v3.GrpcService` (`envoy_grpc.cluster_name`, fields 1.1),
    as Envoy parses the grpc_call's first argument; None when it is not such a message (ParseFailure)."""
    try:
        pos, cluster = 0, None
        while pos < len(service):
            tag, pos = _varint(service, pos)
            if tag & 7 != 2:
                return None
            size, pos = _varint(service, pos)
            body = service[pos:pos + size]
            if len(body) != size:
                return None
            pos += size
            if tag >> 3 == 1:
                inner_tag, inner = _varint(body, 0)
                if inner_tag == (1 << 3 | 2):
                    length, inner = _varint(body, inner)
                    cluster = body[inner:inner + length].decode("utf-8")
        return cluster
    except (ValueError, UnicodeDecodeError):
        return None


def _pairs(data: bytes) -> list[tuple[str, str]]:
    return [(k.decode("utf-8", "replace").lower(), v.decode("utf-8", "replace")) for k, v in decode_pairs(data)]


def response_map(answer: Answer | None, trailers: bool = False) -> HeaderMap | None:
    if answer is None or answer.reset:
        return None
    if trailers:
        return HeaderMap(answer.trailers)
    return HeaderMap([(":status", str(answer.status)), *answer.headers,
                      ("content-length", str(len(answer.body)))])


TIMEOUT_ANSWER = Answer(status=504, headers=[("content-type", "text/plain")], body=b"upstream request timeout")


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory
    callouts = host.callouts

    def start(call: Call) -> None:
        answer = callouts.answer_for(call)
        delay_ns = int(answer.delay_s * 1e9)
        if answer.timeout and not call.timeout_ms:  # no timeout given: Envoy waits for ever
            call.answer, delay_ns = TIMEOUT_ANSWER, 2**62
        elif answer.timeout or (call.timeout_ms and delay_ns > call.timeout_ms * 1_000_000):
            call.answer = TIMEOUT_ANSWER
            delay_ns = call.timeout_ms * 1_000_000
        else:
            call.answer = answer
        call.due_ns = host.clock.now_ns + delay_ns
        callouts.calls.append(call)

    def http_call(uri_ptr: int, uri_size: int, headers_ptr: int, headers_size: int, body_ptr: int, body_size: int,
                  trailers_ptr: int, trailers_size: int, timeout_ms: int, token_ptr: int) -> int:
        cluster = mem().read(uri_ptr, uri_size).decode("utf-8", "replace")
        headers = _pairs(mem().read(headers_ptr, headers_size))
        body = mem().read(body_ptr, body_size)
        mem().read(trailers_ptr, trailers_size)
        mem().write_u32(token_ptr, 0)
        if timeout_ms < 0 or timeout_ms >= 2**31 or cluster not in callouts.clusters:
            return Result.BAD_ARGUMENT
        names = {k for k, _ in headers}
        if not {":method", ":path", ":authority"} <= names:
            return Result.BAD_ARGUMENT
        ctx = host.context()
        call = Call("http", callouts.token(), cluster, headers, body, timeout_ms, ctx.worker.index,
                    ctx.root_context_id)
        start(call)
        mem().write_u32(token_ptr, call.token)
        return Result.OK

    def grpc_call(service_ptr: int, service_size: int, service_name_ptr: int, service_name_size: int,
                  method_ptr: int, method_size: int, metadata_ptr: int, metadata_size: int, request_ptr: int,
                  request_size: int, timeout_ms: int, token_ptr: int) -> int:
        cluster = grpc_cluster(mem().read(service_ptr, service_size))
        service = mem().read(service_name_ptr, service_name_size).decode("utf-8", "replace")
        method = mem().read(method_ptr, method_size).decode("utf-8", "replace")
        metadata = _pairs(mem().read(metadata_ptr, metadata_size))
        request = mem().read(request_ptr, request_size)
        if cluster is None:
            return Result.PARSE_FAILURE
        ctx = host.context()
        headers = [(":method", "POST"), (":path", f"/{service}/{method}"), (":authority", cluster),
                   ("content-type", "application/grpc"), *metadata]
        call = Call("grpc", callouts.token("grpc"), cluster, headers, request, timeout_ms, ctx.worker.index,
                    ctx.root_context_id)
        if cluster not in callouts.clusters:  # Envoy skips the cluster check: the call fails, UNAVAILABLE
            call.answer, call.due_ns = Answer(reset=True), host.clock.now_ns
            callouts.calls.append(call)
            mem().write_u32(token_ptr, call.token)
            return Result.OK
        start(call)
        mem().write_u32(token_ptr, call.token)
        return Result.OK

    def grpc_cancel(token: int) -> int:
        for call in callouts.calls:
            if call.token == token and call.kind == "grpc" and not call.delivered:
                call.delivered = True
                return Result.OK
        return Result.NOT_FOUND

    return {"proxy_http_call": http_call, "proxy_grpc_call": grpc_call, "proxy_grpc_cancel": grpc_cancel,
            "proxy_grpc_close": grpc_cancel}
