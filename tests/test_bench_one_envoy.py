"""The bench's one-Envoy phase (bench/one_envoy.py): the combined configuration real Envoy accepts, with one listener
per variant, and the arithmetic of its summary. tests/test_bench_smoke.py runs the phase for real."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO
from wasmfilter.bench import load_definition, probes
from wasmfilter.bench.one_envoy import LISTENER_PREFIX, combined_config, summarize
from wasmfilter.bench.runner import FLOOR, PROBE, _bootstrap, opt_wasm_path, variants_of
from wasmfilter.envoy.protocol import LISTENER
from wasmfilter.envoy.validate import validate_text

BENCH_FILES = sorted((REPO / "benchmarks").glob("*.yaml"))


@pytest.mark.parametrize("bench_file", BENCH_FILES, ids=[f.stem for f in BENCH_FILES])
def test_every_variant_of_a_bench_in_one_config_that_envoy_accepts(bench_file, tmp_path):
    d = load_definition(bench_file)
    # The floor module stands in for the filter and its size build (validate loads the module; any plugin
    # configuration is accepted by the floor): what is checked here is the combined configuration.
    wasm = tmp_path / "filter.wasm"
    wasm.write_bytes(probes.build(probes.FLOOR).read_bytes())
    opt_wasm_path(wasm).write_bytes(wasm.read_bytes())
    scenario = d.scenarios[0]
    variants = [v for v in variants_of(d) if scenario.applies_to(v.kind, v.name)]
    for v in variants:
        if v.kind == PROBE:
            probes.build(v.name.removeprefix("probe-") if v.name != FLOOR else probes.FLOOR)
    text = combined_config({v.name: _bootstrap(d, v, scenario, wasm) for v in variants})
    doc = yaml.safe_load(text)
    names = [listener["name"] for listener in doc["static_resources"]["listeners"]]
    assert names == [LISTENER] + [LISTENER_PREFIX + v.name for v in variants[1:]]
    clusters = [c["name"] for c in doc["static_resources"]["clusters"]]
    assert len(clusters) == len(set(clusters))  # each upstream once, though every variant defines it
    validate_text(text)  # raises ConfigInvalidError with Envoy's reason


def test_summary_pairs_each_cycle_with_no_filter_of_the_same_cycle():
    # cycle 2 is 10 µs slower for everyone (machine noise): paired differences do not see it
    cpu = {"baseline": [20.0, 30.0, 20.0], "wasm": [26.0, 36.0, 26.5], "floor": [23.0, 33.0, 23.0],
           "probe-get_header": [33.0, 43.0, 35.0], "native": [22.0, 32.0, 22.0]}
    s = summarize(cpu, baseline="baseline", wasm="wasm", floor="floor", probe_repeat={"probe-get_header": 10},
                  natives=["native"])
    assert s["cycles"] == 3
    assert s["variants"]["wasm"]["added_cpu_us_per_req"]["median"] == 6.0
    assert s["variants"]["wasm"]["added_cpu_us_per_req"]["q3"] == 6.25
    assert s["floor_added_cpu_us_per_req"] == 3.0 and s["added_cpu_multiple"] == 2.0
    assert s["probes"]["probe-get_header"]["median"] == 1.0      # (33 - 23) / 10, (43 - 33) / 10, (35 - 23) / 10
    assert s["cpu_efficiency_vs_native"]["native"]["median"] == pytest.approx(22 / 26, abs=1e-3)
    assert "probes" not in summarize(cpu, baseline="baseline", wasm="wasm", floor=None, probe_repeat={}, natives=[])


@pytest.mark.parametrize("wasm_us,ok", [([26.0, 26.0], True), ([30.0, 30.0], False)])
def test_the_floor_multiple_in_one_envoy_is_a_target_of_the_report(tmp_path, wasm_us, ok):
    from tests.test_bench import synthetic_doc
    from wasmfilter.bench.report import markdown

    # floor +3 µs, filter +6 (2.0x, the default target: met) or +10 (3.33x: missed)
    one = {"allowed": {"baseline": [20.0, 20.0], "wasm": wasm_us, "api_key_auth": [22.0, 22.0],
                       "floor": [23.0, 23.0]}}
    doc = synthetic_doc(tmp_path, one_envoy=one)
    (sc,) = doc["scenarios"]
    assert sc["targets"]["floor_multiple"]["ok"] is ok
    assert any("the floor's Envoy CPU per request in one Envoy" in m for m in doc["verdict"]["misses"]) is not ok
    md = markdown(doc)
    assert "**One Envoy**" in md and ("✅" if ok else "❌") + " allowed: added Envoy CPU per request =" in md
    assert "| allowed | floor | 23.0 | +3.0 (+3.0…+3.0) | 1.00x |" in md
