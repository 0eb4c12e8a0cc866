"""Run a bench: the same requests against Envoy without a filter (baseline), with the Wasm filter, and with each
native equivalent, in interleaved rounds. Each round starts a fresh Envoy per variant (sampling start-to-ready
time and RSS), then measures each scenario on all variants back to back, in an order that rotates every round,
so machine noise lands on all variants alike."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmfilter import subprocesses
from wasmfilter.bench import one_envoy, probes, vm_start
from wasmfilter.bench.definition import BenchDefinition, Request, Scenario, deep_merge
from wasmfilter.bench.wrk import WrkResult, find_wrk, run_wrk
from wasmfilter.build import cargo as build_mod
from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.bootstrap import CLUSTER_HEADER, Bootstrap, Upstream, WasmFilter, template_fragment
from wasmfilter.envoy.process import EnvoyProcess
from wasmfilter.envoy.protocol import Envoy
from wasmfilter.envoy.validate import validate_text
from wasmfilter.errors import BenchError, UsageError

Progress = Callable[[str, int], None]  # (message, steps done since last call)

BASELINE = "baseline"
WASM = "wasm"
PROBE = "probe"          # kind of the floor and the cost probes (hand-written modules, bench/probes.py)
FLOOR = "floor"          # the floor's variant name
OPT = "wasm-opt"         # name and kind of the filter's size build (settings.compare_opt)
BEFORE = "wasm-before"   # name and kind of another build of the filter (settings.compare_wasm)
PROBE_PREFIX = "probe-"  # the other probes' variant names: probe-<name>


@dataclass
class Variant:
    name: str     # baseline | wasm | native name
    kind: str     # baseline | wasm | native
    description: str = ""


@dataclass
class Sample:
    """One scenario on one variant in one round."""
    round: int
    latency: WrkResult          # latency pass (few connections: no queueing)
    throughput: WrkResult       # throughput pass (fixed, larger connection count)
    unexpected_pct: float       # responses of the wrong class (2xx vs not) in both passes, in percent
    cpu_ns: int = 0             # Envoy's CPU time (all threads) during the throughput pass

    @property
    def cpu_us_per_request(self) -> float:
        """Envoy CPU time per request: the filter's cost, far less sensitive to other load than wall time."""
        return self.cpu_ns / 1000 / self.throughput.requests if self.throughput.requests and self.cpu_ns else 0.0


@dataclass
class EnvoySample:
    round: int
    start_s: float
    rss_ready_kb: int
    rss_loaded_kb: int
    wasm_stats: dict[str, int] = field(default_factory=dict)


@dataclass
class Tuning:
    """Where Envoy and wrk run and at which priority (recorded in the report)."""
    envoy_cpus: set[int] | None = None
    wrk_cpus: set[int] | None = None
    nice: int = 0
    notes: list[str] = field(default_factory=list)
    spinning: list[int] = field(default_factory=list)

    @classmethod
    def plan(cls, concurrency: int, wrk_threads: int, pin: bool, nice: int) -> Tuning:
        tuning = cls()
        cpus = sorted(os.sched_getaffinity(0))
        if pin and len(cpus) >= concurrency + wrk_threads:
            tuning.envoy_cpus = set(cpus[:concurrency])
            tuning.wrk_cpus = set(cpus[concurrency:concurrency + wrk_threads])
        elif pin:
            tuning.notes.append(f"not pinned: {len(cpus)} CPUs < Envoy {concurrency} + wrk {wrk_threads} threads")
        if nice < 0:
            old = os.getpriority(os.PRIO_PROCESS, 0)
            try:
                os.setpriority(os.PRIO_PROCESS, 0, nice)
                os.setpriority(os.PRIO_PROCESS, 0, old)
                tuning.nice = nice
            except PermissionError:
                tuning.notes.append(f"priority unchanged: nice {nice} needs root")
        return tuning

    def start_spinners(self) -> list[subprocess.Popen]:
        """One SCHED_IDLE busy loop per CPU used (see Settings.keep_cpus_awake); stopped by stop_spinners."""
        cpus = sorted((self.envoy_cpus or set()) | (self.wrk_cpus or set())) or sorted(os.sched_getaffinity(0))
        spinners = []
        for cpu in cpus:
            spinners.append(subprocess.Popen([sys.executable, "-c", _SPIN, str(cpu)], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                             preexec_fn=subprocesses.die_with_parent))
        self.spinning = cpus
        return spinners

    @staticmethod
    def stop_spinners(spinners: list[subprocess.Popen]) -> None:
        for proc in spinners:
            proc.kill()
        for proc in spinners:
            proc.wait()

    def apply_to_process(self, pid: int) -> None:
        """Pin every thread of PID (threads it starts later inherit from their creator)."""
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return
        for tid in tids:
            try:
                if self.envoy_cpus:
                    os.sched_setaffinity(tid, self.envoy_cpus)
                if self.nice:
                    os.setpriority(os.PRIO_PROCESS, tid, self.nice)
            except OSError:
                pass

    def to_json(self) -> dict:
        return {"envoy_cpus": sorted(self.envoy_cpus or []), "wrk_cpus": sorted(self.wrk_cpus or []),
                "nice": self.nice, "awake_cpus": self.spinning, "notes": self.notes}


_SPIN = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
while True:
    pass
"""


@dataclass
class BenchRun:
    definition: BenchDefinition
    variants: list[Variant]
    binary: EnvoyBinary
    wasm: Path
    wasm_size: int
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)   # scenario → variant → rounds
    envoy: dict[str, list[EnvoySample]] = field(default_factory=dict)           # variant → one per start
    started_at: float = 0.0
    seconds: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    problems: list[str] = field(default_factory=list)
    tuning: Tuning = field(default_factory=Tuning)
    vm_start_cpu: dict[str, list[float]] = field(default_factory=dict)         # variant → validate CPU ms per run
    guest: dict[str, Any] | None = None   # guest instructions / host calls per request (bench/guest_cost.py)
    # scenario → variant → Envoy CPU µs/req per cycle, every variant in one Envoy (bench/one_envoy.py)
    one_envoy: dict[str, dict[str, list[float]]] = field(default_factory=dict)


@dataclass
class _Group:
    """Scenarios that share one Envoy configuration on one variant."""
    variant: Variant
    config: str
    scenarios: list[Scenario]


def direct_routes(upstreams: list[str]) -> list[str]:
    text = template_fragment("native/direct_routes.yaml.j2", upstreams=upstreams, cluster_header=CLUSTER_HEADER)
    return [text]


def opt_wasm_path(wasm: Path) -> Path:
    """Where `wasmfilter build --opt` puts the size build beside the default module."""
    return wasm.with_name(wasm.stem + ".opt.wasm")


def before_wasm_path(definition: BenchDefinition, wasm: Path) -> Path:
    """The module of variant `wasm-before`: settings.compare_wasm, a file or a directory holding a module named like
    WASM (the current build)."""
    given = Path(definition.settings.compare_wasm or "")
    return given / wasm.name if given.is_dir() else given


def _bootstrap(definition: BenchDefinition, variant: Variant, scenario: Scenario, wasm: Path) -> str:
    manifest = definition.manifest
    assert manifest is not None
    # The clusters exist (filters may name them) but nothing routes to them: every route answers directly.
    upstreams = [Upstream(name, "127.0.0.1", 9) for name in manifest.upstreams]
    routes = direct_routes(list(manifest.upstreams))
    filters: list[str] = []
    if variant.kind in (WASM, OPT, BEFORE):
        module = {WASM: wasm, OPT: opt_wasm_path(wasm), BEFORE: before_wasm_path(definition, wasm)}[variant.kind]
        filters.append(WasmFilter.from_manifest(manifest, module,
                                                plugin_config=definition.plugin_config(scenario)).fragment())
    elif variant.kind == PROBE:
        filters.append(WasmFilter(name="probe", wasm_path=str(probes.wasm_path(_probe_name(variant.name))),
                                  plugin_config="", root_id="probe", vm_id="probe").fragment())
    elif variant.kind == "native":
        native = next(n for n in definition.natives if n.name == variant.name)
        extra = scenario.native_values.get(native.name, {})
        for ref in native.filters:
            filters.append(template_fragment(ref.template, **deep_merge(ref.values, extra)))
        if native.routes is not None:
            routes = [template_fragment(native.routes.template, **deep_merge(native.routes.values, extra),
                                        upstreams=list(manifest.upstreams), cluster_header=CLUSTER_HEADER)]
    return Bootstrap(upstreams=upstreams, http_filters=filters, routes=routes).render()


def _probe_name(variant_name: str) -> str:
    return probes.FLOOR if variant_name == FLOOR else variant_name.removeprefix(PROBE_PREFIX)


def variants_of(definition: BenchDefinition) -> list[Variant]:
    out = [Variant(BASELINE, BASELINE, "Envoy, no HTTP filter but the router"),
           Variant(WASM, WASM, f"Envoy + the Wasm filter '{definition.name}' (V8)")]
    out += [Variant(n.name, "native", n.description) for n in definition.natives]
    if definition.settings.compare_opt:
        out.append(Variant(OPT, OPT, "the same filter's size build (wasmfilter build --opt: opt-level z, "
                                     "wasm-opt -Oz)"))
    if definition.settings.compare_wasm:
        out.append(Variant(BEFORE, BEFORE, f"another build of the filter: {definition.settings.compare_wasm}"))
    if definition.settings.floor:
        out.append(Variant(FLOOR, PROBE, f"the floor: {probes.CATALOG[probes.FLOOR].description}"))
    out += [Variant(PROBE_PREFIX + n, PROBE, f"floor + {probes.CATALOG[n].description}"
                    + (f", {probes.CATALOG[n].repeat}x per request" if probes.CATALOG[n].per == "call" else ""))
            for n in definition.probes]
    return out


def _groups(definition: BenchDefinition, variants: list[Variant], wasm: Path) -> dict[str, list[_Group]]:
    groups: dict[str, list[_Group]] = {}
    for variant in variants:
        by_config: dict[str, _Group] = {}
        for scenario in definition.scenarios:
            if not scenario.applies_to(variant.kind, variant.name):
                continue
            config = _bootstrap(definition, variant, scenario, wasm)
            by_config.setdefault(config, _Group(variant, config, [])).scenarios.append(scenario)
        groups[variant.name] = list(by_config.values())
    return groups


def probe(url: str, scenario: Scenario, variant: Variant) -> None:
    """One real request before the load: the variant must answer what the scenario expects, else the numbers
    would measure the wrong thing (a 404, an error page, a route not taken)."""
    want = scenario.expect.for_variant(variant.kind, variant.name)
    branch = scenario.expect.branch if variant.kind not in (BASELINE, PROBE) else None
    host, _, port = url.removeprefix("http://").partition(":")
    attempts = 50 if scenario.expect.mostly else 1
    seen: list[str] = []
    for _ in range(attempts):
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request(scenario.request.method.upper(), scenario.request.path,
                         body=scenario.request.body, headers=scenario.request.headers)
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        if resp.status == want and (branch is None or body == branch):
            return
        seen.append(f"{resp.status} {body[:80]!r}")
    expected = f"{want}" + (f" with body {branch!r}" if branch else "")
    raise BenchError(f"scenario '{scenario.name}' on variant '{variant.name}': expected {expected}, got {seen[-1]}",
                     fix="fix the bench definition's expect/config (or the filter): the load would measure "
                         "the wrong path")


def _unexpected_pct(scenario: Scenario, variant: Variant, results: list[WrkResult]) -> float:
    ok_class = scenario.expect.for_variant(variant.kind, variant.name) < 400
    total = sum(r.requests for r in results)
    bad = sum((r.non_2xx if ok_class else r.requests - r.non_2xx) for r in results)
    return 100.0 * bad / total if total else 0.0


def estimate_seconds(definition: BenchDefinition, n_groups: int) -> float:
    s = definition.settings
    per_group_overhead = 0.6
    passes = sum(1 for sc in definition.scenarios for v in variants_of(definition) if sc.applies_to(v.kind, v.name))
    one_envoy_s = len(definition.scenarios) * 2 + passes * (s.warmup_s + s.one_envoy_cycles * (s.one_envoy_slice_s
                                                                                                + 0.15))
    return s.rounds * (n_groups * (s.warmup_s + per_group_overhead) + passes * 2 * (s.duration_s + 0.15)) \
        + (one_envoy_s if s.one_envoy_cycles else 0)


def total_steps(definition: BenchDefinition, groups: dict[str, list[_Group]]) -> int:
    per_round = sum(1 + 2 * len(g.scenarios) for gs in groups.values() for g in gs)
    return definition.settings.rounds * per_round + len(definition.scenarios) * definition.settings.one_envoy_cycles


def run_bench(definition: BenchDefinition, *, envoy_version: str | None = None,
              progress: Progress | None = None, build_progress: build_mod.Progress | None = None) -> BenchRun:
    find_wrk()  # fail before building anything
    manifest = definition.manifest
    assert manifest is not None
    settings = definition.settings
    step = progress or (lambda msg, n: None)
    binary = resolve(envoy_version or manifest.envoy_version)
    built = build_mod.build(manifest.crate_dir, features=definition.features, progress=build_progress)
    if settings.compare_opt:
        build_mod.build(manifest.crate_dir, features=definition.features, opt=True, progress=build_progress)
    variants = variants_of(definition)
    for variant in variants:
        if variant.kind == PROBE:
            probes.build(_probe_name(variant.name))
    before = before_wasm_path(definition, built.wasm)
    if settings.compare_wasm and not before.is_file():
        raise UsageError(f"--before: no module '{before}' for {definition.name}",
                         fix=f"give the .wasm of the other build, or a directory holding one named {built.wasm.name}")
    groups = _groups(definition, variants, built.wasm)
    # Every distinct configuration must pass `envoy --mode validate` before any load runs.
    for gs in groups.values():
        for g in gs:
            validate_text(g.config, binary)
    run = BenchRun(definition, variants, binary, built.wasm, built.size,
                   samples={s.name: {v.name: [] for v in variants} for s in definition.scenarios},
                   envoy={v.name: [] for v in variants})
    run.guest = _guest_profile(definition, built.wasm, run.problems)
    run.tuning = Tuning.plan(settings.envoy_concurrency, settings.wrk_threads, settings.pin_cpus, settings.nice)
    run.vm_start_cpu = vm_start.measure({v.name: groups[v.name][0].config for v in variants}, binary,
                                        step=lambda message: step(message, 0))
    run.started_at = time.time()
    run.load_before = _loadavg()
    started = time.perf_counter()
    old_nice = os.getpriority(os.PRIO_PROCESS, 0)
    spinners = run.tuning.start_spinners() if settings.keep_cpus_awake else []
    try:
        if run.tuning.nice:
            os.setpriority(os.PRIO_PROCESS, 0, run.tuning.nice)  # Envoy and wrk inherit it (start-up included)
        for rnd in range(settings.rounds):
            _run_round(run, groups, rnd, binary, step)
        if settings.one_envoy_cycles:
            _run_one_envoy(run, built.wasm, binary, step)
    finally:
        Tuning.stop_spinners(spinners)
        if run.tuning.nice:
            os.setpriority(os.PRIO_PROCESS, 0, old_nice)
    run.seconds = time.perf_counter() - started
    run.load_after = _loadavg()
    return run


def _guest_profile(definition: BenchDefinition, wasm: Path, problems: list[str]) -> dict[str, Any] | None:
    """The deterministic side of the report: each scenario on the emulator (a second or two, no timing)."""
    from wasmfilter.bench import guest_cost
    from wasmfilter.errors import WasmfilterError

    try:
        return guest_cost.profile(definition, wasm).to_json()
    except WasmfilterError as e:
        problems.append(f"guest profile (emulator) skipped: {e.problem}")
        return None


def _load(run: BenchRun, url: str, request: Request, duration_s: int) -> WrkResult:
    """wrk at the throughput settings (connections, threads, wrk's CPUs): warm-ups, throughput passes and one-Envoy
    slices all load Envoy alike."""
    s = run.definition.settings
    return run_wrk(url, request, duration_s=duration_s, connections=s.connections, threads=s.wrk_threads,
                   cpus=run.tuning.wrk_cpus)


def _measured_load(run: BenchRun, envoy: Envoy, url: str, request: Request, duration_s: int) -> tuple[WrkResult, int]:
    """_load, and Envoy's CPU time over it (ns, all threads)."""
    cpu_before = envoy.cpu_ns()
    result = _load(run, url, request, duration_s)
    return result, envoy.cpu_ns() - cpu_before


def _rotated(items: list, rnd: int) -> list:
    shift = rnd % len(items) if items else 0
    return items[shift:] + items[:shift]


def _run_round(run: BenchRun, groups: dict[str, list[_Group]], rnd: int, binary: EnvoyBinary,
               step: Progress) -> None:
    """One round: start every variant's Envoy (rotated order), warm each up, then for each scenario run the
    latency pass on every variant back to back, then the throughput pass likewise — so the variants compared in
    one round are measured seconds apart, and the order rotates from round to round."""
    settings = run.definition.settings
    level = settings.envoy_log_level
    variants = _rotated(run.variants, rnd)
    cpus = run.tuning.wrk_cpus
    with ExitStack() as stack:
        running: dict[tuple[str, str], tuple[Envoy, int]] = {}   # (variant, scenario) → (envoy, ready rss)
        started: list[tuple[_Group, Envoy, int]] = []
        for variant in variants:
            for group in groups[variant.name]:
                envoy: Envoy = stack.enter_context(EnvoyProcess(group.config, binary=binary,
                                                                concurrency=settings.envoy_concurrency,
                                                                log_level=level, wasm_log_level=level))
                run.tuning.apply_to_process(envoy.pid)
                ready_rss = envoy.rss_kb()
                started.append((group, envoy, ready_rss))
                for scenario in group.scenarios:
                    running[(variant.name, scenario.name)] = (envoy, ready_rss)
                first = group.scenarios[0]
                probe(envoy.listener_url, first, variant)
                if settings.warmup_s:
                    step(f"round {rnd + 1}: {variant.name}: started in {envoy.start_seconds * 1000:.0f} ms, "
                         f"warm-up {settings.warmup_s}s", 0)
                    _load(run, envoy.listener_url, first.request, settings.warmup_s)
                step(f"round {rnd + 1}: {variant.name}: ready", 1)
        for scenario in run.definition.scenarios:
            lat: dict[str, WrkResult] = {}
            applicable = [v for v in variants if scenario.applies_to(v.kind, v.name)]
            for variant in applicable:
                envoy, _ = running[(variant.name, scenario.name)]
                probe(envoy.listener_url, scenario, variant)
                lat[variant.name] = run_wrk(envoy.listener_url, scenario.request, duration_s=settings.duration_s,
                                            connections=settings.latency_connections, threads=1, cpus=cpus)
                step(f"round {rnd + 1}: {scenario.name}: {variant.name} p50 {lat[variant.name].p(50)} µs", 1)
            for variant in applicable:
                envoy, _ = running[(variant.name, scenario.name)]
                thr, used = _measured_load(run, envoy, envoy.listener_url, scenario.request, settings.duration_s)
                step(f"round {rnd + 1}: {scenario.name}: {variant.name} {thr.rps:,.0f} req/s", 1)
                bad = _unexpected_pct(scenario, variant, [lat[variant.name], thr])
                errors = lat[variant.name].socket_errors + thr.socket_errors
                if errors:
                    run.problems.append(f"{scenario.name}/{variant.name} round {rnd + 1}: {errors} socket "
                                        f"errors/timeouts")
                run.samples[scenario.name][variant.name].append(Sample(rnd, lat[variant.name], thr, bad, used))
        for group, envoy, ready_rss in started:
            if group is not groups[group.variant.name][0]:
                continue  # one Envoy sample per variant and round (the first configuration)
            stats: dict[str, int] = {}
            if group.variant.kind == WASM:
                try:
                    stats = envoy.admin.stats("wasm")
                except (OSError, ValueError):
                    stats = {}
            run.envoy[group.variant.name].append(EnvoySample(rnd, envoy.start_seconds, ready_rss,
                                                             envoy.rss_kb(), stats))


def _run_one_envoy(run: BenchRun, wasm: Path, binary: EnvoyBinary, step: Progress) -> None:
    """Per scenario, one Envoy holding every variant on its own listener (bench/one_envoy.py): each listener checked
    and warmed up, then settings.one_envoy_cycles cycles of one wrk slice per variant, in an order that rotates."""
    d = run.definition
    settings = d.settings
    level = settings.envoy_log_level
    for scenario in d.scenarios:
        variants = [v for v in run.variants if scenario.applies_to(v.kind, v.name)]
        config = one_envoy.combined_config({v.name: _bootstrap(d, v, scenario, wasm) for v in variants})
        samples: dict[str, list[float]] = {v.name: [] for v in variants}
        results: dict[str, list[WrkResult]] = {v.name: [] for v in variants}
        with EnvoyProcess(config, binary=binary, concurrency=settings.envoy_concurrency, log_level=level,
                          wasm_log_level=level) as envoy:
            run.tuning.apply_to_process(envoy.pid)
            ports = envoy.admin.listener_ports()
            urls = {v.name: f"http://127.0.0.1:{ports[one_envoy.listener_name(v.name, variants[0].name)]}"
                    for v in variants}
            for variant in variants:
                probe(urls[variant.name], scenario, variant)
                if settings.warmup_s:
                    _load(run, urls[variant.name], scenario.request, settings.warmup_s)
            for cycle in range(settings.one_envoy_cycles):
                for variant in _rotated(variants, cycle):
                    result, used = _measured_load(run, envoy, urls[variant.name], scenario.request,
                                                  settings.one_envoy_slice_s)
                    samples[variant.name].append(used / 1000 / max(result.requests, 1))
                    results[variant.name].append(result)
                step(f"one Envoy: {scenario.name}: cycle {cycle + 1}/{settings.one_envoy_cycles}", 1)
        run.one_envoy[scenario.name] = samples
        for variant in variants:  # the same checks as the rounds': a slice answering otherwise measured another path
            bad = _unexpected_pct(scenario, variant, results[variant.name])
            errors = sum(r.socket_errors for r in results[variant.name])
            if bad > scenario.expect.unexpected_limit_pct or errors:
                run.problems.append(f"{scenario.name}/{variant.name} (one Envoy): {bad:.1f}% responses of the wrong "
                                    f"status class, {errors} socket errors/timeouts")


def _loadavg() -> tuple[float, float, float]:
    try:
        a, b, c = Path("/proc/loadavg").read_text().split()[:3]
        return float(a), float(b), float(c)
    except (OSError, ValueError):
        return (0.0, 0.0, 0.0)


def config_for(definition: BenchDefinition, variant_name: str, scenario_name: str | None = None,
               wasm: Path | str = "/dev/null/plugin.wasm") -> str:
    """The bootstrap a variant runs (for `--show-config` and tests)."""
    variants = {v.name: v for v in variants_of(definition)}
    if variant_name not in variants:
        raise BenchError(f"unknown variant '{variant_name}'", fix="use one of: " + ", ".join(variants))
    scenario = next((s for s in definition.scenarios if s.name == scenario_name), definition.scenarios[0])
    if variants[variant_name].kind == PROBE:
        probes.build(_probe_name(variant_name))
    return _bootstrap(definition, variants[variant_name], scenario, Path(wasm))


def any_to_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
