"""The version matrix (docs/benchmarks.md, "Version matrix"):

- start-to-ready of each Envoy of `all` with the auth filter (`envoy.start_seconds`: Popen until admin /ready answers
  LIVE and the listener port is known), rounds interleaved across versions (the order rotates each round), so a slow
  minute of the shared machine hits every version;
- the wall time of the reference filters' whole matrix (every scenario file × every version of `all`, one Envoy per
  cell) with --jobs 1 (serial) and --jobs N, alternated.

The .wasm builds and the Envoy wheels are made before timing. Run:
`.venv/bin/python benchmarks/matrix.py [--rounds N] [--matrix-rounds N] [--jobs 1,2,4]`; prints Markdown and writes
benchmarks/results/matrix.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from wasmfilter.build.cargo import build
from wasmfilter.envoy.binary import resolve
from wasmfilter.envoy.versions import pick_versions
from wasmfilter.harness.matrix import run_matrix
from wasmfilter.harness.stack import StackSpec, start_stack
from wasmfilter.manifest import load_manifest

REPO = Path(__file__).resolve().parent.parent
FILTERS = ["auth", "ratelimit", "routing", "blank"]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def start_to_ready(versions: list[str], rounds: int) -> dict[str, list[float]]:
    manifest = load_manifest(REPO / "filters" / "auth")
    wasm = build(manifest.crate_dir).wasm
    binaries = {v: resolve(v) for v in versions}
    samples: dict[str, list[float]] = {v: [] for v in versions}
    for i in range(rounds):
        order = versions[i % len(versions):] + versions[:i % len(versions)]
        for version in order:
            with start_stack(StackSpec(manifest=manifest, wasm_path=wasm), binary=binaries[version]) as stack:
                samples[version].append(stack.envoy.start_seconds)
    return samples


def matrix_wall(jobs_list: list[int], rounds: int) -> dict[int, list[float]]:
    for name in FILTERS:
        build(REPO / "filters" / name)
    walls: dict[int, list[float]] = {j: [] for j in jobs_list}
    for i in range(rounds):
        for jobs in (jobs_list if i % 2 == 0 else list(reversed(jobs_list))):
            started = time.perf_counter()
            for name in FILTERS:
                report = run_matrix(REPO / "filters" / name, ["all"], jobs=jobs)
                if not report.ok:
                    raise SystemExit(f"{name} failed on the matrix: {report.problems()}")
            walls[jobs].append(time.perf_counter() - started)
            print(f"  matrix --jobs {jobs}: {walls[jobs][-1]:.1f}s (load {os.getloadavg()[0]:.1f})", flush=True)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--matrix-rounds", type=int, default=1)
    parser.add_argument("--jobs", default="1,2")
    args = parser.parse_args()
    versions = [p.version for p in pick_versions(["all"]) if p.version]
    load_before = os.getloadavg()
    ready = start_to_ready(versions, args.rounds)
    walls = matrix_wall([int(j) for j in args.jobs.split(",")], args.matrix_rounds) if args.matrix_rounds else {}
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
              "start_to_ready_s": ready, "matrix_wall_s": walls, "when": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                       time.gmtime())}
    out = REPO / "benchmarks" / "results" / "matrix.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{result['when']}, {result['cpu']}, {result['cores']} cores, load {load_before[0]:.1f} → "
          f"{result['load_after'][0]:.1f}\n")
    print("| Envoy | start-to-ready p50 | min | max | n |\n|---|---|---|---|---|")
    for version, s in ready.items():
        print(f"| {version} | {statistics.median(s) * 1000:.0f} ms | {min(s) * 1000:.0f} ms | "
              f"{max(s) * 1000:.0f} ms | {len(s)} |")
    if walls:
        print("\n| --jobs | matrix wall (4 filters × 5 versions, 95 cells) |\n|---|---|")
        for jobs, w in walls.items():
            print(f"| {jobs} | {' / '.join(f'{x:.0f} s' for x in w)} |")


if __name__ == "__main__":
    main()
