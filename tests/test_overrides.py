"""`--set key=value` and `--config FILE` for `run` and `dev`: dotted keys nest, values are YAML, a file replaces
filter.yaml's config; bad forms are one line before anything is built or started."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import AUTH, assert_one_line_error, run_cli
from wasmfilter.errors import UsageError
from wasmfilter.overrides import parse_set, plugin_config


def test_set_nests_dotted_keys_and_reads_yaml_values() -> None:
    assert parse_set("limits.rps=5") == {"limits": {"rps": 5}}
    assert parse_set("keys=[a, b]") == {"keys": ["a", "b"]}
    assert parse_set("name=") == {"name": ""}
    base = {"limits": {"rps": 1, "burst": 2}, "mode": "x"}
    assert plugin_config(base, sets=["limits.rps=5", "mode=y"]) == {"limits": {"rps": 5, "burst": 2}, "mode": "y"}
    assert base["limits"] == {"rps": 1, "burst": 2}  # the manifest's config is not changed in place


def test_config_file_replaces_and_sets_apply_on_top(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text('{"a": 1, "b": {"c": 2}}')
    assert plugin_config({"old": True}, config_file=file, sets=["b.d=3"]) == {"a": 1, "b": {"c": 2, "d": 3}}


@pytest.mark.parametrize("item", ["novalue", "=x", "a..b=1"])
def test_bad_set_is_a_usage_error(item: str) -> None:
    with pytest.raises(UsageError, match="is not key=value"):
        parse_set(item)


def test_bad_overrides_fail_in_one_line_before_any_build(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("run", str(AUTH), "--set", "novalue"), "--set 'novalue' is not key=value")
    missing = tmp_path / "missing.yaml"
    assert_one_line_error(run_cli("dev", str(AUTH), "--config", str(missing)), f"--config {missing}")
