"""Drive load with wrk: a Lua script sets method/path/headers/body and, in wrk's done() hook, prints the latency
distribution (percentiles from wrk's own histogram, in microseconds) and counts as one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from wasmfilter.bench.definition import Request
from wasmfilter.errors import BenchError, tail
from wasmfilter.subprocesses import require

MARKER = "WASMFILTER_BENCH_JSON "
# Percentiles printed by the script: enough points for a distribution plot, plus the tail.
PERCENTILES: tuple[float, ...] = (*[float(p) for p in range(1, 100)], 99.5, 99.9, 99.99)
WRK_FIX = "install it with `apt-get install wrk` (or `make toolchain`)"


def find_wrk() -> str:
    return require("wrk", "wrk (the load generator `wasmfilter bench` drives) is not installed", fix=WRK_FIX)


def lua_string(text: str) -> str:
    """A Lua string literal for any text (escapes quotes, backslashes and non-printable bytes)."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_script(request: Request) -> str:
    lines = [f"wrk.method = {lua_string(request.method.upper())}",
             f"wrk.path = {lua_string(request.path)}"]
    for name, value in request.headers.items():
        lines.append(f"wrk.headers[{lua_string(name)}] = {lua_string(value)}")
    if request.body is not None:
        lines.append(f"wrk.body = {lua_string(request.body)}")
    pcts = ", ".join(repr(p) for p in PERCENTILES)
    lines.append(f"""
local pcts = {{{pcts}}}
done = function(summary, latency, requests)
  local parts = {{}}
  for _, p in ipairs(pcts) do
    parts[#parts + 1] = string.format('["%s", %d]', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write({lua_string(MARKER)} .. string.format(
    '{{"requests": %d, "duration_us": %d, "bytes": %d, "mean_us": %.3f, "stdev_us": %.3f, "min_us": %d, ' ..
    '"max_us": %d, "errors": {{"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}, ' ..
    '"percentiles": [%s]}}',
    summary.requests, summary.duration, summary.bytes, latency.mean, latency.stdev, latency.min, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", ")) .. "\\n")
end
""")
    return "\n".join(lines) + "\n"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    mean_us: float
    stdev_us: float
    min_us: int
    max_us: int
    errors: dict[str, int]
    percentiles: dict[float, int] = field(default_factory=dict)  # percentile → latency in µs

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def non_2xx(self) -> int:
        return self.errors.get("status", 0)

    @property
    def socket_errors(self) -> int:
        return sum(v for k, v in self.errors.items() if k != "status")

    def p(self, percentile: float) -> int:
        return self.percentiles[float(percentile)]

    def to_json(self) -> dict:
        return {"requests": self.requests, "seconds": round(self.seconds, 4), "rps": round(self.rps, 1),
                "mean_us": round(self.mean_us, 2), "stdev_us": round(self.stdev_us, 2), "min_us": self.min_us,
                "max_us": self.max_us, "errors": self.errors,
                "percentiles": {str(k): v for k, v in self.percentiles.items()}}


def parse_output(stdout: str) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER):])
            return WrkResult(requests=data["requests"], seconds=data["duration_us"] / 1e6, mean_us=data["mean_us"],
                             stdev_us=data["stdev_us"], min_us=data["min_us"], max_us=data["max_us"],
                             errors=data["errors"], percentiles={float(p): int(v) for p, v in data["percentiles"]})
    raise BenchError("wrk printed no result line", fix="check that wrk runs Lua scripts (wrk 4.x)",
                     detail=tail(stdout, 20))


def _tuner(cpus: set[int] | None, nice: int | None) -> Callable[[], None] | None:
    if not cpus and not nice:
        return None

    def preexec() -> None:
        # In the child before exec: wrk and its threads inherit the CPU set and the priority.
        if cpus:
            try:
                os.sched_setaffinity(0, cpus)
            except OSError:
                pass
        if nice:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, nice)
            except OSError:
                pass

    return preexec


def run_wrk(url: str, request: Request, *, duration_s: int, connections: int, threads: int = 1,
            timeout_s: int = 2, cpus: set[int] | None = None, nice: int | None = None) -> WrkResult:
    wrk = find_wrk()
    threads = min(threads, connections)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="wasmfilter-bench-") as script:
        script.write(lua_script(request))
        script.flush()
        cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", f"{timeout_s}s",
               "-s", script.name, url.rstrip("/")]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60,
                                 preexec_fn=_tuner(cpus, nice))
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"wrk did not finish within {duration_s + 60}s", fix="check Envoy's log") from e
    if out.returncode != 0:
        raise BenchError(f"wrk failed (exit {out.returncode}): {(out.stderr or out.stdout).strip()[:200]}",
                         fix="see wrk's output below", detail=tail(out.stdout + out.stderr, 20))
    result = parse_output(out.stdout)
    if result.requests == 0:
        raise BenchError(f"wrk completed no request against {url}", fix="check that Envoy answers",
                         detail=tail(out.stdout + out.stderr, 20))
    return result
