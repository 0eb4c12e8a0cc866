"""`wasmfilter soak`: a short real soak of the ratelimit filter (a new bucket key per request) samples Envoy's RSS
and the Wasm memory and fits a slope; the leak gate fails above its threshold and passes below it; bad input is one
line. The long soaks are benchmarks (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FILTERS, run_cli
from wasmfilter.bench.soak import SoakResult, SoakSample, gate, save, slope_per_hour, soak
from wasmfilter.errors import SoakFailed

# A gross leak (e.g. 1 KiB kept per request at a few hundred requests/s) is > 1 GiB/hour; the warm-up of a fresh
# Envoy in the first seconds is far below that.
SHORT_GATE_MIB_PER_HOUR = 1000.0


def test_the_slope_is_a_least_squares_fit_in_mib_per_hour() -> None:
    assert slope_per_hour([(0, 10.0), (1800, 15.0), (3600, 20.0)]) == pytest.approx(10.0)
    assert slope_per_hour([(0, 10.0), (60, 9.0), (120, 10.0), (180, 9.0)]) < 0
    assert slope_per_hour([(5, 1.0)]) == 0.0


def test_a_short_soak_measures_and_the_gate_can_fail(tmp_path: Path) -> None:
    result = soak(FILTERS / "ratelimit", duration="15s", max_slope=SHORT_GATE_MIB_PER_HOUR)
    # Non-2xx are expected: once max_keys new keys arrive within idle_timeout_ms, new keys share the overflow bucket.
    assert result.requests > 100 and not any(n for kind, n in result.errors.items() if kind != "status")
    assert len(result.samples) >= 10 and all(s.rss_mib > 10 for s in result.samples)
    assert any(s.wasm_mib > 0 for s in result.samples)  # the VMs' linear memory was found in /proc/<pid>/smaps
    gate(result)  # the short run's own gate: fails on a gross leak
    measured = result.rss_slope_mib_per_hour
    for threshold, fails in ((measured + 1.0, False), (measured - 1.0, True)):
        result.max_slope_mib_per_hour = threshold
        if fails:
            with pytest.raises(SoakFailed, match="MiB/hour"):
                gate(result)
        else:
            gate(result)
    data, plot = save(result, tmp_path)
    assert data.is_file() and plot.stat().st_size > 1000


def test_a_leaking_series_fails_the_gate() -> None:
    leak = SoakResult("x", 60, max_slope_mib_per_hour=20.0,
                      samples=[SoakSample(t, 100 + t * 0.01, 1.0) for t in range(60)])
    leak.rss_slope_mib_per_hour = slope_per_hour([(s.seconds, s.rss_mib) for s in leak.samples])
    with pytest.raises(SoakFailed, match="36.0 MiB/hour"):
        gate(leak)


@pytest.mark.parametrize(("args", "message"), [
    (["--duration", "0s"], "invalid soak duration '0s'"),
    (["--duration", "ten"], "invalid soak duration 'ten'"),
])
def test_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("soak", str(FILTERS / "blank"), "--out", str(tmp_path), *args)
    assert result.code == 1 and result.error_line.startswith(f"error: {message}")
    assert not list(tmp_path.iterdir())
