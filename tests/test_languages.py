"""Any language: a filter.yaml with `wasm:` (+ `build:`) runs without cargo — examples/c-filter (C against the raw
ABI, clang + wasi-libc) through check, build, package and istio (its scenario files run through Envoy on both
backends by collection); and the bad manifests and builds, each a one-line error."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, assert_one_line_error, run_cli
from wasmfilter.build.cargo import build, unit_test
from wasmfilter.errors import BuildCommandError, ManifestError, UsageError
from wasmfilter.manifest import load_manifest

C_FILTER = REPO / "examples" / "c-filter"


@pytest.fixture(scope="module")
def c_copy(tmp_path_factory) -> Path:
    """A private copy of examples/c-filter (its build writes the module beside its sources)."""
    copy = tmp_path_factory.mktemp("c") / "c-filter"
    shutil.copytree(C_FILTER, copy, ignore=shutil.ignore_patterns("*.wasm"))
    return copy


def test_c_filter_builds_checks_packages_and_deploys_without_cargo(c_copy, tmp_path):
    result = build(c_copy)
    assert result.wasm == c_copy / "c_filter.wasm" and result.size > 0
    assert result.sha256 == hashlib.sha256(result.wasm.read_bytes()).hexdigest()
    check = run_cli("check", str(result.wasm))
    assert check.code == 0 and "loads in Envoy (proxy_abi_version_0_2_1" in check.stdout, check.stderr
    out = tmp_path / "c.tar"
    packaged = run_cli("package", str(c_copy), "-o", str(out))
    assert packaged.code == 0, packaged.stderr
    with tarfile.open(out) as tar:
        assert "index.json" in tar.getnames()
    istio = run_cli("istio", str(c_copy), "--image", "registry.example/c-filter:1", "--local")
    assert istio.code == 0, istio.stderr
    plugin = next(yaml.safe_load_all(istio.stdout))
    assert plugin["kind"] == "WasmPlugin" and plugin["spec"]["pluginConfig"] == {"deny_header": "x-c-deny"}


def _filter(tmp_path: Path, manifest: str, source: str | None = None) -> Path:
    (tmp_path / "filter.yaml").write_text(manifest)
    if source is not None:
        (tmp_path / "f.c").write_text(source)
    return tmp_path


def test_missing_wasm_module_is_named(tmp_path):
    path = _filter(tmp_path, "name: x\nwasm: out/x.wasm\n")
    with pytest.raises(ManifestError, match="wasm module 'out/x.wasm' does not exist"):
        load_manifest(path)
    assert_one_line_error(run_cli("test", str(path)), "wasm module 'out/x.wasm' does not exist", "build:")


def test_crate_and_wasm_together_are_refused(tmp_path):
    (tmp_path / "x.wasm").write_bytes(b"\0asm\1\0\0\0")
    path = _filter(tmp_path, "name: x\ncrate: .\nwasm: x.wasm\n")
    assert_one_line_error(run_cli("build", str(path)), "either 'crate'", "not both")


def test_build_command_without_wasm_is_refused(tmp_path):
    path = _filter(tmp_path, "name: x\nbuild: [clang-22, f.c]\n")
    with pytest.raises(ManifestError, match="'build' needs 'wasm'"):
        load_manifest(path)


def test_failing_c_build_carries_the_compiler_output(tmp_path):
    path = _filter(tmp_path, "name: x\nwasm: x.wasm\nbuild: [clang-22, --target=wasm32-wasi, -Wno-deprecated, "
                   "-mexec-model=reactor, -o, x.wasm, f.c]\n", "int broken( { return 0; }\n")
    with pytest.raises(BuildCommandError) as e:
        build(path)
    assert "the build command of filter 'x' failed" in str(e.value) and "\n" not in str(e.value)
    assert "f.c:1" in (e.value.detail or "") and "error" in (e.value.detail or "")
    assert not (path / "x.wasm").exists()
    result = run_cli("build", str(path))
    assert_one_line_error(result, "build command of filter 'x' failed")
    assert "f.c:1" in result.stderr  # the compiler's own lines are shown above the error line


def test_build_tool_missing_or_writing_nothing(tmp_path):
    path = _filter(tmp_path, "name: x\nwasm: x.wasm\nbuild: [no-such-compiler-here, f.c]\n")
    assert_one_line_error(run_cli("build", str(path)), "cannot run 'no-such-compiler-here'", "build:")
    _filter(tmp_path, "name: x\nwasm: x.wasm\nbuild: ['true']\n")
    with pytest.raises(BuildCommandError, match="wrote no module at 'x.wasm'"):
        build(path)


def test_cargo_only_requests_on_a_prebuilt_module_say_so(c_copy):
    with pytest.raises(UsageError, match="no cargo features"):
        build(c_copy, features=["test-panic"])
    with pytest.raises(UsageError, match="--opt is cargo's size build"):
        build(c_copy, opt=True)
    with pytest.raises(UsageError, match="no cargo tests"):
        unit_test(c_copy)
