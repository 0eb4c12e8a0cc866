"""One scenario case against a running Envoy: send its request(s), compare every response with the expectation
(status, headers, body, JSON, what the upstream saw) and Envoy's stats before/after, one line per difference."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmfilter.harness.client import Client, Response
from wasmfilter.harness.scenario import Case, Expect, UpstreamExpect
from wasmfilter.harness.upstream import ECHO_HEADER


def check_response(expect: Expect, resp: Response) -> list[str]:
    """Every way RESP differs from EXPECT, one line each."""
    problems: list[str] = []
    if expect.status is not None and resp.status != expect.status:
        problems.append(f"status: expected {expect.status}, got {resp.status}")
    for name, value in expect.headers.items():
        got = resp.header(name)
        if got != value:
            problems.append(f"response header '{name}': expected {value!r}, got {got!r}")
    for name in expect.headers_absent:
        if resp.header(name) is not None:
            problems.append(f"response header '{name}': expected absent, got {resp.header(name)!r}")
    text = resp.body.decode("utf-8", "replace")
    if expect.body is not None and text != expect.body:
        problems.append(f"body: expected {expect.body!r}, got {_short(text)!r}")
    if expect.body_contains is not None and expect.body_contains not in text:
        problems.append(f"body: expected to contain {expect.body_contains!r}, got {_short(text)!r}")
    for forbidden in expect.body_not_contains:
        if forbidden in text:
            problems.append(f"body: must not contain {forbidden!r}, got {_short(text)!r}")
    if expect.json_body is not None:
        try:
            problems += _json_subset("json", expect.json_body, json.loads(text))
        except json.JSONDecodeError:
            problems.append(f"body: expected JSON, got {_short(text)!r}")
    if expect.upstream is not None:
        echo = resp.echo()
        scripted = echo is None and resp.header(ECHO_HEADER) is not None
        problems += _check_scripted(expect.upstream, resp) if scripted else _check_upstream(expect.upstream, echo)
    return problems


def _check_scripted(expect: UpstreamExpect, resp: Response) -> list[str]:
    """The upstream answered with a scripted answer (harness/answers.py): it was reached, but what it saw is not
    reported, so only `reached` can be checked."""
    if not expect.reached:
        return [f"upstream: expected the request not to reach it, but '{resp.header(ECHO_HEADER)}' answered "
                "(a scripted answer)"]
    unknown = [attr for attr in ("name", "path", "method", "body") if getattr(expect, attr) is not None]
    unknown += ["headers"] * bool(expect.headers) + ["headers_absent"] * bool(expect.headers_absent)
    return [f"upstream {attr}: cannot be checked, a scripted answer answered (it reports nothing of the request)"
            for attr in unknown]


def _check_upstream(expect: UpstreamExpect, echo: dict[str, Any] | None) -> list[str]:
    if not expect.reached:
        return [] if echo is None else [f"upstream: expected the request not to reach it, but '{echo['upstream']}' "
                                        "answered"]
    if echo is None:
        return ["upstream: expected the request to reach the echo upstream, but it did not answer"]
    problems = []
    seen: dict[str, str] = {}
    for k, v in echo["headers"]:
        seen[k] = f"{seen[k]}, {v}" if k in seen else v
    for attr in ("name", "path", "method", "body"):
        want = getattr(expect, attr)
        got = echo["upstream"] if attr == "name" else echo[attr]
        if want is not None and got != want:
            problems.append(f"upstream {attr}: expected {want!r}, got {got!r}")
    for name, value in expect.headers.items():
        if seen.get(name.lower()) != value:
            problems.append(f"upstream header '{name}': expected {value!r}, got {seen.get(name.lower())!r}")
    for name in expect.headers_absent:
        if name.lower() in seen:
            problems.append(f"upstream header '{name}': expected absent, got {seen[name.lower()]!r}")
    return problems


def _json_subset(where: str, want: Any, got: Any) -> list[str]:
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: expected an object, got {got!r}"]
        return [p for k, v in want.items() for p in
                (_json_subset(f"{where}.{k}", v, got[k]) if k in got else [f"{where}.{k}: missing"])]
    return [] if want == got else [f"{where}: expected {want!r}, got {got!r}"]


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class CaseResult:
    file: Path
    name: str
    problems: list[str]
    seconds: float
    responses: int = 1
    log_tail: str = ""
    filter_logs: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


StatsReader = Callable[[], dict[str, int]]
Connect = Callable[[], Client]  # a new client connection to the stack (the emulator's is in-process)


@dataclass(frozen=True)
class CaseClock:
    """The clock `eventually` waits on: real time, or the emulator's test clock (sleeping moves it)."""
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def run_case(case: Case, base_url: str, stats: StatsReader, client: Client | None = None, *,
             connect: Connect | None = None, clock: CaseClock | None = None) -> tuple[list[str], int]:
    """Run one case (with its repeats and retries); the problems found and how many responses were read."""
    clock = clock or CaseClock()
    deadline = clock.monotonic() + (case.eventually.timeout_ms / 1000 if case.eventually else 0)
    while True:
        problems, count = _run_case_once(case, base_url, stats, client, connect)
        if not problems or case.eventually is None or clock.monotonic() >= deadline:
            if problems and case.eventually is not None:
                problems = [f"still failing after {case.eventually.timeout_ms} ms: {p}" for p in problems]
            return problems, count
        clock.sleep(case.eventually.interval_ms / 1000)


def _run_case_once(case: Case, base_url: str, stats: StatsReader, client: Client | None,
                   connect: Connect | None = None) -> tuple[list[str], int]:
    before = stats() if case.expect.stats else {}
    if case.repeat == 1 and case.parallel == 1:
        own = client is None
        client = client or (connect() if connect else Client(base_url))
        try:
            responses = [client.send(case.request)]
        finally:
            if own:
                client.close()
    else:
        responses = _send_many(case, base_url, connect)
    problems: list[str] = []
    if case.expect.status_counts is not None:
        counts: dict[int, int] = {}
        for r in responses:
            counts[r.status] = counts.get(r.status, 0) + 1
        if counts != case.expect.status_counts:
            problems.append(f"status counts: expected {case.expect.status_counts}, got {dict(sorted(counts.items()))}")
        per_response = case.expect.model_copy(update={"status": None})
    else:
        per_response = case.expect
    for i, resp in enumerate(responses):
        for p in check_response(per_response, resp):
            problems.append(p if len(responses) == 1 else f"response {i + 1}: {p}")
    if case.expect.stats:
        after = stats()
        for name, delta in case.expect.stats.items():
            got = after.get(name, 0) - before.get(name, 0)
            if name not in after:
                problems.append(f"stat '{name}': does not exist (Envoy has {_similar(name, after)})")
            elif got != delta:
                problems.append(f"stat '{name}': expected +{delta}, got +{got}")
    return problems, len(responses)


def _send_many(case: Case, base_url: str, connect: Connect | None = None) -> list[Response]:
    per_worker = [case.repeat // case.parallel + (1 if i < case.repeat % case.parallel else 0)
                  for i in range(case.parallel)]

    def worker(n: int) -> list[Response]:
        client = connect() if connect else Client(base_url)
        try:
            return [client.send(case.request) for _ in range(n)]
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=case.parallel) as pool:
        return [r for batch in pool.map(worker, per_worker) for r in batch]


def _similar(name: str, stats: dict[str, int]) -> str:
    stem = name.rsplit(".", 1)[-1]
    near = [k for k in stats if stem in k][:5]
    return ", ".join(near) if near else "no stat of that name"
