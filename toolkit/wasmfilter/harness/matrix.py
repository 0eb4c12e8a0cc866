"""The version matrix of `wasmfilter test`: a filter's scenario files on several Envoy versions (`all`, a list, or
filter.yaml's `envoy_versions`), one Envoy per (version, file) cell, up to `jobs` cells at once; the report as a
table (rich on a terminal, one plain line per cell otherwise) and one JUnit file per version."""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wasmfilter.build import cargo as build_mod
from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.versions import VersionPick, pick_versions, split_specs
from wasmfilter.errors import UsageError
from wasmfilter.harness import scenario
from wasmfilter.harness.checks import CaseResult
from wasmfilter.harness.runner import BuildCache, TestReport, load_files, run_file_on, write_junit
from wasmfilter.harness.stack import BackendOptions
from wasmfilter.manifest import load_manifest

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

Announce = Callable[[str], None]


@dataclass
class Cell:
    """One scenario file on one Envoy version."""
    version: str
    file: Path
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""  # the one line saying why the cell could not run at all

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.results) and all(r.passed for r in self.results)

    def summary(self) -> str:
        """"PASS 1.2s", "FAIL 1.4s api_keys :: no key (+1 more)", or the reason the cell could not run."""
        if self.error:
            return f"FAIL {self.error}"
        if self.passed:
            return f"PASS {self.seconds:.1f}s"
        failed = [r for r in self.results if not r.passed]
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        return f"FAIL {self.seconds:.1f}s {failed[0].name}{more}" if failed else f"FAIL {self.seconds:.1f}s no cases"


@dataclass
class MatrixReport:
    picks: list[VersionPick]
    files: list[Path]
    cells: dict[tuple[str, Path], Cell]
    backend: str = "process"
    jobs: int = 1
    seconds: float = 0.0

    @property
    def versions(self) -> list[str]:
        return [p.label for p in self.picks]

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells.values() if not c.passed]

    @property
    def ok(self) -> bool:
        return bool(self.cells) and not self.failed

    def problems(self) -> list[str]:
        """One line per version that could not run (its reason) and per failed cell."""
        lines = [f"{p.spec}: {p.error}" for p in self.picks if p.error is not None]
        return lines + [f"{c.version} {c.file.name}: {c.summary()}" for c in self.failed if not c.error]

    def version_report(self, version: str) -> TestReport:
        """One version's row as a TestReport (for its JUnit file); a cell that could not run fails each case."""
        out = TestReport(envoy=f"Envoy {version}", backend=self.backend)
        why = next((str(p.error) for p in self.picks if p.label == version and p.error is not None), "")
        for file in self.files:
            cell = self.cells[(version, file)]
            out.results += cell.results or [CaseResult(file, "(file)", [why or cell.error or "no cases ran"], 0.0, 0)]
            out.seconds += cell.seconds
        return out


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_jobs(jobs: int | None) -> int:
    if jobs is None:
        return default_jobs()
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (got {jobs})",
                         fix="pass --jobs N with N >= 1, or leave it out for one cell per core")
    return jobs


def wanted_specs(path: str | Path | None, envoy_version: str | None) -> list[str] | None:
    """The version specs of a matrix run, or None for a plain one-version run: --envoy-version `all` or a
    comma-separated list, else filter.yaml's `envoy_versions` when --envoy-version is not given."""
    if envoy_version is not None:
        specs = split_specs(envoy_version)
        minor = len(specs) == 1 and re.fullmatch(r"\d+\.\d+", specs[0]) is not None  # its newest patch with V8
        return specs if envoy_version.strip() == "all" or len(specs) > 1 or minor else None
    claimed = load_manifest(path).envoy_versions
    return list(claimed) if claimed else None


def run_matrix(path: str | Path | None, specs: list[str], *, files: list[Path] | None = None,
               backend: str = "process", jobs: int | None = None, options: BackendOptions | None = None,
               announce: Announce | None = None, on_cell: Callable[[Cell], None] | None = None,
               progress: build_mod.Progress | None = None) -> MatrixReport:
    """Every scenario file of the filter at PATH on each version of SPECS, up to JOBS cells at once. A version
    that cannot run (unknown, not downloadable, no V8) fails its cells with one line; the others still run."""
    workers = check_jobs(jobs)
    manifest, sfiles, features = load_files(path, files)
    picks = pick_versions(specs)
    for pick in picks:
        if announce and (pick.note or pick.error):
            announce(pick.note if pick.error is None else f"{pick.spec}: {str(pick.error).splitlines()[0]}")
    builds = BuildCache(manifest, progress)
    wasm = {wanted: builds.get(wanted).wasm for wanted in dict.fromkeys(features)}  # one build per feature set
    binaries: dict[str, EnvoyBinary] = {}
    cells: dict[tuple[str, Path], Cell] = {}
    for pick in picks:
        for sfile in sfiles:
            cells[(pick.label, sfile.path)] = Cell(pick.label, sfile.path,
                                                   error=f"not run: {pick.short}" if pick.error else "")
        if pick.version is not None and pick.error is None:
            binary = resolve(pick.version)
            if options is not None and options.docker is not None:
                options.docker.prepare()  # images are found or built here, one at a time, before cells run
                options.docker.envoy_image(binary)
                options.docker.echo_image()
            binaries[pick.label] = binary
    report = MatrixReport(picks, [s.path for s in sfiles], cells, backend=backend, jobs=workers)

    def run_cell(cell: Cell, sfile: scenario.ScenarioFile, wanted: tuple[str, ...]) -> Cell:
        started = time.perf_counter()
        cell.results = run_file_on(manifest, sfile, wasm[wanted], backend=backend, binary=binaries[cell.version],
                                   builds=builds, options=options)
        cell.seconds = time.perf_counter() - started
        if on_cell:
            on_cell(cell)
        return cell

    started = time.perf_counter()
    run_parallel([functools.partial(run_cell, cells[(pick.label, sfile.path)], sfile, wanted)
                  for pick in picks if pick.label in binaries for sfile, wanted in zip(sfiles, features)], workers)
    report.seconds = time.perf_counter() - started
    return report


def check_junit_dir(directory: str | Path | None) -> None:
    """Before a matrix runs: --junit must name a directory (or nothing yet)."""
    if directory is not None and Path(directory).exists() and not Path(directory).is_dir():
        raise UsageError(f"--junit '{directory}' is a file, but a matrix run writes one report per version",
                         fix="pass a directory (it is created if missing)")


def run_parallel(tasks: list[Callable[[], object]], workers: int) -> None:
    """TASKS on WORKERS threads, in order; on Ctrl-C (or an error) the tasks not yet started never start."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wasmfilter") as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def write_junit_dir(report: MatrixReport, directory: str | Path) -> list[Path]:
    """One JUnit file per version, DIRECTORY/envoy-<version>.xml (the suite named after the version)."""
    check_junit_dir(directory)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for version in report.versions:
        target = out / f"envoy-{version}.xml"
        write_junit(report.version_report(version), target, suite=f"envoy-{version}")
        written.append(target)
    return written


def table_rows(report: MatrixReport) -> list[tuple[str, list[tuple[str, bool]]]]:
    """(scenario file, [(cell text, passed) per version]) — the matrix as data, for any renderer."""
    return [(file.name, [(report.cells[(v, file)].summary(), report.cells[(v, file)].passed)
                         for v in report.versions]) for file in report.files]


def plain_lines(report: MatrixReport) -> list[str]:
    """Off a terminal: one line per cell, `<version>  <file>  PASS|FAIL …`."""
    return [f"{version}  {file}  {text}" for file, row in table_rows(report)
            for version, (text, _) in zip(report.versions, row)]


def rich_table(report: MatrixReport) -> Table:
    """On a terminal: scenario files down, versions across; green PASS cells, red FAIL cells naming the case."""
    from rich.table import Table

    table = Table("scenario file", *report.versions, title=f"Envoy matrix ({report.backend}, --jobs {report.jobs}, "
                                                          f"{report.seconds:.1f}s)")
    for name, row in table_rows(report):
        table.add_row(name, *[f"[green]{text}[/]" if ok else f"[red]{escape(text)}[/]" for text, ok in row])
    return table


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)
