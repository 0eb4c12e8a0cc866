"""The drift probe: a hand-written proxy-wasm module (WebAssembly text, compiled with wasmtime's wat2wasm) that reads
every property of PROPERTIES through `proxy_get_property` in the request and the response phase and logs each as
`wfprobe <phase> <property> <status> <hex value>`; and the reading of those lines back into values."""

from __future__ import annotations

import re
from pathlib import Path

# The properties a filter reads (Envoy's attributes), as dotted paths; each dot is a path separator for the host.
PROPERTIES = (
    "request.path", "request.url_path", "request.host", "request.scheme", "request.method", "request.headers",
    "request.referer", "request.useragent", "request.time", "request.id", "request.protocol", "request.query",
    "request.duration", "request.size", "request.total_size", "request.headers_bytes",
    "response.code", "response.code_details", "response.flags", "response.grpc_status", "response.headers",
    "response.trailers", "response.size", "response.total_size", "response.backend_latency",
    "source.address", "source.port", "destination.address", "destination.port",
    "connection.id", "connection.mtls", "connection.requested_server_name", "connection.tls_version",
    "connection.termination_details", "connection.transport_failure_reason", "connection.subject_peer_certificate",
    "connection.sha256_peer_certificate_digest",
    "upstream.address", "upstream.port", "upstream.local_address", "upstream.transport_failure_reason",
    "upstream.request_attempt_count", "upstream.cx_pool_ready_duration", "upstream.locality",
    "upstream.tls_version", "upstream.num_endpoints",
    "plugin_name", "plugin_root_id", "plugin_vm_id",
    "node", "node.id", "node.cluster", "node.user_agent_name", "node.user_agent_build_version",
    "cluster_name", "cluster_metadata", "listener_direction", "listener_metadata", "route_name", "route_metadata",
    "upstream_host_metadata",
    "xds.node", "xds.node.id", "xds.node.user_agent_name", "xds.node.user_agent_build_version",
    "xds.cluster_name", "xds.cluster_metadata", "xds.listener_direction",
    "xds.listener_metadata", "xds.route_name", "xds.route_metadata", "xds.virtual_host_name",
    "xds.virtual_host_metadata", "xds.upstream_host_metadata", "xds.upstream_host_locality_metadata",
    "xds.filter_chain_name",
)
# Values that change on every request or start (ids, times, ports): compared by kind, not value.
VOLATILE = ("request.time", "request.id", "request.duration", "response.backend_latency", "source.port",
            "source.address", "destination.port", "destination.address", "connection.id", "upstream.address",
            "upstream.port", "upstream.local_address", "upstream.cx_pool_ready_duration", "node",
            "xds.node", "response.total_size", "response.size", "request.headers_bytes")
# Header maps (proxy-wasm's serialisation: count, sizes, NUL-terminated names and values): compared by their names.
HEADER_MAPS = ("request.headers", "response.headers", "response.trailers")
PHASES = ("req", "resp")
MARK = "wfprobe"
# proxy-wasm's WasmResult codes
STATUS = {0: "ok", 1: "missing", 2: "bad argument", 3: "serialization failure", 4: "parse failure",
          5: "bad expression", 7: "empty", 10: "internal failure", 12: "unimplemented"}
LOG_WARN = 3

_TABLE_AT = 4096  # property paths and log prefixes
_OUT_AT = 32768  # the log line being built
_HEAP_AT = 65536  # the host's allocations (a bump allocator, reset before each property)
_MAX_VALUE = 2048  # bytes of a value that are logged (hex)
_LINE = re.compile(rf"{MARK} (\w+) (\S+) (\d+) ([0-9a-f]*)")


def _wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def wat() -> str:
    """The probe module's text."""
    data: list[str] = []
    calls: dict[str, list[str]] = {phase: [] for phase in PHASES}
    at = _TABLE_AT
    for name in PROPERTIES:
        path = name.encode().replace(b".", b"\0")
        for phase in PHASES:
            prefix = f"{MARK} {phase} {name} ".encode()
            data.append(f'(data (i32.const {at}) "{_wat_bytes(path)}")')
            data.append(f'(data (i32.const {at + len(path)}) "{_wat_bytes(prefix)}")')
            calls[phase].append(f"(call $probe (i32.const {at}) (i32.const {len(path)}) "
                                f"(i32.const {at + len(path)}) (i32.const {len(prefix)}))")
            at += len(path) + len(prefix)
    if at >= _OUT_AT:
        raise AssertionError("the probe's property table outgrew its space")
    return f"""(module
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const {_HEAP_AT}))
  (data (i32.const 32) "0123456789abcdef")
  {chr(10).join("  " + d for d in data)}
  (func (export "_initialize"))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $at) (local.get $size)) (i32.const {4 * 65536}))
      (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $at) (local.get $size)))
    (local.get $at))
  (func $copy (param $src i32) (param $n i32) (param $dst i32) (result i32)
    (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (local.get $dst) (local.get $i)) (i32.load8_u (i32.add (local.get $src) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.add (local.get $dst) (local.get $n)))
  (func $hex (param $src i32) (param $n i32) (param $dst i32) (result i32)
    (local $i i32) (local $b i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $b (i32.load8_u (i32.add (local.get $src) (local.get $i))))
      (i32.store8 (local.get $dst) (i32.load8_u (i32.add (i32.const 32) (i32.shr_u (local.get $b) (i32.const 4)))))
      (i32.store8 (i32.add (local.get $dst) (i32.const 1))
                  (i32.load8_u (i32.add (i32.const 32) (i32.and (local.get $b) (i32.const 15)))))
      (local.set $dst (i32.add (local.get $dst) (i32.const 2)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $dst))
  (func $probe (param $path i32) (param $path_len i32) (param $prefix i32) (param $prefix_len i32)
    (local $status i32) (local $end i32) (local $n i32)
    (global.set $heap (i32.const {_HEAP_AT}))
    (i32.store (i32.const 0) (i32.const 0))
    (i32.store (i32.const 4) (i32.const 0))
    (local.set $status (call $get_property (local.get $path) (local.get $path_len) (i32.const 0) (i32.const 4)))
    (local.set $end (call $copy (local.get $prefix) (local.get $prefix_len) (i32.const {_OUT_AT})))
    (i32.store8 (local.get $end) (i32.add (i32.const 48) (i32.rem_u (local.get $status) (i32.const 10))))
    (if (i32.ge_u (local.get $status) (i32.const 10))
      (then (i32.store8 (local.get $end) (i32.const 49))
            (i32.store8 (i32.add (local.get $end) (i32.const 1))
                        (i32.add (i32.const 48) (i32.rem_u (local.get $status) (i32.const 10))))
            (local.set $end (i32.add (local.get $end) (i32.const 1)))))
    (i32.store8 (i32.add (local.get $end) (i32.const 1)) (i32.const 32))
    (local.set $end (i32.add (local.get $end) (i32.const 2)))
    (local.set $n (i32.load (i32.const 4)))
    (if (i32.gt_u (local.get $n) (i32.const {_MAX_VALUE})) (then (local.set $n (i32.const {_MAX_VALUE}))))
    (if (i32.eqz (local.get $status))
      (then (local.set $end (call $hex (i32.load (i32.const 0)) (local.get $n) (local.get $end)))))
    (drop (call $log (i32.const {LOG_WARN}) (i32.const {_OUT_AT}) (i32.sub (local.get $end) (i32.const {_OUT_AT})))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    {chr(10).join("    " + c for c in calls["req"])}
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    {chr(10).join("    " + c for c in calls["resp"])}
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))
"""


def module(directory: Path) -> Path:
    """The compiled probe in DIRECTORY, named by the hash of its text (compiled once per change of PROPERTIES)."""
    import hashlib
    import os

    import wasmtime

    text = wat()
    dest = directory / f"probe-{hashlib.sha256(text.encode()).hexdigest()[:12]}.wasm"
    if not dest.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(wasmtime.wat2wasm(text))
        tmp.replace(dest)
    return dest


def render(name: str, status: int, value: bytes) -> str:
    """A value as compared between versions: text, an integer, a size — or only its kind when VOLATILE."""
    if status != 0:
        return STATUS.get(status, f"status {status}")
    volatile = name in VOLATILE
    try:
        text = value.decode("utf-8")
        printable = text.isprintable()
    except UnicodeDecodeError:
        text, printable = "", False
    if not value:
        return "empty"
    if name in HEADER_MAPS:
        return header_names(value)
    if printable:
        return "<text>" if volatile else repr(text if len(text) <= 60 else text[:57] + "...")
    if len(value) == 8:
        return "<int>" if volatile else str(int.from_bytes(value, "little", signed=True))
    if len(value) == 1:
        return f"bool {bool(value[0])}"
    return "<binary>" if volatile else f"<{len(value)} bytes>"


def header_names(value: bytes) -> str:
    """The names in a serialised header map, sorted (values vary per request); the raw size if it does not parse."""
    try:
        count = int.from_bytes(value[:4], "little")
        at = 4 + 8 * count
        names = []
        for i in range(count):
            key_len = int.from_bytes(value[4 + 8 * i:8 + 8 * i], "little")
            val_len = int.from_bytes(value[8 + 8 * i:12 + 8 * i], "little")
            names.append(value[at:at + key_len].decode())
            at += key_len + 1 + val_len + 1
    except (UnicodeDecodeError, ValueError):
        return f"<{len(value)} bytes>"
    return "[" + ", ".join(sorted(set(names))) + "]" if at <= len(value) else f"<{len(value)} bytes>"


def read_lines(log_lines: list[str]) -> dict[str, str]:
    """`<phase> <property>` → rendered value, from the probe's log lines (the last of each wins)."""
    found: dict[str, str] = {}
    for line in log_lines:
        match = _LINE.search(line)
        if match:
            phase, name, status, hexed = match.groups()
            found[f"{phase} {name}"] = render(name, int(status), bytes.fromhex(hexed))
    return found
