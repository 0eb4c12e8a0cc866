"""The emulator (a proxy-wasm host on wasmtime) against the real reference filters and two hand-written modules:
Envoy's semantics feature by feature, faults and failure policies, and every bad input with its one-line error."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
import wasmtime

from tests.conftest import REPO
from wasmfilter.emulator.codes import Action, LogLevel, Result
from wasmfilter.emulator.headers import HeaderMap
from wasmfilter.emulator.host import FilterHost
from wasmfilter.emulator.memory import decode_pairs, encode_pairs
from wasmfilter.emulator.metrics import Metrics
from wasmfilter.emulator.shared_data import SharedData
from wasmfilter.errors import EmulatorError, WasmTrap

MODULES = Path(__file__).parent / "emulator"


def wat(name: str, **fill: str) -> bytes:
    text = (MODULES / name).read_text()
    for key, value in fill.items():
        text = text.replace(key, value)
    return bytes(wasmtime.wat2wasm(text))


def callout_module() -> bytes:
    pairs = encode_pairs([(b":method", b"GET"), (b":path", b"/check"), (b":authority", b"scripted")])
    escaped = "".join(f"\\{b:02x}" for b in pairs)
    return wat("callout.wat", HEADERS_LEN=str(len(pairs)), HEADERS=escaped)


# --- Envoy's data semantics (no module needed) ---------------------------------------------------------------

def test_header_map_follows_envoy():
    m = HeaderMap([("X-A", "1"), (":path", "/"), ("x-a", "2")])
    assert m.pairs()[0] == (":path", "/"), "pseudo-headers come first"
    assert m.get("X-A") == "1", "get answers the first value only"
    m.replace("x-a", "3")
    assert m.get_all("x-a") == ["3", "2"], "replace (setCopy) rewrites the first entry and keeps the others"
    m.remove("X-A")
    assert "x-a" not in m
    assert m.byte_size() == len(":path/")
    from wasmfilter.emulator.headers import REQUEST_INLINE

    inline = HeaderMap([("user-agent", "a"), ("User-Agent", "b"), ("x-api-key", "1"), ("x-api-key", "2")],
                       REQUEST_INLINE)
    assert inline.pairs() == [("user-agent", "a,b"), ("x-api-key", "1"), ("x-api-key", "2")], \
        "Envoy coalesces an inline header, keeps other repeats apart"


def test_pairs_round_trip_in_cpp_host_format():
    data = encode_pairs([(b"a", b"xy"), (b"", b"")])
    assert data[:4] == struct.pack("<I", 2) and data.endswith(b"\0\0")
    assert decode_pairs(data) == [(b"a", b"xy"), (b"", b"")]
    assert decode_pairs(b"\x05\x00\x00\x00") == [], "a count larger than the buffer reads as no pairs"


def test_shared_data_cas_rules():
    sd = SharedData()
    assert sd.get("vm", b"k") is None
    assert sd.set("vm", b"k", b"1", 0) == Result.OK
    value, cas = sd.get("vm", b"k") or (b"", 0)
    assert (value, cas) == (b"1", 1)
    assert sd.set("vm", b"k", b"2", cas + 5) == Result.CAS_MISMATCH
    assert sd.set("vm", b"k", b"2", cas) == Result.OK
    assert sd.set("vm", b"k", b"3", cas) == Result.CAS_MISMATCH, "the CAS moved on with the last write"
    assert sd.set("vm", b"new", b"x", 99) == Result.OK, "a missing key takes any CAS"
    assert sd.get("other-vm", b"k") is None, "one key space per vm_id"


def test_metrics_ids_and_types_follow_envoy():
    m = Metrics()
    counter, gauge, histogram = m.define(0, "c"), m.define(1, "g"), m.define(2, "h")
    assert (counter, gauge, histogram) == (4, 5, 6)
    assert m.increment(counter or 0, -1) == Result.BAD_ARGUMENT, "counters only grow"
    assert m.increment(gauge or 0, -3) == Result.OK and m.get(gauge or 0) == -3
    assert m.record(histogram or 0, 7) == Result.OK and m.get(histogram or 0) is None
    assert m.increment(99, 1) == Result.NOT_FOUND
    assert m.snapshot() == {"wasmcustom.c": 0, "wasmcustom.g": -3}


# --- the reference filters ----------------------------------------------------------------------------------

def test_blank_sets_the_response_header_and_counts(filter_host):
    host = filter_host(REPO / "filters/blank")
    stream = host.http(path="/hello")
    assert stream.status == 200 and stream.header("x-wasmfilter-blank") == "hello"
    assert stream.action("on_request_headers") == Action.CONTINUE
    assert stream.upstream is not None and stream.upstream.path == "/hello"
    assert stream.upstream.header("x-wasmfilter-blank") is None
    assert host.stats()["wasmcustom.wasmfilter_blank.responses"] == 1


def test_auth_local_reply_headers_logs_and_stats(filter_host):
    host = filter_host(REPO / "filters/auth")
    denied = host.http(path="/orders", headers={"x-auth-identity": "admin"})
    assert denied.status == 401 and denied.upstream is None
    assert denied.local_reply is not None and denied.header("content-type") == "application/json"
    assert denied.action("on_request_headers") == Action.PAUSE
    assert any("denied GET with 401" in line.message for line in denied.logs)
    allowed = host.http(path="/orders", headers=[("x-api-key", "alice-secret"), ("x-auth-identity", "admin")])
    assert allowed.status == 200 and allowed.upstream is not None
    assert allowed.upstream.header("x-auth-identity") == "alice", "the client's copy is replaced"
    assert host.stats()["wasmcustom.wasmfilter_auth.allowed"] == 1
    assert host.stats()["wasmcustom.wasmfilter_auth.denied"] == 1


@pytest.mark.parametrize("name", ["blank", "auth", "ratelimit", "routing"])
def test_every_host_function_the_reference_filters_import_is_emulated(filter_host, name):
    host = filter_host(REPO / "filters" / name)
    assert set(host.not_emulated) <= {"env.proxy_grpc_stream", "env.proxy_grpc_send"}, host.not_emulated


def test_plugin_configuration_refused_names_the_field(filter_host):
    with pytest.raises(EmulatorError, match="refused its configuration.*nonsense"):
        filter_host(REPO / "filters/blank", config={"header": "x-a", "value": "b", "nonsense": 1})


def test_ratelimit_buckets_live_in_shared_data_across_workers_and_time(filter_host):
    config = {"default_rule": {"name": "u", "key": [{"source": "header", "name": "x-user"}], "rate": 1,
                               "unit": "second", "burst": 1}}
    host = filter_host(REPO / "filters/ratelimit", config=config, workers=2)
    assert host.http(headers={"x-user": "a"}, worker=0).status == 200
    assert host.http(headers={"x-user": "a"}, worker=1).status == 429, "the other worker sees the same bucket"
    host.advance(1.0)
    assert host.http(headers={"x-user": "a"}).status == 200, "the test clock refilled the bucket"
    assert host.shared.data, "buckets are in the host's shared data"


def test_routing_properties_and_route_table(filter_host):
    host = filter_host(REPO / "filters/routing")
    stream = host.http(path="/api/v2/users", headers={"x-wasmfilter-cluster": "legacy"})
    assert stream.upstream is not None and stream.upstream.cluster == "canary"
    assert stream.upstream.path == "/v2/users"
    assert stream.route_cache_cleared >= 1
    assert host.stats()["wasmcustom.wasmfilter_routing.spoofed_cluster_header"] == 1


def test_properties_use_envoys_encodings(filter_host):
    from wasmfilter.emulator.properties import lookup

    host = filter_host(REPO / "filters/blank")
    stream = host.http(path="/p?q=1", headers={"user-agent": "t"})
    ctx = host.workers[0].root
    ctx.stream = stream  # read the finished stream's properties as its context would have
    assert lookup(host, ctx, ["request", "path"]) == b"/p?q=1"
    assert lookup(host, ctx, ["request", "url_path"]) == b"/p"
    assert lookup(host, ctx, ["source", "address"]) == b"127.0.0.1:40000"
    assert lookup(host, ctx, ["source", "port"]) == struct.pack("<q", 40000)
    assert lookup(host, ctx, ["response", "code"]) == struct.pack("<q", 200)
    assert lookup(host, ctx, ["plugin_root_id"]) == b"blank"
    assert decode_pairs(lookup(host, ctx, ["request", "headers"]) or b"")[0] == (b":authority", b"localhost")
    assert lookup(host, ctx, ["request", "headers", "User-Agent"]) == b"t", "one header of the map"
    assert lookup(host, ctx, ["request", "headers", "x-none"]) is None
    assert lookup(host, ctx, ["nope"]) is None


def test_properties_through_the_abi():
    host = FilterHost.load(wat("props.wat"))
    host.http(path="/")
    assert host.stats() == {"wasmcustom.port": 40000, "wasmcustom.state": 5}


def test_request_body_chunks_and_trailers_reach_the_upstream(filter_host):
    host = filter_host(REPO / "filters/blank")
    stream = host.http(method="POST", path="/echo", chunks=[b"pi", b"ng"], trailers=[("x-t", "1")])
    assert stream.upstream is not None and stream.upstream.body == b"ping"
    assert stream.request_trailers is not None and stream.request_trailers.get("x-t") == "1"


def test_paused_body_chunks_are_buffered_and_editable():
    host = FilterHost.load(wat("body.wat"))
    stream = host.http(method="POST", path="/echo", chunks=[b"pi", b"ng"])
    assert stream.actions["on_request_body"] == [Action.PAUSE, Action.CONTINUE]
    assert host.stats()["wasmcustom.body_size"] == 4, "the last call saw the buffered body, not just its chunk"
    assert stream.upstream is not None and stream.upstream.body == b"<ping", "set_buffer_bytes(0, 0) prepends"


# --- callouts, pause and resume, ticks -------------------------------------------------------------------------

def test_http_call_answer_decides_and_resumes_the_paused_stream():
    host = FilterHost.load(callout_module(), clusters=["default"])
    host.answer("scripted", path="/check", body=b"\x02even")
    passed = host.http(path="/x")
    assert passed.status == 200 and passed.upstream is not None, "an even first byte continues the stream"
    assert passed.actions["on_request_headers"] == [Action.PAUSE]
    assert host.callouts.calls[0].path == "/check" and host.callouts.calls[0].cluster == "scripted"
    host.check_answers_used()


def test_http_call_odd_answer_delay_timeout_and_reset():
    host = FilterHost.load(callout_module(), clusters=["default"])
    rule = host.answer("scripted", body=b"\x01odd", delay_s=0.5)
    stream = host.http(path="/x")
    assert stream.paused, "the answer is due later on the test clock"
    host.advance(0.5)
    assert stream.status == 403 and stream.body == b"denied"
    rule.answer.timeout = True
    timed_out = host.http(path="/x")
    host.advance(1.0)  # the call's own timeout (1000 ms): Envoy answers 504 'upstream request timeout'
    assert timed_out.status == 403, "'u' of 'upstream request timeout' is odd"
    rule.answer.timeout, rule.answer.reset, rule.answer.delay_s = False, True, 0.0
    reset = host.http(path="/x")
    assert reset.status == 503 and reset.body == b"callout failed", "a reset is the failure callback: no body"


def test_answer_rules_script_callouts_and_the_routed_upstream():
    from wasmfilter.harness.answers import AnswerRule

    rules = {"scripted": [AnswerRule.model_validate({"match": {"path": "/check"}, "base64": "Ag=="})],
             "default": [AnswerRule.model_validate({"match": {"path_prefix": "/teapot"}, "status": 418,
                                                    "json": {"short": True}}),
                         AnswerRule.model_validate({"match": {"path": "/gone"}, "reset": True})]}
    host = FilterHost.load(callout_module(), clusters=["default"], answers=rules)
    teapot = host.http(path="/teapot/1")
    assert teapot.status == 418 and teapot.body == b'{"short":true}', "the callout's 0x02 let it through"
    assert teapot.header("content-type") == "application/json"
    gone = host.http(path="/gone")
    assert gone.status == 503 and gone.body.startswith(b"upstream connect error"), "Envoy's answer to a reset"
    host.check_answers_used()
    unused = FilterHost.load(callout_module(), clusters=["default"], answers=rules)
    unused.http(path="/teapot")
    with pytest.raises(EmulatorError, match="scripted answer for cluster 'default' .*/gone.* was never asked for"):
        unused.check_answers_used()


def test_http_call_to_an_unknown_cluster_is_bad_argument():
    host = FilterHost.load(callout_module(), clusters=["default"])
    host.callouts.clusters.discard("scripted")
    assert host.http(path="/x").status == 500


def test_grpc_call_answer_and_failure():
    host = FilterHost.load(wat("grpc.wat"), clusters=["default", "authz"])
    rule = host.answer("authz", path="/pkg.Authz/Check", body=b"ok")
    assert host.http(path="/x").status == 200
    call = host.callouts.calls[0]
    assert (call.kind, call.cluster, call.token, call.body) == ("grpc", "authz", 1, b"req")
    rule.answer.grpc_status = 7  # PERMISSION_DENIED: proxy_on_grpc_close
    assert host.http(path="/x").status == 403
    assert host.callouts.calls[1].token == 3, "gRPC call tokens are odd"


def test_shared_queue_notifies_the_registering_root_context():
    host = FilterHost.load(callout_module(), clusters=["default", "scripted"], vm_id="vm")
    host.enqueue("vm", "q", b"one")
    host.enqueue("vm", "q", b"two")
    assert host.stats()["wasmcustom.queued"] == 2
    assert not host.queues.by_token[1].items, "each notification dequeued one item"
    with pytest.raises(EmulatorError, match="no shared queue 'nope' in vm 'vm'"):
        host.enqueue("vm", "nope", b"x")


def test_ticks_fire_on_the_test_clock():
    host = FilterHost.load(callout_module(), clusters=["default", "scripted"])
    host.advance(3.5)
    assert host.stats()["wasmcustom.ticks"] == 3


# --- faults -------------------------------------------------------------------------------------------------

def test_rust_panic_is_an_exception_with_the_panic_message(filter_host):
    host = filter_host(REPO / "filters/auth", features=["test-panic"])
    with pytest.raises(WasmTrap, match="panicked.*panic requested by x-wasmfilter-panic") as info:
        host.http(path="/orders", headers={"x-wasmfilter-panic": "1"})
    assert info.value.callback == "proxy_on_request_headers"
    assert info.value.stream.status == 503 and info.value.stream.body == b""  # type: ignore[attr-defined]


def test_fail_closed_answers_503_afterwards(filter_host):
    host = filter_host(REPO / "filters/auth", features=["test-panic"], failure_policy="FAIL_CLOSED")
    host.http(path="/", headers={"x-wasmfilter-panic": "1"}, raise_on_trap=False)
    assert host.http(path="/healthz").status == 503
    host.advance(60)
    assert host.http(path="/healthz").status == 503, "closed stays closed"


def test_fail_open_skips_the_filter_afterwards(filter_host):
    host = filter_host(REPO / "filters/auth", features=["test-panic"], failure_policy="FAIL_OPEN")
    crashed = host.http(path="/", headers={"x-wasmfilter-panic": "1"}, raise_on_trap=False)
    assert crashed.status == 200 and crashed.trap is not None, "cpp-host: the failing call itself fails open too"
    bypass = host.http(path="/orders")
    assert bypass.status == 200 and bypass.upstream is not None, "FAIL_OPEN is a bypass of an auth filter"


def test_fail_reload_starts_a_fresh_vm_after_the_backoff(filter_host):
    host = filter_host(REPO / "filters/auth", features=["test-panic"], failure_policy="FAIL_RELOAD",
                       reload_backoff_s=2.0)
    host.http(path="/", headers={"x-wasmfilter-panic": "1"}, raise_on_trap=False)
    assert host.http(path="/orders").status == 503, "during the back-off"
    host.advance(2.0)
    assert host.http(path="/orders").status == 401, "a fresh VM enforces again"
    assert host.workers[0].starts == 2


def test_a_trap_in_a_root_callback_fails_the_vm():
    host = FilterHost.load(callout_module(), clusters=["default", "scripted"])
    host.inject_trap("on_tick")
    host.advance(1.0)
    assert [t.callback for t in host.crashes] == ["proxy_on_tick"]
    assert host.http(path="/x").status == 503, "FAIL_CLOSED: the failed VM refuses the next stream"


def test_a_trap_can_be_injected_into_any_callback(filter_host):
    host = filter_host(REPO / "filters/blank")
    host.inject_trap("on_response_headers")
    with pytest.raises(WasmTrap, match="proxy_on_response_headers trapped: trap injected"):
        host.http(path="/")


def test_wasi_functions_behave_like_envoys_stubs():
    host = FilterHost.load(wat("wasi.wat"))
    host.http(path="/")
    assert host.log_messages(LogLevel.INFO) == ["hello from wasi"], "stdout is an info line, newline dropped"
    assert host.stats() == {"wasmcustom.realtime": 0, "wasmcustom.monotonic": 58, "wasmcustom.read": 52}


# --- bad input ----------------------------------------------------------------------------------------------

def test_a_module_that_is_not_proxy_wasm():
    plain = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "_start")))'))
    with pytest.raises(EmulatorError, match="is not a proxy-wasm module: it exports no proxy_abi_version_"):
        FilterHost.load(plain)
    with pytest.raises(EmulatorError, match="not a WebAssembly module"):
        FilterHost.load(b"GIF89a")


def test_an_import_neither_the_emulator_nor_envoy_has():
    text = (MODULES / "faulty.wat").read_text().replace('"proxy_grpc_stream"', '"proxy_teleport"')
    with pytest.raises(EmulatorError) as info:
        FilterHost.load(bytes(wasmtime.wat2wasm(text)))
    assert str(info.value).splitlines()[0].startswith(
        "'module' imports env.proxy_teleport, which the emulator lacks (Envoy does not provide it either)")


def test_a_host_function_envoy_has_and_the_emulator_lacks():
    host = FilterHost.load(wat("faulty.wat"))
    with pytest.raises(WasmTrap, match="env.proxy_grpc_stream, which the emulator lacks \\(Envoy has it\\)"):
        host.http(headers={"a": "1", "b": "2", "c": "3"})


def test_unbounded_allocation_hits_the_memory_cap_not_the_machine():
    host = FilterHost.load(wat("faulty.wat"), memory_mb=32)
    started = time.monotonic()
    with pytest.raises(WasmTrap, match="unreachable") as info:
        host.http(headers={"a": "1", "b": "2"})
    assert "32 MiB memory cap" in str(info.value)
    assert time.monotonic() - started < 30


def test_an_endless_loop_ends_with_the_fuel_budget():
    host = FilterHost.load(wat("faulty.wat"), fuel=50_000_000)
    with pytest.raises(WasmTrap, match="did not return within its fuel budget .*endless loop"):
        host.http(headers={"a": "1"})


def test_a_scripted_answer_the_filter_never_asked_for(filter_host):
    host = FilterHost.load(callout_module(), clusters=["default"])
    host.answer("scripted", path="/never", body=b"\x02")
    host.answer("scripted", body=b"\x02")
    host.http(path="/x")
    with pytest.raises(EmulatorError, match="scripted answer for cluster 'scripted' /never was never asked for"):
        host.check_answers_used()


def test_log_level_filters_lines(filter_host):
    host = filter_host(REPO / "filters/auth", log_level=LogLevel.WARN)
    host.http(path="/orders")
    assert not host.log_messages(LogLevel.INFO)


# --- the scenario backend -------------------------------------------------------------------------------------

def test_a_case_expecting_envoys_own_stats_is_reported_as_needing_envoy(tmp_path):
    from wasmfilter.harness.runner import run_scenarios

    file = tmp_path / "envoy_stats.yaml"
    file.write_text("cases:\n  - name: counts a 2xx\n    request: {path: /}\n"
                    "    expect: {status: 200, stats: {http.ingress.downstream_rq_2xx: 1}}\n"
                    "  - name: plain\n    request: {path: /}\n    expect: {status: 200}\n")
    report = run_scenarios(REPO / "filters/blank", files=[file], backend="emulator")
    first, second = report.results
    assert first.problems == ["needs Envoy: stat 'http.ingress.downstream_rq_2xx' is Envoy's own, the emulator "
                              "keeps only the filter's (wasmcustom.*); run this file with --backend process"]
    assert second.passed


def test_a_route_table_the_emulator_cannot_reproduce_is_named():
    from wasmfilter.emulator.routes import NeedsEnvoy, RouteTable
    from wasmfilter.envoy.bootstrap import Bootstrap, Upstream

    text = Bootstrap(upstreams=[Upstream("a", "127.0.0.1", 1)],
                     routes=['- match: {prefix: "/"}\n  direct_response: {status: 200}']).render()
    with pytest.raises(NeedsEnvoy, match="the route table uses direct_response"):
        RouteTable.from_bootstrap(text)


def test_run_refuses_the_emulator_backend():
    from wasmfilter.errors import UsageError
    from wasmfilter.interactive import run_interactive

    with pytest.raises(UsageError, match="no listener"):
        run_interactive(REPO / "filters/blank", backend="emulator")


def test_verdict_differences_are_listed_per_case():
    from wasmfilter.emulator.equivalence import differences

    verdicts = {("a.yaml", "one"): {"emulator": "passed", "process": "passed", "docker": "failed"},
                ("a.yaml", "two"): {"process": "passed"}}
    assert differences(verdicts) == (2, ["a.yaml :: one: emulator passed, docker failed"])
