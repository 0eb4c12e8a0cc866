"""VM start as CPU time: what loading a Wasm module costs Envoy, measured as the CPU time (user + system, every
thread) of `envoy --mode validate` on a variant's configuration — V8 compiling the module, instantiating it and
running its start-up callbacks (`_initialize`, `proxy_on_vm_start`, `proxy_on_configure`), with nothing listening
and nothing served — minus the same for Envoy without a filter. Start-to-ready wall-clock (what the rounds sample)
moves by tens of ms with the machine's other work; CPU time of the same work varies by a few percent, so small
differences (a build profile, a feature) show. Runs are interleaved across variants like the load rounds."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping

from wasmfilter.envoy.binary import EnvoyBinary
from wasmfilter.envoy.validate import envoy_reason
from wasmfilter.errors import ConfigInvalidError, tail

RUNS = 5


def load_cpu_ms(config: str, binary: EnvoyBinary) -> float:
    """CPU milliseconds (user + system) `envoy --mode validate` spends on CONFIG (bootstrap YAML text)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="wasmfilter-vmstart-") as f:
        f.write(config)
        f.flush()
        proc = subprocess.Popen([str(binary.path), "--mode", "validate", "-c", f.name, "--use-dynamic-base-id",
                                 "-l", "error"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in every other child of the process).
        output = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        text = output.decode(errors="replace")
        raise ConfigInvalidError(f"Envoy rejected a bench configuration while measuring VM start: "
                                 f"{envoy_reason(text)}", fix="fix the field Envoy names", detail=tail(text, 30))
    return (usage.ru_utime + usage.ru_stime) * 1000


def measure(configs: Mapping[str, str], binary: EnvoyBinary, *, runs: int = RUNS,
            step: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """load_cpu_ms of every configuration (variant name → bootstrap YAML), RUNS times, interleaved."""
    found: dict[str, list[float]] = {name: [] for name in configs}
    for run in range(runs):
        for name, config in configs.items():
            found[name].append(load_cpu_ms(config, binary))
        if step:
            step(f"VM start (validate CPU): run {run + 1}/{runs}")
    return found


def deltas(found: Mapping[str, list[float]], baseline: str) -> dict[str, list[float]]:
    """Per run, each variant's CPU minus the baseline's of the same run."""
    base = found[baseline]
    return {name: [a - b for a, b in zip(values, base)] for name, values in found.items()}

