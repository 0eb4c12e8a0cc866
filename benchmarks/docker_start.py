"""Start-to-ready of the two Envoy backends (docs/benchmarks.md, "Docker backend"), with the auth filter:

- envoy: from starting Envoy (Popen / container create+start) until admin /ready answers LIVE and the listener
  port is known (`envoy.start_seconds`, measured inside EnvoyProcess / EnvoyContainer);
- stack: the whole `start_stack` (docker: network + echo container + Envoy container; process: echo thread +
  Envoy), and its stop.

Rounds alternate process/docker so a slow minute of the shared machine hits both. Images are built (or found
by content hash) before timing. Run: `.venv/bin/python benchmarks/docker_start.py [--rounds N]`; prints
Markdown and writes benchmarks/results/docker_start.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from wasmfilter.build.cargo import build
from wasmfilter.envoy import images
from wasmfilter.envoy.binary import resolve
from wasmfilter.harness.stack import StackSpec, start_stack
from wasmfilter.manifest import load_manifest

REPO = Path(__file__).resolve().parent.parent
AUTH = REPO / "filters" / "auth"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(samples), "p50": statistics.median(samples), "mean": statistics.fmean(samples),
            "p90": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
            "min": ordered[0], "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    manifest = load_manifest(AUTH)
    wasm = build(AUTH).wasm
    binary = resolve()
    t = time.perf_counter()
    image = images.choose_envoy_image(binary, announce=print)
    images.ensure_echo_image()
    image_check = time.perf_counter() - t
    samples: dict[str, dict[str, list[float]]] = {b: {"envoy": [], "stack": [], "stop": []}
                                                  for b in ("process", "docker")}
    for i in range(args.rounds):
        for backend in (("process", "docker") if i % 2 == 0 else ("docker", "process")):
            t0 = time.perf_counter()
            stack = start_stack(StackSpec(manifest=manifest, wasm_path=wasm), backend=backend, binary=binary)
            t1 = time.perf_counter()
            samples[backend]["envoy"].append(stack.envoy.start_seconds)
            samples[backend]["stack"].append(t1 - t0)
            stack.stop()
            samples[backend]["stop"].append(time.perf_counter() - t1)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "envoy": binary.describe(), "image": image.tag, "image_check_seconds": image_check,
        "rounds": args.rounds,
        "results": {b: {k: summary(v) for k, v in m.items()} for b, m in samples.items()},
    }
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "docker_start.json").write_text(json.dumps(result, indent=2))
    print(f"{binary.describe()}, image {image.tag}, {args.rounds} rounds, load avg {os.getloadavg()[0]:.1f}")
    print("| backend | what | p50 | p90 | min | max |")
    print("|---|---|---|---|---|---|")
    for backend, metrics in result["results"].items():
        for what, s in metrics.items():
            print(f"| {backend} | {what} | {s['p50'] * 1000:.0f} ms | {s['p90'] * 1000:.0f} ms | "
                  f"{s['min'] * 1000:.0f} ms | {s['max'] * 1000:.0f} ms |")
    print(f"image check (content hash lookup, no build): {image_check * 1000:.0f} ms")


if __name__ == "__main__":
    main()
