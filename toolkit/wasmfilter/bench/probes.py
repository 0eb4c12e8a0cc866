"""Cost probes: hand-written Wasm modules (templates/probes/, built with wabt's wat2wasm) that every bench run
measures beside the filter. `floor` is the bare no-op module (floor.wat): what V8 and proxy-wasm cost per request
before any filter code runs. The other probes are the floor plus one thing — every HTTP callback exported, or one
host call made `repeat` times per request — so (probe − floor) / repeat is what that thing costs on this machine,
in the same interleaved rounds as the filter (the PyPI Envoy is stripped: perf cannot attribute Envoy's side)."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.errors import BenchError, tail
from wasmfilter.paths import cache_dir, data_dir
from wasmfilter.subprocesses import require

FLOOR = "floor"
REPEAT = 10

_GET_HEADER = '(import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))'
_GET_PAIRS = '(import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))'
_REPLACE = '(import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))'
_REMOVE = '(import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))'
_TIME = '(import "env" "proxy_get_current_time_nanoseconds" (func $time (param i32) (result i32)))'
_DEFINE = '(import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))'
_INCREMENT = '(import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))'
_LOG = '(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))'

_GET_HEADERS = "(drop (call $pairs (i32.const 0) (i32.const 256) (i32.const 260)))"
_SET_HEADER = "(drop (call $replace (i32.const 0) (i32.const 32) (i32.const 7) (i32.const 17) (i32.const 4)))"
_METRIC = "(drop (call $increment (global.get $metric) (i64.const 1)))"

# 100 × (i32.const, i32.const, i32.load, local.get, i32.add, i32.store) on distinct addresses: TurboFan cannot
# forward a store to the next load or drop a store, so each copy runs.
_GUEST_WORK = " ".join(f"(i32.store offset={512 + 4 * k} (i32.const 0) (i32.add (i32.load offset={512 + 4 * k} "
                       "(i32.const 0)) (local.get $i)))" for k in range(100))
GUEST_WORK_INSTRUCTIONS = 600
# guest_code_wide: the same 600 instructions in this many distinct functions, each run once per request, so the
# guest executes WIDE_FUNCTIONS × 600 instructions of code it ran only once since the last request (a 60 KB
# module), as a filter's request path does — against guest_work's one small function run 10 times.
WIDE_FUNCTIONS = 40
# The HTTP callbacks the Rust SDK exports beyond the floor's (it exports every one, used or not).
_CALLBACKS = [
    "(func (export \"proxy_on_request_body\") (param i32 i32 i32) (result i32) (i32.const 0))",
    "(func (export \"proxy_on_request_trailers\") (param i32 i32) (result i32) (i32.const 0))",
    "(func (export \"proxy_on_response_headers\") (param i32 i32 i32) (result i32) (i32.const 0))",
    "(func (export \"proxy_on_response_body\") (param i32 i32 i32) (result i32) (i32.const 0))",
    "(func (export \"proxy_on_response_trailers\") (param i32 i32) (result i32) (i32.const 0))",
    "(func (export \"proxy_on_log\") (param i32))",
]


@dataclass(frozen=True)
class Probe:
    name: str
    description: str
    imports: tuple[str, ...] = ()
    body: str = ""                  # one host call (WAT), made `repeat` times in on_request_headers
    repeat: int = REPEAT
    callbacks: tuple[str, ...] = ()
    define_metric: bool = False
    per: str = "call"               # what (probe − floor) / repeat is the cost of
    functions: int = 0              # distinct copies of the guest_work body, each called once per request


CATALOG: dict[str, Probe] = {p.name: p for p in [
    Probe(FLOOR, "bare module: context create, request headers (Continue, no host call), done, delete",
          repeat=1, per="request"),
    Probe("callbacks", "every other HTTP callback exported as a no-op (Envoy enters V8 for response headers, "
          "response body and log on a direct response: 3 more entries)", callbacks=tuple(_CALLBACKS), repeat=3,
          per="callback entered"),
    Probe("get_header", "proxy_get_header_map_value(:path)", (_GET_HEADER,),
          "(drop (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 256) (i32.const 260)))"),
    Probe("get_headers", "proxy_get_header_map_pairs (the whole request header map, serialised into Wasm memory)",
          (_GET_PAIRS,), _GET_HEADERS),
    Probe("set_header", "proxy_replace_header_map_value(x-probe: path)", (_REPLACE,), _SET_HEADER),
    # The same calls made once per request: a filter makes most of its host calls once, and the first call of a
    # kind in a request runs Envoy's and V8's code for it cold (the 10× probes above pay that once for ten calls).
    Probe("get_headers_once", "proxy_get_header_map_pairs, once per request", (_GET_PAIRS,), _GET_HEADERS, repeat=1),
    Probe("set_header_once", "proxy_replace_header_map_value(x-probe: path), once per request", (_REPLACE,),
          _SET_HEADER, repeat=1),
    Probe("metric_once", "proxy_increment_metric on a counter, once per request", (_DEFINE, _INCREMENT), _METRIC,
          define_metric=True, repeat=1),
    Probe("remove_header", "proxy_remove_header_map_value(x-probe) (absent)", (_REMOVE,),
          "(drop (call $remove (i32.const 0) (i32.const 32) (i32.const 7)))"),
    Probe("time", "proxy_get_current_time_nanoseconds", (_TIME,), "(drop (call $time (i32.const 256)))"),
    Probe("metric", "proxy_increment_metric on a counter", (_DEFINE, _INCREMENT), _METRIC, define_metric=True),
    Probe("log_dropped", "proxy_log at info while Envoy logs at warning (the line is dropped)", (_LOG,),
          "(drop (call $log (i32.const 2) (i32.const 80) (i32.const 50)))"),
    Probe("guest_work", f"guest code, no host call: {GUEST_WORK_INSTRUCTIONS} wasm instructions per call (100 × load, "
          "add, store on 100 distinct words, so nothing folds away), to read `wasmfilter profile`'s instruction "
          "counts as Envoy CPU", body=_GUEST_WORK),
    Probe("guest_code_wide", f"guest code spread out: the same {GUEST_WORK_INSTRUCTIONS} instructions in "
          f"{WIDE_FUNCTIONS} distinct functions, each run once per request (a filter's request path runs much code "
          "once, not a little code many times)", repeat=WIDE_FUNCTIONS, functions=WIDE_FUNCTIONS,
          per=f"{GUEST_WORK_INSTRUCTIONS} instructions"),
]}


def known(names: list[str]) -> list[str]:
    """NAMES checked against the catalog (for bench definitions)."""
    unknown = [n for n in names if n not in CATALOG]
    if unknown:
        raise ValueError(f"unknown probe(s) {unknown}; known: {', '.join(CATALOG)}")
    return names


def source(name: str) -> str:
    """The WAT text of probe NAME: floor.wat as it is in the repository, the others rendered from probe.wat.j2."""
    probes_dir = data_dir("templates") / "probes"
    if name == FLOOR:
        return (probes_dir / "floor.wat").read_text()
    import jinja2

    probe = CATALOG[name]
    template = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                  autoescape=False).from_string((probes_dir / "probe.wat.j2").read_text())
    return template.render(description=probe.description,
                           imports=probe.imports, body=probe.body, repeat=probe.repeat, callbacks=probe.callbacks,
                           define_metric=probe.define_metric, functions=probe.functions, work=_GUEST_WORK)


def wasm_path(name: str) -> Path:
    """Where probe NAME's module is (content-addressed in the cache; built by build())."""
    digest = hashlib.sha256(source(name).encode()).hexdigest()[:16]
    return cache_dir() / "probes" / f"{name}-{digest}.wasm"


def wat2wasm() -> str:
    return require("wat2wasm", "wat2wasm not found: the bench builds its floor module from templates/probes/floor.wat",
                   fix="install wabt (apt-get install wabt, or make setup)", error=BenchError)


def build(name: str) -> Path:
    """Probe NAME as a .wasm (built once per source text)."""
    out = wasm_path(name)
    if out.is_file():
        return out
    tool = wat2wasm()
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".wat")
    src.write_text(source(name))
    tmp = out.with_suffix(".tmp")
    proc = subprocess.run([tool, str(src), "-o", str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"wat2wasm failed on probe '{name}'", fix="fix templates/probes/",
                         detail=tail(proc.stderr, 20))
    tmp.replace(out)
    return out
