"""`wasmfilter profile`: the guest's deterministic cost per request. Each bench scenario (benchmarks/<filter>.yaml:
the plugin configuration and the request `wasmfilter bench` sends) runs through the emulator, warm-up requests
first, then N requests, counting wasm instructions (wasmtime fuel) per callback and host calls per imported
function (emulator/meter.py). Owns the profile (what ran, per-request averages, the VM start's instructions), its
checks (the answer the bench expects, else the profile measures the wrong path) and its text and JSON forms.

Instruction counts are not time — V8's TurboFan code, the host's side of each call and Envoy are not in them — but
they do not move with machine load, so a 1 % change in guest work shows where a timing bench sees noise."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wasmfilter.bench.definition import BenchDefinition, Scenario
from wasmfilter.emulator import hcm
from wasmfilter.emulator.backend import plugin_from_bootstrap
from wasmfilter.emulator.codes import LogLevel
from wasmfilter.emulator.host import FilterHost, Plugin
from wasmfilter.emulator.meter import Meter
from wasmfilter.emulator.routes import RouteTable, load_yaml
from wasmfilter.emulator.stream import Request, Response, UpstreamRequest
from wasmfilter.envoy.bootstrap import CLUSTER_HEADER
from wasmfilter.envoy.hardening import read_back
from wasmfilter.errors import BenchError, UsageError, WasmfilterError

DEFAULT_REQUESTS = 20
DEFAULT_WARMUP = 3
# The callbacks of one request, in Envoy's order (the per-request split); a module may export fewer.
CALLBACKS = ("context_create", "request_headers", "request_body", "response_headers", "response_body", "log", "done",
             "delete")
_START = ("_initialize", "_start", "main", "proxy_on_vm_start", "proxy_on_configure")
_LISTENER_HOST = "127.0.0.1:10000"  # wrk's Host header: the listener it loads
# Envoy's log level names (bench settings.envoy_log_level) → the level the filter learns from proxy_get_log_level,
# so a filter formats exactly the lines it would format under the bench.
_ENVOY_LEVELS = {"trace": LogLevel.TRACE, "debug": LogLevel.DEBUG, "info": LogLevel.INFO, "warning": LogLevel.WARN,
                 "warn": LogLevel.WARN, "error": LogLevel.ERROR, "critical": LogLevel.CRITICAL,
                 "off": LogLevel.CRITICAL}


@dataclass
class ScenarioCost:
    name: str
    status: int
    instructions: dict[str, float]              # callback (without proxy_on_) → instructions per request
    host_calls: dict[str, float]                # host function (without proxy_) → calls per request

    @property
    def total(self) -> float:
        return sum(self.instructions.values())

    @property
    def calls(self) -> float:
        return sum(self.host_calls.values())


@dataclass
class Profile:
    filter: str
    module: str
    module_bytes: int
    requests: int
    warmup: int
    start_instructions: int = 0                 # VM start: _initialize, root context, vm_start, configure
    scenarios: list[ScenarioCost] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for entry, sc in zip(doc["scenarios"], self.scenarios):
            entry["instructions_total"] = sc.total
            entry["host_calls_total"] = sc.calls
        return doc


def _direct_response(request: UpstreamRequest) -> Response:
    """The bench's route table answers itself (templates/envoy/native/direct_routes.yaml.j2): 200 naming the branch."""
    body = request.cluster.encode()
    return Response(200, [("content-length", str(len(body))), ("content-type", "text/plain"), ("server", "envoy")],
                    body)


def _short(name: str) -> str:
    return name.removeprefix("proxy_on_").removeprefix("proxy_")


def _per_request(counts: dict[str, int], n: int) -> dict[str, float]:
    return {_short(k): v / n for k, v in sorted(counts.items()) if v}


def _check(scenario: Scenario, stream_status: int, body: bytes, statuses: list[int], *, floor: bool) -> None:
    want = scenario.expect.for_variant("probe" if floor else "wasm", "wasm")
    branch = None if floor else scenario.expect.branch
    ok = [s == want for s in statuses]
    if (all(ok) or (scenario.expect.mostly and sum(ok) * 2 > len(ok))) and (branch is None or body == branch.encode()):
        return
    seen = f"{stream_status} {body[:80]!r}"
    raise BenchError(f"scenario '{scenario.name}': expected {want}" + (f" with body {branch!r}" if branch else "")
                     + f" on the emulator, got {seen}",
                     fix="fix the bench definition's expect/config (or the filter): the profile would count the "
                         "wrong path")


def profile_scenario(module: bytes, plugin: Plugin, bootstrap: dict[str, Any], scenario: Scenario, *,
                     requests: int = DEFAULT_REQUESTS, warmup: int = DEFAULT_WARMUP, name: str = "module",
                     floor: bool = False, log_level: LogLevel = LogLevel.WARN) -> tuple[ScenarioCost, int]:
    """SCENARIO's request REQUESTS times (after WARMUP) on a fresh emulated Envoy with one worker; its cost per
    request and the VM start's instructions."""
    meter = Meter()
    # The bench's direct routes, as the harness's default table (same choice: the cluster header, else the first).
    routes = RouteTable.default([c["name"] for c in bootstrap["static_resources"].get("clusters", [])])
    host = FilterHost(module, plugin, routes=routes, clusters=routes.clusters, upstream=_direct_response,
                      log_level=log_level, name=name, meter=meter)
    start = sum(v for k, v in meter.fuel.items() if k in _START or k == "proxy_on_context_create")
    hardening = read_back(bootstrap, CLUSTER_HEADER)
    req = scenario.request
    seen = hcm.apply(hardening, CLUSTER_HEADER, req.path, [("host", _LISTENER_HOST), *req.headers.items()])
    if seen.reply_status is not None:
        raise BenchError(f"scenario '{scenario.name}': Envoy answers {seen.reply_status} before any filter runs",
                         fix="send a request the filter sees")
    body = (req.body or "").encode()
    statuses: list[int] = []
    last = None
    for i in range(warmup + requests):
        if i == warmup:
            meter.reset()
        last = host.http(Request(req.method.upper(), seen.path, list(seen.headers), body), raise_on_trap=False)
        if last.trap is not None:
            raise BenchError(f"scenario '{scenario.name}': the filter trapped: {last.trap}",
                             fix="fix the filter (wasmfilter test shows the case)")
        if i >= warmup:
            statuses.append(last.status)
    assert last is not None
    _check(scenario, last.status, last.body, statuses, floor=floor)
    cost = ScenarioCost(scenario.name, last.status, _per_request(meter.fuel, requests),
                        _per_request(meter.calls, requests))
    return cost, start


def profile(definition: BenchDefinition, wasm: str | Path, *, requests: int = DEFAULT_REQUESTS,
            warmup: int = DEFAULT_WARMUP, floor: bool = False, only: list[str] | None = None) -> Profile:
    """Every scenario of DEFINITION (or those named in ONLY) on module WASM, configured as `wasmfilter bench`
    configures it. FLOOR: WASM is a hand-written probe (bench/probes.py): no plugin configuration, and it answers
    like Envoy without a filter."""
    from wasmfilter.bench.runner import config_for

    if requests < 1 or warmup < 0:
        raise UsageError(f"invalid request counts {requests}/{warmup}", fix="give --requests >= 1, --warmup >= 0")
    path = Path(wasm)
    if not path.is_file():
        raise UsageError(f"'{path}' does not exist", fix="pass the .wasm that `wasmfilter build` printed")
    names = [s.name for s in definition.scenarios]
    unknown = [n for n in only or [] if n not in names]
    if unknown:
        raise UsageError(f"{definition.name} has no scenario '{unknown[0]}'", fix="use one of: " + ", ".join(names))
    module = path.read_bytes()
    level = _ENVOY_LEVELS.get(definition.settings.envoy_log_level.lower(), LogLevel.WARN)
    result = Profile(definition.name, str(path), len(module), requests, warmup)
    for scenario in definition.scenarios:
        if only and scenario.name not in only:
            continue
        bootstrap = load_yaml(config_for(definition, "wasm", scenario.name, path))
        plugin, _ = plugin_from_bootstrap(bootstrap)
        if floor:
            plugin = Plugin(name="probe", root_id="probe", vm_id="probe")
        try:
            cost, start = profile_scenario(module, plugin, bootstrap, scenario, requests=requests, warmup=warmup,
                                           name=str(path), floor=floor, log_level=level)
        except BenchError:
            raise
        except WasmfilterError as e:
            raise BenchError(f"scenario '{scenario.name}' cannot run on the emulator: {e.problem}",
                             fix=e.fix or "run it with `wasmfilter test --backend emulator` to see why") from e
        result.start_instructions = max(result.start_instructions, start)
        result.scenarios.append(cost)
    return result


def profile_filter(definition: BenchDefinition, **kwargs: Any) -> Profile:
    """Build the filter as `wasmfilter bench` does (release, the bench's features), then profile it."""
    from wasmfilter.build import cargo

    assert definition.manifest is not None
    built = cargo.build(definition.manifest.crate_dir, features=definition.features)
    return profile(definition, built.wasm, **kwargs)


# --- text forms ------------------------------------------------------------------------------------------------

def columns(doc: dict[str, Any]) -> list[str]:
    """The callbacks that ran in any scenario of profile DOC, in Envoy's order."""
    seen = {k for sc in doc["scenarios"] for k in sc["instructions"]}
    return [c for c in CALLBACKS if c in seen] + sorted(seen - set(CALLBACKS))


def header(doc: dict[str, Any]) -> list[str]:
    return ["scenario", "instr/req", *columns(doc), "host calls/req", "host calls by name"]


def _calls_text(calls: dict[str, float]) -> str:
    return ", ".join(f"{name} {n:g}" for name, n in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])))


def rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    for sc in doc["scenarios"]:
        out.append([sc["name"], f"{sc['instructions_total']:,.0f}",
                    *[f"{sc['instructions'].get(c, 0):,.0f}" for c in columns(doc)],
                    f"{sc['host_calls_total']:g}", _calls_text(sc["host_calls"])])
    return out


def title(doc: dict[str, Any]) -> str:
    return (f"{doc['filter']}: guest instructions and host calls per request (emulator, mean of {doc['requests']} "
            f"after {doc['warmup']} warm-up; {doc['module_bytes']:,} B module; VM start "
            f"{doc['start_instructions']:,} instructions)")


def markdown(doc: dict[str, Any]) -> str:
    head = header(doc)
    lines = [f"{title(doc)}:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(doc)]
    return "\n".join(lines)


def write_json(docs: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(docs if len(docs) != 1 else docs[0], indent=2) + "\n")
