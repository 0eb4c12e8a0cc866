"""`wasmfilter check --envoy-version V`: the module's imports and the foreign functions it calls, against what
Envoy V's host provides (envoy/host_abi.py asks that Envoy), added to an ABI report."""

from __future__ import annotations

from pathlib import Path

from wasmfilter.build.abi import ABI_SPECIFIC_HOST_FUNCTIONS, HOST_FUNCTIONS, AbiReport
from wasmfilter.envoy.host_abi import FOREIGN_FUNCTIONS, provides
from wasmfilter.envoy.versions import pick_versions

FOREIGN_IMPORT = "env.proxy_call_foreign_function"


def foreign_calls(path: Path, imports: list[str]) -> list[str]:
    """Foreign functions the module names (in its data) when it imports proxy_call_foreign_function."""
    if FOREIGN_IMPORT not in imports:
        return []
    data = path.read_bytes()
    return [name for name in FOREIGN_FUNCTIONS if name.encode() in data]


def check_host(report: AbiReport, envoy_version: str) -> None:
    """Add to REPORT an error per import or foreign function Envoy ENVOY_VERSION does not provide, and its `host`
    line. ENVOY_VERSION may be a minor (its newest patch with V8) or an exact version."""
    (pick,) = pick_versions([envoy_version])
    if pick.error is not None:
        raise pick.error
    from wasmfilter.envoy.binary import resolve

    assert pick.version is not None
    table = HOST_FUNCTIONS | ABI_SPECIFIC_HOST_FUNCTIONS.get(report.abi_version or "", {})
    host = provides(resolve(pick.version), table)
    used = [i for i in report.imports if i.startswith("env.") and i.removeprefix("env.") in table]
    for name in used:
        if name.removeprefix("env.") not in host.functions:
            report.errors.append(f"imports {name}, which Envoy {host.version} does not provide")
    calls = foreign_calls(report.path, report.imports)
    for name in calls:
        if name not in host.foreign:
            report.errors.append(f"calls the foreign function '{name}', which Envoy {host.version} does not "
                                 "register (proxy_call_foreign_function answers NotFound)")
    missing = len([e for e in report.errors if f"Envoy {host.version}" in e])
    foreign = f" and the foreign function(s) it calls ({', '.join(calls)})" if calls else ""
    report.host = (f"Envoy {host.version} provides its {len(used)} host imports{foreign}" if not missing else
                   f"Envoy {host.version} lacks {missing} of what it uses")
