"""The long fuzz run per reference filter (docs/benchmarks.md, "Fuzz and soak"): N seeded requests (default
100,000) through Envoy with the filter, counting requests/s, statuses and invariant violations by kind; shrunk
cases of each distinct violation go to benchmarks/results/fuzz-<filter>/.

Run: `.venv/bin/python benchmarks/fuzz.py [--requests N] [--seed S] [filter ...]`; prints Markdown rows and writes
benchmarks/results/fuzz.json (one entry per filter, merged into what is there)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from wasmfilter.harness.fuzz.run import fuzz

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("filters", nargs="*", default=["auth", "ratelimit", "routing", "blank"])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    out_file = RESULTS / "fuzz.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    for name in args.filters:
        report = fuzz(REPO / "filters" / name, seed=args.seed, count=args.requests, workers=args.workers,
                      out_dir=RESULTS / f"fuzz-{name}")
        results[name] = {"requests": report.sent, "seconds": round(report.seconds, 1), "rps": round(report.rps),
                         "seed": args.seed, "workers": args.workers, "statuses": dict(report.statuses),
                         "violations": dict(report.violations), "load": os.getloadavg(),
                         "findings": [{"kind": f.violation.kind, "index": f.index, "message": f.violation.message,
                                       "case": str(f.case_file)} for f in report.findings]}
        RESULTS.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(results, indent=1))
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.violations.items())) or "none"
        print(f"| {name} | {report.sent:,} | {report.seconds:.0f} s | {report.rps:.0f} | {kinds} |", flush=True)


if __name__ == "__main__":
    main()
