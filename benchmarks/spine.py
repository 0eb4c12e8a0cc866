"""Measures the spine's speed targets (docs/benchmarks.md, "Spine"): incremental rebuild after a one-line
Rust edit, Envoy start-to-ready with a Wasm filter, `envoy --mode validate`, per-scenario overhead with Envoy
reused. Run: `.venv/bin/python benchmarks/spine.py [--rounds N]`; prints Markdown and writes JSON."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from wasmfilter import scenario
from wasmfilter.build import build
from wasmfilter.envoy.config import validate_text
from wasmfilter.harness import StackSpec, start_stack
from wasmfilter.manifest import load_manifest
from wasmfilter.runner import run_file, stack_spec

REPO = Path(__file__).resolve().parent.parent
AUTH = REPO / "filters" / "auth"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(samples), "mean": statistics.fmean(samples), "p50": statistics.median(samples),
            "p95": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
            "min": ordered[0], "max": ordered[-1]}


def incremental_rebuild(rounds: int) -> dict[str, float]:
    """Copy the workspace, warm it once, then time rebuilds after editing one line of lib.rs."""
    with tempfile.TemporaryDirectory(prefix="wasmfilter-bench-") as tmp:
        work = Path(tmp) / "filters"
        shutil.copytree(REPO / "filters", work, ignore=shutil.ignore_patterns("target"))
        os.environ["CARGO_TARGET_DIR"] = str(Path(tmp) / "target")
        try:
            cold = build(work / "auth").seconds
            lib = work / "auth" / "src" / "lib.rs"
            original = lib.read_text()
            samples = []
            for i in range(rounds):
                lib.write_text(original.replace('"denied: no credential"', f'"denied: no credential ({i})"'))
                samples.append(build(work / "auth").seconds)
            noop = build(work / "auth").seconds
        finally:
            os.environ.pop("CARGO_TARGET_DIR", None)
    return {"cold_with_std": cold, "noop": noop, **summary(samples)}


def start_to_ready(rounds: int) -> dict[str, float]:
    manifest = load_manifest(AUTH)
    wasm = build(AUTH).wasm
    samples = []
    for _ in range(rounds):
        with start_stack(StackSpec(manifest=manifest, wasm_path=wasm)) as stack:
            samples.append(stack.envoy.start_seconds)
    return summary(samples)


def validate_time(rounds: int) -> dict[str, float]:
    from wasmfilter.configgen import bootstrap_for

    text = bootstrap_for(AUTH, wasm=build(AUTH).wasm)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        validate_text(text)
        samples.append(time.perf_counter() - started)
    return summary(samples)


def per_scenario_overhead(rounds: int) -> dict[str, float]:
    """Every auth scenario case, repeatedly, against one Envoy: wall time per case (request + checks + stats)."""
    manifest = load_manifest(AUTH)
    files = [scenario.load(f) for f in scenario.discover(manifest.scenario_dir)]
    plain = [f for f in files if not f.features and f.failure_policy is None and f.concurrency <= 2
             and f.config is None and f.config_patch is None]
    samples = []
    with start_stack(stack_spec(manifest, plain[0], build(AUTH).wasm)) as stack:
        for _ in range(rounds):
            for sfile in plain:
                samples += [r.seconds for r in run_file(stack, sfile)]
    return summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "spine.json")
    args = parser.parse_args()
    results = {
        "incremental_rebuild_s": incremental_rebuild(min(args.rounds, 5)),
        "start_to_ready_s": start_to_ready(args.rounds),
        "validate_s": validate_time(args.rounds),
        "per_scenario_case_s": per_scenario_overhead(args.rounds),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print("| measure | n | mean | p50 | p95 | min | max |\n|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['n']} | " + " | ".join(f"{r[k] * 1000:.1f} ms" for k in
                                                   ("mean", "p50", "p95", "min", "max")) + " |")
    rb = results["incremental_rebuild_s"]
    print(f"\ncold build of the auth crate with std (build-std): {rb['cold_with_std']:.1f} s; "
          f"no-op rebuild: {rb['noop'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
