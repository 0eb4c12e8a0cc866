"""The two Istio objects for one filter image, from the same checked inputs (ship/istio_inputs.py):

- `WasmPlugin` (extensions.istio.io/v1alpha1, istio/api `extensions/v1alpha1/wasm.proto`): Istio 1.12+;
- `TrafficExtension` (extensions.istio.io/v1alpha1, istio/api `extensions/v1alpha1/traffic_extension.proto`,
  Istio 1.30+): the successor of WasmPlugin that carries a Wasm or a Lua extension. Targeting (selector /
  targetRefs), `match`, `phase` and `priority` sit on the spec; the Wasm fields (url, sha256, pull policy and
  secret, pluginName, pluginConfig, failStrategy, type) move under `spec.wasm`. Its unset phase is spelled
  `UNSPECIFIED` (WasmPlugin's: `UNSPECIFIED_PHASE`), and it has no deprecated singular `targetRef`.
"""

from __future__ import annotations

from typing import Any

from wasmfilter.ship.istio_inputs import DeployInputs, PluginPhase

API_VERSION = "extensions.istio.io/v1alpha1"
GATEWAY_GROUP = "gateway.networking.k8s.io"


def metadata(inputs: DeployInputs) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": inputs.name}
    if inputs.namespace:
        meta["namespace"] = inputs.namespace
    meta["labels"] = {"app.kubernetes.io/name": inputs.name, "app.kubernetes.io/managed-by": "wasmfilter"}
    return meta


def _targeting(inputs: DeployInputs) -> dict[str, Any]:
    if inputs.labels:
        return {"selector": {"matchLabels": dict(inputs.labels)}}
    if inputs.gateway:
        return {"targetRefs": [{"group": GATEWAY_GROUP, "kind": "Gateway", "name": inputs.gateway}]}
    return {}


def _match(inputs: DeployInputs) -> dict[str, Any]:
    if inputs.match_mode is None and not inputs.match_ports:
        return {}
    sel: dict[str, Any] = {}
    if inputs.match_mode is not None:
        sel["mode"] = inputs.match_mode.value
    if inputs.match_ports:
        sel["ports"] = [{"number": p} for p in inputs.match_ports]
    return {"match": [sel]}


def _wasm_fields(inputs: DeployInputs, *, url: str, sha256: str, plugin_name: str, config: Any,
                 fail_strategy: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"url": url, "sha256": sha256, "imagePullPolicy": inputs.pull_policy.value}
    if inputs.pull_secret:
        fields["imagePullSecret"] = inputs.pull_secret
    fields.update({"pluginName": plugin_name, "failStrategy": fail_strategy, "type": "HTTP",
                   "pluginConfig": config if isinstance(config, dict) else {"value": config}})
    return fields


def wasm_plugin(inputs: DeployInputs, **wasm: Any) -> dict[str, Any]:
    """WasmPlugin: the Wasm fields flat on the spec (WASM: url, sha256, plugin_name, config, fail_strategy)."""
    fields = _wasm_fields(inputs, **wasm)
    spec: dict[str, Any] = {**_targeting(inputs), "url": fields.pop("url"), "sha256": fields.pop("sha256"),
                            "imagePullPolicy": fields.pop("imagePullPolicy")}
    if "imagePullSecret" in fields:
        spec["imagePullSecret"] = fields.pop("imagePullSecret")
    spec.update({"phase": inputs.phase.value, "priority": inputs.priority or 0, **fields, **_match(inputs)})
    return {"apiVersion": API_VERSION, "kind": "WasmPlugin", "metadata": metadata(inputs), "spec": spec}


def traffic_extension(inputs: DeployInputs, **wasm: Any) -> dict[str, Any]:
    """TrafficExtension: targeting, match, phase and priority on the spec; the Wasm fields under spec.wasm."""
    phase = "UNSPECIFIED" if inputs.phase is PluginPhase.UNSPECIFIED_PHASE else inputs.phase.value
    spec: dict[str, Any] = {**_targeting(inputs), **_match(inputs), "phase": phase,
                            "priority": inputs.priority or 0, "wasm": _wasm_fields(inputs, **wasm)}
    return {"apiVersion": API_VERSION, "kind": "TrafficExtension", "metadata": metadata(inputs), "spec": spec}
