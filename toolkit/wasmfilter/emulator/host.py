"""`FilterHost`: a compiled proxy-wasm filter running in this process as Envoy would run it — the public API.

    host = FilterHost.load("plugin.wasm", config={"header": "x-a", "value": "1"})
    stream = host.http(path="/orders", headers=[("x-api-key", "k")])
    assert stream.status == 200 and stream.upstream.header("x-auth-identity") == "alice"
    host.advance(seconds=2)  # ticks, delayed callout answers, FAIL_RELOAD back-off

Owns what one Envoy process shares between its workers (shared data, queues, metrics, logs, the test clock, the
callout script) and the workers themselves (worker.py), and turns settled events into callbacks in time order."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmfilter.emulator import linker as linker_mod
from wasmfilter.emulator import vm as vm_mod
from wasmfilter.emulator.clock import TestClock
from wasmfilter.emulator.codes import LogLevel, Result
from wasmfilter.emulator.context import Context
from wasmfilter.emulator.control import LocalReply, clear_route_cache
from wasmfilter.emulator.foreign import verify_signature
from wasmfilter.emulator.http_call import Answer, Callouts, Rule
from wasmfilter.emulator.logs import LogLine
from wasmfilter.emulator.memory import GuestMemory
from wasmfilter.emulator.meter import Meter
from wasmfilter.emulator.metrics import Metrics
from wasmfilter.emulator.queues import Queue, SharedQueues
from wasmfilter.emulator.routes import RouteTable, downstream_headers, upstream_request
from wasmfilter.emulator.scripted import ScriptedUpstreams
from wasmfilter.emulator.shared_data import SharedData
from wasmfilter.emulator.stream import Request, Response, Stream, Upstream
from wasmfilter.emulator.worker import Worker
from wasmfilter.errors import EmulatorError, UsageError, WasmTrap
from wasmfilter.harness.answers import AnswerRule

FAILURE_POLICIES = ("FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD")
ForeignFunction = Callable[["FilterHost", bytes], tuple[Result, bytes]]


@dataclass
class Plugin:
    """The plugin as Envoy's `envoy.filters.http.wasm` config describes it."""
    name: str = "plugin"
    root_id: str = ""
    vm_id: str = ""
    configuration: bytes = b""
    vm_configuration: bytes = b""
    failure_policy: str = "FAIL_CLOSED"
    reload_backoff_s: float = 1.0
    environment: dict[str, str] = field(default_factory=dict)


def config_bytes(config: Any) -> bytes:
    """The plugin configuration as Envoy passes it: a StringValue (our harness: JSON) — bytes and str as given."""
    if config is None:
        return b""
    if isinstance(config, bytes):
        return config
    if isinstance(config, str):
        return config.encode()
    return json.dumps(config).encode()


class FilterHost:
    def __init__(self, module_bytes: bytes, plugin: Plugin, *, workers: int = 1, clusters: Iterable[str] = (),
                 routes: RouteTable | None = None, upstream: Upstream | None = None, log_level: LogLevel =
                 LogLevel.TRACE, limits: vm_mod.Limits | None = None, cache: bool = True,
                 clock: TestClock | None = None, name: str = "module",
                 answers: dict[str, list[AnswerRule]] | None = None, meter: Meter | None = None):
        if plugin.failure_policy not in FAILURE_POLICIES:
            raise UsageError(f"unknown failure policy '{plugin.failure_policy}'",
                             fix="use one of: " + ", ".join(FAILURE_POLICIES))
        self.plugin = plugin
        self.meter = meter  # counts instructions per callback and host calls (meter.py); None: off
        self.cache = cache
        self.limits = limits or vm_mod.Limits()
        self.clock = clock or TestClock()
        self.log_level = log_level
        cluster_list = list(clusters) or ["default"]
        self.routes = routes or RouteTable.default(cluster_list)
        # The scenario's answer rules per cluster (harness/answers.py): the routed upstream's and callouts' answers.
        self.scripted = ScriptedUpstreams(answers or {})
        self.upstream: Upstream = upstream or self.scripted.upstream
        self.logs: list[LogLine] = []
        self.metrics = Metrics()
        self.shared = SharedData()
        self.queues = SharedQueues()
        self.callouts = Callouts(sorted(set(cluster_list) | set(self.routes.clusters) | set(self.scripted.rules)))
        self.callouts.script = self.scripted.callout
        self.foreign: dict[str, ForeignFunction] = {"clear_route_cache": clear_route_cache,
                                                    "verify_signature": verify_signature}
        self.root_traps: list[WasmTrap] = []
        self.not_emulated: list[str] = []  # imports linked to a stub that fails when called (linker.py)
        self.active: Worker | None = None
        self.call_log_start = 0
        self._posted: list[Callable[[], None]] = []
        self._next_worker = 0
        self._request_ids = 0
        self.module = vm_mod.compile_module(module_bytes, cache=cache, name=name)
        self.linker = linker_mod.build(self, self.module, vm_mod.engine(cache), name)
        self.workers = [Worker(self, i) for i in range(max(1, workers))]
        for worker in self.workers:
            worker.start()

    @classmethod
    def load(cls, wasm: str | Path | bytes, *, config: Any = None, name: str = "plugin", root_id: str = "",
             vm_id: str = "", vm_config: Any = None, failure_policy: str = "FAIL_CLOSED",
             reload_backoff_s: float = 1.0, environment: dict[str, str] | None = None, workers: int = 1,
             clusters: Iterable[str] = (), routes: RouteTable | None = None, upstream: Upstream | None = None,
             log_level: LogLevel = LogLevel.TRACE, fuel: int = vm_mod.DEFAULT_FUEL,
             memory_mb: int = vm_mod.DEFAULT_MEMORY_MB, cache: bool = True, start_ns: int | None = None,
             answers: dict[str, list[AnswerRule]] | None = None) -> FilterHost:
        """Compile WASM (a path or the bytes), start WORKERS VMs and configure the plugin with CONFIG (a dict is
        sent as JSON, as the harness does). ANSWERS: answer rules per cluster (harness/answers.py, as in filter.yaml
        and scenario files) for the routed upstream and for http_call/grpc_call. Raises EmulatorError when Envoy
        would refuse the plugin, naming why."""
        if isinstance(wasm, bytes):
            data, label = wasm, "module"
        else:
            path = Path(wasm)
            if not path.is_file():
                raise UsageError(f"'{path}' does not exist", fix="pass the .wasm that `wasmfilter build` printed")
            data, label = path.read_bytes(), str(path)
        plugin = Plugin(name=name, root_id=root_id, vm_id=vm_id, configuration=config_bytes(config),
                        vm_configuration=config_bytes(vm_config), failure_policy=failure_policy,
                        reload_backoff_s=reload_backoff_s, environment=dict(environment or {}))
        return cls(data, plugin, workers=workers, clusters=clusters, routes=routes, upstream=upstream,
                   log_level=log_level, limits=vm_mod.Limits(fuel=fuel, memory_mb=memory_mb), cache=cache,
                   clock=TestClock(start_ns), name=label, answers=answers)

    # --- what host functions use ------------------------------------------------------------------------------

    def memory(self) -> GuestMemory:
        if self.active is None or self.active.vm is None:
            raise EmulatorError("a host function ran outside a callback", fix="this is an emulator bug")
        return self.active.vm.memory

    def context(self) -> Context:
        worker = self.active
        if worker is None:
            raise EmulatorError("a host function ran outside a callback", fix="this is an emulator bug")
        if worker.effective is not None and worker.effective in worker.contexts:
            return worker.contexts[worker.effective]
        ctx = worker.contexts.get(worker.current)
        if ctx is None:  # _initialize / _start run before any context exists: Envoy's VM context
            ctx = Context(worker, 0, 0)
        return ctx

    def log(self, level: LogLevel, message: str, *, internal: bool = False) -> None:
        if level < self.log_level and not internal:
            return
        worker = self.active
        ctx = worker.effective or worker.current if worker is not None else 0
        self.logs.append(LogLine(level, message, ctx, worker.index if worker is not None else -1))

    def panic_message(self) -> str | None:
        """The panic message the module logged during the current call (Rust's hook logs it at critical)."""
        for line in reversed(self.logs[self.call_log_start:]):
            if line.level == LogLevel.CRITICAL:
                return line.message.replace("\n", " ")
        return None

    def post(self, action: Callable[[], None]) -> None:
        self._posted.append(action)

    def queue_ready(self, queue: Queue, token: int) -> None:
        self.workers[queue.worker].queue_ready(queue, token)

    def downstream_headers(self, request: Request) -> list[tuple[str, str]]:
        self._request_ids += 1
        request_id = f"00000000-0000-4000-8000-{self._request_ids:012x}"  # a UUID, predictable in tests
        return downstream_headers(request.method, request.path, request.headers, request.body,
                                  request.client_address.rpartition(":")[0], request_id)

    def route(self, stream: Stream, headers: Any, body: bytes) -> Response:
        """Envoy's router: the route table picks the cluster, the upstream answers."""
        cluster = self.routes.pick(headers)
        if cluster is None:
            return Response(404, [("content-length", "0"), ("server", "envoy")], b"")
        if cluster not in self.routes.clusters:
            return Response(503, [("content-length", "0"), ("server", "envoy")], b"")
        stream.upstream = upstream_request(cluster, headers, body)
        return self.upstream(stream.upstream)

    def local_reply_headers(self, reply: LocalReply) -> list[tuple[str, str]]:
        headers = [(":status", str(reply.status)), *reply.headers]
        if reply.body and not any(k == "content-type" for k, _ in reply.headers):
            headers.append(("content-type", "text/plain"))
        return [*headers, ("content-length", str(len(reply.body))), ("server", "envoy")]

    def failure_response(self) -> Response:
        return Response(503, [("content-length", "0"), ("server", "envoy")], b"")

    def log_text(self) -> str:
        return "\n".join(str(line) for line in self.logs[-30:])

    # --- the test's API ---------------------------------------------------------------------------------------

    def http(self, request: Request | None = None, *, method: str = "GET", path: str = "/",
             headers: Iterable[tuple[str, str]] | dict[str, str] = (), body: bytes | str = b"",
             trailers: Iterable[tuple[str, str]] = (), chunks: list[bytes] | None = None, worker: int | None = None,
             raise_on_trap: bool = True) -> Stream:
        """Send one request through the filter (and the emulated route table and upstream); the stream comes back
        finished, or paused when the filter waits (for a callout answer, …) — `advance` moves it on.
        A trap in one of its callbacks raises WasmTrap (its `.stream` holds the 503) unless RAISE_ON_TRAP is off."""
        if request is None:
            pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
            request = Request(method, path, pairs, body.encode() if isinstance(body, str) else body,
                              list(trailers), chunks)
        if worker is None:
            worker = self._next_worker
            self._next_worker = (self._next_worker + 1) % len(self.workers)
        w = self.workers[worker]
        stream = Stream(w, 0, request)
        stream.start()
        self.settle()
        if stream.trap is not None and raise_on_trap:
            stream.trap.stream = stream  # type: ignore[attr-defined]
            raise stream.trap
        return stream

    def advance(self, seconds: float) -> None:
        """Move the test clock by SECONDS, firing every tick, callout answer and FAIL_RELOAD restart that falls
        due on the way, in time order."""
        if seconds < 0:
            raise UsageError("the test clock only moves forward", fix="pass seconds >= 0")
        target = self.clock.now_ns + int(seconds * 1e9)
        while True:
            due = self.next_due()
            if due is None or due[0] > target:
                break
            self.clock.now_ns = max(self.clock.now_ns, due[0])
            due[1]()
            self.settle()
        self.clock.now_ns = target
        self.settle()

    def answer(self, cluster: str, *, method: str | None = None, path: str | None = None, status: int = 200,
               headers: Iterable[tuple[str, str]] | dict[str, str] = (), body: bytes | str = b"",
               trailers: Iterable[tuple[str, str]] = (), delay_s: float = 0.0, timeout: bool = False,
               reset: bool = False, grpc_status: int = 0) -> Rule:
        """Script the answer to http_call/grpc_call towards CLUSTER (optionally only this method / path prefix)."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        rule = Rule(cluster, Answer(status, [(k.lower(), v) for k, v in pairs],
                                    body.encode() if isinstance(body, str) else body, list(trailers), delay_s,
                                    timeout, reset, grpc_status), method, path)
        self.callouts.add(rule)
        return rule

    def check_answers_used(self, *, rules: bool = True) -> None:
        """A scripted answer no call asked for is a test mistake (or a filter that never called): one line.
        RULES: check the `answers=` rules too, not only `host.answer()`'s."""
        unused = [rule.describe() for rule in self.callouts.unused()] + (self.scripted.unused() if rules else [])
        if unused:
            raise EmulatorError(f"scripted answer for {unused[0]} was never asked for: the filter made "
                                f"no matching http_call/grpc_call ({len(self.callouts.calls)} call(s) made)",
                                fix="remove the answer, or fix its cluster/method/path")

    def inject_trap(self, callback: str, *, worker: int = 0) -> None:
        """Make the next call of CALLBACK (e.g. 'proxy_on_request_headers') on WORKER trap."""
        vm = self.workers[worker].vm
        if vm is None:
            raise EmulatorError("that worker has no VM", fix="inject before it crashed")
        vm.inject.add(callback if callback.startswith("proxy_") else "proxy_" + callback)

    def enqueue(self, vm_id: str, queue: str, data: bytes) -> None:
        """Enqueue DATA on a shared queue from outside (another plugin would)."""
        token = self.queues.resolve(vm_id, queue)
        if token is None:
            raise EmulatorError(f"no shared queue '{queue}' in vm '{vm_id}'", fix="register it in the filter first")
        q = self.queues.by_token[token]
        q.items.append(data)
        self.workers[q.worker].queue_ready(q, token)
        self.settle()

    def stats(self) -> dict[str, int]:
        """Counters and gauges by Envoy's name (`wasmcustom.<name>`)."""
        return self.metrics.snapshot()

    def log_messages(self, level: LogLevel | None = None) -> list[str]:
        return [line.message for line in self.logs if level is None or line.level == level]

    @property
    def crashes(self) -> list[WasmTrap]:
        return [t for w in self.workers for t in w.crashes]

    # --- events -----------------------------------------------------------------------------------------------

    def next_due(self) -> tuple[int, Callable[[], None]] | None:
        candidates: list[tuple[int, Callable[[], None]]] = []
        for w in self.workers:
            if w.usable and w.contexts:
                root = w.root
                if root.next_tick_ns is not None:
                    candidates.append((root.next_tick_ns, lambda w=w: self._tick(w)))  # type: ignore[misc]
            elif w.failed_at_ns is not None and self.plugin.failure_policy == "FAIL_RELOAD":
                pass  # Envoy restarts lazily, on the next stream after the back-off
        for call in self.callouts.calls:
            if not call.delivered:
                candidates.append((call.due_ns, lambda c=call: self.workers[c.worker].deliver(c)))  # type: ignore[misc]
        return min(candidates, key=lambda c: c[0]) if candidates else None

    def _tick(self, worker: Worker) -> None:
        root = worker.root
        if root.next_tick_ns is not None:
            root.next_tick_ns += root.tick_period_ns
        worker.tick()

    def settle(self) -> None:
        """Run what is due now: posted notifications, answers whose time has come, streams that may resume."""
        for _ in range(10_000):
            progressed = False
            while self._posted:
                self._posted.pop(0)()
                progressed = True
            for call in self.callouts.calls:
                if not call.delivered and call.due_ns <= self.clock.now_ns:
                    self.workers[call.worker].deliver(call)
                    progressed = True
            for w in self.workers:
                for stream in list(w.streams.values()):
                    if stream.reply_pending:  # a local reply sent from a callout answer or a tick
                        stream.send_local_reply()
                    if stream.can_run:
                        stream.run()
                        progressed = True
            if not progressed:
                return
        raise EmulatorError("the filter keeps producing events without end (10000 rounds)",
                            fix="check for a callout or queue loop in the filter")
