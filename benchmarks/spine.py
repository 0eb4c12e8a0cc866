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

from wasmfilter.build.cargo import build
from wasmfilter.envoy.validate import validate_text
from wasmfilter.harness import scenario
from wasmfilter.harness.runner import run_file, stack_spec
from wasmfilter.harness.stack import StackSpec, start_stack
from wasmfilter.manifest import load_manifest

REPO = Path(__file__).resolve().parent.parent
AUTH = REPO / "filters" / "auth"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(samples), "mean": statistics.fmean(samples), "p50": statistics.median(samples),
            "p95": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
            "min": ordered[0], "max": ordered[-1]}


FILTERS = ("auth", "ratelimit", "routing", "blank")


def incremental_rebuild(rounds: int) -> dict[str, dict[str, float]]:
    """Copy the workspace, build each filter cold once, then time rebuilds after a one-line edit of its lib.rs
    (a line appended, so the crate recompiles and relinks with LTO)."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="wasmfilter-bench-") as tmp:
        work = Path(tmp) / "filters"
        shutil.copytree(REPO / "filters", work, ignore=shutil.ignore_patterns("target"))
        os.environ["CARGO_TARGET_DIR"] = str(Path(tmp) / "target")
        try:
            for name in FILTERS:
                cold = build(work / name).seconds
                lib = work / name / "src" / "lib.rs"
                original = lib.read_text()
                samples = []
                for i in range(rounds):
                    lib.write_text(f"{original}// edit {i}\n")
                    samples.append(build(work / name).seconds)
                noop = build(work / name).seconds
                results[name] = {"cold": cold, "noop": noop, **summary(samples)}
        finally:
            os.environ.pop("CARGO_TARGET_DIR", None)
    return results


def start_to_ready(rounds: int) -> dict[str, float]:
    manifest = load_manifest(AUTH)
    wasm = build(AUTH).wasm
    samples = []
    for _ in range(rounds):
        with start_stack(StackSpec(manifest=manifest, wasm_path=wasm)) as stack:
            samples.append(stack.envoy.start_seconds)
    return summary(samples)


def validate_time(rounds: int) -> dict[str, float]:
    from wasmfilter.envoy.standalone import bootstrap_for

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
    rebuilds = incremental_rebuild(min(args.rounds, 5))
    results = {
        **{f"incremental_rebuild_{name}_s": r for name, r in rebuilds.items()},
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
    for name, rb in rebuilds.items():
        print(f"{name}: cold build {rb['cold']:.1f} s (the first one includes std), "
              f"no-op rebuild {rb['noop'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
