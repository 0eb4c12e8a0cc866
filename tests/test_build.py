"""cargo builds for wasm32-wasip1: the artifact, its digest, per-feature outputs, wasm-opt, compile errors."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import AUTH, FILTERS, assert_one_line_error, run_cli
from wasmfilter.build import abi
from wasmfilter.build.cargo import build
from wasmfilter.errors import CargoBuildError

BROKEN_CRATE = """[package]
name = "broken"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
proxy-wasm = "=0.2.5"
"""


def test_build_reports_artifact_size_and_digest(auth_build):
    assert auth_build.wasm.name == "auth.wasm"
    assert auth_build.size == auth_build.wasm.stat().st_size > 10_000
    assert auth_build.sha256 == hashlib.sha256(auth_build.wasm.read_bytes()).hexdigest()
    assert abi.check(auth_build.wasm).ok


def test_features_get_their_own_artifact(auth_build):
    panicky = build(AUTH, features=["test-panic"])
    assert panicky.wasm.name == "auth+test-panic.wasm"
    assert panicky.sha256 != auth_build.sha256
    assert hashlib.sha256(auth_build.wasm.read_bytes()).hexdigest() == auth_build.sha256  # not overwritten


def test_comma_separated_features_name_one_artifact():
    # `--features rs256,es256` is the set {es256, rs256}: the module the bench's `features: [rs256, es256]` builds.
    joined = build(AUTH, features=["rs256,es256"])
    assert joined.wasm.name == "auth+es256+rs256.wasm" and joined.features == ("es256", "rs256")
    assert build(AUTH, features=["es256", "rs256"]).sha256 == joined.sha256


def test_wasm_opt_shrinks(auth_build):
    optimized = build(AUTH, opt=True)
    assert optimized.optimized and optimized.size < auth_build.size
    assert abi.check(optimized.wasm).ok


def test_cli_build_prints_path_size_sha(auth_build):
    result = run_cli("build", str(AUTH))
    assert result.code == 0, result.stderr
    assert f"built {auth_build.wasm}" in result.stdout
    assert "sha256" in result.stdout and "size" in result.stdout


def test_compile_error_shows_the_compilers_output(tmp_path, monkeypatch):
    crate = tmp_path / "broken"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(BROKEN_CRATE)
    (crate / "src" / "lib.rs").write_text("pub fn f() -> u32 { \"not a number\" }\n")
    # Share the workspace's target dir so std and proxy-wasm are not compiled again.
    env = {"CARGO_TARGET_DIR": str(FILTERS / "target")}
    monkeypatch.setenv("CARGO_TARGET_DIR", env["CARGO_TARGET_DIR"])
    with pytest.raises(CargoBuildError) as info:
        build(crate)
    assert "mismatched types" in info.value.detail
    result = run_cli("build", str(crate), env=env)
    assert_one_line_error(result, "cargo build failed", "fix the errors shown above")
    assert "error[E0308]: mismatched types" in result.stderr
    assert "src/lib.rs" in result.stderr
