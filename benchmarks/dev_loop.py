"""`wasmfilter dev` and ECDS delivery, measured (docs/benchmarks.md, "Dev loop and ECDS delivery"):

- edit → live: per reference filter, EDITS edits of src/lib.rs (each changes an exported constant, so every build
  is a new module), each through `DevSession.cycle` (incremental cargo build, content-addressed module, ECDS push,
  ACK); p50/p95 of the total, split into build and push+ACK. The watcher's own latency (watchfiles, step 20 ms) is
  not in these numbers: the clock starts when the edit is written. The source is restored afterwards.
- push → ACK p50: PUSHES config-only pushes (two configs alternating) and PUSHES new-module pushes (each a new module:
  the same code with a custom section appended, so V8 compiles it again).
- swaps under load: 20 pushes (module and config alternating) while 4 connections send requests back to back: lost
  requests and 5xx.
- Envoy RSS and Wasm VM count (`wasm.envoy.wasm.runtime.v8.active` / `.created`) after 1, 10 and 100 pushes of two
  alternating modules, and of 100 distinct modules; the slope between 10 and 100.

Run: `.venv/bin/python benchmarks/dev_loop.py [--edits 20] [--pushes 20] [--filters auth,blank]`; prints Markdown and
writes benchmarks/results/dev_loop.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from wasmfilter.build.cargo import build
from wasmfilter.dev import DevSession
from wasmfilter.harness.ecds import EcdsStack
from wasmfilter.harness.scenario import Request
from wasmfilter.harness.stack import StackSpec
from wasmfilter.harness.swaps import swaps_under_load, with_custom_section
from wasmfilter.manifest import load_manifest

REPO = Path(__file__).resolve().parent.parent
FILTERS = REPO / "filters"
MARK = "// wasmfilter benchmarks/dev_loop.py edit"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "load_before": os.getloadavg()}


def edit_to_live(name: str, edits: int) -> dict[str, Any]:
    lib = FILTERS / name / "src" / "lib.rs"
    source = lib.read_text()
    session = DevSession(FILTERS / name, concurrency=1, say=lambda _line: None)
    cycles = []
    try:
        session.start()
        for i in range(edits):
            lib.write_text(f"{source}\n{MARK}\n#[unsafe(no_mangle)]\n"
                           f"pub extern \"C\" fn wasmfilter_dev_loop_edit() -> u32 {{\n    {1000 + i}\n}}\n")
            cycle = session.cycle([lib], edited_at=time.time())
            if not cycle.ok:
                raise SystemExit(f"{name}: edit {i} failed: {cycle.line}\n{cycle.detail}")
            cycles.append(cycle)
    finally:
        lib.write_text(source)
        session.stop()
    total = [c.total_ms for c in cycles]
    builds = [c.build_ms for c in cycles]
    pushes = [c.push_ms for c in cycles]
    return {"filter": name, "edits": len(cycles),
            "total_p50": pct(total, 0.5), "total_p95": pct(total, 0.95), "build_p50": pct(builds, 0.5),
            "build_p95": pct(builds, 0.95), "push_ack_p50": pct(pushes, 0.5), "push_ack_p95": pct(pushes, 0.95)}


def auth_spec(concurrency: int = 2) -> StackSpec:
    manifest = load_manifest(FILTERS / "auth")
    return StackSpec(manifest=manifest, wasm_path=build(manifest.crate_dir).wasm, concurrency=concurrency)


def push_to_ack(pushes: int) -> dict[str, Any]:
    spec = auth_spec()
    wasm = spec.wasm_path.read_bytes()
    with EcdsStack(spec) as live:
        config = dict(live.plugin_config)
        configs = [config, {**config, "identity_header": "x-auth-who"}]
        config_ms = [live.push(config=configs[i % 2]).seconds * 1000 for i in range(pushes)]
        module_ms = [live.push(wasm=with_custom_section(wasm, f"ack-{i}")).seconds * 1000 for i in range(pushes)]
    return {"pushes": pushes, "module_bytes": len(wasm), "config_p50": pct(config_ms, 0.5),
            "config_p95": pct(config_ms, 0.95), "module_p50": pct(module_ms, 0.5), "module_p95": pct(module_ms, 0.95)}


def swaps(count: int = 20) -> dict[str, Any]:
    spec = auth_spec()
    wasm = spec.wasm_path.read_bytes()
    modules = [with_custom_section(wasm, "swap-a"), with_custom_section(wasm, "swap-b")]
    with EcdsStack(spec) as live:
        config = dict(live.plugin_config)
        configs = [config, {**config, "identity_header": "x-auth-who"}]
        report = swaps_under_load(live.url, lambda i: live.push(wasm=modules[i % 2]) if i % 2
                                  else live.push(config=configs[(i // 2) % 2]), swaps=count, connections=4,
                                  request=Request(path="/orders", headers={"x-api-key": "alice-secret"}))
    return {"swaps": len(report.pushes), "requests": report.requests, "lost": report.lost,
            "server_errors": report.server_errors, "statuses": dict(report.statuses),
            "seconds": round(report.seconds, 2)}


def memory(distinct: bool, checkpoints: tuple[int, ...] = (1, 10, 100)) -> dict[str, Any]:
    spec = auth_spec()
    wasm = spec.wasm_path.read_bytes()
    rows = []
    with EcdsStack(spec, initial_push=False) as live:
        assert live.stack is not None
        envoy = live.stack.envoy
        rows.append({"pushes": 0, "rss_kb": envoy.rss_kb(), **vms(envoy.admin.stats())})
        for i in range(1, max(checkpoints) + 1):
            tag = f"mem-{i}" if distinct else f"mem-{i % 2}"
            live.push(wasm=with_custom_section(wasm, tag))
            if i in checkpoints:
                rows.append({"pushes": i, "rss_kb": envoy.rss_kb(), **vms(envoy.admin.stats())})
    by = {r["pushes"]: r for r in rows}
    slope = (by[100]["rss_kb"] - by[10]["rss_kb"]) / 90 if 100 in by and 10 in by else None
    return {"modules": "distinct" if distinct else "alternating", "rows": rows, "slope_kb_per_push": slope}


def vms(stats: dict[str, int]) -> dict[str, int]:
    return {"vms_active": stats.get("wasm.envoy.wasm.runtime.v8.active", -1),
            "vms_created": stats.get("wasm.envoy.wasm.runtime.v8.created", -1)}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} vCPUs; load average before {m['load_before'][0]:.1f}, "
             f"after {m['load_after'][0]:.1f} (shared with other builds).", "",
             "| filter | edits | edit→live p50 | p95 | build p50 | p95 | push+ACK p50 | p95 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["edit_to_live"]:
        lines.append(f"| {r['filter']} | {r['edits']} | {r['total_p50']:.0f} ms | {r['total_p95']:.0f} ms | "
                     f"{r['build_p50']:.0f} ms | {r['build_p95']:.0f} ms | {r['push_ack_p50']:.0f} ms | "
                     f"{r['push_ack_p95']:.0f} ms |")
    a = result["push_to_ack"]
    lines += ["", f"Push → ACK (auth, {a['pushes']} each, module {a['module_bytes']} bytes): config-only p50 "
              f"{a['config_p50']:.1f} ms (p95 {a['config_p95']:.1f}); new module p50 {a['module_p50']:.0f} ms "
              f"(p95 {a['module_p95']:.0f}).", ""]
    s = result["swaps"]
    lines += [f"Swaps under load: {s['swaps']} pushes, {s['requests']} requests on 4 connections in {s['seconds']} s: "
              f"{s['lost']} lost, {s['server_errors']} 5xx, statuses {s['statuses']}.", "",
              "| modules | pushes | Envoy RSS | V8 VMs active | V8 VMs created |", "|---|---|---|---|---|"]
    for mem in result["memory"]:
        for r in mem["rows"]:
            lines.append(f"| {mem['modules']} | {r['pushes']} | {r['rss_kb'] / 1024:.1f} MiB | {r['vms_active']} | "
                         f"{r['vms_created']} |")
        lines.append(f"| {mem['modules']} | slope 10→100 | {mem['slope_kb_per_push']:.0f} KiB/push | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--filters", default="blank,ratelimit,routing,auth")
    args = parser.parse_args()
    out = REPO / "benchmarks" / "results" / "dev_loop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine(), "edit_to_live": []}

    def save() -> None:  # after each part: a long run cut short still leaves what it measured
        result["machine"]["load_after"] = os.getloadavg()
        out.write_text(json.dumps(result, indent=2) + "\n")

    result["push_to_ack"] = push_to_ack(args.pushes)
    save()
    result["swaps"] = swaps()
    save()
    result["memory"] = [memory(distinct=False), memory(distinct=True)]
    save()
    for name in [n for n in args.filters.split(",") if (FILTERS / n / "filter.yaml").is_file()]:
        result["edit_to_live"].append(edit_to_live(name, args.edits))
        save()
    print(markdown(result))


if __name__ == "__main__":
    main()
