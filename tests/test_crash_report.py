"""Crash reports people can read: a real panic of the auth filter (`test-panic` build) inside a real Envoy shows up
in `wasmfilter test` as the filter's panic message and place; with `--debug-info`, as a backtrace of demangled
function names with file:line instead of Envoy's raw frames. The parts: the module's name section and code bodies
(build/symbols.py), Rust demangling, and Envoy's log (envoy/crash.py)."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tests.conftest import AUTH
from wasmfilter.build import symbols
from wasmfilter.build.cargo import build
from wasmfilter.envoy import crash
from wasmfilter.harness.runner import run_scenarios

PANIC_CASE = {"description": "a case that panics and expects 200, so it fails and shows the crash report",
              "features": ["test-panic"], "concurrency": 1,
              "cases": [{"name": "panics", "request": {"path": "/orders", "headers": {
                  "x-wasmfilter-panic": "1", "x-api-key": "alice-secret"}}, "expect": {"status": 200}}]}


def test_rust_symbols_are_demangled() -> None:
    assert symbols.demangle("_ZN4core6result13unwrap_failed17he825aa6f43b16604E") == "core::result::unwrap_failed"
    assert symbols.demangle("_ZN4auth11AuthRequest23on_http_request_headers17h0123456789abcdefE") == \
        "auth::AuthRequest::on_http_request_headers"
    assert symbols.demangle("_ZN4core6result19Result$LT$T$C$E$GT$6expect17hd84817813fccb93fE") == \
        "core::result::Result<T,E>::expect"
    assert symbols.demangle("_ZN3std9panicking19begin_panic_handler28_$u7b$$u7b$closure$u7d$$u7d$17h8e1f8b682ca33009E"
                            ) == "std::panicking::begin_panic_handler::{{closure}}"
    assert symbols.demangle("proxy_on_request_headers") == "proxy_on_request_headers"


def test_envoys_raw_frames_become_a_crash_with_its_panic_message() -> None:
    log = "\n".join([
        "[2026-11-30 06:38:57.590][25324][critical][wasm] [source/extensions/common/wasm/context.cc:1160] wasm log "
        "auth auth auth: panicked at src/lib.rs:99:9:",
        "panic requested by x-wasmfilter-panic (test-panic build)",
        "[2026-11-30 06:38:57.590][25324][error][wasm] [source/extensions/common/wasm/wasm_vm.cc:38] Function: "
        "proxy_on_request_headers failed: Uncaught RuntimeError: unreachable",
        "Proxy-Wasm plugin in-VM backtrace:",
        "  0:  0x3015a - __rust_start_panic",
        "  1:  0x300d6 - rust_panic",
        "  2:  0x47da - _ZN4auth11AuthRequest23on_http_request_headers17h0123456789abcdefE",
        "  3:  0x4000 - unknown(function index:42)",
        "[2026-11-30 06:38:57.600][25324][info][main] [x.cc:1] something else"])
    [c] = crash.find_crashes(log)
    assert (c.function, c.trap, c.panicked_at) == ("proxy_on_request_headers", "Uncaught RuntimeError: unreachable",
                                                   "src/lib.rs:99:9")
    assert c.panic == ["panic requested by x-wasmfilter-panic (test-panic build)"]
    assert [(f.offset, f.name) for f in c.frames][2:] == [(0x47da, c.frames[2].name), (0x4000, None)]
    text = "\n".join(crash.readable(c))
    assert "2 frames of Rust's panic machinery" in text and "auth::AuthRequest::on_http_request_headers" in text
    assert "_ZN4auth" not in text and "0x47da" in text
    assert "Proxy-Wasm plugin in-VM backtrace" not in crash.without_raw_frames(log)


def _failing_run(tmp_path: Path, *, debug_info: bool) -> tuple[str, float]:
    file = tmp_path / "panic.yaml"
    file.write_text(yaml.safe_dump(PANIC_CASE))
    started = time.perf_counter()
    report = run_scenarios(AUTH, files=[file], debug_info=debug_info)
    [result] = report.results
    assert not result.passed
    assert any(p.startswith("the filter crashed in proxy_on_request_headers: panic requested by x-wasmfilter-panic")
               for p in result.problems), result.problems
    return "\n".join(result.filter_logs), time.perf_counter() - started


def test_a_release_build_panic_shows_the_message_and_how_to_get_a_backtrace(tmp_path: Path) -> None:
    text, _ = _failing_run(tmp_path, debug_info=False)
    assert "filter crashed in proxy_on_request_headers (Uncaught RuntimeError: unreachable)" in text
    assert "panic: panic requested by x-wasmfilter-panic (test-panic build)" in text
    assert "rebuild with `--debug-info`" in text


def test_a_debug_info_build_panic_shows_a_symbolized_backtrace(tmp_path: Path) -> None:
    wasm = build(AUTH, features=["test-panic"], debug_info=True).wasm
    module = symbols.read(wasm)
    assert module.has_dwarf and len(module.names) > 100 and module.body_starts
    stripped = symbols.read(build(AUTH, features=["test-panic"]).wasm)
    assert not stripped.names and not stripped.has_dwarf and stripped.body_starts
    text, _ = _failing_run(tmp_path, debug_info=True)
    assert "panic: panic requested by x-wasmfilter-panic (test-panic build)" in text
    assert "frames of Rust's panic machinery" in text
    own = [line for line in text.splitlines() if "on_http_request_headers" in line]
    assert own and "auth::" in own[0] and "lib.rs:" in own[0], text
    assert "_ZN" not in text
