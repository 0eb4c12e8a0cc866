"""`wasmfilter bench`: what a Wasm filter costs, against Envoy without it and against Envoy's native filters.

definition.py  bench files (benchmarks/<filter>.yaml): natives, scenarios, settings, targets
wrk.py         the load generator (wrk + a Lua script printing the latency distribution as JSON)
runner.py      interleaved rounds of real Envoys (baseline / wasm / native) under load
report.py      medians, spreads, deltas, ratios → JSON, Markdown, terminal table, PNG plot
display.py     the command itself: progress while it runs, tables after (rich on a TTY, plain lines otherwise)
guest_cost.py  `wasmfilter profile`: guest instructions per callback and host calls per request, on the emulator
profile_command.py  that command's definitions, build and tables
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.bench.definition import (
    BenchDefinition,
    all_definitions,
    load_definition,
    parse_duration,
    resolve_definition,
)
from wasmfilter.bench.report import summarize, update_docs, write_outputs
from wasmfilter.bench.runner import BenchRun, estimate_seconds, run_bench, total_steps
from wasmfilter.errors import BenchError, UsageError

__all__ = ["BenchDefinition", "BenchError", "BenchOutcome", "all_definitions", "apply_overrides", "bench",
           "load_definition", "parse_duration", "resolve_definition", "run_bench", "summarize"]


@dataclass
class BenchOutcome:
    doc: dict
    paths: dict[str, Path]


def apply_overrides(definition: BenchDefinition, *, duration: str | None = None, warmup: str | None = None,
                    rounds: int | None = None, connections: int | None = None,
                    concurrency: int | None = None, cycles: int | None = None,
                    before: Path | None = None) -> BenchDefinition:
    """Command-line settings over the file's, validated like the file's."""
    changes: dict = {}
    if before is not None:
        if not Path(before).exists():
            raise UsageError(f"--before {before}: no such file or directory",
                             fix="give the .wasm of the other build, or a directory of such modules")
        changes["compare_wasm"] = str(Path(before).resolve())
    if duration is not None:
        changes["duration_s"] = parse_duration(duration, "--duration")
    if warmup is not None:
        changes["warmup_s"] = 0 if str(warmup).strip() in ("0", "0s") else parse_duration(warmup, "--warmup")
    for key, flag, value, low in (("rounds", "rounds", rounds, 1), ("connections", "connections", connections, 1),
                                  ("envoy_concurrency", "concurrency", concurrency, 1),
                                  ("one_envoy_cycles", "cycles", cycles, 0)):
        if value is not None:
            if value < low:
                raise UsageError(f"invalid --{flag} {value}: must be at least {low}",
                                 fix="give a positive number" if low else "give 0 (skip) or a positive number")
            changes[key] = value
    if changes:
        definition.settings = definition.settings.model_copy(update=changes)
    return definition


def default_out_dir(definition: BenchDefinition) -> Path:
    if definition.path is not None:
        return definition.path.parent / "results"
    assert definition.manifest is not None
    return definition.manifest.directory / "bench-results"


def bench(definition: BenchDefinition, *, out_dir: Path | None = None, docs_file: Path | None = None,
          envoy_version: str | None = None, progress: Callable[[str, int], None] | None = None,
          build_progress: Callable[[str], None] | None = None) -> BenchOutcome:
    run: BenchRun = run_bench(definition, envoy_version=envoy_version, progress=progress,
                              build_progress=build_progress)
    doc = summarize(run)
    paths = write_outputs(doc, out_dir or default_out_dir(definition))
    if docs_file is not None:
        update_docs(doc, docs_file, plot_path=paths["png"])
        paths["docs"] = docs_file
    return BenchOutcome(doc, paths)


def plan(definition: BenchDefinition) -> tuple[int, float]:
    """(progress steps, estimated seconds) of a run, before it starts."""
    from wasmfilter.bench.runner import _groups, variants_of

    groups = _groups(definition, variants_of(definition), Path("/plan/plugin.wasm"))
    n_groups = sum(len(g) for g in groups.values())
    return total_steps(definition, groups), estimate_seconds(definition, n_groups)
