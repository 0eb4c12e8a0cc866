"""Deploy manifests for a filter image: the Istio object(s) — `WasmPlugin` and/or `TrafficExtension`
(extensions.istio.io/v1alpha1, ship/istio_objects.py) — and an Envoy Gateway `EnvoyExtensionPolicy`
(gateway.envoyproxy.io/v1alpha1), and `--check` of any such YAML.

Every object is validated as a Kubernetes API server validates it, against the upstream CRDs vendored in
ship/crds/ (ship/crd_schema.py: structural schema + Kubernetes extensions; ship/cel_rules.py: the CEL rules);
the options are checked before anything is built, asked or written (ship/istio_inputs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wasmfilter.errors import ConfigInvalidError, UsageError
from wasmfilter.manifest import FailurePolicy, Manifest, load_manifest
from wasmfilter.ship.istio_inputs import DEFAULT_KIND, DeployInputs, FailStrategy, PullPolicy, check_inputs

GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class Checked:
    """A document the API server would accept."""

    kind: str
    name: str
    crd: str


def validate(doc: Any) -> Checked:
    """Check one document against its vendored CRD; ConfigInvalidError names the first error (all in detail)."""
    from wasmfilter.ship.crd_schema import validate_object

    crd, errors = validate_object(doc)
    name = str(((doc.get("metadata") or {}) if isinstance(doc, dict) else {}).get("name", "?"))
    if crd is None:
        raise ConfigInvalidError(errors[0], fix="this checks WasmPlugin, TrafficExtension and EnvoyExtensionPolicy")
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigInvalidError(f"{crd.kind} '{name}': {errors[0]}{more}",
                                 fix=f"correct that field (the API server would reject it; CRD {crd.name})",
                                 detail="\n".join(errors))
    return Checked(crd.kind, name, crd.name)


def validate_text(text: str) -> list[Checked]:
    """Every document of a (multi-document) YAML text; the first invalid one raises."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ConfigInvalidError(f"not valid YAML ({str(e).splitlines()[0]})", fix="fix the YAML syntax") from e
    if not docs:
        raise ConfigInvalidError("no YAML documents",
                                 fix="pass a file with WasmPlugin / TrafficExtension / EnvoyExtensionPolicy")
    checked = []
    for i, doc in enumerate(docs, 1):
        try:
            checked.append(validate(doc))
        except ConfigInvalidError as e:
            if len(docs) == 1:
                raise
            raise ConfigInvalidError(f"document {i}: {e.problem}", fix=e.fix, detail=e.detail) from None
    return checked


# ------------------------------------------------------------------------------------------------- generation


def fail_strategy(manifest: Manifest) -> Any:
    """A security-relevant filter always gets FAIL_CLOSE: failing open would let requests bypass it."""
    if manifest.security_relevant:
        return FailStrategy.FAIL_CLOSE
    return {FailurePolicy.FAIL_CLOSED: FailStrategy.FAIL_CLOSE, FailurePolicy.FAIL_OPEN: FailStrategy.FAIL_OPEN,
            FailurePolicy.FAIL_RELOAD: FailStrategy.FAIL_RELOAD}[manifest.failure_policy]


def envoy_extension_policy(inputs: DeployInputs, manifest: Manifest, image: str, sha256: str,
                           strategy: Any) -> dict[str, Any]:
    """Envoy Gateway's policy: a Wasm extension from an OCI image, attached to the Gateway (default `eg`)."""
    from wasmfilter.ship.istio_objects import metadata

    image_src: dict[str, Any] = {"url": image, "sha256": sha256}
    if inputs.pull_secret:
        image_src["pullSecretRef"] = {"kind": "Secret", "name": inputs.pull_secret}
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy", "metadata": metadata(inputs),
        "spec": {
            "targetRefs": [{"group": GATEWAY_GROUP, "kind": "Gateway", "name": inputs.gateway or "eg"}],
            "wasm": [{
                "name": inputs.name,
                "rootID": manifest.effective_root_id,
                "code": {"type": "Image", "image": image_src,
                         "pullPolicy": "Always" if inputs.pull_policy is PullPolicy.Always else "IfNotPresent"},
                "config": manifest.config,
                "failOpen": strategy is FailStrategy.FAIL_OPEN,
            }],
        },
    }


def objects(manifest: Manifest, image: str, *, sha256: str, inputs: DeployInputs) -> list[dict[str, Any]]:
    """The objects for INPUTS.kind, each validated against its CRD (ConfigInvalidError names the field)."""
    from wasmfilter.ship.istio_objects import traffic_extension, wasm_plugin
    from wasmfilter.ship.reference import parse_reference

    ref = parse_reference(image)
    sha = sha256.removeprefix("sha256:")
    strategy = fail_strategy(manifest)
    wasm = {"url": f"oci://{ref}", "sha256": sha, "plugin_name": manifest.effective_root_id,
            "config": manifest.config, "fail_strategy": strategy.value}
    docs = []
    if inputs.kind in ("wasmplugin", "both"):
        docs.append(wasm_plugin(inputs, **wasm))
    if inputs.kind in ("trafficextension", "both"):
        docs.append(traffic_extension(inputs, **wasm))
    docs.append(envoy_extension_policy(inputs, manifest, str(ref), sha, strategy))
    for doc in docs:
        validate(doc)
    return docs


def manifests(manifest: Manifest, image: str, *, sha256: str, kind: str = DEFAULT_KIND, name: str | None = None,
              **options: Any) -> list[dict[str, Any]]:
    """The objects for MANIFEST's filter at IMAGE (digest SHA256); OPTIONS as `istio_inputs.check_inputs`."""
    inputs = check_inputs(default_name=manifest.name, kind=kind, name=name,
                          security_relevant=manifest.security_relevant, **options)
    return objects(manifest, image, sha256=sha256, inputs=inputs)


def render(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


def generate(path: str | Path | None = None, *, image: str, sha256: str | None = None, local: bool = False,
             variant: str | None = None, wasm: Path | None = None, insecure: bool = False,
             username: str | None = None, password: str | None = None, docker_config: Path | None = None,
             kind: str = DEFAULT_KIND, name: str | None = None, **options: Any) -> str:
    """`wasmfilter istio`: YAML of the objects. Options are checked first; then the digest is pinned
    (ship/pinned_digest.py: --sha256, else the registry's, else with LOCAL the local package of VARIANT)."""
    from wasmfilter.ship.cel_rules import is_url
    from wasmfilter.ship.pinned_digest import pinned
    from wasmfilter.ship.reference import parse_reference

    manifest = load_manifest(path)
    ref = parse_reference(image)
    inputs = check_inputs(default_name=manifest.name, kind=kind, name=name,
                          security_relevant=manifest.security_relevant, **options)
    if not is_url(f"oci://{ref}"):  # the CRDs' url rule, before the registry is asked
        raise UsageError(f"--image '{image}' does not make a valid oci:// URL", fix="use HOST[:PORT]/NAME[:TAG]")
    sha = pinned(ref, manifest.directory, sha256=sha256, use_local=local, variant=variant, wasm=wasm,
                 insecure=insecure, username=username, password=password, docker_config=docker_config)
    return render(objects(manifest, image, sha256=sha, inputs=inputs))
