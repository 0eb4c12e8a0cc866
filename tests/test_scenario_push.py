"""Scenario files that change the filter mid-file (`push:` steps, delivered over ECDS): before, after, and a bad
push rejected with the last good filter still serving — against one running Envoy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import AUTH, REPO
from wasmfilter.errors import ScenarioError
from wasmfilter.harness import scenario
from wasmfilter.harness.runner import run_scenarios

PUSHES = REPO / "tests" / "scenarios" / "auth_pushes.yaml"

pytestmark = pytest.mark.slow


@pytest.mark.docker
def test_push_steps_prove_before_after_and_rejected_on_both_backends(tmp_path: Path) -> None:
    # The pytest plugin collects a filter's scenario files: a file with push steps runs on one ECDS-fed Envoy per
    # backend; on docker the Envoy container reaches the xDS server on Docker's default bridge and reads the
    # mounted module store.
    manifest = yaml.safe_load((AUTH / "filter.yaml").read_text())
    (tmp_path / "filter.yaml").write_text(yaml.safe_dump({**manifest, "crate": str(AUTH)}))
    (tmp_path / "scenarios").mkdir()
    for name in (PUSHES.name, "not_a_module.wasm"):
        shutil.copyfile(PUSHES.parent / name, tmp_path / "scenarios" / name)
    env = {**os.environ, "WASMFILTER_BACKENDS": "process,docker"}
    proc = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-W", "ignore::DeprecationWarning"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "18 passed" in proc.stdout


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
