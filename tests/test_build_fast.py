"""`wasmfilter build --fast`: the edit-build loop's cargo profile (what `wasmfilter dev` builds); it cannot be combined
with the size build, and a workspace without it gets one line saying so."""

from __future__ import annotations

from tests.conftest import FILTERS, assert_one_line_error, run_cli
from wasmfilter.build.cargo import has_profile


def test_fast_and_opt_exclude_each_other():
    result = run_cli("build", str(FILTERS / "blank"), "--fast", "--opt")
    assert result.code != 0
    assert_one_line_error(result, "--fast and --opt exclude each other", "pick one")


def test_fast_needs_the_profile_and_says_where(tmp_path):
    created = run_cli("new", "blank", "no-fast", cwd=tmp_path)
    assert created.code == 0, created.stderr
    project = tmp_path / "no-fast"
    cargo = project / "Cargo.toml"
    text = cargo.read_text()
    assert "[profile.fast]" in text  # scaffolded projects get the edit-loop profile
    cargo.write_text(text.split("[profile.fast]")[0])
    assert not has_profile(project, "fast")
    assert has_profile(FILTERS / "blank", "fast")
    result = run_cli("build", str(project), "--fast")
    assert_one_line_error(result, "--fast: no [profile.fast] in the Cargo.toml", "copy [profile.fast]")
