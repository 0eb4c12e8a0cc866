"""Wall time from `wasmfilter new` to the first green `wasmfilter test`, per template, cold and warm cargo cache.

    .venv/bin/python benchmarks/scaffold.py [TEMPLATE ...]

cold: a fresh CARGO_TARGET_DIR, so std (build-std fallback), the dependencies and the filter all compile
      (crates already downloaded in ~/.cargo/registry; the index may be refreshed).
warm: the same CARGO_TARGET_DIR right after, a second project of the same template under a new name: std and
      the dependencies are reused, the new crate compiles from scratch (what a user's second project costs).

Every step is the real CLI in a subprocess, from a directory outside this repository. Prints a Markdown table and
writes benchmarks/results/scaffold.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WASMFILTER = [sys.executable, "-m", "wasmfilter.cli"]


def step(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([*WASMFILTER, *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def one_run(template: str, name: str, work: Path, target: Path) -> dict[str, float]:
    env = {**os.environ, "CARGO_TARGET_DIR": str(target), "COLUMNS": "200"}
    times = {"new": step(["new", template, name], work, env)}
    times["build"] = step(["build"], work / name, env)
    times["test"] = step(["test"], work / name, env)
    times["total"] = sum(times.values())
    return times


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    rustc = subprocess.run(["/usr/bin/rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": str(os.cpu_count()), "kernel": platform.release(), "rustc": rustc,
            "python": platform.python_version()}


def main() -> None:
    from wasmfilter.scaffold.templates import list_templates

    templates = sys.argv[1:] or [t.name for t in list_templates()]
    results = {"machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="wf-scaffold-bench-") as tmp:
        for template in templates:
            work = Path(tmp) / template
            work.mkdir()
            target = Path(tmp) / f"target-{template}"
            load = os.getloadavg()[0]
            cold = one_run(template, f"cold-{template}", work, target)
            warm = one_run(template, f"warm-{template}", work, target)
            results["runs"].append({"template": template, "cold": cold, "warm": warm, "load_before": load})
            print(f"{template}: cold {cold['total']:.1f}s, warm {warm['total']:.1f}s (load {load:.1f})", flush=True)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaffold.json").write_text(json.dumps(results, indent=2))
    print("\n| template | cache | new | build | test | new → green test | load avg (1 min) before |")
    print("|---|---|---|---|---|---|---|")
    for run in results["runs"]:
        for kind in ("cold", "warm"):
            t = run[kind]
            print(f"| {run['template']} | {kind} | {t['new']:.1f} s | {t['build']:.1f} s | {t['test']:.1f} s | "
                  f"**{t['total']:.1f} s** | {run['load_before']:.1f} |")
    print("\nmachine:", json.dumps(results["machine"]))


if __name__ == "__main__":
    main()
