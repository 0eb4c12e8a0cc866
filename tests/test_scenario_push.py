"""Scenario files that change the filter mid-file (`push:` steps, delivered over ECDS): before, after, and a bad
push rejected with the last good filter still serving — against one running Envoy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import AUTH, REPO
from wasmfilter.errors import ScenarioError
from wasmfilter.harness import scenario
from wasmfilter.harness.runner import run_scenarios

PUSHES = REPO / "tests" / "scenarios" / "auth_pushes.yaml"

pytestmark = pytest.mark.slow


def test_push_steps_prove_before_after_and_rejected() -> None:
    report = run_scenarios(AUTH, files=[PUSHES])
    assert [r.problems for r in report.results if r.problems] == []
    assert len(report.results) == 9 and report.ok


def test_a_push_that_does_not_get_the_expected_answer_fails_the_step(tmp_path: Path) -> None:
    bad = tmp_path / "wrong.yaml"
    bad.write_text("cases:\n"
                   "  - name: expected an ACK\n"
                   "    push: {config_patch: {no_such_field: 1}}\n"
                   "  - name: expected a NACK\n"
                   "    push: {config_patch: {default_require: public}, expect: nack}\n"
                   "  - name: missing module\n"
                   "    push: {module: nowhere.wasm}\n"
                   "  - name: the last good filter serves\n"
                   "    request: {path: /orders}\n"
                   "    expect: {status: 200}\n")
    results = run_scenarios(AUTH, files=[bad]).results
    problems = {r.name: r.problems for r in results}
    assert problems["expected an ACK"][0].startswith("push: expected an ACK, Envoy rejected it: Envoy rejected auth")
    assert problems["expected a NACK"][0].startswith("push: expected a NACK, Envoy accepted version")
    assert "nowhere.wasm cannot be read" in problems["missing module"][0]
    assert problems["the last good filter serves"] == []  # the NACKed and missing pushes changed nothing


def test_a_push_step_with_a_request_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "mixed.yaml"
    bad.write_text("cases:\n  - name: both\n    push: {config: {}}\n    request: {path: /}\n")
    with pytest.raises(ScenarioError, match="a push step has only a name and push"):
        scenario.load(bad)


def test_push_steps_on_the_docker_backend_fail_with_the_reason() -> None:
    results = run_scenarios(AUTH, files=[PUSHES], backend="docker").results
    assert results and all("runs on the process backend" in r.problems[0] for r in results)
