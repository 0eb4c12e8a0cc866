"""Time from a filter crash to the readable report (docs/benchmarks.md, "Fuzz and soak"): the auth filter's
`test-panic` build in a real Envoy (release build and `--debug-info` build), one request that panics; measured from
sending it until (1) the crash is parsed from Envoy's log (envoy/crash.py, polled every 5 ms) and (2) the report
is rendered — symbols read from the module, names demangled, file:line from DWARF (build/symbols.py).

Run: `.venv/bin/python benchmarks/crash_report.py [--rounds N]`; prints a Markdown table."""

from __future__ import annotations

import argparse
import http.client
import statistics
import time
from pathlib import Path

from wasmfilter.build.cargo import build
from wasmfilter.envoy import crash
from wasmfilter.harness.stack import StackSpec, start_stack
from wasmfilter.manifest import load_manifest

REPO = Path(__file__).resolve().parent.parent


def one(wasm: Path) -> tuple[float, float, int]:
    manifest = load_manifest(REPO / "filters" / "auth")
    with start_stack(StackSpec(manifest=manifest, wasm_path=wasm, concurrency=1)) as stack:
        host, _, port = stack.url.split("://")[1].rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        started = time.perf_counter()
        conn.request("GET", "/orders", headers={"x-wasmfilter-panic": "1"})
        conn.getresponse().read()
        while not (found := crash.find_crashes(stack.envoy.logs())):
            time.sleep(0.005)
        parsed = time.perf_counter() - started
        lines = crash.readable(found[0], wasm)
        return parsed, time.perf_counter() - started, len(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    crate = REPO / "filters" / "auth"
    builds = {"release": build(crate, features=["test-panic"]).wasm,
              "--debug-info": build(crate, features=["test-panic"], debug_info=True).wasm}
    samples: dict[str, list[tuple[float, float, int]]] = {k: [] for k in builds}
    for _ in range(args.rounds):
        for name, wasm in builds.items():
            samples[name].append(one(wasm))
    print("| build | module | crash → parsed from the log (median, ms) | crash → report rendered (median, max, ms) "
          "| report lines |")
    print("|---|---|---|---|---|")
    for name, rows in samples.items():
        size = builds[name].stat().st_size
        print(f"| {name} | {size / 1024:.0f} KiB | {statistics.median(r[0] for r in rows) * 1000:.0f} | "
              f"{statistics.median(r[1] for r in rows) * 1000:.0f}, {max(r[1] for r in rows) * 1000:.0f} | "
              f"{rows[0][2]} |")


if __name__ == "__main__":
    main()
