"""`wasmfilter fuzz`: seeded generated requests (harness/fuzz/generate.py) over raw sockets through a real Envoy with
the filter, each checked against the invariants (harness/fuzz/invariants.py) plus liveness — Envoy still answers
its admin API, no Wasm VM failed — with every distinct violation shrunk and written out as a scenario case."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wasmfilter.build.cargo import build
from wasmfilter.envoy.binary import resolve
from wasmfilter.envoy.protocol import filter_log_lines
from wasmfilter.errors import FuzzFailed, UsageError
from wasmfilter.harness.fuzz import generate, invariants, shrink
from wasmfilter.harness.fuzz.generate import FuzzRequest
from wasmfilter.harness.fuzz.invariants import Outcome, Violation
from wasmfilter.harness.fuzz.rawclient import ResponseParseError, exchange
from wasmfilter.harness.stack import BackendOptions, Stack, StackSpec, start_stack
from wasmfilter.manifest import FailurePolicy, FuzzSpec, Manifest, load_manifest

LIVENESS_EVERY = 500      # requests between liveness checks (and after every 5xx or missing answer)
VM_FAILURE_LOG = "failed: Uncaught"  # proxy-wasm-cpp-host's line when a VM call traps (a panic, an abort)
VM_RELOAD_TIMEOUT_S = 10.0
FUZZ_RELOAD_BACKOFF_MS = 50  # the fuzz stack reloads a failed VM after this, so one crash does not end the run
MAX_COUNT = 10_000_000


@dataclass
class Finding:
    index: int
    violation: Violation
    request: FuzzRequest
    shrunk: FuzzRequest
    shrink_attempts: int = 0
    case_file: Path | None = None


@dataclass
class FuzzReport:
    filter: str
    seed: int
    backend: str
    sent: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    violations: Counter[str] = field(default_factory=Counter)  # every violation seen, by kind

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def rps(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def send(host: str, port: int, req: FuzzRequest, timeout: float = 5.0) -> Outcome:
    try:
        return Outcome(req, exchange(host, port, req.render(), methods=req.methods(), timeout=timeout))
    except TimeoutError:
        return Outcome(req, error=f"no answer within {timeout:.0f}s")
    except ResponseParseError as e:
        return Outcome(req, error=f"malformed response: {e}")
    except ConnectionRefusedError:
        return Outcome(req, error="connection refused")


class Liveness:
    """Envoy still answers its admin API; a Wasm VM failure (proxy-wasm-cpp-host logs each trap) is found, pinned
    on the request that causes it (re-sent one at a time) and waited out (the fuzz stack runs FAIL_RELOAD)."""

    def __init__(self, stack: Stack, host: str, port: int):
        self.stack, self.host, self.port = stack, host, port
        self.seen = self.vm_failures()

    def vm_failures(self) -> int:
        return sum(VM_FAILURE_LOG in line for line in self.stack.envoy.logs().splitlines())

    def envoy_dead(self) -> Violation | None:
        if self.stack.envoy.admin.is_ready():
            return None
        return Violation("envoy-crashed", "Envoy stopped answering its admin API (crashed or hung): "
                         + " | ".join(self.stack.envoy.logs().splitlines()[-3:]))

    def new_vm_failure(self) -> bool:
        now = self.vm_failures()
        grew, self.seen = now > self.seen, now
        return grew

    def wait_vm(self, timeout: float = VM_RELOAD_TIMEOUT_S) -> None:
        """Until the filter answers again (a 503 with an empty body is Envoy's reply while the VM is down)."""
        probe = FuzzRequest(path="/")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = send(self.host, self.port, probe)
            if out.responses and not (out.responses[0].status == 503 and not out.responses[0].body):
                return
            time.sleep(0.02)

    def kills(self, req: FuzzRequest) -> bool:
        """Does REQ, sent alone to a live VM, make it fail?"""
        self.wait_vm()
        self.seen = self.vm_failures()
        send(self.host, self.port, req)
        return self.new_vm_failure()

    def violation(self) -> Violation:
        lines = [line for line in filter_log_lines(self.stack.envoy.logs()) if "panicked" in line or
                 VM_FAILURE_LOG in line]
        return Violation("vm-died", "the Wasm VM failed: " + " | ".join(lines[-2:])[:600])


def _suspicious(outcome: Outcome) -> bool:
    return outcome.error is not None or any(r.status >= 500 for r in outcome.responses) or \
        len(outcome.responses) < len(outcome.request.methods())


def _outcomes(host: str, port: int, seed: int, count: int, spec: FuzzSpec, workers: int
              ) -> Iterator[tuple[int, Outcome]]:
    """Outcomes in index order; WORKERS connections at a time (the order of checks stays the seed's)."""
    def one(i: int) -> Outcome:
        return send(host, port, generate.request_at(seed, i, spec))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        batch = max(workers * 2, 1)
        for start in range(0, count, batch):
            indices = range(start, min(count, start + batch))
            yield from zip(indices, pool.map(one, indices))


def fuzz_stack(stack: Stack, manifest: Manifest, *, seed: int, count: int, out_dir: Path | None = None,
               workers: int = 4, max_findings: int = 5, backend: str = "process",
               progress: Callable[[int], None] | None = None, shrink_attempts: int = shrink.MAX_ATTEMPTS
               ) -> FuzzReport:
    """Fuzz a started STACK running MANIFEST's filter."""
    spec = manifest.fuzz
    host, _, port_text = stack.url.split("://", 1)[1].rpartition(":")
    port = int(port_text)
    report = FuzzReport(filter=manifest.name, seed=seed, backend=backend)
    live = Liveness(stack, host, port)
    kinds_found: set[str] = set()
    recent: list[int] = []
    started = time.perf_counter()
    for i, outcome in _outcomes(host, port, seed, count, spec, workers):
        report.sent += 1
        recent = [*recent[-(workers * 4):], i]  # this batch and the one before: in flight when the VM failed
        for resp in outcome.responses:
            report.statuses[str(resp.status)] += 1
        if outcome.error:
            report.statuses["error"] += 1
        found = [(i, outcome.request, v) for v in invariants.check(outcome, spec)]
        if outcome.error and "malformed" in outcome.error:
            found.append((i, outcome.request, Violation("malformed-response", outcome.error)))
        if _suspicious(outcome) or i % LIVENESS_EVERY == LIVENESS_EVERY - 1:
            dead = live.envoy_dead()
            if dead is not None:
                found.append((i, outcome.request, dead))
            elif live.new_vm_failure():
                report.violations["vm-died"] += 1
                if "vm-died" not in kinds_found:
                    culprit = next((j for j in reversed(recent)
                                    if live.kills(generate.request_at(seed, j, spec))), None)
                    if culprit is not None:
                        found.append((culprit, generate.request_at(seed, culprit, spec), live.violation()))
                    live.wait_vm()
                    live.new_vm_failure()
                # later failures are counted, not waited out: requests meanwhile get the dead-VM 503 (documented)
        for index, request, violation in found:
            if violation.kind != "vm-died":
                report.violations[violation.kind] += 1
            if violation.kind in kinds_found or len(report.findings) >= max_findings:
                continue
            kinds_found.add(violation.kind)
            report.findings.append(_finding(index, request, violation, live, spec, shrink_attempts))
        if progress and report.sent % 1000 == 0:
            progress(report.sent)
        if "envoy-crashed" in kinds_found:
            break  # nothing answers any more
    report.seconds = time.perf_counter() - started
    if out_dir is not None:
        for n, finding in enumerate(report.findings):
            finding.case_file = shrink.write_case(
                finding.shrunk, finding.violation, out_dir, name=f"fuzz-{manifest.name}-{seed}-{finding.index}-{n}",
                description=f"Found by `wasmfilter fuzz --seed {seed}` (request {finding.index}), shrunk in "
                            f"{finding.shrink_attempts} attempts.")
    return report


def _finding(index: int, req: FuzzRequest, violation: Violation, live: Liveness, spec: FuzzSpec,
             budget: int) -> Finding:
    if violation.kind == "envoy-crashed":
        return Finding(index, violation, req, req)  # Envoy is gone: nothing to re-send to
    if violation.kind == "vm-died":
        shrunk, attempts = shrink.shrink(req, live.kills, set(), max_attempts=budget // 3)
        live.wait_vm()
        live.new_vm_failure()
        return Finding(index, violation, req, shrunk, attempts)

    def still_fails(candidate: FuzzRequest) -> bool:
        again = invariants.check(send(live.host, live.port, candidate), spec)
        return any(v.kind == violation.kind for v in again)

    names = {invariants.fold(k) for cred in spec.credentials for k in cred}
    shrunk, attempts = shrink.shrink(req, still_fails, names, max_attempts=budget)
    final = [v for v in invariants.check(send(live.host, live.port, shrunk), spec) if v.kind == violation.kind]
    return Finding(index, final[0] if final else violation, req, shrunk, attempts)


def fuzz_spec(manifest: Manifest, wasm: Path) -> StackSpec:
    """The fuzz stack: the manifest's config, FAIL_RELOAD after a short backoff (a VM failure is a finding, and
    the run goes on to find the next)."""
    reloading = manifest.model_copy(update={"reload_backoff_ms": FUZZ_RELOAD_BACKOFF_MS})
    return StackSpec(manifest=reloading, wasm_path=wasm, failure_policy=FailurePolicy.FAIL_RELOAD)


def fuzz(path: str | Path | None = None, *, seed: int = 1, count: int = 1000, out_dir: Path | None = None,
         workers: int = 4, backend: str = "process", envoy_version: str | None = None,
         options: BackendOptions | None = None, build_progress: Callable[[str], None] | None = None,
         progress: Callable[[int], None] | None = None, shrink_attempts: int = shrink.MAX_ATTEMPTS) -> FuzzReport:
    """Build the filter at PATH, start it in Envoy (its manifest config) and fuzz it with COUNT requests of SEED."""
    if not 1 <= count <= MAX_COUNT:
        raise UsageError(f"invalid request count {count}", fix=f"give --requests between 1 and {MAX_COUNT}")
    if not 1 <= workers <= 64:
        raise UsageError(f"invalid worker count {workers}", fix="give --workers between 1 and 64")
    manifest = load_manifest(path)
    wasm = build(manifest.crate_dir, progress=build_progress).wasm
    binary = resolve(envoy_version or manifest.envoy_version)
    with start_stack(fuzz_spec(manifest, wasm), backend=backend, binary=binary, options=options) as stack:
        return fuzz_stack(stack, manifest, seed=seed, count=count, out_dir=out_dir, workers=workers,
                          backend=backend, progress=progress, shrink_attempts=shrink_attempts)


def raise_for(report: FuzzReport) -> None:
    """FuzzFailed naming every distinct violation of REPORT, if it has any."""
    if report.ok:
        return
    kinds = ", ".join(f"{k} x{n}" for k, n in sorted(report.violations.items()))
    raise FuzzFailed(f"{report.filter}: {len(report.findings)} distinct invariant violation(s) in {report.sent} "
                     f"requests ({kinds})",
                     problems=[f"{f.violation.kind}: {f.violation.message}" for f in report.findings],
                     fix="each shrunk case is a scenario file: fix the filter until it passes "
                         "(`wasmfilter test --scenario FILE`), then keep it in scenarios/")
