"""One Envoy, every variant: each variant's filter chain on its own listener of a single Envoy process, loaded in
turn by short wrk slices (the order rotates every cycle), Envoy's CPU (all threads) over each slice's requests.

Why beside the rounds: every round starts a fresh Envoy per variant, and two Envoys running the same config differ by
a few µs of CPU per request (memory layout, V8's code placement, timers) — the size of what a filter adds. In one
process two slices of a cycle differ only in the filter chain they went through (and the machine's noise of those
few seconds, which the median over cycles takes out). So the floor multiple, the probes' per-call costs and the
native ratios are read from here when this phase ran (settings.one_envoy_cycles > 0).

Owns: the combined configuration and the summary of the slices; the runner drives Envoy and wrk."""

from __future__ import annotations

import statistics
from typing import Any

import yaml

from wasmfilter.envoy.protocol import LISTENER

LISTENER_PREFIX = "listener-"


def listener_name(variant: str, first: str) -> str:
    """The listener of VARIANT in the combined configuration (FIRST keeps the name readiness waits for)."""
    return LISTENER if variant == first else LISTENER_PREFIX + variant


def combined_config(configs: dict[str, str]) -> str:
    """One bootstrap from per-variant bootstraps (variant → YAML text, the first one's admin and clusters kept):
    each variant's listener renamed after it, the clusters of all of them (same name, same cluster: the bench
    defines them from the manifest's upstreams for every variant)."""
    docs = {name: yaml.safe_load(text) for name, text in configs.items()}
    first = next(iter(docs))
    combined = docs[first]
    listeners: list[dict] = []
    clusters: dict[str, dict] = {}
    for name, doc in docs.items():
        resources = doc["static_resources"]
        (listener,) = resources["listeners"]  # a bench bootstrap has exactly one
        listener["name"] = listener_name(name, first)
        listeners.append(listener)
        for cluster in resources.get("clusters", []):
            clusters.setdefault(cluster["name"], cluster)
    combined["static_resources"]["listeners"] = listeners
    combined["static_resources"]["clusters"] = list(clusters.values())
    return yaml.safe_dump(combined, sort_keys=False)


def _stat(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "q1": None, "q3": None, "n": 0}
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return {"median": round(statistics.median(values), 3), "q1": round(q1, 3), "q3": round(q3, 3),
            "n": len(values)}


def summarize(cpu_us: dict[str, list[float]], *, baseline: str, wasm: str, floor: str | None,
              probe_repeat: dict[str, int], natives: list[str]) -> dict[str, Any]:
    """CPU µs per request of each variant per cycle (CPU_US, variant → one value per cycle) → per variant its median
    and its added cost (paired with no filter in the same cycle); the filter as a multiple of the floor; each probe
    variant's cost per call over the floor (PROBE_REPEAT: variant → calls per request); req per CPU-second, Wasm
    vs each native."""
    base = cpu_us[baseline]

    def pairs(a: str, b: str, per: float = 1.0) -> list[float]:
        return [(x - y) / per for x, y in zip(cpu_us[a], cpu_us[b])]

    out: dict[str, Any] = {"cycles": len(base), "variants": {
        name: {"cpu_us_per_req": _stat(values), "added_cpu_us_per_req": _stat(pairs(name, baseline))}
        for name, values in cpu_us.items()}}
    if floor and floor in cpu_us and wasm in cpu_us:
        unit = out["variants"][floor]["added_cpu_us_per_req"]["median"]
        added = out["variants"][wasm]["added_cpu_us_per_req"]["median"]
        out["floor_added_cpu_us_per_req"] = unit
        out["added_cpu_multiple"] = round(added / unit, 2) if unit and unit > 0 else None
        out["probes"] = {name: _stat(pairs(name, floor, repeat)) for name, repeat in probe_repeat.items()
                         if name in cpu_us}
    out["cpu_efficiency_vs_native"] = {
        n: _stat([b / a if a else 0.0 for a, b in zip(cpu_us[wasm], cpu_us[n])]) for n in natives if n in cpu_us}
    return out
