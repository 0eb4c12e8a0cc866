from __future__ import annotations

import pytest

from tests.conftest import AUTH
from wasmfilter.errors import ManifestError, UsageError
from wasmfilter.manifest import FailurePolicy, load_manifest


def write(tmp_path, text: str):
    (tmp_path / "Cargo.toml").write_text("[package]\nname='x'\n")
    (tmp_path / "filter.yaml").write_text(text)
    return tmp_path


def test_reference_manifest():
    m = load_manifest(AUTH)
    assert m.name == "auth" and m.security_relevant and m.crate_dir == AUTH.resolve()


def test_unknown_field_is_named(tmp_path):
    with pytest.raises(ManifestError, match="field 'failure_polcy'"):
        load_manifest(write(tmp_path, "name: x\nfailure_polcy: FAIL_OPEN\n"))


def test_bad_enum_and_yaml(tmp_path):
    with pytest.raises(ManifestError, match="field 'failure_policy'"):
        load_manifest(write(tmp_path, "name: x\nfailure_policy: FAIL_SOMETIMES\n"))
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(write(tmp_path, "name: [x\n"))


def test_missing_things(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(ManifestError, match="no filter.yaml"):
        load_manifest(tmp_path)
    (tmp_path / "filter.yaml").write_text("name: x\ncrate: elsewhere\n")
    with pytest.raises(ManifestError, match="has no Cargo.toml"):
        load_manifest(tmp_path)


def test_security_relevant_filter_never_fails_open_silently(tmp_path):
    m = load_manifest(write(tmp_path, "name: x\nsecurity_relevant: true\nfailure_policy: FAIL_OPEN\n"))
    with pytest.raises(ManifestError, match="security-relevant.*--allow-fail-open"):
        m.failure_policy_for_run()
    assert m.failure_policy_for_run(allow_fail_open=True) is FailurePolicy.FAIL_OPEN
    relaxed = load_manifest(write(tmp_path, "name: x\nfailure_policy: FAIL_OPEN\n"))
    assert relaxed.failure_policy_for_run() is FailurePolicy.FAIL_OPEN
