"""Metrics as Envoy keeps them (`Context::defineMetric` and friends): a counter, gauge or histogram per name under
the `wasmcustom.` prefix, ids that carry their type in the low two bits (counters 4, 8, …; gauges 5, 9, …;
histograms 6, 10, …), counters that only grow (increment by ≤ 0 is BadArgument), gauges that go both ways,
histograms that record and cannot be read; shared by every worker's VM like Envoy's stats store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from wasmfilter.emulator.codes import MetricType, Result

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost

PREFIX = "wasmcustom."
_MASK = 0x3
_STEP = 0x4


class Metrics:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.types: dict[str, MetricType] = {}
        self.histograms: dict[str, list[int]] = {}
        self._ids: dict[int, str] = {}
        self._next = {t: int(t) for t in MetricType}

    def define(self, kind: int, name: str) -> int | None:
        if kind > max(MetricType):
            return None
        mtype = MetricType(kind)
        self._next[mtype] += _STEP
        metric_id = self._next[mtype]
        stat = PREFIX + name
        self._ids[metric_id] = stat
        self.types.setdefault(stat, mtype)
        if mtype == MetricType.HISTOGRAM:
            self.histograms.setdefault(stat, [])
        else:
            self.values.setdefault(stat, 0)
        return metric_id

    def _find(self, metric_id: int) -> tuple[MetricType, str] | None:
        stat = self._ids.get(metric_id)
        return None if stat is None else (MetricType(metric_id & _MASK), stat)

    def increment(self, metric_id: int, offset: int) -> Result:
        found = self._find(metric_id)
        if found is None:
            return Result.NOT_FOUND
        mtype, stat = found
        if mtype == MetricType.COUNTER:
            if offset <= 0:
                return Result.BAD_ARGUMENT
            self.values[stat] += offset
            return Result.OK
        if mtype == MetricType.GAUGE:
            self.values[stat] += offset
            return Result.OK
        return Result.BAD_ARGUMENT

    def record(self, metric_id: int, value: int) -> Result:
        found = self._find(metric_id)
        if found is None:
            return Result.NOT_FOUND
        mtype, stat = found
        if mtype == MetricType.COUNTER:
            self.values[stat] += value
        elif mtype == MetricType.GAUGE:
            self.values[stat] = value
        else:
            self.histograms[stat].append(value)
        return Result.OK

    def get(self, metric_id: int) -> int | None:
        found = self._find(metric_id)
        if found is None or found[0] == MetricType.HISTOGRAM:
            return None
        return self.values[found[1]]

    def snapshot(self) -> dict[str, int]:
        """Counters and gauges by their Envoy name (`wasmcustom.<name>`), as the admin API's /stats lists them."""
        return dict(self.values)


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory
    metrics = host.metrics

    def define_metric(kind: int, name_ptr: int, name_size: int, id_ptr: int) -> int:
        metric_id = metrics.define(kind, mem().read(name_ptr, name_size).decode("utf-8", "replace"))
        if metric_id is None:
            return Result.BAD_ARGUMENT
        mem().write_u32(id_ptr, metric_id)
        return Result.OK

    def increment_metric(metric_id: int, offset: int) -> int:
        return metrics.increment(metric_id, offset)

    def record_metric(metric_id: int, value: int) -> int:
        return metrics.record(metric_id, value & 0xFFFFFFFFFFFFFFFF)

    def get_metric(metric_id: int, result_ptr: int) -> int:
        found = metrics._find(metric_id)
        if found is None:
            return Result.NOT_FOUND
        value = metrics.get(metric_id)
        if value is None:
            return Result.BAD_ARGUMENT
        mem().write_u64(result_ptr, value)
        return Result.OK

    return {"proxy_define_metric": define_metric, "proxy_increment_metric": increment_metric,
            "proxy_record_metric": record_metric, "proxy_get_metric": get_metric}
