"""What one Envoy binary's proxy-wasm host provides, asked of that Envoy itself (`envoy --mode validate`, cached per
binary): the host functions of build/abi.py's table it links (a module importing all of them loads, else Envoy
names the missing import, which is dropped and the rest tried again) and the foreign functions it registers (a
module calls each in `proxy_on_configure` and logs the status; a NotFound is checked against the binary's
strings)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.envoy.binary import EnvoyBinary
from wasmfilter.errors import EnvoyError, tail
from wasmfilter.paths import cache_dir

# Envoy's foreign functions (source/extensions/common/wasm/foreign.cc and friends), called by name through
# proxy_call_foreign_function.
FOREIGN_FUNCTIONS = ("compress", "uncompress", "expr_create", "expr_evaluate", "expr_delete", "declare_property",
                     "set_envoy_filter_state", "clear_route_cache", "verify_signature")
NOT_FOUND = 1  # proxy-wasm WasmResult::NotFound
_MISSING = re.compile(r"missing import:\s*(env\.proxy_\w+|[\w.]+)")
_FOREIGN_LINE = re.compile(r"wfforeign (\w+) (\d+)")
_KINDS = {"i": "i32", "I": "i64"}


@dataclass(frozen=True)
class HostAbi:
    version: str
    functions: frozenset[str]  # env imports it links, e.g. "proxy_get_log_level"
    foreign: frozenset[str]  # foreign functions it registers, e.g. "verify_signature"


def _func_type(sig: str) -> str:
    params, _, results = sig.partition(">")
    p = " ".join(_KINDS[c] for c in params)
    r = " ".join(_KINDS[c] for c in results)
    return f"(func{f' (param {p})' if p else ''}{f' (result {r})' if r else ''})"


def _module(imports: dict[str, str], foreign: tuple[str, ...]) -> str:
    """A module importing IMPORTS (name → signature) that calls each of FOREIGN in proxy_on_configure, logging
    `wfforeign <name> <status>`."""
    lines = [f'(import "env" "{name}" {_func_type(sig)})' for name, sig in sorted(imports.items())]
    data, calls, at = [], [], 1024
    for name in foreign:
        message = f"wfforeign {name} ".encode()
        data.append(f'(data (i32.const {at}) "{name}")')
        data.append(f'(data (i32.const {at + 64}) "{message.decode()}")')
        calls.append(f"(call $call_one (i32.const {at}) (i32.const {len(name)}) (i32.const {at + 64}) "
                     f"(i32.const {len(message)}))")
        at += 128
    call_one = """(func $call_one (param $name i32) (param $len i32) (param $msg i32) (param $msg_len i32)
    (local $status i32)
    (local.set $status (call $foreign (local.get $name) (local.get $len) (i32.const 0) (i32.const 0)
                                     (i32.const 8) (i32.const 12)))
    (i32.store8 (i32.add (local.get $msg) (local.get $msg_len))
                (i32.add (i32.const 48) (i32.rem_u (local.get $status) (i32.const 10))))
    (drop (call $log (i32.const 3) (local.get $msg) (i32.add (local.get $msg_len) (i32.const 1)))))""" if foreign \
        else ""
    foreign_imports = ('(import "env" "proxy_call_foreign_function" (func $foreign (param i32 i32 i32 i32 i32 i32) '
                       '(result i32)))\n(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))'
                       if foreign else "")
    lines = [line for line in lines if foreign_imports == "" or not re.search(
        r'"(proxy_call_foreign_function|proxy_log)"', line)]
    return f"""(module
  {foreign_imports}
  {chr(10).join(lines)}
  (memory (export "memory") 2)
  {chr(10).join(data)}
  (global $heap (mut i32) (i32.const 32768))
  (func (export "_initialize"))
  (func (export "malloc") (param $n i32) (result i32) (local $at i32)
    (local.set $at (global.get $heap)) (global.set $heap (i32.add (local.get $at) (local.get $n))) (local.get $at))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  {call_one}
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    {chr(10).join(calls)}
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"""


def _validate(binary: EnvoyBinary, wat: str, workdir: Path) -> tuple[int, str]:
    import wasmtime

    from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
    from wasmfilter.envoy.validate import validate_output

    wasm = workdir / "host-probe.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(wat))
    fragment = WasmFilter(name="host-probe", wasm_path=str(wasm), plugin_config={}).fragment()
    config = workdir / "envoy.yaml"
    config.write_text(Bootstrap(upstreams=[Upstream("default", "127.0.0.1", 9)], http_filters=[fragment]).render())
    return validate_output(config, binary)


def probe(binary: EnvoyBinary, table: dict[str, str]) -> HostAbi:
    """Ask BINARY which of TABLE's host functions (name → signature) and of FOREIGN_FUNCTIONS it provides."""
    imports = dict(table)
    with tempfile.TemporaryDirectory(prefix="wasmfilter-host-") as tmp:
        for _ in range(len(table) + 1):
            code, text = _validate(binary, _module(imports, FOREIGN_FUNCTIONS), Path(tmp))
            missing = _MISSING.search(text)
            if code == 0 or missing is None or missing.group(1).removeprefix("env.") not in imports:
                break
            del imports[missing.group(1).removeprefix("env.")]
    if code != 0:
        raise EnvoyError(f"Envoy {binary.version} refused the host probe module", fix="see Envoy's output below",
                         detail=tail(text))
    statuses = {m.group(1): int(m.group(2)) for m in _FOREIGN_LINE.finditer(text)}
    if set(statuses) != set(FOREIGN_FUNCTIONS):
        raise EnvoyError(f"Envoy {binary.version} did not log the foreign function probe's results",
                         fix="see Envoy's output below", detail=tail(text))
    answered = {name for name, status in statuses.items() if status != NOT_FOUND}
    return HostAbi(binary.version, frozenset(imports), frozenset(answered | _named_in(binary.path, set(statuses)
                                                                                       - answered)))


def _named_in(path: Path, names: set[str]) -> set[str]:
    """NAMES that BINARY holds as C strings: a registered foreign function may itself answer NotFound for empty
    arguments (set_envoy_filter_state: no filter-state key ""), so NotFound alone does not prove it absent."""
    if not names:
        return set()
    data = path.read_bytes()
    return {name for name in names if f"\0{name}\0".encode() in data}


def provides(binary: EnvoyBinary, table: dict[str, str]) -> HostAbi:
    """`probe`, cached per binary (path, size, mtime) and table."""
    st = binary.path.stat()
    entry = f"{binary.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{json.dumps(table, sort_keys=True)}"
    memo = cache_dir() / "envoy" / "host-abi.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if entry in known:
        hit = known[entry]
        return HostAbi(binary.version, frozenset(hit["functions"]), frozenset(hit["foreign"]))
    found = probe(binary, table)
    known[entry] = {"functions": sorted(found.functions), "foreign": sorted(found.foreign)}
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known))
    os.replace(tmp, memo)
    return found
