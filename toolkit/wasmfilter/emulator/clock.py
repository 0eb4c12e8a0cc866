"""The test clock: wall time (ns since the epoch) that only moves when the test says so (`host.advance(seconds)`),
what `proxy_get_current_time_nanoseconds` and WASI's realtime clock read; ticks (`proxy_set_tick_period_milliseconds`
on a root context) fire at their due times on it, in order, as the clock passes them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from wasmfilter.emulator.codes import Result

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost


class TestClock:
    __test__ = False  # not a pytest test class

    def __init__(self, start_ns: int | None = None):
        self.now_ns = time.time_ns() if start_ns is None else start_ns

    @property
    def now(self) -> float:
        return self.now_ns / 1e9


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory

    def get_current_time_nanoseconds(result_ptr: int) -> int:
        mem().write_u64(result_ptr, host.clock.now_ns)
        return Result.OK

    def set_tick_period_milliseconds(period_ms: int) -> int:
        ctx = host.context()
        root = ctx.worker.contexts.get(ctx.root_context_id) or ctx
        root.tick_period_ns = period_ms * 1_000_000
        root.next_tick_ns = host.clock.now_ns + root.tick_period_ns if period_ms else None
        return Result.OK

    return {"proxy_get_current_time_nanoseconds": get_current_time_nanoseconds,
            "proxy_set_tick_period_milliseconds": set_tick_period_milliseconds}
