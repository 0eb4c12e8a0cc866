"""`wasmfilter soak`: the filter in Envoy (direct-response routes, as the bench) under steady wrk load whose key
header never repeats a value, Envoy's RSS and the Wasm VMs' memory sampled over time, the growth fitted as a
slope in MiB/hour, and the leak gate: fail above the bench definition's `soak.max_slope_mib_per_hour`; a plot."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wasmfilter import subprocesses
from wasmfilter.bench.definition import Scenario, SoakSettings, parse_duration, resolve_definition
from wasmfilter.bench.runner import direct_routes
from wasmfilter.bench.wrk import find_wrk, lua_script, lua_string, parse_output
from wasmfilter.build.cargo import build
from wasmfilter.envoy.binary import resolve
from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
from wasmfilter.envoy.process import EnvoyProcess
from wasmfilter.envoy.protocol import rss_kb
from wasmfilter.errors import BenchError, SoakFailed, tail

# V8 reserves each Wasm memory with guard regions (several GiB of address space); what it has touched of such a
# mapping is the VM's linear memory in RAM, which never shrinks: growth there is the filter's own.
WASM_RESERVATION_KB = 4 * 1024 * 1024
MIB = 1024.0


@dataclass
class SoakSample:
    seconds: float
    rss_mib: float
    wasm_mib: float


@dataclass
class SoakResult:
    filter: str
    duration_s: int
    max_slope_mib_per_hour: float
    requests: int = 0
    rps: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[SoakSample] = field(default_factory=list)
    rss_slope_mib_per_hour: float = 0.0
    wasm_slope_mib_per_hour: float = 0.0
    rss_late_slope_mib_per_hour: float = 0.0  # over the second half only: ~0 once a bound (eviction) holds
    warmup_s: int = 0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def passed(self) -> bool:
        return self.rss_slope_mib_per_hour <= self.max_slope_mib_per_hour

    def summary(self) -> str:
        first, last = self.samples[0], self.samples[-1]
        return (f"{self.filter}: {self.requests} requests ({self.rps:.0f}/s, a new key each) in {self.duration_s}s; "
                f"RSS {first.rss_mib:.1f} → {last.rss_mib:.1f} MiB, slope {self.rss_slope_mib_per_hour:+.1f} MiB/h "
                f"(gate {self.max_slope_mib_per_hour:g}; second half {self.rss_late_slope_mib_per_hour:+.1f}); "
                f"Wasm memory {first.wasm_mib:.1f} → {last.wasm_mib:.1f} MiB, "
                f"slope {self.wasm_slope_mib_per_hour:+.1f} MiB/h")


def wasm_memory_kb(pid: int) -> int:
    """Resident KiB of PID's Wasm linear memories (/proc/<pid>/smaps): V8 maps each as a read-write region right
    below its inaccessible guard reservation of several GiB."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return 0
    regions: list[list] = []  # [start, end, perms, rss_kb]
    for line in text.splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            start, _, end = head[0].partition("-")
            regions.append([int(start, 16), int(end, 16), head[1], 0])
        elif line.startswith("Rss:") and regions:
            regions[-1][3] = int(head[1])
    guards = {start for start, end, perms, _ in regions
              if perms.startswith("---") and (end - start) // 1024 >= WASM_RESERVATION_KB}
    return sum(rss for _, end, perms, rss in regions if perms.startswith("rw") and end in guards)


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB/hour (0 for fewer than 2 distinct times)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx * 3600.0


def _script(settings: SoakSettings) -> str:
    lines = [lua_script(settings.request)]
    if settings.key_header:
        lines.append(f"""
local n = 0
local prefix = "soak-" .. tostring(os.time()) .. "-"
request = function()
  n = n + 1
  wrk.headers[{lua_string(settings.key_header)}] = prefix .. n
  return wrk.format()
end
""")
    if settings.delay_ms:
        lines.append(f"delay = function() return {settings.delay_ms} end\n")
    return "".join(lines)


def gate(result: SoakResult) -> None:
    """SoakFailed when RESULT's RSS slope is above its threshold."""
    if not result.passed:
        raise SoakFailed(f"{result.filter}: Envoy's RSS grew {result.rss_slope_mib_per_hour:+.1f} MiB/hour under "
                         f"never-repeating keys, above the gate of {result.max_slope_mib_per_hour:g} MiB/hour "
                         f"(Wasm memory {result.wasm_slope_mib_per_hour:+.1f} MiB/hour)",
                         fix="find what the filter keeps per key (shared data, caches) and bound it; the plot "
                             "shows when it grows")


def soak(path: str | Path | None = None, *, duration: str | int | None = None, max_slope: float | None = None,
         envoy_version: str | None = None, progress: Callable[[str], None] | None = None) -> SoakResult:
    """Run the soak of the filter (or bench file) at PATH; the result, gated by the caller (`gate`)."""
    definition = resolve_definition(path)
    manifest = definition.manifest
    assert manifest is not None
    settings = definition.soak.model_copy()
    if duration is not None:
        settings.duration_s = parse_duration(duration, "soak duration")
    if max_slope is not None:
        settings.max_slope_mib_per_hour = max_slope
    wrk = find_wrk()
    wasm = build(manifest.crate_dir, progress=progress).wasm
    config = Bootstrap(upstreams=[Upstream(n, "127.0.0.1", 9) for n in manifest.upstreams],
                       http_filters=[WasmFilter.from_manifest(
                           manifest, wasm, plugin_config=definition.plugin_config(Scenario(name="soak"))).fragment()],
                       routes=direct_routes(list(manifest.upstreams))).render()
    result = SoakResult(manifest.name, settings.duration_s, settings.max_slope_mib_per_hour,
                        warmup_s=min(settings.warmup_s, settings.duration_s // 2))
    binary = resolve(envoy_version or manifest.envoy_version)
    with EnvoyProcess(config, binary=binary, concurrency=definition.settings.envoy_concurrency,
                      log_level="warning", wasm_log_level="warning") as envoy, \
            tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="wasmfilter-soak-") as script:
        script.write(_script(settings))
        script.flush()
        cmd = [wrk, "-t1", f"-c{settings.connections}", f"-d{settings.duration_s}s", "--timeout", "5s",
               "-s", script.name, envoy.listener_url]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=subprocesses.die_with_parent)
        try:
            while proc.poll() is None:
                result.samples.append(SoakSample(time.monotonic() - started, rss_kb(envoy.pid) / MIB,
                                                 wasm_memory_kb(envoy.pid) / MIB))
                if progress and len(result.samples) % 10 == 0:
                    progress(f"{result.samples[-1].seconds:.0f}s, RSS {result.samples[-1].rss_mib:.1f} MiB")
                try:
                    proc.wait(timeout=settings.sample_interval_ms / 1000)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            subprocesses.stop(proc)
        output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise BenchError(f"wrk failed during the soak (exit {proc.returncode})", fix="see wrk's output below",
                         detail=tail(output, 20))
    load = parse_output(output)
    result.requests, result.rps, result.errors = load.requests, load.rps, load.errors
    fitted = [s for s in result.samples if s.seconds >= result.warmup_s]
    result.rss_slope_mib_per_hour = slope_per_hour([(s.seconds, s.rss_mib) for s in fitted])
    result.wasm_slope_mib_per_hour = slope_per_hour([(s.seconds, s.wasm_mib) for s in fitted])
    late = [s for s in result.samples if s.seconds >= settings.duration_s / 2]
    result.rss_late_slope_mib_per_hour = slope_per_hour([(s.seconds, s.rss_mib) for s in late])
    result.load = _loadavg()
    return result


def _loadavg() -> tuple[float, float, float]:
    a, b, c = Path("/proc/loadavg").read_text().split()[:3]
    return float(a), float(b), float(c)


def save(result: SoakResult, out_dir: Path) -> tuple[Path, Path]:
    """RESULT as JSON and the plot (RSS and Wasm memory over time, the fitted slope), in OUT_DIR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"soak-{result.filter}.json"
    data.write_text(json.dumps({**asdict(result), "passed": result.passed}, indent=1))
    fig, ax = plt.subplots(figsize=(9, 4))
    xs = [s.seconds / 60 for s in result.samples]
    ax.plot(xs, [s.rss_mib for s in result.samples], label="Envoy RSS")
    wx = ax.twinx()  # its own scale: a few MiB next to Envoy's ~90
    wx.plot(xs, [s.wasm_mib for s in result.samples], color="C1", label="Wasm memory (resident, right axis)")
    wx.set_ylabel("Wasm MiB")
    wx.legend(fontsize=8, loc="lower right")
    fitted = [s for s in result.samples if s.seconds >= result.warmup_s]
    if fitted:
        x0, y0 = fitted[0].seconds, sum(s.rss_mib for s in fitted) / len(fitted)
        mx = sum(s.seconds for s in fitted) / len(fitted)
        k = result.rss_slope_mib_per_hour / 3600
        ax.plot([x0 / 60, fitted[-1].seconds / 60], [y0 + k * (x0 - mx), y0 + k * (fitted[-1].seconds - mx)], "--",
                color="C2",
                label=f"RSS fit {result.rss_slope_mib_per_hour:+.1f} MiB/h (gate {result.max_slope_mib_per_hour:g})")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB")
    ax.set_title(f"{result.filter}: soak, {result.requests} requests, a new key each ({result.rps:.0f}/s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    plot = out_dir / f"soak-{result.filter}.png"
    fig.savefig(plot, dpi=90)
    plt.close(fig)
    return data, plot
