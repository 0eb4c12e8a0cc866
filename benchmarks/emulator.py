"""The emulator against a running Envoy (docs/benchmarks.md, "Emulator"), per reference filter:

- per case: one scenario file of each filter run by the harness (`run_file`) on a started stack — the emulator's
  stack vs the process backend's (Envoy + echo upstream) — steady cost per case, and per case including the
  stack's start (what a scenario file costs in `make test`);
- a whole scenario file on the emulator once its module is compiled (stack start + cases);
- module compile + instantiate (+ `_initialize` / on_vm_start / on_configure), wasmtime's compilation cache off
  (a fresh compile) and on (the disk cache warm).

Rounds alternate emulator/Envoy so a slow minute of the shared machine hits both. Modules are built before timing.
Run: `.venv/bin/python benchmarks/emulator.py [--rounds N]`; prints Markdown, writes
benchmarks/results/emulator.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from wasmfilter.build.cargo import build
from wasmfilter.emulator import vm
from wasmfilter.emulator.host import FilterHost
from wasmfilter.envoy.binary import resolve
from wasmfilter.harness import scenario
from wasmfilter.harness.runner import run_file, stack_spec
from wasmfilter.harness.stack import start_stack
from wasmfilter.manifest import load_manifest

REPO = Path(__file__).resolve().parent.parent
FILES = {"auth": "api_keys.yaml", "ratelimit": "rules.yaml", "routing": "rules.yaml", "blank": "response_header.yaml"}


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def run_once(backend: str, manifest: object, sfile: scenario.ScenarioFile, wasm: Path) -> tuple[float, float, int]:
    binary = resolve(None)
    started = time.perf_counter()
    with start_stack(stack_spec(manifest, sfile, wasm), backend=backend, binary=binary) as stack:  # type: ignore[arg-type]
        ready = time.perf_counter()
        results = run_file(stack, sfile)
        done = time.perf_counter()
    failed = [r.name for r in results if not r.passed]
    if failed:
        raise SystemExit(f"{backend}: {failed} failed")
    return ready - started, done - ready, len(results)


def compile_cost(wasm: Path, config: object, cache: bool) -> float:
    vm.forget_compiled()
    started = time.perf_counter()
    FilterHost.load(wasm, config=config, cache=cache)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, object] = {"cpu": next((line.split(":", 1)[1].strip() for line in
                                           Path("/proc/cpuinfo").read_text().splitlines()
                                           if line.startswith("model name")), platform.processor()),
                              "cpus": os.cpu_count(), "load_before": os.getloadavg(), "filters": {}}
    rows = []
    for name, file in FILES.items():
        manifest = load_manifest(REPO / "filters" / name)
        sfile = scenario.load(REPO / "filters" / name / "scenarios" / file)
        wasm = build(manifest.crate_dir).wasm
        run_once("emulator", manifest, sfile, wasm)  # compiles the module once (and fills wasmtime's disk cache)
        samples: dict[str, dict[str, list[float]]] = {b: {"start": [], "cases": []} for b in ("emulator", "process")}
        cases = 0
        for _ in range(args.rounds):
            for backend in ("emulator", "process"):
                start, run, cases = run_once(backend, manifest, sfile, wasm)
                samples[backend]["start"].append(start)
                samples[backend]["cases"].append(run)
        compile_off = [compile_cost(wasm, manifest.config, cache=False) for _ in range(args.rounds)]
        compile_on = [compile_cost(wasm, manifest.config, cache=True) for _ in range(args.rounds)]
        emu, env = samples["emulator"], samples["process"]
        row = {
            "file": f"{name}/scenarios/{file}", "cases": cases,
            "emulator_ms_per_case": 1000 * median(emu["cases"]) / cases,
            "envoy_ms_per_case": 1000 * median(env["cases"]) / cases,
            "emulator_file_ms": 1000 * (median(emu["start"]) + median(emu["cases"])),
            "envoy_file_ms": 1000 * (median(env["start"]) + median(env["cases"])),
            "compile_cache_off_ms": 1000 * median(compile_off), "compile_cache_on_ms": 1000 * median(compile_on),
            "module_kb": wasm.stat().st_size // 1024,
        }
        row["speedup_per_case"] = row["envoy_ms_per_case"] / row["emulator_ms_per_case"]
        row["speedup_per_file"] = row["envoy_file_ms"] / row["emulator_file_ms"]
        rows.append(row)
        out["filters"][name] = {"row": row, "samples": samples, "compile_off": compile_off,  # type: ignore[index]
                                "compile_on": compile_on}
    out["load_after"] = os.getloadavg()
    print("| scenario file | cases | per case: emulator / Envoy (ms) | × | whole file incl. start: emulator / Envoy "
          "(ms) | × | compile+instantiate, cache off / on (ms) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['file']} ({r['module_kb']} KB) | {r['cases']} | {r['emulator_ms_per_case']:.2f} / "
              f"{r['envoy_ms_per_case']:.2f} | {r['speedup_per_case']:.1f} | {r['emulator_file_ms']:.0f} / "
              f"{r['envoy_file_ms']:.0f} | {r['speedup_per_file']:.1f} | {r['compile_cache_off_ms']:.0f} / "
              f"{r['compile_cache_on_ms']:.0f} |")
    loads = [", ".join(f"{x:.1f}" for x in out[k]) for k in ("load_before", "load_after")]  # type: ignore[attr-defined]
    print(f"load average before: {loads[0]}; after: {loads[1]}")
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "emulator.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
