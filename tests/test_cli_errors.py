"""Bad input: a one-line error naming the problem and the fix, non-zero exit, nothing lost or left running."""

from __future__ import annotations

import shutil

from tests.conftest import AUTH, assert_one_line_error, run_cli


def test_nonexistent_path():
    for command in ("build", "config", "test", "run"):
        assert_one_line_error(run_cli(command, "/no/such/filter"), "'/no/such/filter' does not exist")


def test_directory_without_crate_or_manifest(tmp_path):
    assert_one_line_error(run_cli("build", str(tmp_path)), "holds neither a filter.yaml nor a Cargo.toml",
                          "wasmfilter new")
    assert_one_line_error(run_cli("test", str(tmp_path)), "no filter.yaml", "wasmfilter new")


def test_missing_toolchain():
    result = run_cli("build", str(AUTH), env={"WASMFILTER_CARGO": "/nonexistent/cargo"})
    assert_one_line_error(result, "WASMFILTER_CARGO", "not executables")


def test_doctor_lists_everything():
    result = run_cli("doctor")
    assert result.code == 0, result.stdout + result.stderr
    for item in ("cargo", "wasm32-wasip1 build", "envoy", "wasm-opt", "docker engine"):
        assert item in result.stdout


def test_config_refuses_to_overwrite(tmp_path, auth_build):
    target = tmp_path / "envoy.yaml"
    target.write_text("precious")
    result = run_cli("config", str(AUTH), "--wasm", str(auth_build.wasm), "-o", str(target))
    assert_one_line_error(result, "already exists", "--force")
    assert target.read_text() == "precious"


def test_invalid_plugin_config_is_refused_by_config(tmp_path, auth_build):
    crate = tmp_path / "auth"
    shutil.copytree(AUTH, crate, ignore=shutil.ignore_patterns("target"))
    manifest = crate / "filter.yaml"
    manifest.write_text(manifest.read_text().replace("key_header:", "key_headr:"))
    # Point at the original crate so no second build is needed: only the configuration differs.
    manifest.write_text(manifest.read_text().replace("crate: .", f"crate: {AUTH}"))
    out = tmp_path / "envoy.yaml"
    result = run_cli("config", str(crate), "--wasm", str(auth_build.wasm), "-o", str(out))
    assert_one_line_error(result, "unknown field `key_headr`")
    assert not out.exists()


def test_malformed_scenario_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - name: x\n    expect: {stauts: 200}\n")
    assert_one_line_error(run_cli("test", str(AUTH), "--scenario", str(bad)), "field 'cases.0.expect.stauts'")
    bad.write_text("cases: [\n")
    assert_one_line_error(run_cli("test", str(AUTH), "--scenario", str(bad)), "is not valid YAML")


def test_scenario_feature_not_in_test_features_is_refused_before_any_build(tmp_path):
    # filter.yaml's test_features is the list of cargo features scenario files may turn on (e.g. test-panic).
    wants = tmp_path / "wants.yaml"
    wants.write_text("features: [rs256, no-such-feature, nor-this]\ncases:\n  - name: x\n    expect: {status: 401}\n")
    result = run_cli("test", str(AUTH), "--scenario", str(wants))
    assert_one_line_error(result, "no-such-feature, nor-this", "test_features")
    assert "Compiling" not in result.stdout + result.stderr


def test_validate_names_the_bad_field(tmp_path, auth_build):
    good = tmp_path / "envoy.yaml"
    result = run_cli("config", str(AUTH), "--wasm", str(auth_build.wasm), "-o", str(good))
    assert result.code == 0, result.stderr
    assert run_cli("validate", str(good)).code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("stat_prefix:", "stat_prefixx:"))
    assert_one_line_error(run_cli("validate", str(bad)), "stat_prefixx")
    assert_one_line_error(run_cli("validate", str(tmp_path / "missing.yaml")), "does not exist")


def test_busy_port_for_run(auth_build):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert_one_line_error(run_cli("run", str(AUTH), "--port", str(port)), f"port {port}", "--port")
