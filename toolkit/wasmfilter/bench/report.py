"""Turn a BenchRun into numbers (medians over rounds, spreads, deltas, ratios, target verdicts) — the JSON
document — and render that document as a Markdown report, a terminal table and a PNG plot."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wasmfilter.bench import guest_cost, one_envoy, probes, vm_start
from wasmfilter.bench.definition import Scenario, Targets
from wasmfilter.bench.runner import (
    BASELINE,
    BEFORE,
    FLOOR,
    OPT,
    PROBE,
    PROBE_PREFIX,
    WASM,
    BenchRun,
    Sample,
    before_wasm_path,
    opt_wasm_path,
)
from wasmfilter.errors import UsageError

SCHEMA = 1


# ---------------------------------------------------------------- numbers

def stat(values: list[float]) -> dict[str, Any]:
    """Median, min, max and spread ((max-min)/median, %) of one metric over the rounds."""
    if not values:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "n": 0}
    med = statistics.median(values)
    spread = (max(values) - min(values)) / abs(med) * 100 if med and len(values) > 1 else None
    return {"median": round(med, 2), "min": round(min(values), 2), "max": round(max(values), 2),
            "spread_pct": None if spread is None else round(spread, 1), "n": len(values)}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        m = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_kb = int(m.group(1)) if m else 0
    except OSError:
        pass
    try:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5).stdout.split("[")[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        wrk = ""
    return {"nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_model": cpu or platform.processor(), "ram_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "wrk": wrk}


def _vs_floor(run: BenchRun, sc: Scenario, vs_baseline: dict[str, Any], paired: Callable[..., list[float]],
              cpu: Callable[[Sample], float], p50: Callable[[Sample], float]) -> dict[str, Any] | None:
    """The filter against the floor (a bare no-op module, same rounds): the floor's own added CPU and p50, the
    filter's added CPU as a multiple of it, and each probe's cost per call ((probe − floor) / repeat)."""
    names = {v.name for v in run.variants}
    if FLOOR not in names:
        return None
    floor_cpu = stat(paired(cpu, FLOOR, BASELINE, lambda a, b: a - b))
    floor_p50 = stat(paired(p50, FLOOR, BASELINE, lambda a, b: a - b))
    wasm_cpu = vs_baseline["added_cpu_us_per_req"]["median"]
    base = floor_cpu["median"]
    multiple = round(wasm_cpu / base, 2) if wasm_cpu is not None and base and base > 0 else None
    per_call: dict[str, Any] = {}
    for v in run.variants:
        if v.kind != PROBE or v.name == FLOOR:
            continue
        probe = probes.CATALOG[v.name.removeprefix(PROBE_PREFIX)]
        per_call[probe.name] = {"per": probe.per, "repeat": probe.repeat, "description": probe.description,
                                "cpu_us": stat(paired(cpu, v.name, FLOOR, lambda a, b, r=probe.repeat: (a - b) / r)),
                                "p50_us": stat(paired(p50, v.name, FLOOR, lambda a, b, r=probe.repeat: (a - b) / r))}
    return {"floor_added_cpu_us_per_req": floor_cpu, "floor_added_p50_us": floor_p50,
            "added_cpu_multiple": multiple, "probes": per_call}


def summarize(run: BenchRun) -> dict[str, Any]:
    d = run.definition
    s = d.settings
    natives = [v.name for v in run.variants if v.kind == "native"]
    warnings: list[str] = list(run.problems)
    misses: list[str] = []
    scenarios = []
    for sc in d.scenarios:
        per_variant: dict[str, Any] = {}
        applicable = [v for v in run.variants if sc.applies_to(v.kind, v.name)]
        for v in applicable:
            samples = run.samples[sc.name][v.name]
            entry: dict[str, Any] = {
                "p50_us": stat([x.latency.p(50) for x in samples]),
                "p90_us": stat([x.latency.p(90) for x in samples]),
                "p99_us": stat([x.latency.p(99) for x in samples]),
                "rps": stat([x.throughput.rps for x in samples]),
                "cpu_us_per_req": stat([x.cpu_us_per_request for x in samples]),
                "loaded_p50_us": stat([x.throughput.p(50) for x in samples]),
                "loaded_p99_us": stat([x.throughput.p(99) for x in samples]),
                "unexpected_pct": round(max((x.unexpected_pct for x in samples), default=0.0), 3),
                "rounds": [{"round": x.round, "latency": x.latency.to_json(), "throughput": x.throughput.to_json(),
                            "envoy_cpu_ns": x.cpu_ns, "unexpected_pct": round(x.unexpected_pct, 3)}
                           for x in samples],
            }
            per_variant[v.name] = entry
            wide = [f"{label} {entry[metric]['spread_pct']:.0f}%"
                    for metric, label in (("p50_us", "p50"), ("rps", "req/s"), ("cpu_us_per_req", "CPU/req"))
                    if entry[metric]["spread_pct"] is not None and entry[metric]["spread_pct"] > s.max_spread_pct]
            if wide:
                warnings.append(f"{sc.name}/{v.name}: spread over {s.rounds} rounds {', '.join(wide)} "
                                f"(> {s.max_spread_pct:.0f}%): machine noise, do not trust small differences")
            if entry["unexpected_pct"] > sc.expect.unexpected_limit_pct:
                warnings.append(f"{sc.name}/{v.name}: {entry['unexpected_pct']:.1f}% of responses had the wrong "
                                f"status class under load")

        def paired(metric: Callable[[Sample], float], a: str, b: str, op: Callable[[float, float], float],
                   sc: Scenario = sc) -> list[float]:
            xs, ys = run.samples[sc.name][a], run.samples[sc.name][b]
            return [op(metric(x), metric(y)) for x, y in zip(xs, ys)]

        def p50(x: Sample) -> float:
            return x.latency.p(50)

        def p99(x: Sample) -> float:
            return x.latency.p(99)

        def rps(x: Sample) -> float:
            return x.throughput.rps

        def cpu(x: Sample) -> float:
            return x.cpu_us_per_request

        vs_baseline = {
            "added_p50_us": stat(paired(p50, WASM, BASELINE, lambda a, b: a - b)),
            "added_p99_us": stat(paired(p99, WASM, BASELINE, lambda a, b: a - b)),
            "rps_ratio": stat(paired(rps, WASM, BASELINE, lambda a, b: a / b if b else 0.0)),
            "added_cpu_us_per_req": stat(paired(cpu, WASM, BASELINE, lambda a, b: a - b)),
        }
        vs_native = {n: {"rps_ratio": stat(paired(rps, WASM, n, lambda a, b: a / b if b else 0.0)),
                         "p50_delta_us": stat(paired(p50, WASM, n, lambda a, b: a - b)),
                         # req per Envoy CPU-second, Wasm / native: the throughput ratio with the noise of other
                         # processes taken out (what the ratio would be with Envoy's CPU to itself).
                         "cpu_efficiency_ratio": stat(paired(cpu, n, WASM, lambda a, b: a / b if b else 0.0)),
                         "native_added_cpu_us_per_req": stat(paired(cpu, n, BASELINE, lambda a, b: a - b)),
                         "native_added_p50_us": stat(paired(p50, n, BASELINE, lambda a, b: a - b))}
                     for n in natives if sc.applies_to("native", n)}
        vs_floor = _vs_floor(run, sc, vs_baseline, paired, cpu, p50)
        # Other builds of the filter (the size build, a build from before a change) against no filter and against
        # the build under test, per round.
        other_builds = {v.name: {"added_p50_us": stat(paired(p50, v.name, BASELINE, lambda a, b: a - b)),
                                 "added_cpu_us_per_req": stat(paired(cpu, v.name, BASELINE, lambda a, b: a - b)),
                                 "cpu_vs_default_build_us": stat(paired(cpu, v.name, WASM, lambda a, b: a - b))}
                        for v in run.variants if v.kind in (OPT, BEFORE)}
        opt_vs_baseline = other_builds.get(OPT)
        added = vs_baseline["added_p50_us"]["median"]
        targets: dict[str, Any] = {"added_p50_us": {"value": added, "target": d.targets.added_p50_us,
                                                    "ok": added is not None and added <= d.targets.added_p50_us}}
        if not targets["added_p50_us"]["ok"]:
            misses.append(f"{sc.name}: Wasm adds {added} µs at p50 over no filter (target <= "
                          f"{d.targets.added_p50_us:g} µs)")
        for n in vs_native:
            ratio = vs_native[n]["rps_ratio"]["median"]
            ok = ratio is not None and ratio >= d.targets.native_rps_ratio
            targets[f"rps_vs_{n}"] = {"value": ratio, "target": d.targets.native_rps_ratio, "ok": ok}
            if not ok:
                misses.append(f"{sc.name}: Wasm reaches {ratio}x the requests/s of native {n} "
                              f"(target >= {d.targets.native_rps_ratio:g}x)")
        one = None
        if sc.name in run.one_envoy:
            one = one_envoy.summarize(
                run.one_envoy[sc.name], baseline=BASELINE, wasm=WASM,
                floor=FLOOR,
                probe_repeat={v.name: probes.CATALOG[v.name.removeprefix(PROBE_PREFIX)].repeat for v in run.variants
                              if v.kind == PROBE and v.name != FLOOR},
                natives=list(vs_native))
        multiple = (one or {}).get("added_cpu_multiple")
        if multiple is not None:
            ok = multiple <= d.targets.floor_multiple
            targets["floor_multiple"] = {"value": multiple, "target": d.targets.floor_multiple, "ok": ok}
            if not ok:
                misses.append(f"{sc.name}: Wasm adds {multiple}x the floor's Envoy CPU per request in one Envoy "
                              f"(target <= {d.targets.floor_multiple:g}x)")
        scenarios.append({"name": sc.name, "description": sc.description, "one_envoy": one,
                          "request": sc.request.model_dump(), "expect": sc.expect.model_dump(),
                          "variants": per_variant, "wasm_vs_baseline": vs_baseline, "wasm_vs_native": vs_native,
                          "wasm_vs_floor": vs_floor, "opt_vs_baseline": opt_vs_baseline,
                          "before_vs_baseline": other_builds.get(BEFORE), "targets": targets})
    envoy: dict[str, Any] = {}
    for v in run.variants:
        es = run.envoy[v.name]
        envoy[v.name] = {"start_ms": stat([e.start_s * 1000 for e in es]),
                         "rss_ready_mib": stat([e.rss_ready_kb / 1024 for e in es]),
                         "rss_loaded_mib": stat([e.rss_loaded_kb / 1024 for e in es])}
    base_env = run.envoy[BASELINE]
    for v in run.variants:
        es = run.envoy[v.name]
        envoy[v.name]["start_delta_ms"] = stat([(a.start_s - b.start_s) * 1000 for a, b in zip(es, base_env)])
        envoy[v.name]["rss_delta_mib"] = stat([(a.rss_loaded_kb - b.rss_loaded_kb) / 1024
                                               for a, b in zip(es, base_env)])
    if run.vm_start_cpu:
        cpu_deltas = vm_start.deltas(run.vm_start_cpu, BASELINE)
        for v in run.variants:
            envoy[v.name]["load_cpu_ms"] = stat(run.vm_start_cpu[v.name])
            envoy[v.name]["load_cpu_delta_ms"] = stat(cpu_deltas[v.name])
    wasm_stats = run.envoy[WASM][-1].wasm_stats if run.envoy[WASM] else {}
    if s.rounds == 1:
        warnings.append("1 round: no spread measured; use --rounds 3 or more before trusting the numbers")
    return {
        "schema": SCHEMA,
        "filter": d.name,
        "definition": str(d.path) if d.path else None,
        "description": d.description,
        "started_at": dt.datetime.fromtimestamp(run.started_at, dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(run.seconds, 1),
        "machine": machine(),
        "load_avg": {"before": run.load_before, "after": run.load_after},
        "envoy_version": run.binary.version,
        "wasm": {"path": str(run.wasm), "size_bytes": run.wasm_size},
        "builds": _other_builds(run),
        "settings": s.model_dump(),
        "tuning": run.tuning.to_json(),
        "targets": d.targets.model_dump(),
        "variants": [{"name": v.name, "kind": v.kind, "description": v.description} for v in run.variants],
        "scenarios": scenarios,
        "envoy": envoy,
        "wasm_stats_last_round": wasm_stats,
        "guest_cost": run.guest,
        "warnings": warnings,
        "verdict": {"ok": not misses, "misses": misses},
        "notes": d.notes.strip(),
    }


def _other_builds(run: BenchRun) -> dict[str, dict[str, Any]]:
    """Module path and size of each other build of the filter measured beside it (wasm-opt, wasm-before)."""
    paths = {OPT: opt_wasm_path(run.wasm), BEFORE: before_wasm_path(run.definition, run.wasm)}
    return {v.name: {"path": str(paths[v.kind]),
                     "size_bytes": paths[v.kind].stat().st_size if paths[v.kind].is_file() else None}
            for v in run.variants if v.kind in paths}


# ---------------------------------------------------------------- rendering helpers

def _n(value: Any, fmt: str = "{:,.0f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def _spread(entry: dict) -> str:
    sp = entry.get("spread_pct")
    return "–" if sp is None else f"{sp:.0f}%"


def table_rows(doc: dict) -> list[list[str]]:
    """Rows of the main table: one per scenario × variant."""
    rows = []
    for sc in doc["scenarios"]:
        for v in doc["variants"]:
            if v["name"] not in sc["variants"]:
                continue  # no native equivalent for this scenario
            e = sc["variants"][v["name"]]
            if v["kind"] == WASM:
                added = _n(sc["wasm_vs_baseline"]["added_p50_us"]["median"], "{:+.0f}")
                added_cpu = _n(sc["wasm_vs_baseline"]["added_cpu_us_per_req"]["median"], "{:+.1f}")
                ratio = ", ".join(f"{_n(x['rps_ratio']['median'], '{:.2f}')}x / "
                                  f"{_n(x['cpu_efficiency_ratio']['median'], '{:.2f}')}x {n}"
                                  for n, x in sc["wasm_vs_native"].items()) or "–"
            elif v["kind"] == "native":
                nat = sc["wasm_vs_native"][v["name"]]
                added = _n(nat["native_added_p50_us"]["median"], "{:+.0f}")
                added_cpu = _n(nat["native_added_cpu_us_per_req"]["median"], "{:+.1f}")
                ratio = ""
            elif v["kind"] == PROBE:
                added, added_cpu, ratio = _probe_cells(sc, v["name"])
            elif v["kind"] in (OPT, BEFORE) and sc.get(OTHER_BUILD_KEYS[v["kind"]]):
                o = sc[OTHER_BUILD_KEYS[v["kind"]]]
                added = _n(o["added_p50_us"]["median"], "{:+.0f}")
                added_cpu = _n(o["added_cpu_us_per_req"]["median"], "{:+.1f}")
                ratio = f"{_n(o['cpu_vs_default_build_us']['median'], '{:+.2f}')} µs CPU/req vs wasm"
            else:
                added, added_cpu, ratio = "", "", ""
            floor = sc.get("wasm_vs_floor") or {}
            multiple = _n(floor.get("added_cpu_multiple"), "{:.2f}x") if v["kind"] == WASM else ""
            rows.append([sc["name"], v["name"], _n(e["p50_us"]["median"]), _n(e["p90_us"]["median"]),
                         _n(e["p99_us"]["median"]), _n(e["rps"]["median"]),
                         _n(e["cpu_us_per_req"]["median"], "{:.1f}"), added, added_cpu, multiple, ratio,
                         f"{_spread(e['p50_us'])} / {_spread(e['rps'])} / {_spread(e['cpu_us_per_req'])}"])
    return rows


OTHER_BUILD_KEYS = {OPT: "opt_vs_baseline", BEFORE: "before_vs_baseline"}


def _probe_cells(sc: dict, variant: str) -> tuple[str, str, str]:
    """(added p50, added CPU, per-call cost) of a probe row: the floor against no filter, a probe per call."""
    floor = sc.get("wasm_vs_floor") or {}
    if variant == FLOOR:
        return (_n(floor.get("floor_added_p50_us", {}).get("median"), "{:+.0f}"),
                _n(floor.get("floor_added_cpu_us_per_req", {}).get("median"), "{:+.1f}"), "the unit: 1.00x")
    entry = floor.get("probes", {}).get(variant.removeprefix(PROBE_PREFIX))
    if not entry:
        return "", "", ""
    return ("", "", f"{_n(entry['cpu_us']['median'], '{:+.2f}')} µs CPU per {entry['per']} over the floor")


def table_header(doc: dict) -> list[str]:
    s = doc["settings"]
    lat_c = s["latency_connections"]
    return ["scenario", "variant", f"p50 µs (c={lat_c})", "p90 µs", "p99 µs", f"req/s (c={s['connections']})",
            "Envoy CPU µs/req", "added p50 µs", "added CPU µs/req", "added CPU × floor",
            "Wasm vs native: req/s / req per CPU-s",
            "spread p50 / req/s / CPU"]


def envoy_rows(doc: dict) -> list[list[str]]:
    rows = []
    for v in doc["variants"]:
        e = doc["envoy"][v["name"]]
        base = v["kind"] == BASELINE
        cpu = e.get("load_cpu_delta_ms")
        rows.append([v["name"], _n(e["start_ms"]["median"]),
                     "" if base else _n(e["start_delta_ms"]["median"], "{:+.0f}"),
                     "" if base or cpu is None else _n(cpu["median"], "{:+.0f}"),
                     _n(e["rss_ready_mib"]["median"], "{:.1f}"), _n(e["rss_loaded_mib"]["median"], "{:.1f}"),
                     "" if base else _n(e["rss_delta_mib"]["median"], "{:+.1f}")])
    return rows


ONE_ENVOY_HEADER = ["scenario", "variant", "Envoy CPU µs/req", "added CPU µs/req (quartiles)", "× floor",
                    "per call over the floor (quartiles)", "req per CPU-s, Wasm vs this"]


def one_envoy_rows(doc: dict) -> list[list[str]]:
    """Rows of the one-Envoy table (bench/one_envoy.py), empty when that phase did not run."""
    rows = []
    for sc in doc["scenarios"]:
        one = sc.get("one_envoy")
        if not one:
            continue
        for v in doc["variants"]:
            e = one["variants"].get(v["name"])
            if e is None:
                continue
            added = e["added_cpu_us_per_req"]
            probe = (one.get("probes") or {}).get(v["name"])
            native = one["cpu_efficiency_vs_native"].get(v["name"])
            rows.append([sc["name"], v["name"], _n(e["cpu_us_per_req"]["median"], "{:.1f}"),
                         "" if v["kind"] == BASELINE else f"{_n(added['median'], '{:+.1f}')} "
                         f"({_n(added['q1'], '{:+.1f}')}…{_n(added['q3'], '{:+.1f}')})",
                         _n(one.get("added_cpu_multiple"), "{:.2f}x") if v["kind"] == WASM
                         else "1.00x" if v["name"] == FLOOR and one.get("added_cpu_multiple") else "",
                         f"{_n(probe['median'], '{:+.2f}')} ({_n(probe['q1'], '{:+.2f}')}…"
                         f"{_n(probe['q3'], '{:+.2f}')})" if probe else "",
                         _n(native["median"], "{:.2f}x") if native else ""])
    return rows


def before_after_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    """One table of the build under test beside the build from before a change (`--before`) and the size build:
    module bytes, VM start, and each scenario's added Envoy CPU per request — read in one Envoy when that phase
    ran, else the rounds' paired medians. Empty without a wasm-before variant."""
    builds = [v["name"] for v in doc["variants"] if v["kind"] in (WASM, OPT, BEFORE)]
    if BEFORE not in builds:
        return [], []
    sizes = {WASM: doc["wasm"]["size_bytes"]} | {n: b.get("size_bytes") for n, b in (doc.get("builds") or {}).items()}

    def row(label: str, values: dict[str, float | None], fmt: str, change: Callable[[float, float], str]) -> list[str]:
        now, before = values.get(WASM), values.get(BEFORE)
        return [label, *(_n(values.get(n), fmt) for n in builds),
                "" if now is None or before is None else change(now, before)]

    def diff(unit: str, fmt: str) -> Callable[[float, float], str]:
        return lambda now, before: f"{fmt.format(now - before)} {unit}"

    def pct(now: float, before: float) -> str:
        return f"{(now / before - 1) * 100:+.0f} %" if before else ""

    envoy = doc["envoy"]
    rows = [row("module bytes", sizes, "{:,.0f}", pct),
            row("VM start CPU Δ ms", {n: (envoy[n].get("load_cpu_delta_ms") or {}).get("median") for n in builds},
                "{:+.0f}", diff("ms", "{:+.0f}")),
            row("start→ready Δ ms", {n: envoy[n]["start_delta_ms"]["median"] for n in builds}, "{:+.0f}",
                diff("ms", "{:+.0f}"))]
    rounds_key = {WASM: "wasm_vs_baseline", OPT: "opt_vs_baseline", BEFORE: "before_vs_baseline"}
    kinds = {v["name"]: v["kind"] for v in doc["variants"]}
    for sc in doc["scenarios"]:
        one = (sc.get("one_envoy") or {}).get("variants")
        if one:
            added = {n: one[n]["added_cpu_us_per_req"]["median"] for n in builds if n in one}
        else:
            added = {n: ((sc.get(rounds_key[kinds[n]]) or {}).get("added_cpu_us_per_req") or {}).get("median")
                     for n in builds}
        rows.append(row(f"{sc['name']}: added CPU µs/req ({'one Envoy' if one else 'rounds'})", added, "{:+.1f}",
                        diff("µs", "{:+.1f}")))
    return ["", *builds, f"{WASM} vs {BEFORE}"], rows


ENVOY_HEADER = ["variant", "start→ready ms", "Δ vs no filter (VM start)",
                "VM start CPU ms (validate, Δ vs no filter)", "RSS ready MiB", "RSS after load MiB",
                "Δ RSS vs no filter MiB"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(doc: dict, plot_name: str | None = None, heading: str = "##") -> str:
    s = doc["settings"]
    m = doc["machine"]
    variants = ", ".join(f"**{v['name']}** ({v['description']})" for v in doc["variants"])
    out = [f"{heading} {doc['filter']}: Wasm filter vs Envoy without it vs native Envoy", ""]
    if doc["description"]:
        out += [doc["description"].strip(), ""]
    summary = summary_line(doc)
    if summary:
        out += [summary, ""]
    out += [
        f"Run {doc['started_at']} in {doc['seconds']:.0f} s on {m['nproc']} CPUs ({m['cpu_model']}), "
        f"{m['ram_gib']} GiB RAM, Linux {m['kernel']}; Envoy {doc['envoy_version']} `--concurrency "
        f"{s['envoy_concurrency']}`; {m['wrk']}. Load average before/after: "
        f"{doc['load_avg']['before'][0]:.2f} / {doc['load_avg']['after'][0]:.2f}.",
        "",
        f"Method: {s['rounds']} interleaved rounds (variant order rotates each round; a fresh Envoy per variant "
        f"per round); per round and scenario, a {s['duration_s']} s latency pass with wrk `-c"
        f"{s['latency_connections']}` (p50/p90/p99 from wrk's histogram) and a {s['duration_s']} s throughput "
        f"pass with `-c{s['connections']} -t{s['wrk_threads']}` (req/s), after a {s['warmup_s']} s warm-up. "
        f"*Envoy CPU µs/req* is Envoy's CPU time (all threads, /proc schedstat) over the throughput pass "
        f"divided by its requests — the filter's cost with other processes' noise mostly taken out; *req per "
        f"CPU-s* ratio = native CPU µs/req ÷ Wasm CPU µs/req. "
        f"Values are medians over rounds; *added* and *vs native* are medians of per-round paired differences/"
        f"ratios; spread is (max−min)/median over rounds. Envoy answers with `direct_response` after the filter "
        f"chain (no upstream hop). {_tuning_text(doc.get('tuning') or {})} "
        f"Wasm module {doc['wasm']['size_bytes']:,} bytes.",
        "",
        f"Variants: {variants}.",
        "",
        _md_table(table_header(doc), table_rows(doc)),
        "",
        _md_table(ENVOY_HEADER, envoy_rows(doc)),
        "",
    ]
    header, rows = before_after_table(doc)
    if rows:
        out += [f"**Before/after** (the filter as built now, {', '.join(header[2:-1])} beside it; from this run):", "",
                _md_table(header, rows), ""]
    one = one_envoy_rows(doc)
    if one:
        out += [f"**One Envoy** (every variant on its own listener of one Envoy process, "
                f"{s.get('one_envoy_cycles')} cycles of a {s.get('one_envoy_slice_s')} s wrk `-c{s['connections']}` "
                f"slice per variant in rotating order; *added* is the median over cycles of the variant's CPU µs/req "
                f"minus no filter's in the same cycle, with its quartiles; what the floor multiple and the probes' "
                f"per-call costs are read from, since two Envoys differ by a few µs per request from process to "
                f"process):", "", _md_table(ONE_ENVOY_HEADER, one), ""]
    t = doc["targets"]
    out.append(f"Targets: Wasm adds ≤ {t['added_p50_us']:g} µs at p50 over no filter, reaches ≥ "
               f"{t['native_rps_ratio']:g}x the req/s of the native equivalent, and (in one Envoy) adds ≤ "
               f"{t.get('floor_multiple', Targets().floor_multiple):g}x the floor's Envoy CPU per request.")
    out.append("")
    for sc in doc["scenarios"]:
        for key, tg in sc["targets"].items():
            mark = "✅" if tg["ok"] else "❌"
            if key == "added_p50_us":
                extra = _n(sc["wasm_vs_baseline"]["added_cpu_us_per_req"]["median"], "{:+.1f}")
                out.append(f"- {mark} {sc['name']}: added p50 = {_n(tg['value'], '{:g}')} µs (target ≤ "
                           f"{tg['target']:g}); added Envoy CPU per request {extra} µs")
            elif key == "floor_multiple":
                out.append(f"- {mark} {sc['name']}: added Envoy CPU per request = {_n(tg['value'], '{:.2f}')}x the "
                           f"floor's, in one Envoy (target ≤ {tg['target']:g}x)")
            else:
                native = key.removeprefix("rps_vs_")
                extra = _n(sc["wasm_vs_native"][native]["cpu_efficiency_ratio"]["median"], "{:.2f}")
                out.append(f"- {mark} {sc['name']}: req/s vs {native} = {_n(tg['value'], '{:.2f}')}x (target ≥ "
                           f"{tg['target']:g}x); per Envoy CPU-second {extra}x")
    out.append("")
    if doc.get("guest_cost"):
        out += [guest_cost.markdown(doc["guest_cost"]), ""]
    if doc["warnings"]:
        out += ["Warnings:", ""] + [f"- {w}" for w in doc["warnings"]] + [""]
    if doc["notes"]:
        out += ["Notes:", "", doc["notes"], ""]
    if plot_name:
        out += [f"![latency distributions and req/s: {doc['filter']}]({plot_name})", ""]
    return "\n".join(out)


def _tuning_text(tuning: dict) -> str:
    parts = []
    if tuning.get("envoy_cpus"):
        parts.append(f"Envoy pinned to CPU {','.join(map(str, tuning['envoy_cpus']))}, wrk to CPU "
                     f"{','.join(map(str, tuning['wrk_cpus']))}")
    if tuning.get("nice"):
        parts.append(f"both at nice {tuning['nice']}")
    if tuning.get("awake_cpus"):
        parts.append(f"CPU {','.join(map(str, tuning['awake_cpus']))} kept awake by SCHED_IDLE spinners "
                     f"(no VM idle wake-up in the 1-connection pass)")
    text = "; ".join(parts)
    notes = "; ".join(tuning.get("notes", []))
    return (text[:1].upper() + text[1:] + "." if text else "") + (f" ({notes})" if notes else "")


def _range(values: list[float], fmt: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}…{hi}"


def summary_line(doc: dict) -> str:
    """One sentence per filter: the ranges over its scenarios."""
    scs = doc["scenarios"]
    if not scs:
        return ""
    cpu = _range([s["wasm_vs_baseline"]["added_cpu_us_per_req"]["median"] for s in scs], "{:.1f}")
    p50 = _range([s["wasm_vs_baseline"]["added_p50_us"]["median"] for s in scs], "{:+.0f}")
    text = (f"**Summary:** over {len(scs)} scenarios the Wasm filter adds {cpu} µs of Envoy CPU per request and "
            f"{p50} µs at p50 (1 connection) over Envoy without it")
    floors = [s.get("wasm_vs_floor") for s in scs if s.get("wasm_vs_floor")]
    if floors:
        multiple = _range([f["added_cpu_multiple"] for f in floors], "{:.2f}")
        unit = _range([f["floor_added_cpu_us_per_req"]["median"] for f in floors], "{:.1f}")
        text += (f" — {multiple}x the floor (a bare no-op module, which adds {unit} µs CPU per request on this "
                 f"{doc['machine']['cpu_model'] or 'CPU'})")
    ones = [s["one_envoy"] for s in scs if (s.get("one_envoy") or {}).get("added_cpu_multiple") is not None]
    if ones:
        added = _range([o["variants"][WASM]["added_cpu_us_per_req"]["median"] for o in ones], "{:+.1f}")
        multiple = _range([o["added_cpu_multiple"] for o in ones], "{:.2f}")
        unit = _range([o["floor_added_cpu_us_per_req"] for o in ones], "{:+.1f}")
        text += f"; in one Envoy (paired slices) {added} µs, {multiple}x the floor's {unit} µs"
    natives = sorted({n for s in scs for n in s["wasm_vs_native"]})
    for n in natives:
        per_cpu = _range([s["wasm_vs_native"][n]["cpu_efficiency_ratio"]["median"] for s in scs
                          if n in s["wasm_vs_native"]], "{:.2f}")
        wall = _range([s["wasm_vs_native"][n]["rps_ratio"]["median"] for s in scs if n in s["wasm_vs_native"]],
                      "{:.2f}")
        native_cpu = _range([s["wasm_vs_native"][n]["native_added_cpu_us_per_req"]["median"] for s in scs
                             if n in s["wasm_vs_native"]], "{:.1f}")
        text += (f"; vs native **{n}** (which adds {native_cpu} µs CPU) it reaches {per_cpu}x the requests per "
                 f"Envoy CPU-second ({wall}x wall-clock req/s)")
    wasm = doc["envoy"]["wasm"]
    cpu = ""
    if "load_cpu_delta_ms" in wasm:
        cpu = f" ({_n(wasm['load_cpu_delta_ms']['median'], '{:+.0f}')} ms of Envoy CPU)"
    return text + f". VM start adds {_n(wasm['start_delta_ms']['median'])} ms{cpu}, RSS " \
                  f"{_n(wasm['rss_delta_mib']['median'], '{:+.1f}')} MiB."


def plain_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- plot

def _nines(p: float) -> float:
    return -math.log10(1 - p / 100) if p < 100 else 5.0


def plot(doc: dict, path: Path) -> Path:
    """Latency percentile curves (latency pass, the median round) and req/s with min–max bars, per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = doc["scenarios"]
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(12, 3.6 * len(scenarios)), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1]})
    colors = {v["name"]: f"C{i}" for i, v in enumerate(doc["variants"])}
    ticks = [50, 90, 99, 99.9, 99.99]
    for row, sc in zip(axes, scenarios):
        ax, bx = row
        names, meds, lows, highs = [], [], [], []
        for v in doc["variants"]:
            e = sc["variants"].get(v["name"])
            if e is None:
                continue
            rounds = e["rounds"]
            if not rounds:
                continue
            target = e["p50_us"]["median"]
            chosen = min(rounds, key=lambda r: abs(r["latency"]["percentiles"]["50.0"] - target))
            pts = sorted((float(p), us) for p, us in chosen["latency"]["percentiles"].items())
            ax.plot([_nines(p) for p, _ in pts], [us for _, us in pts], label=v["name"], color=colors[v["name"]])
            names.append(v["name"])
            meds.append(e["rps"]["median"])
            lows.append(e["rps"]["median"] - e["rps"]["min"])
            highs.append(e["rps"]["max"] - e["rps"]["median"])
        ax.set_xticks([_nines(p) for p in ticks], [f"p{p:g}" for p in ticks])
        ax.set_xlim(0, _nines(99.99))
        ax.set_yscale("log")
        ax.set_ylabel("latency µs (log)")
        ax.set_title(f"{doc['filter']} / {sc['name']}: latency, wrk -c{doc['settings']['latency_connections']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        bx.bar(names, meds, yerr=[lows, highs], color=[colors[n] for n in names], capsize=4)
        bx.set_title(f"req/s, wrk -c{doc['settings']['connections']} (min–max over rounds)")
        bx.tick_params(axis="x", labelrotation=20, labelsize=8)
        bx.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- files

def write_outputs(doc: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = doc["filter"]
    paths = {"json": out_dir / f"{name}.json", "markdown": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    paths["json"].write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    plot(doc, paths["png"])
    paths["markdown"].write_text(markdown(doc, plot_name=paths["png"].name, heading="#") + "\n")
    return paths


SLIM_PERCENTILES = ("50.0", "90.0", "99.0", "99.9")


def slim(doc: dict) -> dict:
    """DOC with each pass's 102 percentiles cut to p50/p90/p99/p99.9 (for a committed copy)."""
    out = json.loads(json.dumps(doc))
    for sc in out["scenarios"]:
        for v in sc["variants"].values():
            for r in v["rounds"]:
                for key in ("latency", "throughput"):
                    r[key]["percentiles"] = {p: r[key]["percentiles"][p] for p in SLIM_PERCENTILES
                                             if p in r[key]["percentiles"]}
    return out


def load_doc(path: Path) -> dict:
    """A bench JSON written by an earlier run (to re-render its report without measuring again)."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"cannot read '{path}': {e.strerror}", fix="pass a JSON file from benchmarks/results/") from e
    except json.JSONDecodeError as e:
        raise UsageError(f"'{path}' is not JSON ({e.msg})", fix="pass a JSON file from benchmarks/results/") from e
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or "scenarios" not in doc:
        raise UsageError(f"'{path}' is not a wasmfilter bench result (schema {SCHEMA})",
                         fix="pass a JSON file written by `wasmfilter bench`")
    return doc


def marker(name: str, edge: str) -> str:
    return f"<!-- wasmfilter-bench:{name}:{edge} -->"


def update_docs(doc: dict, docs_file: Path, plot_path: Path | None = None) -> None:
    """Replace this filter's section between its markers in DOCS_FILE (appended when absent); nothing else in
    the file changes."""
    start, end = marker(doc["filter"], "start"), marker(doc["filter"], "end")
    text = docs_file.read_text() if docs_file.exists() else ""
    if text.count(start) > 1 or text.count(end) > 1 or (start in text) != (end in text):
        raise UsageError(f"{docs_file}: the markers for '{doc['filter']}' are broken",
                         fix=f"keep exactly one '{start}' and one '{end}'")
    plot_ref = None
    kept_dir = docs_file.parent / "benchmarks"
    kept_dir.mkdir(parents=True, exist_ok=True)
    if plot_path is not None:
        # Results directories are not committed; the docs keep their own copy of the plot beside them,
        kept = kept_dir / plot_path.name
        if kept.resolve() != plot_path.resolve():
            shutil.copyfile(plot_path, kept)
        plot_ref = os.path.relpath(kept, docs_file.parent)
    # and of the numbers (every round, latency percentiles cut to the ones the tables use).
    (kept_dir / f"{doc['filter']}.json").write_text(json.dumps(slim(doc), ensure_ascii=False) + "\n")
    section = f"{start}\n{markdown(doc, plot_name=plot_ref, heading='###')}\n{end}"
    if start in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + section + after
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    docs_file.write_text(text)
