"""Bench definitions: one YAML file per filter in benchmarks/ — which native Envoy filters it is compared with,
which requests (scenarios) load it, and the run settings. Data, not code: a new filter's bench is a new file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from wasmfilter.errors import BenchError, UsageError
from wasmfilter.harness.scenario import deep_merge
from wasmfilter.manifest import MANIFEST_NAME, Manifest, load_manifest
from wasmfilter.yamlmodel import load_model

BENCH_DIR_NAME = "benchmarks"
MAX_DURATION_S = 600

M = TypeVar("M", bound=BaseModel)


def parse_duration(value: str | int | float, what: str = "duration") -> int:
    """'3', '3s', '2m' → whole seconds (wrk's -d takes whole seconds). Zero, negative, fractional, garbage: error."""
    text = str(value).strip().lower()
    m = re.fullmatch(r"(\d+)\s*(s|sec|m|min)?", text)
    if not m:
        raise UsageError(f"invalid {what} '{value}'",
                         fix="give whole seconds like 3, 3s or 1m (wrk measures in whole seconds)")
    seconds = int(m.group(1)) * (60 if m.group(2) in ("m", "min") else 1)
    if seconds < 1 or seconds > MAX_DURATION_S:
        raise UsageError(f"invalid {what} '{value}': must be between 1s and {MAX_DURATION_S}s",
                         fix="give a duration like 3s")
    return seconds


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Settings(_Model):
    envoy_concurrency: int = Field(default=1, ge=1, le=64)   # Envoy --concurrency, the same for every variant
    latency_connections: int = Field(default=1, ge=1)         # wrk -c for the latency pass (no queueing)
    connections: int = Field(default=16, ge=1, le=4096)       # wrk -c for the throughput pass
    wrk_threads: int = Field(default=1, ge=1, le=64)
    duration_s: int = Field(default=3, ge=1, le=MAX_DURATION_S)  # per variant, per scenario, per pass
    warmup_s: int = Field(default=1, ge=0, le=MAX_DURATION_S)    # once per started Envoy (JIT, connections)
    rounds: int = Field(default=3, ge=1, le=50)
    max_spread_pct: float = Field(default=15.0, gt=0)           # warn above this (max-min)/median across rounds
    envoy_log_level: str = "warning"
    # The machine is shared: Envoy and wrk get their own CPUs (Envoy the first envoy_concurrency, wrk the next
    # wrk_threads) and a higher priority (needs root; skipped otherwise), so other work preempts them less.
    pin_cpus: bool = True
    nice: int = Field(default=-10, ge=-20, le=0)
    # In a VM an idle vCPU halts, and waking it costs ~1-4 ms: with one connection, every request that finds
    # Envoy's (or wrk's) CPU idle pays it, which swamps p90/p99 for every variant alike. A SCHED_IDLE spinner per
    # CPU keeps them awake; it runs only when nothing else wants the CPU, so it takes no time from any process.
    # Measured on an otherwise quiet VM: wrk -c1 p90 2.25 ms → 46 µs. Under other load the tail is scheduler
    # latency behind other processes instead, which spinners do not remove: off by default.
    keep_cpus_awake: bool = False
    # The floor (templates/probes/floor.wat, a bare no-op module) is measured in every run, in the same rounds, so
    # each report states the filter's added cost as a multiple of it on this machine. Off only to save time.
    floor: bool = True
    # Also measure the size build (`wasmfilter build --opt`) of the filter as variant `wasm-opt`, in the same
    # rounds: per-request cost and VM start of both builds side by side.
    compare_opt: bool = False
    # Another build of the same filter (e.g. the one before a change), measured as variant `wasm-before` in the same
    # rounds: a before/after table from one run. A .wasm file, or a directory holding the module under the name
    # `wasmfilter build` gives it (`<crate>[+features].wasm`). Usually given on the command line (`--before`).
    compare_wasm: str | None = None
    # Every variant again in ONE Envoy, each on its own listener, in cycles of one wrk slice per variant
    # (bench/one_envoy.py): separate Envoys differ by a few µs per request from process to process, which is the size
    # of a filter's cost; the floor multiple and the probes' per-call costs are read from here. 0: off.
    one_envoy_cycles: int = Field(default=8, ge=0, le=100)
    one_envoy_slice_s: int = Field(default=1, ge=1, le=MAX_DURATION_S)

    @field_validator("duration_s", "warmup_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        return v


class Targets(_Model):
    added_p50_us: float = 30.0          # the Wasm filter adds at most this at p50 over Envoy without it
    native_rps_ratio: float = 0.85      # and reaches at least this share of its native equivalent's requests/s
    floor_multiple: float = 2.0         # and adds at most this multiple of the floor's CPU per request (one Envoy)


class FilterRef(_Model):
    """An HTTP filter fragment from templates/envoy/ (e.g. native/local_ratelimit.yaml.j2) with its values."""
    template: str
    values: dict[str, Any] = Field(default_factory=dict)


class Native(_Model):
    """The native Envoy way to do what the Wasm filter does: HTTP filter fragments and/or a route table."""
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    description: str = ""
    filters: list[FilterRef] = Field(default_factory=list)
    routes: FilterRef | None = None   # a template rendering route items (replaces the bench's direct routes)

    @model_validator(mode="after")
    def _something(self) -> Native:
        if not self.filters and self.routes is None:
            raise ValueError(f"native '{self.name}' needs 'filters' or 'routes'")
        return self


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError("must start with '/'")
    return path


class Request(_Model):
    method: str = "GET"
    path: Annotated[str, AfterValidator(_absolute)] = "/"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None


class Expect(_Model):
    """What each variant must answer (checked by one probe request before the load, and by wrk's
    non-2xx count during it). `branch`: the direct-response route (upstream name) the request must end in."""
    status: int = 200                                     # the Wasm filter
    native_status: int | dict[str, int] | None = None     # default: same as `status`
    baseline_status: int = 200                            # Envoy without any filter
    branch: str | None = None                             # Wasm and native variants
    mostly: bool = False    # e.g. rate limited: a few requests may get another status (token refills)

    @property
    def unexpected_limit_pct(self) -> float:
        """The share of responses of the wrong status class under load above which a pass is reported."""
        return 5.0 if self.mostly else 1.0

    def for_variant(self, kind: str, name: str) -> int:
        if kind in ("baseline", "probe"):   # probes let every request through, like Envoy without a filter
            return self.baseline_status
        if kind in ("wasm-opt", "wasm-before"):  # other builds of the filter answer like the filter
            return self.status
        if kind == "native":
            if isinstance(self.native_status, dict):
                return self.native_status.get(name, self.status)
            return self.status if self.native_status is None else self.native_status
        return self.status


class Scenario(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    description: str = ""
    request: Request = Field(default_factory=Request)
    expect: Expect = Field(default_factory=Expect)
    config: Any = None                                    # plugin config for this scenario (default: the manifest's)
    config_patch: dict[str, Any] | None = None            # merged into the plugin config
    native_values: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per native name, merged into values
    natives: list[str] | None = None    # the natives that have an equivalent for this scenario (default: all)

    def applies_to(self, kind: str, name: str) -> bool:
        return kind != "native" or self.natives is None or name in self.natives


class SoakSettings(_Model):
    """`wasmfilter soak` (bench/soak.py): steady load whose key header never repeats a value, and the leak gate."""
    max_slope_mib_per_hour: float = 20.0   # fail when Envoy's RSS grows faster than this (least-squares fit)
    duration_s: int = Field(default=600, ge=5, le=MAX_DURATION_S)
    warmup_s: int = Field(default=10, ge=0, le=MAX_DURATION_S)  # samples before this are not fitted
    sample_interval_ms: int = Field(default=1000, ge=50)
    connections: int = Field(default=4, ge=1, le=256)
    delay_ms: int = Field(default=1, ge=0)   # pause per request per connection (steady load, not saturation)
    request: Request = Field(default_factory=Request)
    key_header: str | None = None           # gets a new value on every request (API key, rate-limit key, user)

    @field_validator("duration_s", "warmup_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v


class BenchDefinition(_Model):
    filter: str                          # filter directory, relative to this file
    # The report's name (results file names, docs section) when a filter has more than one bench file (e.g. jwt
    # for the auth filter's JWT bench); default: the filter's name.
    bench_name: str | None = Field(default=None, alias="name", pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    description: str = ""
    settings: Settings = Field(default_factory=Settings)
    targets: Targets = Field(default_factory=Targets)
    natives: list[Native] = Field(default_factory=list)
    scenarios: list[Scenario] = Field(min_length=1)
    config: Any = None                   # plugin config for every scenario (default: the manifest's)
    config_patch: dict[str, Any] | None = None   # merged into the manifest's plugin config
    notes: str = ""                      # where the time goes, what would close a gap: shown in the report
    soak: SoakSettings = Field(default_factory=SoakSettings)  # `wasmfilter soak`: load with never-repeating keys
    features: list[str] = Field(default_factory=list)   # cargo features of the filter build under test
    # Cost probes (wasmfilter/bench/probes.py) measured beside the filter: per-callback / per-host-call costs.
    probes: list[str] = Field(default_factory=list)

    path: Path | None = Field(default=None, exclude=True)
    manifest: Manifest | None = Field(default=None, exclude=True)

    @field_validator("probes")
    @classmethod
    def _known_probes(cls, v: list[str]) -> list[str]:
        from wasmfilter.bench.probes import FLOOR, known

        return [n for n in known(v) if n != FLOOR]

    @model_validator(mode="after")
    def _unique(self) -> BenchDefinition:
        for what, names in (("scenario", [s.name for s in self.scenarios]), ("native", [n.name for n in self.natives])):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {what} name(s): {', '.join(sorted(dup))}")
        natives = {n.name for n in self.natives}
        for s in self.scenarios:
            unknown = (set(s.native_values) | set(s.natives or [])) - natives
            if unknown:
                raise ValueError(f"scenario '{s.name}': unknown native(s) {sorted(unknown)}")
        return self

    @property
    def name(self) -> str:
        assert self.manifest is not None
        return self.bench_name or self.manifest.name

    def plugin_config(self, scenario: Scenario) -> Any:
        assert self.manifest is not None
        config = scenario.config if scenario.config is not None else (
            self.config if self.config is not None else self.manifest.config)
        for patch in (self.config_patch, scenario.config_patch):
            if patch:
                config = deep_merge(config, patch)
        return config


def _read(file: Path, model: type[M]) -> M:
    """FILE as MODEL, through the one YAML loader: every problem is a one-line BenchError naming the file."""
    return load_model(file, model, error=BenchError, what="bench definition", shape="a mapping",
                      example="benchmarks/auth.yaml", field_fix="correct that field")


def load_definition(file: str | Path) -> BenchDefinition:
    file = Path(file)
    definition = _read(file, BenchDefinition)
    definition.path = file.resolve()
    filter_dir = (file.parent / definition.filter).resolve()
    if not (filter_dir / MANIFEST_NAME).is_file():
        raise UsageError(f"{file}: filter '{definition.filter}' has no {MANIFEST_NAME} (looked in {filter_dir})",
                         fix="point 'filter' at the filter directory, relative to the bench file")
    definition.manifest = load_manifest(filter_dir)
    return definition


def default_definition(manifest: Manifest) -> BenchDefinition:
    """A filter without a bench file: GET / with its manifest config, against Envoy without it; no native."""
    definition = BenchDefinition(filter=str(manifest.directory),
                                 description=f"{manifest.name}: default bench (no benchmarks/{manifest.name}.yaml)",
                                 scenarios=[Scenario(name="get", description="GET /", expect=Expect(status=200))])
    definition.manifest = manifest
    return definition


class _FilterOnly(BaseModel):
    """Only the `filter:` of a bench file: which filter it is for (the rest is validated when it is loaded)."""
    filter: Any = ""


def _bench_dirs(start: Path) -> list[Path]:
    dirs = []
    for d in [start, *start.parents]:
        if (d / BENCH_DIR_NAME).is_dir():
            dirs.append(d / BENCH_DIR_NAME)
    return dirs


def resolve_definition(path: str | Path | None) -> BenchDefinition:
    """PATH is a bench YAML file, or a filter directory: its benchmarks/<name>.yaml (searched upward from the
    filter), else a default bench."""
    target = Path(path) if path is not None else Path.cwd()
    if not target.exists():
        raise UsageError(f"path '{target}' does not exist",
                         fix="pass a filter directory (holding filter.yaml) or a bench file from benchmarks/")
    if target.is_file() and target.name != MANIFEST_NAME:
        return load_definition(target)
    manifest = load_manifest(target)
    for d in _bench_dirs(manifest.directory):
        for candidate in sorted(d.glob("*.yaml")):
            try:
                peek = _read(candidate, _FilterOnly)
            except BenchError:
                continue  # not a bench file; a bad bench file for this filter fails when named directly
            if (candidate.parent / str(peek.filter)).resolve() == manifest.directory:
                return load_definition(candidate)
    return default_definition(manifest)


def all_definitions(root: str | Path | None = None) -> list[Path]:
    """Every benchmarks/*.yaml under ROOT (default: the nearest benchmarks/ upward from the current directory)."""
    start = Path(root) if root is not None else Path.cwd()
    dirs = [start] if start.name == BENCH_DIR_NAME and start.is_dir() else _bench_dirs(start.resolve())[:1]
    if not dirs:
        raise UsageError(f"no {BENCH_DIR_NAME}/ directory at or above '{start}'",
                         fix="run from the repository, or pass a filter directory")
    files = sorted(dirs[0].glob("*.yaml"))
    if not files:
        raise UsageError(f"no bench definitions in {dirs[0]}", fix="add benchmarks/<filter>.yaml")
    return files
