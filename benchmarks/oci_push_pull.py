"""Wall time of package + push + pull for each reference filter, against a real local registry.

    .venv/bin/python benchmarks/oci_push_pull.py [--runs 5] [--json out.json]

Per filter: build once (not timed), then RUNS times: package (ABI check + reproducible image + OCI layout .tar),
push to a fresh repository (every blob uploaded), pull (manifest + blobs, digests verified, plugin.wasm
extracted the way Istio does). Also one end-to-end `wasmfilter package/push/pull` CLI run (includes Python start-up).
Prints a Markdown table (median and min, milliseconds) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE_FILTERS = ["auth", "ratelimit", "routing"]


def main() -> int:
    from wasmfilter.build import abi
    from wasmfilter.build.cargo import build
    from wasmfilter.ship.image import VARIANTS
    from wasmfilter.ship.layout import read_layout
    from wasmfilter.ship.package import package
    from wasmfilter.ship.registry import LocalRegistry
    from wasmfilter.ship.transfer import pull, push_image

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--variant", default="compat", choices=VARIANTS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rows = []
    load_before = f"{os.getloadavg()[0]:.2f}"
    with LocalRegistry() as reg, tempfile.TemporaryDirectory() as tmp:
        for name in REFERENCE_FILTERS:
            path = REPO / "filters" / name
            if not (path / "filter.yaml").is_file():
                continue
            try:
                wasm = build(path).wasm
            except Exception as e:  # a filter still being written may not build yet
                print(f"skip {name}: {e}", file=sys.stderr)
                continue
            t_pkg, t_push, t_pull, t_total, t_abi = [], [], [], [], []
            digest = ""
            for i in range(args.runs):
                out = Path(tmp) / f"{name}-{i}.tar"
                ta = time.perf_counter()
                abi.check(wasm)  # the part of `package` that is the ABI lint (wasmtime parses + validates)
                t_abi.append(time.perf_counter() - ta)
                t0 = time.perf_counter()
                res = package(path, output=out, variant=args.variant, wasm=wasm)
                t1 = time.perf_counter()
                pushed = push_image(read_layout(out), f"{reg.host}/bench/{name}-{i}:v1", insecure=True)
                t2 = time.perf_counter()
                pulled = pull(f"{reg.host}/bench/{name}-{i}:v1", insecure=True, output=Path(tmp) / f"{name}.wasm",
                                  force=True)
                t3 = time.perf_counter()
                assert pulled.wasm == wasm.read_bytes() and pushed.digest == res.digest == pulled.digest
                digest = res.digest
                t_pkg.append(t1 - t0)
                t_push.append(t2 - t1)
                t_pull.append(t3 - t2)
                t_total.append(t3 - t0)
            cli = _cli_round_trip(path, wasm, f"{reg.host}/bench/{name}-cli:v1", Path(tmp))
            rows.append({"filter": name, "wasm_bytes": wasm.stat().st_size, "image_bytes": res.image.size,
                         "digest": digest, "package_ms": _ms(t_pkg), "abi_check_ms": _ms(t_abi),
                         "push_ms": _ms(t_push), "pull_ms": _ms(t_pull),
                         "total_ms": _ms(t_total), "cli_total_ms": round(cli * 1000)})
    machine = f"{platform.machine()}, {_cpu()}, {_cores()} cores, Python {platform.python_version()}"
    print(f"load average before/after: {load_before} / {os.getloadavg()[0]:.2f}")
    print(f"machine: {machine}; registry: docker-registry {_registry_version()} on 127.0.0.1; "
          f"variant {args.variant}; {args.runs} runs\n")
    print("| filter | .wasm bytes | image bytes | package ms | (of which ABI check) | push ms | pull ms | total ms "
          "| CLI package+push+pull ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['filter']} | {r['wasm_bytes']} | {r['image_bytes']} | {_fmt(r['package_ms'])} | "
              f"{_fmt(r['abi_check_ms'])} | "
              f"{_fmt(r['push_ms'])} | {_fmt(r['pull_ms'])} | {_fmt(r['total_ms'])} | {r['cli_total_ms']} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


def _cli_round_trip(path: Path, wasm: Path, ref: str, tmp: Path) -> float:
    exe = [sys.executable, "-m", "wasmfilter.cli"]
    layout = tmp / f"{path.name}-cli.tar"
    t0 = time.perf_counter()
    for cmd in (["package", str(path), "-o", str(layout), "--wasm", str(wasm), "--force"],
                ["push", ref, str(layout), "--insecure"],
                ["pull", ref, "--insecure", "-o", str(tmp / "cli.wasm"), "--force"]):
        subprocess.run(exe + cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def _ms(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values) * 1000, 1), "min": round(min(values) * 1000, 1)}


def _fmt(v: dict[str, float]) -> str:
    return f"{v['median']} (min {v['min']})"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _registry_version() -> str:
    try:
        out = subprocess.run(["/usr/bin/docker-registry", "--version"], capture_output=True, text=True)
        return out.stdout.split()[-1]
    except (OSError, IndexError):
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
