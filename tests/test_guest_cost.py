"""`wasmfilter profile` (bench/guest_cost.py): guest instructions and host calls per request on the emulator — the
floor's tiny known count, blank above it, the same numbers on every run, and bad input as one line."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FILTERS, REPO, assert_one_line_error, run_cli
from wasmfilter.bench import guest_cost, probes
from wasmfilter.bench.definition import load_definition
from wasmfilter.errors import BenchError, UsageError

BLANK_BENCH = REPO / "benchmarks" / "blank.yaml"


@pytest.fixture(scope="module")
def blank_build(pytestconfig):
    from wasmfilter.harness.pytest_plugin import cached_build

    return cached_build(pytestconfig, FILTERS / "blank")


def test_the_floor_module_costs_a_handful_of_instructions_and_no_host_call():
    floor = probes.build(probes.FLOOR)
    doc = guest_cost.profile(load_definition(BLANK_BENCH), floor, requests=5, warmup=1, floor=True).to_json()
    (sc,) = doc["scenarios"]
    # floor.wat: context_create is empty, request_headers/done return a constant, delete is empty.
    assert set(sc["instructions"]) == {"context_create", "request_headers", "done", "delete"}
    assert 1 <= sc["instructions_total"] <= 10, sc
    assert sc["host_calls"] == {} and sc["status"] == 200


@pytest.mark.parametrize("name", ["guest_work", "guest_code_wide"])
def test_the_guest_work_probes_run_the_instructions_they_claim(name):
    # The bench reads (probe - floor) / calls as the Envoy CPU of GUEST_WORK_INSTRUCTIONS guest instructions (one
    # function run 10 times, or 40 distinct functions run once each); the emulator's count holds that number to the
    # module (plus the probe loop's or the call's own ~10 per call).
    doc = guest_cost.profile(load_definition(BLANK_BENCH), probes.build(name), requests=2, warmup=1,
                             floor=True).to_json()
    (sc,) = doc["scenarios"]
    calls = probes.CATALOG[name].repeat
    per_call = sc["instructions"]["request_headers"] / calls
    assert probes.GUEST_WORK_INSTRUCTIONS <= per_call <= probes.GUEST_WORK_INSTRUCTIONS + 15, sc
    assert sc["host_calls"] == {}


def test_blank_costs_more_than_the_floor_and_counts_its_two_host_calls(blank_build):
    definition = load_definition(BLANK_BENCH)
    floor = guest_cost.profile(definition, probes.build(probes.FLOOR), requests=3, warmup=1, floor=True)
    blank = guest_cost.profile(definition, blank_build.wasm, requests=3, warmup=1)
    (f,), (b,) = floor.scenarios, blank.scenarios
    assert b.total > 50 * f.total
    assert b.host_calls == {"replace_header_map_value": 1.0, "increment_metric": 1.0}
    assert {"response_headers", "log", "delete"} <= set(b.instructions)
    assert blank.start_instructions > 0


def test_counts_are_the_same_on_every_run(blank_build):
    definition = load_definition(BLANK_BENCH)
    first = guest_cost.profile(definition, blank_build.wasm, requests=4, warmup=2).to_json()
    second = guest_cost.profile(definition, blank_build.wasm, requests=4, warmup=2).to_json()
    assert first == second


def test_a_scenario_answering_otherwise_than_the_bench_expects_is_refused(blank_build, tmp_path):
    bench = tmp_path / "benchmarks" / "blank.yaml"
    bench.parent.mkdir()
    bench.write_text(BLANK_BENCH.read_text().replace("filter: ../filters/blank", f"filter: {FILTERS / 'blank'}")
                     .replace("expect: {status: 200}", "expect: {status: 404}"))
    with pytest.raises(BenchError, match="expected 404 on the emulator, got 200"):
        guest_cost.profile(load_definition(bench), blank_build.wasm, requests=1, warmup=0)


def test_library_rejects_a_missing_module_and_an_unknown_scenario(tmp_path):
    definition = load_definition(BLANK_BENCH)
    with pytest.raises(UsageError, match="does not exist"):
        guest_cost.profile(definition, tmp_path / "none.wasm")
    with pytest.raises(UsageError, match="no scenario 'nope'"):
        guest_cost.profile(definition, probes.build(probes.FLOOR), only=["nope"], floor=True)


def test_cli_prints_plain_lines_and_writes_json(blank_build, tmp_path):
    out = tmp_path / "p.json"
    result = run_cli("profile", "--scenario", str(BLANK_BENCH), "--wasm", str(blank_build.wasm), "-n", "2",
                     "--warmup", "1", "--json", str(out))
    assert result.code == 0, result.stderr
    assert "blank: guest instructions and host calls per request" in result.stdout
    assert "increment_metric 1, replace_header_map_value 1" in result.stdout
    doc = json.loads(out.read_text())
    assert doc["filter"] == "blank" and doc["requests"] == 2 and doc["scenarios"][0]["name"] == "get"


@pytest.mark.parametrize("args, fragments", [
    (["--scenario", "benchmarks/nope.yaml"], ["scenario file", "nope.yaml", "does not exist"]),
    (["filters/nope"], ["filters/nope", "does not exist"]),
    (["filters/blank", "--only", "zz"], ["no scenario 'zz'"]),
    (["filters/blank", "--wasm", "/nonexistent.wasm"], ["/nonexistent.wasm"]),
])
def test_cli_bad_input_is_one_line(args, fragments):
    assert_one_line_error(run_cli("profile", *args), *fragments)


def test_the_markdown_section_has_one_row_per_scenario():
    doc = guest_cost.profile(load_definition(BLANK_BENCH), probes.build(probes.FLOOR), requests=1, warmup=0,
                             floor=True).to_json()
    lines = guest_cost.markdown(doc).splitlines()
    assert lines[2] == "| scenario | instr/req | context_create | request_headers | done | delete | host calls/req | " \
                       "host calls by name |"
    assert lines[4].startswith("| get | ") and len(lines) == 5


def test_a_bench_report_carries_the_profile_and_a_profile_failure_is_a_warning(tmp_path):
    from tests.test_bench import synthetic_doc
    from wasmfilter.bench.report import markdown
    from wasmfilter.bench.runner import _guest_profile

    doc = synthetic_doc(tmp_path)
    assert doc["guest_cost"] is None and "guest instructions" not in markdown(doc)
    doc["guest_cost"] = guest_cost.profile(load_definition(BLANK_BENCH), probes.build(probes.FLOOR), requests=1,
                                           warmup=0, floor=True).to_json()
    assert "blank: guest instructions and host calls per request" in markdown(doc)
    problems: list[str] = []
    assert _guest_profile(load_definition(BLANK_BENCH), tmp_path / "missing.wasm", problems) is None
    assert len(problems) == 1 and problems[0].startswith("guest profile (emulator) skipped:")
