"""What `wasmfilter bench` shows while it runs and after: a rich progress bar and tables on a TTY, plain lines
otherwise (CI logs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from wasmfilter.bench import BenchDefinition, BenchOutcome, apply_overrides, bench, plan
from wasmfilter.bench.definition import all_definitions, resolve_definition
from wasmfilter.bench.report import (
    ENVOY_HEADER,
    before_after_table,
    envoy_rows,
    load_doc,
    plain_table,
    table_header,
    table_rows,
    update_docs,
    write_outputs,
)
from wasmfilter.bench.wrk import find_wrk
from wasmfilter.console import err, out


@contextmanager
def _progress(title: str, steps: int) -> Iterator[Callable[[str, int], None]]:
    if out.is_terminal:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=out, transient=True) as bar:
            task = bar.add_task(title, total=steps)
            yield lambda msg, n: bar.update(task, advance=n, description=f"{title}: {msg}")
    else:
        def line(msg: str, n: int) -> None:
            if n:
                print(f"  {msg}", flush=True)
        yield line


def show(outcome: BenchOutcome) -> None:
    doc = outcome.doc
    if out.is_terminal:
        s = doc["settings"]
        table = Table(title=f"{doc['filter']}: Wasm vs no filter vs native (µs; latency c={s['latency_connections']}, "
                            f"req/s c={s['connections']}; medians of {s['rounds']} rounds)")
        for name in ("scenario", "variant"):
            table.add_column(name, no_wrap=True)
        for name in ("p50", "p90", "p99", "req/s", "CPU/req", "+p50", "+CPU/req", "x floor"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("Wasm vs native: req/s / per CPU-s")
        table.add_column("spread p50/rps/CPU")
        last = None
        for row in table_rows(doc):
            if last is not None and row[0] != last:
                table.add_section()
            last = row[0]
            table.add_row(*row)
        out.print(table)
        envoy = Table(*ENVOY_HEADER, title="Envoy per variant (medians over rounds)")
        for row in envoy_rows(doc):
            envoy.add_row(*row)
        out.print(envoy)
    else:
        print(plain_table(table_header(doc), table_rows(doc)))
        print()
        print(plain_table(ENVOY_HEADER, envoy_rows(doc)))
    header, rows = before_after_table(doc)
    if rows and out.is_terminal:
        before_after = Table(*header, title="Before/after")
        for row in rows:
            before_after.add_row(*row)
        out.print(before_after)
    elif rows:
        print()
        print(plain_table(header, rows))
    if doc.get("guest_cost"):
        from wasmfilter.bench.profile_command import show as show_profile

        show_profile(doc["guest_cost"])
    for w in doc["warnings"]:
        err.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)
    if doc["verdict"]["ok"]:
        out.print("targets: all met", markup=False)
    for miss in doc["verdict"]["misses"]:
        out.print(f"target missed: {miss}", markup=False, soft_wrap=True)
    for kind, path in outcome.paths.items():
        out.print(f"{kind}: {path}", markup=False, soft_wrap=True)


def rerender(files: list[Path], *, out_dir: Path | None = None, docs_file: Path | None = None) -> list[BenchOutcome]:
    """`--from-json`: Markdown, plot (and docs section) again from saved results, without measuring."""
    docs = [load_doc(f) for f in files]  # all checked before anything is written
    outcomes = []
    for f, doc in zip(files, docs):
        paths = write_outputs(doc, out_dir or f.parent)
        if docs_file is not None:
            update_docs(doc, docs_file, plot_path=paths["png"])
            paths["docs"] = docs_file
        outcome = BenchOutcome(doc, paths)
        show(outcome)
        outcomes.append(outcome)
    return outcomes


def bench_command(path: Path | None, *, all_: bool = False, duration: str | None = None, warmup: str | None = None,
                  rounds: int | None = None, connections: int | None = None, concurrency: int | None = None,
                  cycles: int | None = None, out_dir: Path | None = None, docs_file: Path | None = None,
                  envoy_version: str | None = None, from_json: list[Path] | None = None,
                  before: Path | None = None) -> list[BenchOutcome]:
    """The whole `wasmfilter bench` command: every definition is loaded and checked before any runs."""
    if from_json:
        return rerender(from_json, out_dir=out_dir, docs_file=docs_file)
    if all_ and path is not None:
        from wasmfilter.errors import UsageError
        raise UsageError("give a PATH or --all, not both", fix="drop one of them")
    find_wrk()
    if all_:
        definitions: list[BenchDefinition] = [resolve_definition(f) for f in all_definitions()]
    else:
        definitions = [resolve_definition(path)]
    for d in definitions:
        apply_overrides(d, duration=duration, warmup=warmup, rounds=rounds, connections=connections,
                        concurrency=concurrency, cycles=cycles, before=before)
    outcomes = []
    for d in definitions:
        steps, seconds = plan(d)
        out.print(f"bench {d.name}: {len(d.scenarios)} scenarios × {2 + len(d.natives)} variants × "
                  f"{d.settings.rounds} rounds, about {seconds:.0f}s", markup=False)
        with _progress(f"bench {d.name}", steps) as step:
            outcome = bench(d, out_dir=out_dir, docs_file=docs_file, envoy_version=envoy_version, progress=step,
                            build_progress=lambda msg: step(msg, 0))
        show(outcome)
        outcomes.append(outcome)
    return outcomes
