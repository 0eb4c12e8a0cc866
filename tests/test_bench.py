"""`wasmfilter bench`: definitions, native fragments Envoy accepts, bad input, the arithmetic of the report.
The full bench is not part of the suite (see `make bench`); tests/test_bench_smoke.py runs a short real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import AUTH, REPO, assert_one_line_error, run_cli
from wasmfilter.bench import BenchError, apply_overrides, load_definition, parse_duration, resolve_definition
from wasmfilter.bench.definition import all_definitions
from wasmfilter.bench.report import stat, summarize, update_docs, write_outputs
from wasmfilter.bench.runner import BenchRun, EnvoySample, Sample, config_for, variants_of
from wasmfilter.bench.wrk import PERCENTILES, WrkResult, lua_script, lua_string, parse_output
from wasmfilter.envoy.binary import resolve
from wasmfilter.envoy.validate import validate_text
from wasmfilter.errors import ToolchainError, UsageError

BENCH_FILES = sorted((REPO / "benchmarks").glob("*.yaml"))


@pytest.mark.parametrize("text,seconds", [("3", 3), ("3s", 3), (" 2m ", 120), (5, 5), ("1sec", 1)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "0s", "-1", "1.5s", "abc", "", "3h", "601s", "1ms"])
def test_parse_duration_rejects(text):
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


def test_every_bench_file_loads_and_names_a_filter():
    assert BENCH_FILES, "benchmarks/ holds no bench definition"
    assert [f.name for f in all_definitions(REPO / "benchmarks")] == [f.name for f in BENCH_FILES]
    for f in BENCH_FILES:
        d = load_definition(f)
        assert d.manifest is not None and d.scenarios
        assert {v.kind for v in variants_of(d)} >= {"baseline", "wasm"}


def test_filter_dir_resolves_to_its_bench_file():
    d = resolve_definition(AUTH)
    assert d.path == (REPO / "benchmarks" / "auth.yaml").resolve()
    assert {n.name for n in d.natives} >= {"api_key_auth", "rbac"}
    assert {"allowed", "denied-missing", "denied-invalid"} <= {s.name for s in d.scenarios}


@pytest.mark.parametrize("bench_file", BENCH_FILES, ids=lambda p: p.stem)
def test_native_and_baseline_configs_pass_envoy_validate(bench_file):
    """Every native fragment (and the bench's direct-response route table) is a config real Envoy accepts."""
    d = load_definition(bench_file)
    for variant in variants_of(d):
        if variant.kind in ("wasm", "wasm-opt"):
            continue  # needs the built module; the smoke test starts it for real
        for config in {config_for(d, variant.name, s.name) for s in d.scenarios}:
            validate_text(config)  # raises ConfigInvalidError with Envoy's reason


def _write_def(tmp_path: Path, body: dict) -> Path:
    f = tmp_path / "x.yaml"
    f.write_text(yaml.safe_dump({"filter": str(AUTH), **body}))
    return f


@pytest.mark.parametrize("body,fragment", [
    ({"scenarios": []}, "scenarios"),
    ({"scenarios": [{"name": "a"}], "settingz": {}}, "settingz"),
    ({"scenarios": [{"name": "a"}, {"name": "a"}]}, "duplicate scenario"),
    ({"scenarios": [{"name": "a", "native_values": {"nope": {}}}]}, "unknown native"),
    ({"scenarios": [{"name": "a", "request": {"path": "no-slash"}}]}, "must start with '/'"),
    ({"scenarios": [{"name": "a"}], "settings": {"duration_s": "0s"}}, "duration"),
    ({"scenarios": [{"name": "a"}], "natives": [{"name": "n"}]}, "needs 'filters' or 'routes'"),
])
def test_bad_definitions_are_one_line_errors(tmp_path, body, fragment):
    with pytest.raises((BenchError, UsageError)) as info:
        load_definition(_write_def(tmp_path, body))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_definition_with_unknown_filter(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text(yaml.safe_dump({"filter": "no/such/filter", "scenarios": [{"name": "a"}]}))
    with pytest.raises(UsageError, match="has no filter.yaml"):
        load_definition(f)


def test_filter_without_bench_file_gets_a_default_bench(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "filter.yaml").write_text(f"name: mine\ncrate: {AUTH}\n")
    d = resolve_definition(tmp_path / "mine")
    assert d.path is None and d.name == "mine" and [s.name for s in d.scenarios] == ["get"] and not d.natives


def test_overrides_are_validated():
    d = resolve_definition(AUTH)
    apply_overrides(d, duration="2s", warmup="0", rounds=2, connections=4, concurrency=1)
    assert (d.settings.duration_s, d.settings.warmup_s, d.settings.rounds, d.settings.connections) == (2, 0, 2, 4)
    with pytest.raises(UsageError, match="--rounds"):
        apply_overrides(d, rounds=0)
    with pytest.raises(UsageError, match="--duration"):
        apply_overrides(d, duration="fast")


def test_lua_quoting_survives_hostile_values():
    assert lua_string('a"b\\c\nd') == '"a\\"b\\\\c\\010d"'
    script = lua_script(resolve_definition(AUTH).scenarios[0].request)
    assert 'wrk.headers["x-api-key"] = "alice-secret"' in script and "done = function" in script


def test_wrk_output_without_result_line_is_an_error():
    with pytest.raises(BenchError, match="no result line"):
        parse_output("Running 1s test @ http://127.0.0.1:1\n")


def test_stat_spread():
    s = stat([100.0, 110.0, 90.0])
    assert (s["median"], s["min"], s["max"], s["spread_pct"]) == (100.0, 90.0, 110.0, 20.0)
    assert stat([5.0])["spread_pct"] is None and stat([])["median"] is None


def _wrk(p50: int, p99: int, rps: float, non_2xx: int = 0) -> WrkResult:
    pcts = {float(p): p50 if p <= 50 else p99 for p in PERCENTILES}
    return WrkResult(requests=int(rps), seconds=1.0, mean_us=p50, stdev_us=1.0, min_us=p50, max_us=p99,
                     errors={"connect": 0, "read": 0, "write": 0, "status": non_2xx, "timeout": 0},
                     percentiles=pcts)


def synthetic_doc(tmp_path: Path, one_envoy: dict[str, dict[str, list[float]]] | None = None) -> dict:
    """A BenchRun from known numbers (no load): baseline 50 µs / 20k rps, wasm 70 µs / 15k, native 55 µs / 19k;
    round 2 of wasm is 30% slower (spread)."""
    d = resolve_definition(AUTH)
    apply_overrides(d, rounds=2)
    d.settings = d.settings.model_copy(update={"compare_opt": False})
    d.natives = d.natives[:1]
    d.scenarios = d.scenarios[:1]
    variants = variants_of(d)
    run = BenchRun(d, variants, resolve(), tmp_path / "auth.wasm", 1234,
                   samples={"allowed": {"baseline": [Sample(0, _wrk(50, 100, 20000), _wrk(400, 900, 20000), 0),
                                                     Sample(1, _wrk(50, 100, 20000), _wrk(400, 900, 20000), 0)],
                                        "wasm": [Sample(0, _wrk(70, 130, 15000), _wrk(500, 990, 15000), 0),
                                                 Sample(1, _wrk(91, 150, 10500), _wrk(600, 1200, 10500), 0)],
                                        "api_key_auth": [Sample(0, _wrk(55, 110, 19000), _wrk(420, 900, 19000), 0),
                                                         Sample(1, _wrk(55, 110, 19000), _wrk(420, 900, 19000), 0)],
                                        "floor": [Sample(0, _wrk(54, 104, 19500), _wrk(410, 900, 19500), 0),
                                                  Sample(1, _wrk(56, 106, 19500), _wrk(410, 900, 19500), 0)]}},
                   envoy={"baseline": [EnvoySample(0, 0.08, 64000, 65000), EnvoySample(1, 0.09, 64000, 65000)],
                          "wasm": [EnvoySample(0, 0.25, 94000, 96000), EnvoySample(1, 0.27, 94000, 96000)],
                          "api_key_auth": [EnvoySample(0, 0.09, 64000, 65100), EnvoySample(1, 0.08, 64000, 65100)],
                          "floor": [EnvoySample(0, 0.09, 65000, 66000), EnvoySample(1, 0.10, 65000, 66000)]},
                   vm_start_cpu={"baseline": [50.0, 60.0], "wasm": [250.0, 300.0], "api_key_auth": [52.0, 61.0],
                                 "floor": [51.0, 60.0]})
    for name, us_per_req in (("baseline", 20.0), ("wasm", 30.0), ("api_key_auth", 24.0), ("floor", 25.0)):
        for sample in run.samples["allowed"][name]:
            sample.cpu_ns = int(us_per_req * 1000 * sample.throughput.requests)
    run.one_envoy = one_envoy or {}
    return summarize(run)


def test_report_arithmetic(tmp_path):
    doc = synthetic_doc(tmp_path)
    sc = doc["scenarios"][0]
    assert sc["wasm_vs_baseline"]["added_p50_us"]["median"] == 30.5      # per-round pairs: 20 and 41
    assert sc["variants"]["wasm"]["p50_us"]["spread_pct"] == pytest.approx(26.1, abs=0.1)
    assert sc["wasm_vs_native"]["api_key_auth"]["rps_ratio"]["median"] == pytest.approx((15 / 19 + 10.5 / 19) / 2,
                                                                                         abs=0.01)
    assert sc["wasm_vs_baseline"]["added_cpu_us_per_req"]["median"] == pytest.approx(10.0, abs=0.01)
    assert sc["wasm_vs_native"]["api_key_auth"]["cpu_efficiency_ratio"]["median"] == pytest.approx(0.8, abs=0.01)
    assert not doc["verdict"]["ok"] and len(doc["verdict"]["misses"]) == 2
    assert any("spread" in w and "allowed/wasm" in w for w in doc["warnings"])
    floor = sc["wasm_vs_floor"]   # the floor adds 5 µs CPU, the filter 10: 2x the floor
    assert floor["floor_added_cpu_us_per_req"]["median"] == pytest.approx(5.0, abs=0.01)
    assert floor["added_cpu_multiple"] == pytest.approx(2.0, abs=0.01) and floor["floor_added_p50_us"]["median"] == 5
    assert doc["envoy"]["wasm"]["start_delta_ms"]["median"] == pytest.approx(175, abs=1)
    assert doc["envoy"]["wasm"]["rss_delta_mib"]["median"] == pytest.approx(31000 / 1024, abs=0.1)
    assert doc["envoy"]["wasm"]["load_cpu_delta_ms"]["median"] == pytest.approx(220, abs=0.1)  # pairs: 200, 240
    paths = write_outputs(doc, tmp_path / "out")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "| allowed | wasm | 80 |" in md and "❌ allowed: added p50 = 30.5 µs" in md
    assert "| +10.0 | 2.00x |" in md and "2.00x the floor (a bare no-op module, which adds 5.0 µs" in md
    assert "VM start adds 175 ms (+220 ms of Envoy CPU)" in md
    assert "Before/after" not in md   # no --before: no before/after table
    assert json.loads(paths["json"].read_text())["filter"] == "auth"


def test_update_docs_touches_only_its_section(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nintro by someone else\n\n<!-- wasmfilter-bench:auth:start -->\nold\n"
                    "<!-- wasmfilter-bench:auth:end -->\n\ntrailer\n")
    doc = synthetic_doc(tmp_path)
    update_docs(doc, docs)
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nintro by someone else\n") and text.endswith("\ntrailer\n")
    assert "old" not in text and "| allowed | wasm |" in text
    update_docs(doc, docs)
    assert docs.read_text() == text  # idempotent
    docs.write_text("<!-- wasmfilter-bench:auth:start -->\nno end\n")
    with pytest.raises(UsageError, match="markers"):
        update_docs(doc, docs)
    assert docs.read_text() == "<!-- wasmfilter-bench:auth:start -->\nno end\n"


# ---- bad input through the real command line: one line, non-zero, nothing written

def test_cli_unknown_filter_path(tmp_path):
    result = run_cli("bench", "/no/such/filter", "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "'/no/such/filter' does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,fragment", [
    (["--duration", "0"], "invalid --duration '0'"),
    (["--duration", "1.5s"], "invalid --duration '1.5s'"),
    (["--warmup", "-3"], "invalid --warmup '-3'"),
    (["--rounds", "0"], "invalid --rounds 0"),
    (["--cycles", "-1"], "invalid --cycles -1"),
    (["--before", "/no/such.wasm"], "--before /no/such.wasm: no such file or directory"),
])
def test_cli_invalid_settings(tmp_path, args, fragment):
    result = run_cli("bench", str(AUTH), "--out", str(tmp_path / "out"), *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_cli_path_and_all_conflict():
    assert_one_line_error(run_cli("bench", str(AUTH), "--all"), "not both")


def test_cli_missing_wrk(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_cli("bench", str(AUTH), "--out", str(tmp_path / "out"), env={"PATH": str(empty)})
    assert_one_line_error(result, "wrk", "apt-get install wrk", "make toolchain")
    assert not (tmp_path / "out").exists()


def test_find_wrk_error_type(monkeypatch, tmp_path):
    from wasmfilter.bench.wrk import find_wrk

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError):
        find_wrk()


def test_idle_spinners_start_at_idle_priority_and_stop():
    """keep_cpus_awake: real SCHED_IDLE busy loops, one per CPU used, all gone after stop."""
    import os
    import time

    from wasmfilter.bench.runner import Tuning

    tuning = Tuning(envoy_cpus={0}, wrk_cpus=set())
    spinners = tuning.start_spinners()
    try:
        assert len(spinners) == 1 and tuning.spinning == [0]
        for proc in spinners:
            deadline = time.monotonic() + 5
            while os.sched_getscheduler(proc.pid) != os.SCHED_IDLE and time.monotonic() < deadline:
                pass  # the child sets its own policy right after it starts: poll the real state
            assert os.sched_getscheduler(proc.pid) == os.SCHED_IDLE
            assert os.sched_getaffinity(proc.pid) == {0}
    finally:
        Tuning.stop_spinners(spinners)
    assert all(proc.poll() is not None for proc in spinners)


def test_from_json_rerenders_without_measuring(tmp_path):
    doc = synthetic_doc(tmp_path)
    saved = write_outputs(doc, tmp_path / "first")["json"]
    docs = tmp_path / "docs" / "benchmarks.md"
    docs.parent.mkdir()
    docs.write_text("# mine\n")
    result = run_cli("bench", "--from-json", str(saved), "--out", str(tmp_path / "again"), "--update-docs", str(docs))
    assert result.code == 0, result.stdout + result.stderr
    assert (tmp_path / "again" / "auth.md").read_text() == (tmp_path / "first" / "auth.md").read_text()
    slim = json.loads((tmp_path / "docs" / "benchmarks" / "auth.json").read_text())
    assert set(slim["scenarios"][0]["variants"]["wasm"]["rounds"][0]["latency"]["percentiles"]) == {
        "50.0", "90.0", "99.0", "99.9"}
    assert docs.read_text().startswith("# mine\n") and "](benchmarks/auth.png)" in docs.read_text()


def test_from_json_rejects_other_files(tmp_path):
    other = tmp_path / "x.json"
    other.write_text('{"schema": 99}')
    assert_one_line_error(run_cli("bench", "--from-json", str(other)), "not a wasmfilter bench result")
    other.write_text("not json")
    assert_one_line_error(run_cli("bench", "--from-json", str(other)), "is not JSON")


def test_vm_start_cpu_is_envoys_own_and_a_bad_config_names_the_reason():
    from wasmfilter.bench import probes, vm_start
    from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
    from wasmfilter.errors import ConfigInvalidError

    binary = resolve()
    upstreams = [Upstream("backend", "127.0.0.1", 9)]
    floor = WasmFilter(name="probe", wasm_path=str(probes.build("floor")), plugin_config="", root_id="probe",
                       vm_id="probe").fragment()
    configs = {"baseline": Bootstrap(upstreams=upstreams).render(),
               "floor": Bootstrap(upstreams=upstreams, http_filters=[floor]).render()}
    found = vm_start.measure(configs, binary, runs=2)
    assert all(len(v) == 2 and all(ms > 0 for ms in v) for v in found.values()), found
    assert vm_start.deltas(found, "baseline")["baseline"] == [0.0, 0.0]
    broken = configs["floor"].replace(str(probes.build("floor")), "/nonexistent/floor.wasm")
    assert broken != configs["floor"]
    with pytest.raises(ConfigInvalidError) as e:
        vm_start.load_cpu_ms(broken, binary)
    assert "\n" not in e.value.problem and "VM start" in e.value.problem


def test_before_variant_is_compared_with_the_build_measured(tmp_path):
    d = resolve_definition(AUTH)
    old = tmp_path / "old.wasm"
    old.write_bytes(b"\0asm" + bytes(1996))   # 2,000 bytes: the before build's size is read from the file
    apply_overrides(d, rounds=2, before=old)
    d.settings = d.settings.model_copy(update={"compare_opt": False, "floor": False})
    d.natives, d.scenarios = [], d.scenarios[:1]
    variants = variants_of(d)
    assert [v.name for v in variants] == ["baseline", "wasm", "wasm-before"]
    assert d.scenarios[0].expect.for_variant("wasm-before", "wasm-before") == d.scenarios[0].expect.status
    same = [Sample(r, _wrk(50, 100, 20000), _wrk(400, 900, 20000), 0) for r in (0, 1)]
    run = BenchRun(d, variants, resolve(), tmp_path / "auth.wasm", 1234,
                   samples={"allowed": {"baseline": same,
                                        "wasm": [Sample(r, _wrk(60, 100, 20000), _wrk(400, 900, 20000), 0)
                                                 for r in (0, 1)],
                                        "wasm-before": [Sample(r, _wrk(75, 100, 20000), _wrk(400, 900, 20000), 0)
                                                        for r in (0, 1)]}},
                   envoy={n: [EnvoySample(0, 0.1, 64000, 65000), EnvoySample(1, 0.1, 64000, 65000)]
                          for n in ("baseline", "wasm", "wasm-before")},
                   vm_start_cpu={"baseline": [50.0, 60.0], "wasm": [150.0, 160.0], "wasm-before": [250.0, 270.0]})
    for name, us_per_req in (("baseline", 20.0), ("wasm", 26.0), ("wasm-before", 31.0)):
        for sample in run.samples["allowed"][name]:
            sample.cpu_ns = int(us_per_req * 1000 * sample.throughput.requests)
    doc = summarize(run)
    before = doc["scenarios"][0]["before_vs_baseline"]
    assert before["added_cpu_us_per_req"]["median"] == pytest.approx(11.0, abs=0.01)
    assert before["cpu_vs_default_build_us"]["median"] == pytest.approx(5.0, abs=0.01)
    assert before["added_p50_us"]["median"] == 25
    md = write_outputs(doc, tmp_path / "out")["markdown"].read_text()
    assert "| +25 | +11.0 |  | +5.00 µs CPU/req vs wasm |" in md
    # One before/after table: module bytes, VM start and per-request cost of both builds, and the change.
    assert doc["builds"] == {"wasm-before": {"path": str(old), "size_bytes": 2000}}
    assert "|  | wasm | wasm-before | wasm vs wasm-before |" in md
    assert "| module bytes | 1,234 | 2,000 | -38 % |" in md
    assert "| VM start CPU Δ ms | +100 | +205 | -105 ms |" in md
    assert "| allowed: added CPU µs/req (rounds) | +6.0 | +11.0 | -5.0 µs |" in md
    # Read in one Envoy when that phase ran.
    run.one_envoy = {"allowed": {"baseline": [20.0, 21.0, 20.0], "wasm": [27.0, 28.0, 27.0],
                                 "wasm-before": [33.0, 33.0, 32.0]}}
    md = write_outputs(summarize(run), tmp_path / "out2")["markdown"].read_text()
    assert "| allowed: added CPU µs/req (one Envoy) | +7.0 | +12.0 | -5.0 µs |" in md


def test_before_directory_without_the_module_is_one_line(tmp_path):
    empty = tmp_path / "before"
    empty.mkdir()
    result = run_cli("bench", str(REPO / "filters" / "blank"), "--before", str(empty), "--rounds", "1",
                     "--out", str(tmp_path / "out"))
    assert_one_line_error(result, f"--before: no module '{empty / 'blank.wasm'}' for blank", "blank.wasm")
    assert not (tmp_path / "out").exists()
