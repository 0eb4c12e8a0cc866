"""A filter directory copied out of the workspace still builds and passes its scenarios (build/standalone.py): a copy
of filters/auth in a temporary directory — whose Cargo.toml inherits the workspace's keys and reaches `common` through
it — is built in a generated workspace, without a byte of the copy changing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import AUTH, FILTERS
from wasmfilter.build import standalone
from wasmfilter.build.cargo import build
from wasmfilter.harness.runner import run_scenarios


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def auth_copy(tmp_path) -> Path:
    copy = tmp_path / "elsewhere" / "auth"
    shutil.copytree(AUTH, copy, ignore=shutil.ignore_patterns("target"))
    yield copy
    mirror = standalone.sync_mirror(copy).parent  # what the test made in the cache: removed with it
    for module in (standalone.shared_target() / "wasmfilter").glob(f"auth@{mirror.name}*.wasm"):
        module.unlink()
    shutil.rmtree(mirror)


def test_workspace_members_build_where_they_are():
    assert not standalone.needs_workspace(AUTH)
    assert standalone.buildable(AUTH) == AUTH
    assert standalone.buildable(FILTERS / "common") == FILTERS / "common"


def test_copied_filter_builds_and_passes_its_scenarios_untouched(auth_copy):
    before = _snapshot(auth_copy)
    assert standalone.needs_workspace(auth_copy)
    result = build(auth_copy)
    assert result.wasm.is_file() and result.wasm.name.startswith("auth@auth-")
    # never over the workspace's own module
    assert result.wasm.name != "auth.wasm"
    report = run_scenarios(auth_copy, files=[auth_copy / "scenarios" / "api_keys.yaml"])
    assert report.ok, [r.problems for r in report.failed]
    assert _snapshot(auth_copy) == before  # nothing written into the user's directory (no target/, no Cargo.lock)


def test_copy_edits_reach_the_next_build(auth_copy):
    mirror_crate = standalone.buildable(auth_copy)
    (auth_copy / "src" / "extra.rs").write_text("// added\n")
    standalone.buildable(auth_copy)
    assert (mirror_crate / "src" / "extra.rs").read_text() == "// added\n"
    (auth_copy / "src" / "extra.rs").unlink()
    standalone.buildable(auth_copy)
    assert not (mirror_crate / "src" / "extra.rs").exists()
