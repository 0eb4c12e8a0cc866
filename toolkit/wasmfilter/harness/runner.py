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
from wasmfilter.harness.checks import CaseResult, run_case
from wasmfilter.harness.client import Client
from wasmfilter.harness.stack import BackendOptions, Stack, StackSpec, start_stack
from wasmfilter.manifest import Manifest, load_manifest

Reporter = Callable[[CaseResult], None]


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
    return StackSpec(manifest=manifest, wasm_path=wasm, plugin_config=sfile.plugin_config(manifest.config),
                     failure_policy=sfile.failure_policy, allow_fail_open=sfile.allow_fail_open,
                     concurrency=sfile.concurrency, hardening=sfile.request_hardening)


def run_file(stack: Stack, sfile: scenario.ScenarioFile, report: Reporter | None = None,
             only: str | None = None, wasm: Path | None = None) -> list[CaseResult]:
    """Run SFILE's cases in order against a started STACK (running WASM: its symbols for crash reports)."""
    results = []
    client = Client(stack.url)
    try:
        for case in sfile.cases:
            if only is not None and case.name != only:
                continue
            start = time.perf_counter()
            try:
                problems, count = run_case(case, stack.url, stack.envoy.admin.stats, client)
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
    manifest = load_manifest(path)
    files = files or scenario.discover(manifest.scenario_dir)
    if not files:
        raise ScenarioError(f"no scenario files in '{manifest.scenario_dir}'",
                            fix="add YAML scenario files there (see docs/scenarios.md)")
    sfiles = [scenario.load(f) for f in files]  # every file is checked before anything starts
    features = [features_for(manifest, sfile) for sfile in sfiles]
    binary: EnvoyBinary = resolve(envoy_version or manifest.envoy_version)
    builds = BuildCache(manifest, progress, debug_info=debug_info)
    out = TestReport(envoy=binary.describe(), backend=backend)
    started = time.perf_counter()
    for sfile, wanted in zip(sfiles, features):
        wasm = builds.get(wanted).wasm
        try:
            with start_stack(stack_spec(manifest, sfile, wasm), backend=backend, binary=binary,
                             options=options) as stack:
                out.results += run_file(stack, sfile, report, wasm=wasm)
        except WasmfilterError as e:
            # Envoy refusing the file's configuration fails every case of that file, with Envoy's reason.
            for case in sfile.cases:
                result = CaseResult(sfile.path, case.name, [f"stack did not start: {e}"], 0.0, 0,
                                             log_tail=e.detail or "")
                out.results.append(result)
                if report:
                    report(result)
    out.seconds = time.perf_counter() - started
    return out


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
