"""The ABI lint against real modules: the built filter, hand-made modules, and the real Envoy as judge."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from tests.conftest import assert_one_line_error, run_cli
from wasmfilter.build import abi
from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
from wasmfilter.envoy.validate import validate_text
from wasmfilter.errors import AbiError, ConfigInvalidError, UsageError

# A minimal proxy-wasm module: enough exports for Envoy to start it, plus whatever imports a test adds.
MODULE = """(module
  {imports}
  (memory (export "memory") 2)
  (func (export "_initialize"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
)"""


def make_module(tmp_path: Path, imports: str = "", text: str | None = None) -> Path:
    path = tmp_path / "m.wasm"
    path.write_bytes(wasmtime.wat2wasm(text if text is not None else MODULE.format(imports=imports)))
    return path


def envoy_loads(path: Path) -> None:
    fragment = WasmFilter(name="probe", wasm_path=str(path), plugin_config={}).fragment()
    validate_text(Bootstrap(upstreams=[Upstream("default", "127.0.0.1", 9)], http_filters=[fragment]).render())


def test_built_filter_passes(auth_build):
    report = abi.check(auth_build.wasm)
    assert report.abi_version == "proxy_abi_version_0_2_1"
    assert "env.proxy_log" in report.imports
    assert "proxy_on_request_headers" in report.exports


def test_minimal_module_passes_and_envoy_agrees(tmp_path):
    path = make_module(tmp_path, '(import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))')
    assert abi.check(path).ok
    envoy_loads(path)


def _wat_func(sig: str) -> str:
    params, _, results = sig.partition(">")
    kinds = {"i": "i32", "I": "i64"}
    p = " ".join(kinds[c] for c in params)
    r = " ".join(kinds[c] for c in results)
    return f"(func{f' (param {p})' if p else ''}{f' (result {r})' if r else ''})"


def test_every_host_function_in_the_table_links_in_envoy(tmp_path):
    """The signature tables are what the real Envoy links: a module importing all of them loads."""
    table = {**abi.HOST_FUNCTIONS, **abi.ABI_SPECIFIC_HOST_FUNCTIONS["proxy_abi_version_0_2_1"]}
    imports = [f'(import "env" "{name}" {_wat_func(sig)})' for name, sig in table.items()]
    imports += [f'(import "wasi_snapshot_preview1" "{name}" {_wat_func(sig)})'
                for name, sig in abi.WASI_FUNCTIONS.items()]
    path = make_module(tmp_path, "\n".join(imports))
    assert abi.check(path).ok
    envoy_loads(path)


def test_wrong_signature_is_named_and_envoy_agrees(tmp_path):
    path = make_module(tmp_path, '(import "env" "proxy_log" (func (param i32) (result i32)))')
    with pytest.raises(AbiError, match=r"imports env.proxy_log as \(i32\) -> \(i32\), but Envoy provides "
                                       r"\(i32, i32, i32\) -> \(i32\)"):
        abi.check(path)
    with pytest.raises(ConfigInvalidError, match="Unable to create Wasm plugin"):
        envoy_loads(path)


def test_unknown_host_function_fails_in_envoy_too(tmp_path):
    path = make_module(tmp_path, '(import "env" "proxy_make_coffee" (func))')
    with pytest.raises(AbiError, match="imports env.proxy_make_coffee, which Envoy does not provide"):
        abi.check(path)
    with pytest.raises(ConfigInvalidError):
        envoy_loads(path)


def test_wasi_function_envoy_lacks_is_a_warning_because_envoy_loads_it(tmp_path):
    """Measured: Envoy 1.40 links unknown WASI imports to a stub, so the module loads; only the call fails."""
    path = make_module(tmp_path, '(import "wasi_snapshot_preview1" "fd_filestat_get" '
                                 '(func (param i32 i32) (result i32)))')
    report = abi.check(path)
    assert any("fd_filestat_get, which Envoy does not implement" in w for w in report.warnings)
    envoy_loads(path)
    with pytest.raises(AbiError, match="fd_filestat_get, which Envoy does not implement"):
        abi.check(path, strict=True)


def test_unknown_import_module_and_host_function(tmp_path):
    path = make_module(tmp_path, '(import "env" "proxy_make_coffee" (func))\n'
                                 '(import "js" "alert" (func))')
    report = abi.inspect(path)
    assert any("env.proxy_make_coffee, which Envoy does not provide" in e for e in report.errors)
    assert any("from module 'js'" in e for e in report.errors)


def test_abi_specific_function_from_other_version(tmp_path):
    path = make_module(tmp_path, '(import "env" "proxy_clear_route_cache" (func (result i32)))')
    report = abi.inspect(path)
    assert any("proxy_clear_route_cache, which Envoy provides only to another ABI version" in e
               for e in report.errors)


def test_missing_exports_are_each_explained(tmp_path):
    path = make_module(tmp_path, text='(module (memory (export "memory") 1) (func (export "_start")))')
    report = abi.inspect(path)
    joined = "\n".join(report.errors)
    assert "no proxy_abi_version_* marker" in joined
    assert "neither malloc nor proxy_on_memory_allocate" in joined
    assert "no proxy_on_context_create" in joined


def test_not_wasm_and_missing_file(tmp_path):
    text = tmp_path / "plugin.wasm"
    text.write_text("hello")
    with pytest.raises(AbiError, match="is not a WebAssembly module"):
        abi.check(text)
    truncated = tmp_path / "cut.wasm"
    truncated.write_bytes(b"\0asm\x01\0\0\0\x01\x05")
    with pytest.raises(AbiError, match="is not a valid WebAssembly module"):
        abi.check(truncated)
    with pytest.raises(UsageError, match="does not exist"):
        abi.check(tmp_path / "nope.wasm")


def test_cli_check(tmp_path, auth_build):
    ok = run_cli("check", str(auth_build.wasm))
    assert ok.code == 0 and "loads in Envoy" in ok.stdout
    bad = tmp_path / "bad.wasm"
    bad.write_text("not wasm at all")
    assert_one_line_error(run_cli("check", str(bad)), "is not a WebAssembly module", "wasmfilter build")
    wasi = make_module(tmp_path,
                       '(import "wasi_snapshot_preview1" "fd_filestat_get" (func (param i32 i32) (result i32)))')
    warned = run_cli("check", str(wasi))
    assert warned.code == 0 and "fd_filestat_get, which Envoy does not implement" in warned.stderr
    assert_one_line_error(run_cli("check", "--strict", str(wasi)), "fd_filestat_get, which Envoy does not implement")
    sig = make_module(tmp_path, '(import "env" "proxy_log" (func (param i32) (result i32)))')
    assert_one_line_error(run_cli("check", str(sig)), "would not load in Envoy", "env.proxy_log")
