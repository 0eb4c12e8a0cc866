"""The options of `wasmfilter istio`, checked as the API server will check the objects made of them — before any
build, registry call or write: names and namespaces (DNS-1123), selector labels (qualified-name keys, label values
of at most 63 characters, no `*`: the CRDs' CEL rules), unique match ports (a list keyed by `number`), phase, pull
policy, match mode, priority (int32), kind. One UsageError per problem, naming the option and the fix."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from wasmfilter.errors import UsageError
from wasmfilter.ship import k8s_names

# Istio's enums, each value spelled as upstream (str members). TrafficExtension spells the unset phase UNSPECIFIED.
PluginPhase = enum.Enum("PluginPhase", {"UNSPECIFIED_PHASE": "UNSPECIFIED_PHASE", "AUTHN": "AUTHN", "AUTHZ": "AUTHZ",
                                        "STATS": "STATS"}, type=str, module=__name__)
PullPolicy = enum.Enum("PullPolicy", {"UNSPECIFIED_POLICY": "UNSPECIFIED_POLICY", "IfNotPresent": "IfNotPresent",
                                      "Always": "Always"}, type=str, module=__name__)
FailStrategy = enum.Enum("FailStrategy", {"FAIL_CLOSE": "FAIL_CLOSE", "FAIL_OPEN": "FAIL_OPEN",
                                          "FAIL_RELOAD": "FAIL_RELOAD"}, type=str, module=__name__)
WorkloadMode = enum.Enum("WorkloadMode", {"UNDEFINED": "UNDEFINED", "CLIENT": "CLIENT", "SERVER": "SERVER",
                                          "CLIENT_AND_SERVER": "CLIENT_AND_SERVER"}, type=str, module=__name__)
KINDS = ("wasmplugin", "trafficextension", "both")
DEFAULT_KIND = "wasmplugin"  # docs/oci.md "Which Istio object": works on every Istio; TrafficExtension needs 1.30


@dataclass(frozen=True)
class DeployInputs:
    """Everything the objects are made of, each value already valid for the CRDs."""

    kind: str
    name: str
    namespace: str | None
    labels: dict[str, str] | None
    gateway: str | None
    phase: Any  # PluginPhase
    priority: int | None
    pull_policy: Any  # PullPolicy
    pull_secret: str | None
    match_mode: Any  # WorkloadMode | None
    match_ports: tuple[int, ...]


def _enum(cls: type[enum.Enum], value: Any, option: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise UsageError(f"{option} '{value}' is not valid", fix="use one of: " + ", ".join(m.value for m in cls)
                         ) from None


def _name(value: str, option: str, check: Any, what: str) -> str:
    problem = check(value)
    if problem:
        raise UsageError(f"{option} '{value}' is not a valid {what}: {problem}",
                         fix="use lower-case letters, digits and '-' (e.g. shop-gw)")
    return value


def parse_labels(items: list[str]) -> dict[str, str]:
    """--selector KEY=VALUE items as the WasmPlugin/TrafficExtension `matchLabels` the CRDs accept."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--selector '{item}' is not KEY=VALUE", fix="e.g. --selector app=checkout")
        if "*" in key or "*" in value:
            raise UsageError(f"--selector '{item}': wildcard not allowed in a label match",
                             fix="name the exact label value (the CRD's CEL rule rejects '*')")
        problem = k8s_names.qualified_name(key)
        if problem:
            raise UsageError(f"--selector key '{key}' is not a valid label name: {problem}",
                             fix="use [prefix/]name, e.g. app or app.kubernetes.io/name")
        problem = k8s_names.label_value(value)
        if problem:
            raise UsageError(f"--selector value '{value}' of '{key}' is not a valid label value: {problem}",
                             fix="use at most 63 letters, digits, '-', '_' or '.'")
        if key in labels and labels[key] != value:
            raise UsageError(f"--selector '{key}' given twice with different values",
                             fix="give each label once (all labels must match)")
        labels[key] = value
    return labels


def check_inputs(*, default_name: str, kind: str = DEFAULT_KIND, name: str | None = None,
                 namespace: str | None = None, selector: list[str] | None = None, gateway: str | None = None,
                 phase: Any = None, priority: int | None = None, pull_policy: Any = "IfNotPresent",
                 pull_secret: str | None = None, match_mode: Any = None, match_ports: list[int] | None = None,
                 security_relevant: bool = False) -> DeployInputs:
    """Every option checked; the first bad one raises UsageError (nothing has been built, asked or written)."""
    if kind not in KINDS:
        raise UsageError(f"--kind '{kind}' is not valid", fix="use one of: " + ", ".join(KINDS))
    obj_name = _name(name or default_name.replace("_", "-"), "--name", k8s_names.dns1123_subdomain,
                     "Kubernetes object name (DNS-1123 subdomain)")
    if namespace is not None:
        _name(namespace, "--namespace", k8s_names.dns1123_label, "namespace (DNS-1123 label, no dots)")
    if gateway is not None:
        _name(gateway, "--gateway", k8s_names.dns1123_subdomain, "Gateway name")
    if pull_secret is not None:
        _name(pull_secret, "--pull-secret", k8s_names.dns1123_subdomain, "Secret name")
    labels = parse_labels(selector or []) or None
    if labels and gateway:
        raise UsageError("--selector and --gateway both given: an Istio WasmPlugin/TrafficExtension targets either "
                         "workload labels or a Gateway, not both",
                         fix="pass --gateway NAME for a Gateway (both objects target it), or --selector for "
                             "sidecars (then the EnvoyExtensionPolicy targets the Gateway 'eg')")
    if priority is not None and not k8s_names.INT32_MIN <= priority <= k8s_names.INT32_MAX:
        raise UsageError(f"--priority {priority} is out of range", fix="use a 32-bit integer (-2147483648..2147483647)")
    ports = tuple(match_ports or ())
    for port in ports:
        if not 1 <= port <= 65535:
            raise UsageError(f"--match-port {port} is not a port number", fix="use 1..65535")
    dup = next((p for i, p in enumerate(ports) if p in ports[:i]), None)
    if dup is not None:
        raise UsageError(f"--match-port {dup} given twice", fix="give each port once (the list is keyed by number)")
    if phase is None:
        phase = PluginPhase.AUTHN if security_relevant else PluginPhase.UNSPECIFIED_PHASE
    elif phase == "UNSPECIFIED":  # TrafficExtension's spelling
        phase = PluginPhase.UNSPECIFIED_PHASE
    return DeployInputs(
        kind=kind, name=obj_name, namespace=namespace, labels=labels, gateway=gateway,
        phase=_enum(PluginPhase, phase, "--phase"), priority=priority,
        pull_policy=_enum(PullPolicy, pull_policy, "--pull-policy"), pull_secret=pull_secret,
        match_mode=None if match_mode is None else _enum(WorkloadMode, match_mode, "--match-mode"),
        match_ports=ports)
