"""Deploy manifests for a filter image: an Istio `WasmPlugin` (extensions.istio.io/v1alpha1) and an Envoy Gateway
`EnvoyExtensionPolicy` (gateway.envoyproxy.io/v1alpha1).

Both are validated against pydantic models written from the upstream API definitions (istio/api
`extensions/v1alpha1/wasm.proto` + its CRD schema; envoyproxy/gateway `api/v1alpha1/wasm_types.go` and
`envoyextensionpolicy_types.go`): unknown fields, wrong enum values and missing required fields are rejected.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wasmfilter.errors import ConfigInvalidError, UsageError
from wasmfilter.manifest import FailurePolicy, Manifest, load_manifest

SHA256_HEX = r"^[a-f0-9]{64}$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_NAME = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
              r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
GATEWAY_GROUP = "gateway.networking.k8s.io"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ObjectMeta(_Strict):
    name: str = Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)
    namespace: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS1123_SUBDOMAIN)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


# ----------------------------------------------------------------------------------------- Istio WasmPlugin
# The API's enums, each value spelled as its name upstream (str members, like `class X(str, enum.Enum)`).
PluginPhase = enum.Enum("PluginPhase", {"UNSPECIFIED_PHASE": "UNSPECIFIED_PHASE", "AUTHN": "AUTHN", "AUTHZ": "AUTHZ",
                                        "STATS": "STATS"}, type=str, module=__name__)
PullPolicy = enum.Enum("PullPolicy", {"UNSPECIFIED_POLICY": "UNSPECIFIED_POLICY", "IfNotPresent": "IfNotPresent",
                                      "Always": "Always"}, type=str, module=__name__)
FailStrategy = enum.Enum("FailStrategy", {"FAIL_CLOSE": "FAIL_CLOSE", "FAIL_OPEN": "FAIL_OPEN",
                                          "FAIL_RELOAD": "FAIL_RELOAD"}, type=str, module=__name__)
PluginType = enum.Enum("PluginType", {"UNSPECIFIED_PLUGIN_TYPE": "UNSPECIFIED_PLUGIN_TYPE", "HTTP": "HTTP",
                                      "NETWORK": "NETWORK"}, type=str, module=__name__)
WorkloadMode = enum.Enum("WorkloadMode", {"UNDEFINED": "UNDEFINED", "CLIENT": "CLIENT", "SERVER": "SERVER",
                                          "CLIENT_AND_SERVER": "CLIENT_AND_SERVER"}, type=str, module=__name__)


class WorkloadSelector(_Strict):
    matchLabels: dict[str, str] | None = None

    @model_validator(mode="after")
    def _labels(self) -> WorkloadSelector:
        import re

        for key in self.matchLabels or {}:
            if not re.match(LABEL_NAME, key):
                raise ValueError(f"'{key}' is not a valid label name")
        if self.matchLabels is not None and len(self.matchLabels) > 4096:
            raise ValueError("at most 4096 labels")
        return self


class PolicyTargetReference(_Strict):
    group: str = Field(default="", max_length=253)
    kind: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = None


class PortSelector(_Strict):
    number: int = Field(ge=1, le=65535)


class TrafficSelector(_Strict):
    mode: WorkloadMode | None = None
    ports: list[PortSelector] | None = None


EnvValueSource = enum.Enum("EnvValueSource", {"INLINE": "INLINE", "HOST": "HOST"}, type=str, module=__name__)


class EnvVar(_Strict):
    name: str = Field(min_length=1, max_length=256)
    valueFrom: EnvValueSource | None = None
    value: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _value_only_inline(self) -> EnvVar:
        if self.valueFrom is EnvValueSource.HOST and self.value is not None:
            raise ValueError("value may only be set when valueFrom is INLINE")
        return self


class VmConfig(_Strict):
    env: list[EnvVar] | None = Field(default=None, max_length=256)


class WasmPluginSpec(_Strict):
    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: list[PolicyTargetReference] | None = Field(default=None, max_length=16)
    url: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"(^$|^[a-f0-9]{64}$)")
    imagePullPolicy: PullPolicy | None = None
    imagePullSecret: str | None = Field(default=None, min_length=1, max_length=253)
    verificationKey: str | None = None
    pluginConfig: dict[str, Any] | None = None
    pluginName: str | None = Field(default=None, min_length=1, max_length=256)
    phase: PluginPhase | None = None
    priority: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    failStrategy: FailStrategy | None = None
    vmConfig: VmConfig | None = None
    match: list[TrafficSelector] | None = None
    type: PluginType | None = None

    @model_validator(mode="after")
    def _checks(self) -> WasmPluginSpec:
        if sum(x is not None for x in (self.selector, self.targetRef, self.targetRefs)) > 1:
            raise ValueError("only one of targetRefs or selector can be set")
        scheme = self.url.split("://", 1)[0] if "://" in self.url else ""
        if scheme not in ("", "http", "https", "oci", "file"):
            raise ValueError("url must have schema one of [http, https, file, oci]")
        return self


class WasmPlugin(_Strict):
    apiVersion: Literal["extensions.istio.io/v1alpha1"]
    kind: Literal["WasmPlugin"]
    metadata: ObjectMeta
    spec: WasmPluginSpec


# ------------------------------------------------------------------------------ Envoy Gateway extension policy


class SecretObjectReference(_Strict):
    group: str | None = None
    kind: Literal["Secret"] = "Secret"
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = None


class HTTPWasmCodeSource(_Strict):
    url: str = Field(min_length=1, pattern=r"^https?://")
    sha256: str | None = Field(default=None, pattern=SHA256_HEX)


class ImageWasmCodeSource(_Strict):
    url: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=SHA256_HEX)
    pullSecretRef: SecretObjectReference | None = None

    @model_validator(mode="after")
    def _no_scheme(self) -> ImageWasmCodeSource:
        if "://" in self.url:
            raise ValueError("image url is registry/image:tag or registry/image@sha256:digest, without a scheme")
        return self


EGPullPolicy = enum.Enum("EGPullPolicy", {"IfNotPresent": "IfNotPresent", "Always": "Always"}, type=str,
                         module=__name__)


class WasmCodeSource(_Strict):
    type: Literal["HTTP", "Image", "ConfigMap"]
    http: HTTPWasmCodeSource | None = None
    image: ImageWasmCodeSource | None = None
    configMap: dict[str, Any] | None = None
    pullPolicy: EGPullPolicy | None = None

    @model_validator(mode="after")
    def _union(self) -> WasmCodeSource:
        if (self.type == "HTTP") != (self.http is not None):
            raise ValueError("If type is HTTP, http field needs to be set (and only then).")
        if (self.type == "Image") != (self.image is not None):
            raise ValueError("If type is Image, image field needs to be set (and only then).")
        return self


class WasmEnv(_Strict):
    hostKeys: list[str] | None = None


class EGWasm(_Strict):
    name: str | None = None
    rootID: str | None = None
    code: WasmCodeSource
    config: Any = None
    failOpen: bool | None = None
    env: WasmEnv | None = None


class LocalPolicyTargetReference(_Strict):
    group: str = Field(max_length=253)
    kind: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
    sectionName: str | None = None


class EnvoyExtensionPolicySpec(_Strict):
    targetRef: LocalPolicyTargetReference | None = None
    targetRefs: list[LocalPolicyTargetReference] | None = None
    targetSelectors: list[dict[str, Any]] | None = None
    wasm: list[EGWasm] | None = Field(default=None, max_length=16)
    extProc: list[dict[str, Any]] | None = Field(default=None, max_length=16)  # not generated here; shape unchecked
    lua: list[dict[str, Any]] | None = None  # not generated here; shape unchecked

    @model_validator(mode="after")
    def _targets(self) -> EnvoyExtensionPolicySpec:
        if not (self.targetRef or self.targetRefs or self.targetSelectors):
            raise ValueError("either targetRef, targetRefs or targetSelectors must be used")
        if self.targetRef and self.targetRefs:
            raise ValueError("targetRef and targetRefs cannot both be set")
        for ref in ([self.targetRef] if self.targetRef else []) + list(self.targetRefs or []):
            if ref.group != GATEWAY_GROUP or ref.kind not in ("Gateway", "HTTPRoute", "GRPCRoute", "UDPRoute",
                                                              "TCPRoute", "TLSRoute"):
                raise ValueError(f"this policy can only target a {GATEWAY_GROUP} Gateway or xRoute, "
                                 f"not {ref.group or 'core'}/{ref.kind}")
        return self


class EnvoyExtensionPolicy(_Strict):
    apiVersion: Literal["gateway.envoyproxy.io/v1alpha1"]
    kind: Literal["EnvoyExtensionPolicy"]
    metadata: ObjectMeta
    spec: EnvoyExtensionPolicySpec


MODELS: dict[str, type[BaseModel]] = {"WasmPlugin": WasmPlugin, "EnvoyExtensionPolicy": EnvoyExtensionPolicy}


def validate(doc: dict[str, Any]) -> BaseModel:
    """Check one document against its API model; ConfigInvalidError names the first bad field."""
    if not isinstance(doc, dict):
        raise ConfigInvalidError("a manifest document must be a mapping", fix="see docs/oci.md for examples")
    kind = doc.get("kind")
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ConfigInvalidError(f"unsupported kind '{kind}'", fix="expected one of: " + ", ".join(MODELS))
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigInvalidError(f"{kind} '{(doc.get('metadata') or {}).get('name', '?')}': field '{where}': "
                                 f"{err['msg']}", fix="correct that field (see the upstream API reference)",
                                 detail=str(e)) from e


def validate_text(text: str) -> list[BaseModel]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ConfigInvalidError(f"not valid YAML ({str(e).splitlines()[0]})", fix="fix the YAML syntax") from e
    if not docs:
        raise ConfigInvalidError("no YAML documents", fix="pass a file with WasmPlugin / EnvoyExtensionPolicy")
    return [validate(d) for d in docs]


# ------------------------------------------------------------------------------------------------- generation


def fail_strategy(manifest: Manifest) -> FailStrategy:
    """A security-relevant filter always gets FAIL_CLOSE: failing open would let requests bypass it."""
    if manifest.security_relevant:
        return FailStrategy.FAIL_CLOSE
    return {FailurePolicy.FAIL_CLOSED: FailStrategy.FAIL_CLOSE, FailurePolicy.FAIL_OPEN: FailStrategy.FAIL_OPEN,
            FailurePolicy.FAIL_RELOAD: FailStrategy.FAIL_RELOAD}[manifest.failure_policy]


def _enum(cls: type[enum.Enum], value: Any, option: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise UsageError(f"{option} '{value}' is not valid", fix="use one of: " + ", ".join(m.value for m in cls)
                         ) from None


def _parse_labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"selector '{item}' is not KEY=VALUE", fix="e.g. --selector app=checkout")
        labels[key] = value
    return labels


def manifests(manifest: Manifest, image: str, *, sha256: str, namespace: str | None = None,
              name: str | None = None, selector: list[str] | None = None, gateway: str | None = None,
              phase: PluginPhase | str | None = None, priority: int | None = None,
              pull_policy: PullPolicy | str = PullPolicy.IfNotPresent, pull_secret: str | None = None,
              match_mode: WorkloadMode | str | None = None, match_ports: list[int] | None = None
              ) -> list[dict[str, Any]]:
    """The WasmPlugin and EnvoyExtensionPolicy for MANIFEST's filter at IMAGE (digest SHA256), both validated."""
    from wasmfilter.ship.reference import parse_reference

    ref = parse_reference(image)
    sha = sha256.removeprefix("sha256:")
    obj_name = name or manifest.name.replace("_", "-")
    meta: dict[str, Any] = {"name": obj_name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {"app.kubernetes.io/name": obj_name, "app.kubernetes.io/managed-by": "wasmfilter"}
    strategy = fail_strategy(manifest)
    if phase is None:
        phase = PluginPhase.AUTHN if manifest.security_relevant else PluginPhase.UNSPECIFIED_PHASE
    phase = _enum(PluginPhase, phase, "--phase")
    pull_policy = _enum(PullPolicy, pull_policy, "--pull-policy")
    if match_mode is not None:
        match_mode = _enum(WorkloadMode, match_mode, "match mode")
    spec: dict[str, Any] = {}
    if selector:
        spec["selector"] = {"matchLabels": _parse_labels(selector)}
    elif gateway:
        spec["targetRefs"] = [{"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway}]
    spec.update({
        "url": f"oci://{ref}",
        "sha256": sha,
        "imagePullPolicy": PullPolicy(pull_policy).value,
        "phase": PluginPhase(phase).value,
        "priority": 0 if priority is None else priority,
        "pluginName": manifest.effective_root_id,
        "failStrategy": strategy.value,
        "type": PluginType.HTTP.value,
        "pluginConfig": manifest.config if isinstance(manifest.config, dict) else {"value": manifest.config},
    })
    if pull_secret:
        spec["imagePullSecret"] = pull_secret
    if match_mode or match_ports:
        sel: dict[str, Any] = {}
        if match_mode:
            sel["mode"] = WorkloadMode(match_mode).value
        if match_ports:
            sel["ports"] = [{"number": p} for p in match_ports]
        spec["match"] = [sel]
    plugin = {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": meta, "spec": spec}

    image_src: dict[str, Any] = {"url": str(ref), "sha256": sha}
    if pull_secret:
        image_src["pullSecretRef"] = {"kind": "Secret", "name": pull_secret}
    policy = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy", "metadata": dict(meta),
        "spec": {
            "targetRefs": [{"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway or "eg"}],
            "wasm": [{
                "name": obj_name,
                "rootID": manifest.effective_root_id,
                "code": {"type": "Image", "image": image_src,
                         "pullPolicy": "Always" if PullPolicy(pull_policy) is PullPolicy.Always else "IfNotPresent"},
                "config": manifest.config,
                "failOpen": strategy is FailStrategy.FAIL_OPEN,
            }],
        },
    }
    for doc in (plugin, policy):
        validate(doc)
    return [plugin, policy]


def render(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


def generate(path: str | Path | None = None, *, image: str, sha256: str | None = None, resolve: bool = False,
             variant: str = "compat", wasm: Path | None = None, insecure: bool = False, username: str | None = None,
             password: str | None = None, docker_config: Path | None = None, **kwargs: Any) -> str:
    """`wasmfilter istio`: YAML for both manifests. The image digest comes from --sha256, from the registry
    (--resolve), or — by default — from packaging the current build (or WASM), which is what `wasmfilter push`
    uploads (packaging is reproducible, so the digests agree)."""
    from wasmfilter.ship.package import image_for_filter
    from wasmfilter.ship.reference import parse_reference
    from wasmfilter.ship.transfer import resolve_digest

    manifest = load_manifest(path)
    ref = parse_reference(image)
    if sha256 is None and ref.digest:
        sha256 = ref.digest
    if sha256 is None:
        if resolve:
            sha256 = resolve_digest(image, insecure=insecure, username=username, password=password,
                                    docker_config=docker_config)
        else:
            sha256 = image_for_filter(manifest.directory, variant=variant, wasm=wasm)[0].digest
    import re

    if not re.match(SHA256_HEX, sha256.removeprefix("sha256:")):
        raise UsageError(f"'{sha256}' is not a sha256 digest", fix="pass 64 lowercase hex digits")
    return render(manifests(manifest, image, sha256=sha256, **kwargs))
