"""Run a filter's scenario files against a real Envoy: one Envoy per file, reused by its cases; JUnit reports."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wasmfilter.build import cargo as build_mod
from wasmfilter.envoy import crash
from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.protocol import filter_log_lines, log_tail
from wasmfilter.errors import ScenarioError, WasmfilterError
from wasmfilter.harness import scenario
from wasmfilter.harness.answers import check_clusters, merged
from wasmfilter.harness.checks import CaseResult, run_case
from wasmfilter.harness.stack import BackendOptions, Stack, StackSpec, start_stack
from wasmfilter.manifest import Manifest, load_manifest

Reporter = Callable[[CaseResult], None]
NO_PUSH = "push steps need the filter delivered over ECDS (run_scenarios does that for files with push steps)"


@dataclass
class TestReport:
    results: list[CaseResult] = field(default_factory=list)
    envoy: str = ""
    backend: str = "process"
    seconds: float = 0.0

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.failed


class BuildCache:
    """One build per feature set within a run."""

    def __init__(self, manifest: Manifest, progress: build_mod.Progress | None = None, debug_info: bool = False):
        self.manifest = manifest
        self.progress = progress
        self.debug_info = debug_info  # name section + DWARF kept: crash backtraces with names and file:line
        self._built: dict[tuple[str, ...], build_mod.BuildResult] = {}

    def get(self, features: list[str] | tuple[str, ...] = ()) -> build_mod.BuildResult:
        key = tuple(sorted(set(features)))
        if key not in self._built:
            self._built[key] = build_mod.build(self.manifest.crate_dir, features=key, progress=self.progress,
                                               debug_info=self.debug_info)
        return self._built[key]


def features_for(manifest: Manifest, sfile: scenario.ScenarioFile) -> tuple[str, ...]:
    """The cargo features SFILE's build has: only those filter.yaml's `test_features` allows (they exist for tests,
    e.g. a panic trigger, and must never reach a shipped module by a scenario file's say-so)."""
    unknown = [f for f in sfile.features if f not in manifest.test_features]
    if unknown:
        raise ScenarioError(f"scenario file '{sfile.path}' asks for cargo feature(s) {', '.join(unknown)}, which "
                            f"filter.yaml's test_features does not list",
                            fix="add them to test_features in filter.yaml, or drop them from the scenario file")
    return tuple(sfile.features)


def stack_spec(manifest: Manifest, sfile: scenario.ScenarioFile, wasm: Path) -> StackSpec:
    check_clusters(sfile.answers, manifest.upstreams, f"scenario file '{sfile.path}'")
    return StackSpec(answers=merged(manifest.answers, sfile.answers),
                     manifest=manifest, wasm_path=wasm, plugin_config=sfile.plugin_config(manifest.config),
                     failure_policy=sfile.failure_policy, allow_fail_open=sfile.allow_fail_open,
                     concurrency=sfile.concurrency, hardening=sfile.request_hardening)


def run_file(stack: Stack, sfile: scenario.ScenarioFile, report: Reporter | None = None,
             only: str | None = None, pusher: Callable[[scenario.Case], list[str]] | None = None,
             wasm: Path | None = None) -> list[CaseResult]:
    """Run SFILE's cases in order against a started STACK (PUSHER applies its push steps, harness/pushes.py;
    running WASM: its symbols for crash reports)."""
    results = []
    client = stack.client()
    try:
        for case in sfile.cases:
            if only is not None and case.name != only:
                continue
            start = time.perf_counter()
            try:
                needs = stack.needs_envoy(case)
                if needs:
                    problems, count = [needs], 0
                elif case.push is not None:
                    problems, count = (pusher(case) if pusher else [NO_PUSH]), 0
                else:
                    problems, count = run_case(case, stack.url, stack.envoy.admin.stats, client,
                                               connect=stack.connect, clock=stack.clock)
            except OSError as e:
                problems, count = [f"request failed: {e}"], 0
                client.close()
            result = CaseResult(sfile.path, case.name, problems, time.perf_counter() - start, count)
            if problems:
                logs = stack.envoy.logs()
                result.log_tail = log_tail(logs)
                result.filter_logs = filter_log_lines(logs)[-20:]
                crashes = crash.report(logs, wasm)
                if crashes:  # the readable report instead of Envoy's raw frames; its gist among the problems
                    result.problems.append(crash.summary(crash.find_crashes(logs)[-1]))
                    result.filter_logs = crashes + [x for x in result.filter_logs if not crash.is_crash_line(x)][-5:]
                    result.log_tail = crash.without_raw_frames(result.log_tail)
            results.append(result)
            if report:
                report(result)
    finally:
        client.close()
    return results


def run_scenarios(path: str | Path | None = None, *, files: list[Path] | None = None, backend: str = "process",
                  envoy_version: str | None = None, report: Reporter | None = None,
                  progress: build_mod.Progress | None = None, options: BackendOptions | None = None,
                  debug_info: bool = False) -> TestReport:
    """`wasmfilter test`: every scenario file of the filter at PATH (or FILES), one Envoy per file on BACKEND."""
    manifest, sfiles, features = load_files(path, files)
    binary: EnvoyBinary = resolve(envoy_version or manifest.envoy_version)
    builds = BuildCache(manifest, progress, debug_info=debug_info)
    out = TestReport(envoy=binary.describe() if backend != "emulator" else "no Envoy: the proxy-wasm emulator",
                     backend=backend)
    started = time.perf_counter()
    for sfile, wanted in zip(sfiles, features):
        out.results += run_file_on(manifest, sfile, builds.get(wanted).wasm, backend=backend, binary=binary,
                                   builds=builds, options=options, report=report)
    out.seconds = time.perf_counter() - started
    return out


def run_pushing_file(manifest: Manifest, sfile: scenario.ScenarioFile, wasm: Path, builds: BuildCache, *,
                     binary: EnvoyBinary, backend: str = "process", options: BackendOptions | None = None,
                     report: Reporter | None = None) -> list[CaseResult]:
    """A file with push steps: its filter delivered over ECDS (harness/ecds.py) to one Envoy for the whole file."""
    if backend == "emulator":
        raise ScenarioError(f"needs Envoy: '{sfile.path.name}' has push steps, which deliver the filter over ECDS",
                            fix="run this file with --backend process or docker")
    from wasmfilter.harness.ecds import EcdsStack
    from wasmfilter.harness.pushes import Pusher

    with EcdsStack(stack_spec(manifest, sfile, wasm), binary=binary, backend=backend, options=options) as live:
        pusher = Pusher(live, sfile, lambda features: builds.get(features).wasm, manifest.test_features)
        assert live.stack is not None
        return run_file(live.stack, sfile, report, pusher=pusher.run, wasm=wasm)


def load_files(path: str | Path | None, files: list[Path] | None = None
               ) -> tuple[Manifest, list[scenario.ScenarioFile], list[tuple[str, ...]]]:
    """The manifest at PATH, its scenario files (or FILES), all checked before anything starts, and their features."""
    manifest = load_manifest(path)
    files = files or scenario.discover(manifest.scenario_dir)
    if not files:
        raise ScenarioError(f"no scenario files in '{manifest.scenario_dir}'",
                            fix="add YAML scenario files there (see docs/scenarios.md)")
    sfiles = [scenario.load(f) for f in files]
    return manifest, sfiles, [features_for(manifest, sfile) for sfile in sfiles]


def run_file_on(manifest: Manifest, sfile: scenario.ScenarioFile, wasm: Path, *, backend: str, binary: EnvoyBinary,
                builds: BuildCache, options: BackendOptions | None = None,
                report: Reporter | None = None) -> list[CaseResult]:
    """One scenario file on its own stack (BINARY's Envoy on BACKEND); a file with push steps over ECDS."""
    try:
        if sfile.has_pushes:
            return run_pushing_file(manifest, sfile, wasm, builds, binary=binary, backend=backend,
                                    options=options, report=report)
        with start_stack(stack_spec(manifest, sfile, wasm), backend=backend, binary=binary,
                         options=options) as stack:
            return run_file(stack, sfile, report, wasm=wasm)
    except WasmfilterError as e:
        # Envoy refusing the file's configuration fails every case of that file, with Envoy's reason.
        results = []
        for case in sfile.cases:
            result = CaseResult(sfile.path, case.name, [f"stack did not start: {e}"], 0.0, 0,
                                log_tail=e.detail or "")
            results.append(result)
            if report:
                report(result)
        return results


def write_junit(report: TestReport, path: str | Path, suite: str = "wasmfilter") -> None:
    root = ET.Element("testsuites")
    el = ET.SubElement(root, "testsuite", name=suite, tests=str(len(report.results)),
                       failures=str(len(report.failed)), time=f"{report.seconds:.3f}")
    for r in report.results:
        case = ET.SubElement(el, "testcase", classname=r.file.stem, name=r.name, time=f"{r.seconds:.4f}")
        if r.problems:
            failure = ET.SubElement(case, "failure", message=r.problems[0])
            failure.text = "\n".join(r.problems) + "\n\nfilter log:\n" + "\n".join(r.filter_logs) + \
                "\n\nEnvoy log tail:\n" + r.log_tail
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
