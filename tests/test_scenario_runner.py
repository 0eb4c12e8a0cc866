"""Scenario files through a real Envoy: failures show the diff, the filter's log lines and Envoy's log tail,
in `wasmfilter test`, in JUnit XML and in pytest."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import AUTH, run_cli
from wasmfilter.errors import ScenarioError
from wasmfilter.harness import scenario

pytest_plugins = ["pytester"]

FAILING = """
cases:
  - name: passes
    request: {path: /, headers: {x-api-key: alice-secret}}
    expect: {status: 200, upstream: {headers: {x-auth-identity: alice}}}
  - name: wrong expectations
    request: {path: /secret}
    expect:
      status: 200
      headers: {x-nope: "1"}
      upstream: {headers: {x-auth-identity: alice}}
      stats: {wasmcustom.wasmfilter_auth.denied: 5}
"""


def filter_copy(tmp_path: Path, scenario_text: str) -> Path:
    """A filter directory using the auth crate and manifest, with its own scenario file."""
    root = tmp_path / "probe"
    (root / "scenarios").mkdir(parents=True)
    manifest = (AUTH / "filter.yaml").read_text().replace("crate: .", f"crate: {AUTH}")
    (root / "filter.yaml").write_text(manifest)
    (root / "scenarios" / "cases.yaml").write_text(scenario_text)
    return root


def test_cli_reports_diff_logs_and_junit(tmp_path):
    root = filter_copy(tmp_path, FAILING)
    junit = tmp_path / "report.xml"
    result = run_cli("test", str(root), "--junit", str(junit))
    assert result.code == 1
    out = result.stdout
    assert "PASS cases.yaml :: passes" in out
    assert "FAIL cases.yaml :: wrong expectations" in out
    assert "status: expected 200, got 401" in out
    assert "response header 'x-nope': expected '1', got None" in out
    assert "upstream: expected the request to reach the echo upstream" in out
    assert "stat 'wasmcustom.wasmfilter_auth.denied': expected +5, got +1" in out
    assert "filter log:" in out and "][wasm]" in out
    assert "Envoy log tail:" in out
    assert "1 passed, 1 failed" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.findall("testcase")[1].find("failure")
    assert failure.get("message") == "status: expected 200, got 401"


def test_pytest_plugin_collects_and_explains(tmp_path, pytester):
    root = filter_copy(tmp_path, FAILING)
    result = pytester.runpytest(str(root), "-p", "no:cacheprovider", "--wasmfilter-backend", "process")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*scenario case 'wrong expectations' (cases.yaml) failed:*",
                                 "*status: expected 200, got 401*", "*filter log:*", "*Envoy log tail:*"])


def test_config_the_filter_refuses_fails_every_case_with_the_reason(tmp_path):
    root = filter_copy(tmp_path, "config_patch: {bogus: 1}\ncases:\n  - name: any\n    expect: {status: 200}\n")
    result = run_cli("test", str(root))
    assert result.code == 1
    assert "stack did not start" in result.stdout and "unknown field `bogus`" in result.stdout


def test_repeat_parallel_and_status_counts(tmp_path):
    text = """
concurrency: 2
cases:
  - name: many allowed
    request: {path: /, headers: {x-api-key: bob-secret}}
    repeat: 40
    parallel: 4
    expect: {status_counts: {200: 40}, upstream: {headers: {x-auth-identity: bob}},
             stats: {wasmcustom.wasmfilter_auth.allowed: 40}}
"""
    result = run_cli("test", str(filter_copy(tmp_path, text)))
    assert result.code == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout


def test_malformed_scenarios_are_named(tmp_path):
    bad = tmp_path / "s.yaml"
    for text, fragment in [("cases: []\n", "field 'cases'"),
                           ("cases:\n  - name: x\n    request: {path: nope}\n", "field 'cases.0.request.path'"),
                           ("- just a list\n", "must be a mapping"),
                           ("cases:\n  - request: {}\n", "field 'cases.0.name'")]:
        bad.write_text(text)
        with pytest.raises(ScenarioError, match=fragment.replace(".", r"\.")):
            scenario.load(bad)
