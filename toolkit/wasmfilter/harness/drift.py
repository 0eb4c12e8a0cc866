"""`wasmfilter drift`: what a filter sees on each Envoy version — every property of the probe (harness/probe.py) in
the request and the response phase, the headers Envoy adds to the upstream request and to the response — and the
rows where versions differ."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wasmfilter.envoy.binary import resolve
from wasmfilter.envoy.protocol import filter_log_lines, log_tail, wait_until
from wasmfilter.envoy.versions import VersionPick, pick_versions
from wasmfilter.errors import EnvoyError, WasmfilterError
from wasmfilter.harness import probe
from wasmfilter.harness.client import Client
from wasmfilter.harness.matrix import check_jobs, run_parallel
from wasmfilter.harness.scenario import Request
from wasmfilter.harness.stack import BackendOptions, StackSpec, start_stack
from wasmfilter.harness.upstream import ECHO_HEADER
from wasmfilter.manifest import Manifest
from wasmfilter.paths import cache_dir

# What the probe request sends; anything else the upstream or the client sees was added on the way.
SENT = {"host": "drift.example", "user-agent": "wasmfilter-drift", "referer": "http://referer.example/",
        "content-length": "0"}
PATH = "/drift/probe?q=1"
# Header values that change per request: compared by presence only.
VOLATILE_HEADERS = ("x-request-id", "date", "x-envoy-upstream-service-time", "x-forwarded-for",
                    "x-envoy-external-address")
LOG_WAIT_S = 10.0
Announce = Callable[[str], None]


@dataclass
class DriftReport:
    picks: list[VersionPick]
    seen: dict[str, dict[str, str]] = field(default_factory=dict)  # version -> row -> value
    errors: dict[str, str] = field(default_factory=dict)  # version -> why it could not be probed
    seconds: float = 0.0

    @property
    def versions(self) -> list[str]:
        return [p.label for p in self.picks if p.label in self.seen]

    def rows(self) -> list[str]:
        names = {row for values in self.seen.values() for row in values}
        return sorted(names, key=_row_order)

    def differences(self) -> list[tuple[str, list[str]]]:
        """(row, value per version) where the versions do not all agree; a row a version lacks is 'absent'."""
        out = []
        for row in self.rows():
            values = [self.seen[v].get(row, "absent") for v in self.versions]
            if len(set(values)) > 1:
                out.append((row, values))
        return out


def _row_order(row: str) -> tuple[int, str]:
    kind, _, name = row.partition(" ")
    order = {"req": 0, "resp": 1, "upstream-request-header": 2, "response-header": 3}
    index = probe.PROPERTIES.index(name) if name in probe.PROPERTIES else 0
    return order.get(kind, 9), f"{index:04d} {name}"


def _headers(kind: str, pairs: list[tuple[str, str]] | dict[str, str], ignore: set[str]) -> dict[str, str]:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    out: dict[str, str] = {}
    for name, value in items:
        lower = name.lower()
        if lower in ignore or lower == ECHO_HEADER:
            continue
        out[f"{kind} {lower}"] = "present" if lower in VOLATILE_HEADERS else repr(str(value))
    return out


def probe_version(version: str, *, backend: str = "process", options: BackendOptions | None = None,
                  wasm: Path | None = None) -> dict[str, str]:
    """One Envoy of VERSION with the probe; one request; every property and added header, rendered."""
    wasm = wasm or probe.module(cache_dir() / "drift")
    manifest = Manifest(name="drift-probe", directory=Path("."))
    spec = StackSpec(manifest=manifest, wasm_path=wasm, plugin_config={}, concurrency=1)
    with start_stack(spec, backend=backend, binary=resolve(version), options=options) as stack:
        client = Client(stack.url)
        try:
            response = client.send(Request(path=PATH, headers=dict(SENT)))
        finally:
            client.close()
        # the log reaches us a moment after the response (a container's log stream especially): poll for the
        # probe's last line
        last = f"resp {probe.PROPERTIES[-1]}"
        wait_until(lambda: last in probe.read_lines(filter_log_lines(stack.envoy.logs())), LOG_WAIT_S, 0.02)
        seen = probe.read_lines(filter_log_lines(stack.envoy.logs()))
        if last not in seen:
            raise EnvoyError(f"Envoy {version} did not log the drift probe's values within {LOG_WAIT_S:.0f}s",
                             fix="see Envoy's log below", detail=log_tail(stack.envoy.logs()))
    echo = response.echo() or {}
    seen |= _headers("upstream-request-header", echo.get("headers", {}), set(SENT))
    seen |= _headers("response-header", response.headers, {"content-type", "content-length"})
    seen["response status"] = str(response.status)
    return seen


def drift(specs: list[str], *, backend: str = "process", jobs: int | None = None,
          options: BackendOptions | None = None, announce: Announce | None = None) -> DriftReport:
    """Probe each version of SPECS (up to JOBS at once); a version that cannot run is reported, the others run."""
    workers = check_jobs(jobs)
    picks = pick_versions(specs)
    report = DriftReport(picks)
    runnable = []
    for pick in picks:
        if pick.error is not None:
            report.errors[pick.label] = str(pick.error)
        else:
            if announce and pick.note:
                announce(pick.note)
            runnable.append(pick.label)
    wasm = probe.module(cache_dir() / "drift")  # compiled once, before the versions run in parallel
    if options is not None and options.docker is not None:
        for version in runnable:
            options.docker.prepare()
            options.docker.envoy_image(resolve(version))
        options.docker.echo_image()

    def one(version: str) -> None:
        try:
            report.seen[version] = probe_version(version, backend=backend, options=options, wasm=wasm)
        except WasmfilterError as e:
            report.errors[version] = str(e)

    started = time.perf_counter()
    run_parallel([functools.partial(one, version) for version in runnable], workers)
    report.seconds = time.perf_counter() - started
    return report
