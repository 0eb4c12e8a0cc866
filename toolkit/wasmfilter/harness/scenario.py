"""Scenario files as data: a request and what must come back (status, headers, body), what the upstream
must have seen, and how Envoy's stats must move. `wasmfilter test` and the pytest plugin both run them."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wasmfilter.errors import ScenarioError
from wasmfilter.harness.upstream import ECHO_HEADER
from wasmfilter.manifest import FailurePolicy

Headers = list[tuple[str, str]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Request(_Strict):
    method: str = "GET"
    path: str = "/"
    # A mapping, or a list of [name, value] pairs when a header repeats or its case matters.
    headers: dict[str, str] | list[tuple[str, str]] = Field(default_factory=dict)
    body: str = ""

    @field_validator("path")
    @classmethod
    def _path_starts_with_slash(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v

    def header_pairs(self) -> Headers:
        return list(self.headers.items()) if isinstance(self.headers, dict) else [tuple(p) for p in self.headers]


class UpstreamExpect(_Strict):
    reached: bool = True
    name: str | None = None
    path: str | None = None
    method: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    headers_absent: list[str] = Field(default_factory=list)
    body: str | None = None


class Expect(_Strict):
    status: int | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    headers_absent: list[str] = Field(default_factory=list)
    body: str | None = None
    body_contains: str | None = None
    body_not_contains: list[str] = Field(default_factory=list)
    json_body: dict[str, Any] | None = Field(default=None, alias="json")
    upstream: UpstreamExpect | None = None
    # Envoy stat name -> how much it must grow during this case.
    stats: dict[str, int] = Field(default_factory=dict)
    # For repeated cases: status -> how many responses must have it.
    status_counts: dict[int, int] | None = None


class Eventually(_Strict):
    timeout_ms: int = Field(default=5000, ge=1)
    interval_ms: int = Field(default=20, ge=1)


class Case(_Strict):
    name: str
    request: Request = Field(default_factory=Request)
    expect: Expect = Field(default_factory=Expect)
    repeat: int = Field(default=1, ge=1)
    parallel: int = Field(default=1, ge=1)
    # Retry the case until it passes, for expectations that hold only after Envoy acts (e.g. a VM reload).
    eventually: Eventually | None = None


class ScenarioFile(_Strict):
    description: str = ""
    # Plugin configuration for this file: replaces the manifest's, or is merged onto it.
    config: Any = None
    config_patch: dict[str, Any] | None = None
    failure_policy: FailurePolicy | None = None
    allow_fail_open: bool = False
    features: list[str] = Field(default_factory=list)  # cargo features of the build under test
    concurrency: int = Field(default=2, ge=1)
    cases: list[Case] = Field(min_length=1)

    path: Path = Field(default=Path("."), exclude=True)

    def plugin_config(self, manifest_config: Any) -> Any:
        if self.config is not None:
            return self.config
        if self.config_patch is not None:
            return deep_merge(manifest_config, self.config_patch)
        return manifest_config


def deep_merge(base: Any, patch: dict[str, Any]) -> Any:
    """PATCH over BASE, recursively for mappings (a non-mapping in PATCH replaces)."""
    if not isinstance(base, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        out[key] = deep_merge(out.get(key), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load(path: str | Path) -> ScenarioFile:
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text())
    except OSError as e:
        raise ScenarioError(f"cannot read scenario file '{file}': {e.strerror}", fix="check the path") from e
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0]
        raise ScenarioError(f"scenario file '{file}' is not valid YAML ({first})", fix="fix the YAML syntax") from e
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario file '{file}' must be a mapping with a 'cases' list",
                            fix="see filters/auth/scenarios/ for examples")
    try:
        return ScenarioFile.model_validate({**raw, "path": file})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ScenarioError(f"scenario file '{file}': field '{where}': {err['msg']}",
                            fix="correct that field (see docs/scenarios.md)") from e


def discover(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


@dataclass
class Response:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def echo(self) -> dict[str, Any] | None:
        """What the echo upstream saw, when the response came from it."""
        if self.header(ECHO_HEADER) is None:
            return None
        try:
            return json.loads(self.body)
        except json.JSONDecodeError:
            return None


class Client:
    """HTTP/1.1 with exact control of path and headers (no normalisation, repeats kept), one kept-alive
    connection per thread."""

    def __init__(self, base_url: str, timeout: float = 10.0):
        host_port = base_url.split("://", 1)[-1].rstrip("/")
        self.host, _, port = host_port.rpartition(":")
        self.port = int(port)
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def send(self, request: Request) -> Response:
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                return self._send_once(self._conn, request)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # the server closed a kept-alive connection: retry once on a new one
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _send_once(self, conn: http.client.HTTPConnection, request: Request) -> Response:
        pairs = request.header_pairs()
        body = request.body.encode()
        conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k, _ in pairs):
            conn.putheader("host", "localhost")
        for name, value in pairs:
            conn.putheader(name, value)
        if body or request.method in ("POST", "PUT", "PATCH"):
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        if resp.getheader("connection", "").lower() == "close":
            self.close()
        return Response(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


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
        problems += _check_upstream(expect.upstream, resp.echo())
    return problems


def _check_upstream(expect: UpstreamExpect, echo: dict[str, Any] | None) -> list[str]:
    if not expect.reached:
        return [] if echo is None else [f"upstream: expected the request not to reach it, but '{echo['upstream']}' "
                                        "answered"]
    if echo is None:
        return ["upstream: expected the request to reach the echo upstream, but it did not answer"]
    problems = []
    seen = {}
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


StatsReader = Any  # callable: () -> dict[str, int]


def run_case(case: Case, base_url: str, stats: StatsReader, client: Client | None = None) -> tuple[list[str], int]:
    """Run one case (with its repeats and retries); the problems found and how many responses were read."""
    deadline = time.monotonic() + (case.eventually.timeout_ms / 1000 if case.eventually else 0)
    while True:
        problems, count = _run_case_once(case, base_url, stats, client)
        if not problems or case.eventually is None or time.monotonic() >= deadline:
            if problems and case.eventually is not None:
                problems = [f"still failing after {case.eventually.timeout_ms} ms: {p}" for p in problems]
            return problems, count
        time.sleep(case.eventually.interval_ms / 1000)


def _run_case_once(case: Case, base_url: str, stats: StatsReader, client: Client | None) -> tuple[list[str], int]:
    before = stats() if case.expect.stats else {}
    if case.repeat == 1 and case.parallel == 1:
        own = client is None
        client = client or Client(base_url)
        try:
            responses = [client.send(case.request)]
        finally:
            if own:
                client.close()
    else:
        responses = _send_many(case, base_url)
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


def _send_many(case: Case, base_url: str) -> list[Response]:
    per_worker = [case.repeat // case.parallel + (1 if i < case.repeat % case.parallel else 0)
                  for i in range(case.parallel)]

    def worker(n: int) -> list[Response]:
        client = Client(base_url)
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


Backend = Literal["process", "docker"]
