"""Istio WasmPlugin + Envoy Gateway EnvoyExtensionPolicy generation, and validation against the API models."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import AUTH, assert_one_line_error, run_cli
from wasmfilter.errors import ConfigInvalidError, UsageError
from wasmfilter.manifest import FailurePolicy, load_manifest
from wasmfilter.ship import istio
from wasmfilter.ship.package import image_for_filter
from wasmfilter.ship.transfer import push_image

SHA = "ab" * 32
IMAGE = "registry.example:5000/filters/auth:v1"


@pytest.fixture(scope="module")
def auth_build(frozen_auth_build):
    return frozen_auth_build


@pytest.fixture(scope="module")
def docs():
    return istio.manifests(load_manifest(AUTH), IMAGE, sha256=SHA, namespace="shop", gateway="public")


def test_wasmplugin_for_the_auth_filter(docs):
    plugin = docs[0]
    assert plugin["apiVersion"] == "extensions.istio.io/v1alpha1" and plugin["kind"] == "WasmPlugin"
    spec = plugin["spec"]
    assert spec["url"] == f"oci://{IMAGE}"
    assert spec["sha256"] == SHA
    assert spec["failStrategy"] == "FAIL_CLOSE"  # auth is security-relevant
    assert spec["phase"] == "AUTHN"
    assert spec["pluginName"] == "auth"
    assert spec["pluginConfig"] == load_manifest(AUTH).config
    assert spec["imagePullPolicy"] == "IfNotPresent"
    assert spec["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}]
    assert plugin["metadata"]["namespace"] == "shop"


def test_envoy_extension_policy_for_the_auth_filter(docs):
    policy = docs[1]
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1" and policy["kind"] == "EnvoyExtensionPolicy"
    wasm = policy["spec"]["wasm"][0]
    assert wasm["code"] == {"type": "Image", "image": {"url": IMAGE, "sha256": SHA}, "pullPolicy": "IfNotPresent"}
    assert wasm["failOpen"] is False
    assert wasm["rootID"] == "auth"
    assert wasm["config"] == load_manifest(AUTH).config
    assert policy["spec"]["targetRefs"][0]["name"] == "public"


def test_fail_strategy_follows_the_manifest():
    m = load_manifest(AUTH)
    assert istio.fail_strategy(m) is istio.FailStrategy.FAIL_CLOSE
    relaxed = m.model_copy(update={"security_relevant": False, "failure_policy": FailurePolicy.FAIL_OPEN})
    assert istio.fail_strategy(relaxed) is istio.FailStrategy.FAIL_OPEN
    docs = istio.manifests(relaxed, IMAGE, sha256=SHA, selector=["app=checkout"])
    assert docs[0]["spec"]["failStrategy"] == "FAIL_OPEN"
    assert docs[0]["spec"]["selector"] == {"matchLabels": {"app": "checkout"}}
    assert docs[1]["spec"]["wasm"][0]["failOpen"] is True
    assert docs[1]["spec"]["targetRefs"][0]["name"] == "eg"
    reload = m.model_copy(update={"security_relevant": False, "failure_policy": FailurePolicy.FAIL_RELOAD})
    assert istio.fail_strategy(reload) is istio.FailStrategy.FAIL_RELOAD


def test_traffic_match_and_pull_options():
    docs = istio.manifests(load_manifest(AUTH), IMAGE, sha256=SHA, match_mode="SERVER", match_ports=[8080, 9090],
                           pull_policy="Always", pull_secret="regcred", phase="AUTHZ", priority=10)
    spec = docs[0]["spec"]
    assert spec["match"] == [{"mode": "SERVER", "ports": [{"number": 8080}, {"number": 9090}]}]
    assert (spec["imagePullPolicy"], spec["imagePullSecret"], spec["phase"], spec["priority"]) == (
        "Always", "regcred", "AUTHZ", 10)
    code = docs[1]["spec"]["wasm"][0]["code"]
    assert code["pullPolicy"] == "Always" and code["image"]["pullSecretRef"] == {"kind": "Secret", "name": "regcred"}
    with pytest.raises(UsageError, match="match mode"):
        istio.manifests(load_manifest(AUTH), IMAGE, sha256=SHA, match_mode="OUTBOUND")
    with pytest.raises(ConfigInvalidError, match="match.0.ports.0.number"):
        istio.manifests(load_manifest(AUTH), IMAGE, sha256=SHA, match_ports=[70000])


def test_generated_documents_validate(docs):
    assert isinstance(istio.validate(docs[0]), istio.WasmPlugin)
    assert isinstance(istio.validate(docs[1]), istio.EnvoyExtensionPolicy)
    assert len(istio.validate_text(istio.render(docs))) == 2


def _broken(doc, path, value=None, delete=False):
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize("index,path,value,delete,field", [
    (0, ["spec", "urlx"], "oci://x/y", False, "spec.urlx"),                       # unknown field
    (0, ["spec", "failStrategy"], "FAIL_CLOSED", False, "spec.failStrategy"),     # Envoy's spelling, not Istio's
    (0, ["spec", "phase"], "AUTHORIZE", False, "spec.phase"),
    (0, ["spec", "imagePullPolicy"], "Never", False, "spec.imagePullPolicy"),
    (0, ["spec", "url"], None, True, "spec.url"),                                 # required
    (0, ["spec", "sha256"], "sha256:" + SHA, False, "spec.sha256"),               # pattern: bare hex
    (0, ["spec", "url"], "ftp://x/y", False, "spec"),
    (0, ["spec", "selector"], {"matchLabels": {"app": "x"}}, False, "spec"),      # selector AND targetRefs
    (0, ["apiVersion"], "extensions.istio.io/v1", False, "apiVersion"),
    (0, ["metadata", "name"], "Bad_Name", False, "metadata.name"),
    (1, ["spec", "wasm", 0, "failOpen"], "nope", False, "spec.wasm.0.failOpen"),
    (1, ["spec", "wasm", 0, "code", "type"], "Docker", False, "spec.wasm.0.code.type"),
    (1, ["spec", "wasm", 0, "code", "image"], None, True, "spec.wasm.0.code"),    # type Image needs image
    (1, ["spec", "wasm", 0, "code", "image", "url"], "oci://r/x:v1", False, "spec.wasm.0.code.image"),
    (1, ["spec", "wasm", 0, "code", "pullPolicy"], "Sometimes", False, "spec.wasm.0.code.pullPolicy"),
    (1, ["spec", "wasm", 0, "rootId"], "auth", False, "spec.wasm.0.rootId"),
    (1, ["spec", "targetRefs"], None, True, "spec"),                              # no target at all
    (1, ["spec", "wasm", 0, "code"], None, True, "spec.wasm.0.code"),
])
def test_invalid_documents_are_rejected(docs, index, path, value, delete, field):
    bad = _broken(docs[index], path, value, delete)
    with pytest.raises(ConfigInvalidError) as info:
        istio.validate(bad)
    assert f"field '{field}" in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_kind_and_bad_yaml():
    with pytest.raises(ConfigInvalidError, match="unsupported kind"):
        istio.validate({"apiVersion": "v1", "kind": "ConfigMap"})
    with pytest.raises(ConfigInvalidError, match="not valid YAML"):
        istio.validate_text("a: [b")


def test_cli_writes_and_checks_manifests(tmp_path):
    out = tmp_path / "deploy.yaml"
    res = run_cli("istio", str(AUTH), "--image", IMAGE, "--sha256", SHA, "-o", str(out), "-n", "shop",
                  "--match-mode", "SERVER", "--match-port", "8080")
    assert res.code == 0, res.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    assert [d["kind"] for d in docs] == ["WasmPlugin", "EnvoyExtensionPolicy"]
    assert docs[0]["spec"]["match"] == [{"mode": "SERVER", "ports": [{"number": 8080}]}]
    res = run_cli("istio", "--check", str(out))
    assert res.code == 0 and "valid" in res.stdout
    docs[0]["spec"]["failStrategy"] = "FAIL_SOMETIMES"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    assert_one_line_error(run_cli("istio", "--check", str(bad)), "spec.failStrategy")
    assert_one_line_error(run_cli("istio", str(AUTH), "--image", "not a ref"), "not an image reference")
    assert_one_line_error(run_cli("istio", str(AUTH), "--image", IMAGE, "--sha256", "xyz"), "not a sha256 digest")
    assert_one_line_error(run_cli("istio", str(AUTH), "--image", IMAGE, "--sha256", SHA, "--phase", "LATE"), "LATE")
    # the existing file is kept
    before = out.read_text()
    assert_one_line_error(run_cli("istio", str(AUTH), "--image", IMAGE, "--sha256", SHA, "-o", str(out)),
                          "already exists")
    assert out.read_text() == before


@pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(), reason="docker-registry not installed")
def test_default_digest_is_what_push_uploads(auth_build):
    """Packaging is reproducible, so the digest computed locally equals the one the registry reports."""
    from wasmfilter.ship.registry import LocalRegistry

    with LocalRegistry() as reg:
        ref = f"{reg.host}/filters/auth:v1"
        image, _ = image_for_filter(AUTH, wasm=auth_build.wasm)
        push_image(image, ref, insecure=True)
        resolved = istio.generate(AUTH, image=ref, resolve=True, insecure=True)
    local = istio.generate(AUTH, image=ref, wasm=auth_build.wasm)
    assert local == resolved
    assert image.digest.removeprefix("sha256:") in local
