"""`wasmfilter build --fast`: the edit-build loop's cargo profile; it cannot be combined with the size build."""

from __future__ import annotations

from tests.conftest import FILTERS, assert_one_line_error, run_cli


def test_fast_and_opt_exclude_each_other():
    result = run_cli("build", str(FILTERS / "blank"), "--fast", "--opt")
    assert result.code != 0
    assert_one_line_error(result, "--fast and --opt exclude each other", "pick one")
