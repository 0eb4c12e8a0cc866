"""One Envoy worker's copy of the plugin: its VM (started like cpp-host starts one: `_initialize` or `_start`, the
root context created with `proxy_on_context_create(root, 0)`, `proxy_on_vm_start`, `proxy_on_configure` with the
plugin configuration), its contexts (root id 1, streams from 2), and what happens when its VM fails under the
failure policy: FAIL_CLOSED answers 503 to every later stream, FAIL_OPEN skips the filter, FAIL_RELOAD starts a fresh
VM on the first stream after the back-off (measured on the test clock)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasmfilter.emulator.context import Context
from wasmfilter.emulator.vm import Vm
from wasmfilter.errors import EmulatorError, WasmTrap

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost
    from wasmfilter.emulator.http_call import Call
    from wasmfilter.emulator.queues import Queue
    from wasmfilter.emulator.stream import Stream

ROOT_CONTEXT_ID = 1


class Worker:
    def __init__(self, host: FilterHost, index: int):
        self.host = host
        self.index = index
        self.vm: Vm | None = None
        self.contexts: dict[int, Context] = {}
        self.streams: dict[int, Stream] = {}
        self.effective: int | None = None
        self.current: int = 0
        self.failed_at_ns: int | None = None
        self.crashes: list[WasmTrap] = []
        self.starts = 0
        self._next_id = ROOT_CONTEXT_ID

    # --- VM start -------------------------------------------------------------------------------------------

    def start(self) -> None:
        host = self.host
        self.contexts.clear()
        self.streams.clear()
        self._next_id = ROOT_CONTEXT_ID
        self.failed_at_ns = None
        self.starts += 1
        self.vm = Vm(host.module, host.linker, host.limits, host.panic_message, cache=host.cache)
        for init in ("_initialize", "_start"):
            if self.vm.has(init):
                self._call(None, init)
                break
        if self.vm.has("main") and not self.vm.has("_initialize") and not self.vm.has("_start"):
            self._call(None, "main", 0, 0)
        root = self._new_context(0)
        self._call(root, "proxy_on_context_create", root.id, 0)
        ok = self._call(root, "proxy_on_vm_start", root.id, len(host.plugin.vm_configuration))
        if ok == 0:
            raise EmulatorError("the module's proxy_on_vm_start returned false, so Envoy would not start the VM",
                                fix="see the filter's log lines", detail=host.log_text())
        root.plugin_configuration = host.plugin.configuration
        try:
            ok = self._call(root, "proxy_on_configure", root.id, len(host.plugin.configuration))
        finally:
            root.plugin_configuration = None
        if ok == 0:
            errors = [line.message for line in host.logs if line.level >= 3 and line.worker == self.index]
            why = f": {errors[-1]}" if errors else ""
            raise EmulatorError(f"the filter refused its configuration (proxy_on_configure returned false){why}",
                                fix="correct the plugin configuration (Envoy refuses it the same way)",
                                detail=host.log_text())

    def _new_context(self, root_id: int, stream: Stream | None = None) -> Context:
        ctx = Context(self, self._next_id, root_id, stream)
        self.contexts[ctx.id] = ctx
        self._next_id += 1
        return ctx

    @property
    def root(self) -> Context:
        return self.contexts[ROOT_CONTEXT_ID]

    def _call(self, ctx: Context | None, name: str, *args: int) -> int | None:
        """Call NAME with CTX current; traps propagate (start-up) — streams use call_http."""
        assert self.vm is not None
        host = self.host
        previous = (host.active, self.current, self.effective)
        host.active = self
        self.current = ctx.id if ctx is not None else 0
        self.effective = None
        host.call_log_start = len(host.logs)
        try:
            result = self.vm.call(name, *args)
            if host.meter is not None and self.vm.has(name):
                host.meter.callback(name, self.vm.fuel_used())
            return result
        finally:
            host.active, self.current, self.effective = previous

    # --- streams --------------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.vm is not None and self.vm.failed is None

    def admit(self, stream: Stream) -> bool:
        """Before a stream's first callback: restart a failed VM whose back-off passed (FAIL_RELOAD); decide
        what a failed VM does to this stream. True when the filter runs for it."""
        policy = self.host.plugin.failure_policy
        if not self.usable and policy == "FAIL_RELOAD" and self.failed_at_ns is not None and \
                self.host.clock.now_ns >= self.failed_at_ns + int(self.host.plugin.reload_backoff_s * 1e9):
            self.start()
        if self.usable:
            return True
        if policy == "FAIL_OPEN":
            stream.filter_skipped = True
            return False
        stream.response = self.host.failure_response()
        stream.finished = True
        return False

    def create_http_context(self, stream: Stream) -> None:
        if not self.admit(stream):
            return
        ctx = self._new_context(ROOT_CONTEXT_ID, stream)
        stream.context_id = ctx.id
        self.streams[ctx.id] = stream
        self.call_http(stream, "proxy_on_context_create", ROOT_CONTEXT_ID)
        stream.created = stream.trap is None

    def call_http(self, stream: Stream, name: str, *args: int) -> int | None:
        ctx = self.contexts.get(stream.context_id)
        if ctx is None or self.vm is None:
            return None
        try:
            return self._call(ctx, name, stream.context_id, *args)
        except WasmTrap as trap:
            self.crashed(trap)
            stream.fail(trap)
            return None

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.context_id, None)
        self.contexts.pop(stream.context_id, None)

    def crashed(self, trap: WasmTrap) -> None:
        if self.failed_at_ns is None:
            self.failed_at_ns = self.host.clock.now_ns
            self.crashes.append(trap)
        for other in list(self.streams.values()):  # streams waiting on this VM cannot resume
            if not other.finished and other.trap is None:
                other.fail(trap)

    # --- root-context events: ticks, callout answers, queues --------------------------------------------------

    def _root_call(self, name: str, *args: int) -> None:
        if not self.usable:
            return
        try:
            self._call(self.root, name, ROOT_CONTEXT_ID, *args)
        except WasmTrap as trap:
            self.crashed(trap)
            self.host.root_traps.append(trap)

    def tick(self) -> None:
        self._root_call("proxy_on_tick")

    def deliver(self, call: Call) -> None:
        call.delivered = True
        if not self.usable or call.root_context_id not in self.contexts:
            return
        root = self.contexts[call.root_context_id]
        answer = call.answer
        root.callout = call
        try:
            if call.kind == "http":
                if answer is None or answer.reset:
                    self._root_call("proxy_on_http_call_response", call.token, 0, 0, 0)
                else:
                    nheaders = len(answer.headers) + 2  # :status and content-length
                    self._root_call("proxy_on_http_call_response", call.token, nheaders, len(answer.body),
                                    len(answer.trailers))
            elif answer is not None and answer.grpc_status == 0 and not answer.reset:
                self._root_call("proxy_on_grpc_receive", call.token, len(answer.body))
            else:
                status = 14 if answer is None or answer.reset else answer.grpc_status  # 14: UNAVAILABLE
                self._root_call("proxy_on_grpc_close", call.token, status)
        finally:
            root.callout = None

    def queue_ready(self, queue: Queue, token: int) -> None:
        if self.usable and queue.context_id in self.contexts:
            self._root_call("proxy_on_queue_ready", token)
