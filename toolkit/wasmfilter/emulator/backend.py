"""The `emulator` scenario backend: the same StackSpec the Envoy backends start, read back from the bootstrap the
harness generates (the Wasm filter's name, root_id, vm_id, configuration, failure policy and back-off; the route
table; the clusters), run on a FilterHost with one VM per Envoy worker (`concurrency`) and the echo upstream emulated.
Cases reach it through an in-process client (one worker per connection), `eventually` waits on the test clock, and
the admin API's stats are the host's metrics. Behaviour that needs Envoy fails the case with the reason."""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from wasmfilter.emulator import hcm
from wasmfilter.emulator.codes import LogLevel
from wasmfilter.emulator.host import FilterHost, Plugin
from wasmfilter.emulator.metrics import PREFIX
from wasmfilter.emulator.routes import NeedsEnvoy, RouteTable, load_yaml
from wasmfilter.emulator.stream import Request
from wasmfilter.envoy.admin import Admin
from wasmfilter.envoy.bootstrap import CLUSTER_HEADER, Bootstrap, Upstream
from wasmfilter.envoy.hardening import SAFE, RequestHardening, read_back
from wasmfilter.envoy.protocol import filter_log_lines
from wasmfilter.harness.checks import CaseClock
from wasmfilter.harness.client import Client, Response

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.harness.scenario import Case
    from wasmfilter.harness.scenario import Request as ScenarioRequest
    from wasmfilter.harness.stack import Stack, StackSpec

WASM_FILTER = "envoy.filters.http.wasm"
_LEVELS = {LogLevel.TRACE: "trace", LogLevel.DEBUG: "debug", LogLevel.INFO: "info", LogLevel.WARN: "warning",
           LogLevel.ERROR: "error", LogLevel.CRITICAL: "critical"}


def _seconds(text: str) -> float:
    return float(str(text).rstrip("s"))


def plugin_from_bootstrap(text: str | dict[str, Any]) -> tuple[Plugin, str]:
    """The Wasm plugin the bootstrap configures, and its module's path."""
    doc = load_yaml(text) if isinstance(text, str) else text
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.router"]
    others = [f["name"] for f in filters if f["name"] != WASM_FILTER]
    if others or len(filters) != 1:
        raise NeedsEnvoy(f"the filter chain holds {', '.join(others) or 'several Wasm filters'} besides the "
                         "Wasm filter; the emulator runs only one Wasm filter",
                         fix="run this on Envoy (--backend process)")
    config: dict[str, Any] = filters[0]["typed_config"]["config"]
    backoff = ((config.get("reload_config") or {}).get("backoff") or {}).get("base_interval", "1s")
    plugin = Plugin(name=config.get("name", ""), root_id=config.get("root_id", ""),
                    vm_id=config["vm_config"].get("vm_id", ""),
                    configuration=str((config.get("configuration") or {}).get("value", "")).encode(),
                    failure_policy=config.get("failure_policy", "FAIL_CLOSED"), reload_backoff_s=_seconds(backoff))
    return plugin, config["vm_config"]["code"]["local"]["filename"]


class EmulatedAdmin(Admin):
    """The admin API's stats, from the host's metrics (the one admin call scenario checks make)."""

    def __init__(self, host: FilterHost):
        super().__init__("emulator", 0)
        object.__setattr__(self, "_host", host)

    def stats(self, filter_regex: str | None = None) -> dict[str, int]:
        host: FilterHost = object.__getattribute__(self, "_host")
        return host.stats()

    def is_ready(self) -> bool:
        return True


class EmulatedEnvoy:
    """The `Envoy` protocol over a FilterHost: no process, no port; logs in Envoy's `[wasm]` line format."""

    backend = "emulator"

    def __init__(self, host: FilterHost, start_seconds: float):
        self.host = host
        self._admin = EmulatedAdmin(host)
        self._start = start_seconds

    @property
    def version(self) -> str:
        return "emulator (proxy-wasm 0.2.1 on wasmtime)"

    @property
    def admin(self) -> Admin:
        return self._admin

    @property
    def listener_url(self) -> str:
        return f"emulator://{self.host.plugin.name}"

    @property
    def start_seconds(self) -> float:
        return self._start

    @property
    def pid(self) -> int:
        return os.getpid()

    def logs(self) -> str:
        p = self.host.plugin
        return "\n".join(f"[emulator][{line.worker}][{_LEVELS[line.level]}][wasm] wasm log {p.name} {p.root_id} "
                         f"{p.vm_id}: {line.message}" for line in self.host.logs)

    def filter_logs(self) -> list[str]:
        return filter_log_lines(self.logs())

    def cpu_ns(self) -> int:
        return time.process_time_ns()

    def rss_kb(self) -> int:
        return 0

    def stop(self) -> None:
        pass


class EmulatedClient(Client):
    """A client connection: its requests run on one worker's VM, one at a time across the host (a lock), after
    the bootstrap's request hardening (hcm.py): a request Envoy answers itself never reaches the filter."""

    def __init__(self, host: FilterHost, lock: threading.Lock, worker: int, port: int,
                 hardening: RequestHardening = SAFE):
        super().__init__("emulator://emulator:0")
        self.filter_host = host
        self.lock = lock
        self.worker = worker
        self.address = f"127.0.0.1:{port}"
        self.hardening = hardening

    def send(self, request: ScenarioRequest) -> Response:
        body = request.body.encode()
        seen = hcm.apply(self.hardening, CLUSTER_HEADER, request.path, request.header_pairs())
        if seen.reply_status is not None:
            return Response(seen.reply_status, list(seen.reply_headers), seen.reply_body)
        with self.lock:
            stream = self.filter_host.http(Request(request.method, seen.path, seen.headers, body,
                                            client_address=self.address), worker=self.worker, raise_on_trap=False)
            if stream.paused:  # waiting on a callout answer or a tick: let the test clock run to it
                for _ in range(1000):
                    due = self.filter_host.next_due()
                    if not stream.paused or due is None:
                        break
                    self.filter_host.advance(max(0.0, (due[0] - self.filter_host.clock.now_ns) / 1e9))
            if stream.paused:
                raise ConnectionAbortedError("the filter paused the stream and nothing resumes it (Envoy would "
                                             "hold it until a timeout)")
        if stream.reset or stream.response is None:
            raise ConnectionResetError("the filter reset the stream (close_stream)")
        return Response(stream.status, list(stream.headers), stream.body)

    def close(self) -> None:
        pass


def emulator_stack(spec: StackSpec) -> Stack:
    from wasmfilter.harness.stack import Stack

    started = time.perf_counter()
    upstreams = [Upstream(name, "127.0.0.1", 9) for name in spec.manifest.upstreams]
    text = Bootstrap(upstreams=upstreams, http_filters=[*spec.extra_http_filters, spec.wasm_filter().fragment()],
                     hardening=spec.hardening).render()
    doc = load_yaml(text)
    hardening = read_back(doc, CLUSTER_HEADER)  # what the rendered HCM does, as Envoy would read it
    plugin, wasm_path = plugin_from_bootstrap(doc)
    routes = RouteTable.from_bootstrap(doc)
    with open(wasm_path, "rb") as f:
        module = f.read()
    host = FilterHost(module, plugin, workers=spec.concurrency, routes=routes, clusters=routes.clusters,
                      log_level=LogLevel.DEBUG, name=wasm_path,
                      answers={name: spec.rules_for(name) for name in spec.manifest.upstreams})
    lock = threading.Lock()
    connections = iter(range(1, 1 << 30))

    def connect() -> Client:
        n = next(connections)
        return EmulatedClient(host, lock, (n - 1) % len(host.workers), 40000 + n % 20000, hardening)

    def sleep(seconds: float) -> None:
        with lock:
            host.advance(seconds)

    clock = CaseClock(monotonic=lambda: host.clock.now_ns / 1e9, sleep=sleep)
    envoy = EmulatedEnvoy(host, time.perf_counter() - started)
    stack = Stack(envoy, list(spec.manifest.upstreams), ExitStack(), connect=connect, clock=clock)
    stack.needs_envoy = needs_envoy
    return stack


def needs_envoy(case: Case) -> str | None:
    """Why CASE cannot be judged without Envoy (it expects one of Envoy's own stats), else None."""
    own = [name for name in case.expect.stats if not name.startswith(PREFIX)]
    if own:
        return (f"needs Envoy: stat '{own[0]}' is Envoy's own, the emulator keeps only the filter's "
                f"({PREFIX}*); run this file with --backend process")
    return None
