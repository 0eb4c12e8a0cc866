"""The emulator's verdicts against Envoy's, case by case, in one pytest run: pytest hooks (registered by the
wasmfilter pytest plugin) that record each scenario case's outcome per backend and, at the end, list every case
whose verdict on the emulator differs from its verdict on an Envoy backend (process, docker) — or say they agree."""

from __future__ import annotations

from typing import Any

import pytest

_VERDICTS = pytest.StashKey[dict[tuple[str, str], dict[str, str]]]()
ENVOY_BACKENDS = ("process", "docker")


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> None:
    """Record the outcome of a scenario case (`<file>::<backend>::<case>`): its call, or a setup that failed."""
    parts = item.nodeid.split("::")
    if len(parts) != 3 or not parts[0].endswith((".yaml", ".yml")):
        return
    if call.when == "setup" and call.excinfo is None or call.when == "teardown":
        return
    file, backend, case = parts
    verdicts = item.config.stash.setdefault(_VERDICTS, {})
    verdict = "passed" if call.excinfo is None else ("skipped" if call.excinfo.errisinstance(
        pytest.skip.Exception) else "failed")
    verdicts.setdefault((file, case), {})[backend] = verdict


def differences(verdicts: dict[tuple[str, str], dict[str, str]]) -> tuple[int, list[str]]:
    """How many cases ran on the emulator and an Envoy backend, and one line per case whose verdicts differ."""
    compared, lines = 0, []
    for (file, case), by_backend in sorted(verdicts.items()):
        if "emulator" not in by_backend:
            continue
        for envoy in ENVOY_BACKENDS:
            if envoy in by_backend:
                compared += 1
                if by_backend[envoy] != by_backend["emulator"]:
                    lines.append(f"{file} :: {case}: emulator {by_backend['emulator']}, {envoy} {by_backend[envoy]}")
    return compared, lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    compared, lines = differences(config.stash.get(_VERDICTS, {}))
    if not compared:
        return
    terminalreporter.section("emulator vs Envoy")
    if not lines:
        terminalreporter.write_line(f"verdicts agree on all {compared} (case, Envoy backend) pairs")
        return
    terminalreporter.write_line(f"verdicts differ on {len(lines)} of {compared} (case, Envoy backend) pairs "
                                "(docs/emulator.md lists the known differences):", red=True)
    for line in lines:
        terminalreporter.write_line(f"  {line}")
