"""Smoke test of `wasmfilter bench` itself: a real (short: 1 s per pass, 1 round, no warm-up) bench of the auth
filter through the command line — real Envoys, real wrk. It checks the outputs are produced and sane, not the
speed (speed targets live in docs/benchmarks.md, never in tests)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import AUTH, run_cli

pytestmark = pytest.mark.slow


def test_bench_auth_short_run(tmp_path, auth_build):
    out = tmp_path / "results"
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nkept as is\n")
    result = run_cli("bench", str(AUTH), "--duration", "1s", "--rounds", "1", "--warmup", "0", "--cycles", "2",
                     "--out", str(out), "--update-docs", str(docs))
    assert result.code == 0, result.stdout + result.stderr
    assert "1 round: no spread measured" in result.stderr  # one round is flagged as untrustworthy

    doc = json.loads((out / "auth.json").read_text())
    assert [v["name"] for v in doc["variants"]] == ["baseline", "wasm", "api_key_auth", "rbac", "floor"]
    assert {s["name"] for s in doc["scenarios"]} == {"allowed", "denied-missing", "denied-invalid"}
    for sc in doc["scenarios"]:
        for name, v in sc["variants"].items():
            assert v["rps"]["median"] > 0, (sc["name"], name)
            assert 0 < v["p50_us"]["median"] <= v["p90_us"]["median"] <= v["p99_us"]["median"], (sc["name"], name)
            assert v["unexpected_pct"] < 5, (sc["name"], name, v["unexpected_pct"])  # answered as expected
            assert len(v["rounds"]) == 1
        assert sc["wasm_vs_baseline"]["added_p50_us"]["median"] is not None
        assert set(sc["wasm_vs_native"]) == {"api_key_auth", "rbac"}
        # the floor (templates/probes/floor.wat) ran in the same round: the filter's cost is stated against it
        assert sc["variants"]["floor"]["rps"]["median"] > 0 and "added_cpu_multiple" in sc["wasm_vs_floor"]
        # every variant again in one Envoy, 2 cycles: a CPU figure per variant, the floor multiple from there
        one = sc["one_envoy"]
        assert one["cycles"] == 2 and set(one["variants"]) == set(sc["variants"])
        assert all(v["cpu_us_per_req"]["median"] > 1 for v in one["variants"].values()), one
        assert one["floor_added_cpu_us_per_req"] is not None and "added_cpu_multiple" in one
        assert set(one["cpu_efficiency_vs_native"]) == {"api_key_auth", "rbac"}
    for name, e in doc["envoy"].items():
        assert e["rss_loaded_mib"]["median"] > 10 and e["start_ms"]["median"] > 0, name
    # The Wasm filter really ran under load: its own counters moved.
    counters = {k: v for k, v in doc["wasm_stats_last_round"].items() if k.startswith("wasmcustom.")}
    assert sum(counters.values()) > 100, counters
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["cpu_model"]

    md = (out / "auth.md").read_text()
    assert "| allowed | wasm |" in md and "start→ready ms" in md and "![latency" in md
    assert "**One Envoy**" in md and "in one Envoy (paired slices)" in md
    png = (out / "auth.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nkept as is\n")
    assert "<!-- wasmfilter-bench:auth:start -->" in text and "| denied-invalid | rbac |" in text
    assert "](benchmarks/auth.png)" in text and (tmp_path / "benchmarks" / "auth.png").read_bytes() == png
    # plain output when not a TTY: the table is printed as text lines
    assert "scenario" in result.stdout and "req/s" in result.stdout
