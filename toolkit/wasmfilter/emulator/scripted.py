"""Scripted upstreams (the harness' answer rules, harness/answers.py) as the emulator uses them: what a cluster the
route table picked answers, and what `http_call` / `grpc_call` to it get — the same rules the echo upstreams follow on
the Envoy backends, so one scenario file drives all three. Envoy's view of an answer: a reset is its 503 "upstream
connect error or disconnect/reset before headers", a delay at or past the route timeout (15 s) its 504."""

from __future__ import annotations

from collections.abc import Iterable

from wasmfilter.emulator.http_call import Answer, Call
from wasmfilter.emulator.routes import echo
from wasmfilter.emulator.stream import Response, UpstreamRequest
from wasmfilter.harness.answers import Answer as RuleAnswer
from wasmfilter.harness.answers import AnswerRule, answer_for
from wasmfilter.harness.upstream import ECHO_HEADER

ROUTE_TIMEOUT_MS = 15_000
RESET_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"


def _envoy_reply(status: int, body: bytes) -> Response:
    return Response(status, [("content-length", str(len(body))), ("content-type", "text/plain"),
                             ("server", "envoy")], body)


class ScriptedUpstreams:
    """Answer rules per cluster; remembers which rules answered something."""

    def __init__(self, rules: dict[str, list[AnswerRule]]):
        self.rules = rules
        self._used: set[int] = set()

    def find(self, cluster: str, method: str, path: str, headers: Iterable[tuple[str, str]]) -> RuleAnswer | None:
        answer = answer_for(self.rules.get(cluster, []), method, path, list(headers))
        if answer is not None:
            self._used.add(id(answer))
        return answer

    def upstream(self, request: UpstreamRequest) -> Response:
        """The routed request's answer: its rule's, else the echo upstream's."""
        answer = self.find(request.cluster, request.method, request.path, request.headers)
        if answer is None:
            return echo(request)
        if answer.reset:
            return _envoy_reply(503, RESET_BODY)
        if answer.delay_ms >= ROUTE_TIMEOUT_MS:
            return _envoy_reply(504, b"upstream request timeout")
        body = answer.body_bytes()
        return Response(answer.status, [*answer.header_pairs(), ("content-length", str(len(body))),
                                        (ECHO_HEADER, request.cluster), ("server", "envoy"),
                                        ("x-envoy-upstream-service-time", "0")],
                        b"" if request.method == "HEAD" else body)

    def callout(self, call: Call) -> Answer | None:
        """A callout's answer from the rules (None: no rule speaks for it)."""
        rule = self.find(call.cluster, call.method, call.path, [(k, v) for k, v in call.headers
                                                                 if not k.startswith(":")])
        if rule is None:
            return None
        return Answer(status=rule.status, headers=rule.header_pairs(), body=rule.body_bytes(),
                      delay_s=rule.delay_ms / 1000, reset=rule.reset, grpc_status=rule.grpc_status or 0)

    def unused(self) -> list[str]:
        """'cluster: match' of every rule nothing asked for."""
        return [f"cluster '{cluster}' {rule.match.model_dump(exclude_defaults=True) or 'any request'}"
                for cluster, rules in self.rules.items() for rule in rules if id(rule) not in self._used]
