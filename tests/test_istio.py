"""`wasmfilter istio`: the Istio WasmPlugin / TrafficExtension and the Envoy Gateway EnvoyExtensionPolicy, their
options checked as the API server would, the sha256 pinned from the image as pushed, and `--check`."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import AUTH, assert_one_line_error, run_cli
from wasmfilter.errors import ConfigInvalidError, RegistryError, UsageError
from wasmfilter.manifest import FailurePolicy, load_manifest
from wasmfilter.ship import istio
from wasmfilter.ship.istio_inputs import FailStrategy
from wasmfilter.ship.package import image_for_filter
from wasmfilter.ship.transfer import push_image

SHA = "ab" * 32
IMAGE = "registry.example:5000/filters/auth:v1"
HAS_REGISTRY = Path("/usr/bin/docker-registry").exists()


@pytest.fixture(scope="module")
def docs():
    return istio.manifests(load_manifest(AUTH), IMAGE, sha256=SHA, namespace="shop", gateway="public", kind="both")


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


def test_traffic_extension_carries_the_same_options(docs):
    ext = docs[1]
    assert ext["apiVersion"] == "extensions.istio.io/v1alpha1" and ext["kind"] == "TrafficExtension"
    spec, plugin = ext["spec"], docs[0]["spec"]
    assert spec["targetRefs"] == plugin["targetRefs"] and spec["phase"] == "AUTHN" and spec["priority"] == 0
    wasm = spec["wasm"]
    for field in ("url", "sha256", "imagePullPolicy", "pluginName", "failStrategy", "type", "pluginConfig"):
        assert wasm[field] == plugin[field], field
    assert "url" not in spec and "lua" not in spec
    assert ext["metadata"] == docs[0]["metadata"]


def test_kind_selects_the_istio_objects():
    m = load_manifest(AUTH)
    kinds = {k: [d["kind"] for d in istio.manifests(m, IMAGE, sha256=SHA, kind=k)]
             for k in ("wasmplugin", "trafficextension", "both")}
    assert kinds == {"wasmplugin": ["WasmPlugin", "EnvoyExtensionPolicy"],
                     "trafficextension": ["TrafficExtension", "EnvoyExtensionPolicy"],
                     "both": ["WasmPlugin", "TrafficExtension", "EnvoyExtensionPolicy"]}
    assert [d["kind"] for d in istio.manifests(m, IMAGE, sha256=SHA)] == kinds["wasmplugin"]  # the default


def test_envoy_extension_policy_for_the_auth_filter(docs):
    policy = docs[2]
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1" and policy["kind"] == "EnvoyExtensionPolicy"
    wasm = policy["spec"]["wasm"][0]
    assert wasm["code"] == {"type": "Image", "image": {"url": IMAGE, "sha256": SHA}, "pullPolicy": "IfNotPresent"}
    assert wasm["failOpen"] is False
    assert wasm["rootID"] == "auth"
    assert wasm["config"] == load_manifest(AUTH).config
    assert policy["spec"]["targetRefs"][0]["name"] == "public"


def test_fail_strategy_and_selector_follow_the_manifest():
    m = load_manifest(AUTH)
    assert istio.fail_strategy(m) is FailStrategy.FAIL_CLOSE
    relaxed = m.model_copy(update={"security_relevant": False, "failure_policy": FailurePolicy.FAIL_OPEN})
    assert istio.fail_strategy(relaxed) is FailStrategy.FAIL_OPEN
    docs = istio.manifests(relaxed, IMAGE, sha256=SHA, selector=["app=checkout"], kind="both")
    assert docs[0]["spec"]["failStrategy"] == "FAIL_OPEN" and docs[1]["spec"]["wasm"]["failStrategy"] == "FAIL_OPEN"
    assert docs[0]["spec"]["selector"] == docs[1]["spec"]["selector"] == {"matchLabels": {"app": "checkout"}}
    assert docs[0]["spec"]["phase"] == "UNSPECIFIED_PHASE" and docs[1]["spec"]["phase"] == "UNSPECIFIED"
    assert docs[2]["spec"]["wasm"][0]["failOpen"] is True
    assert docs[2]["spec"]["targetRefs"][0]["name"] == "eg"
    reload = m.model_copy(update={"security_relevant": False, "failure_policy": FailurePolicy.FAIL_RELOAD})
    assert istio.fail_strategy(reload) is FailStrategy.FAIL_RELOAD


def test_traffic_match_and_pull_options():
    docs = istio.manifests(load_manifest(AUTH), IMAGE, sha256=SHA, match_mode="SERVER", match_ports=[8080, 9090],
                           pull_policy="Always", pull_secret="regcred", phase="AUTHZ", priority=10, kind="both")
    spec, ext = docs[0]["spec"], docs[1]["spec"]
    assert spec["match"] == ext["match"] == [{"mode": "SERVER", "ports": [{"number": 8080}, {"number": 9090}]}]
    assert (spec["imagePullPolicy"], spec["imagePullSecret"], spec["phase"], spec["priority"]) == (
        "Always", "regcred", "AUTHZ", 10)
    assert (ext["wasm"]["imagePullPolicy"], ext["wasm"]["imagePullSecret"], ext["phase"], ext["priority"]) == (
        "Always", "regcred", "AUTHZ", 10)
    code = docs[2]["spec"]["wasm"][0]["code"]
    assert code["pullPolicy"] == "Always" and code["image"]["pullSecretRef"] == {"kind": "Secret", "name": "regcred"}


@pytest.mark.parametrize("options,fragment", [
    ({"selector": ["app=" + "a" * 64]}, "not a valid label value"),
    ({"selector": ["app=check*"]}, "wildcard not allowed"),
    ({"selector": ["ap*p=x"]}, "wildcard not allowed"),
    ({"selector": ["-bad=x"]}, "not a valid label name"),
    ({"selector": ["app"]}, "not KEY=VALUE"),
    ({"match_ports": [8080, 8080]}, "--match-port 8080 given twice"),
    ({"match_ports": [70000]}, "--match-port 70000"),
    ({"namespace": "a.b"}, "--namespace 'a.b'"),
    ({"namespace": "Shop"}, "--namespace 'Shop'"),
    ({"name": "Auth_Filter"}, "--name 'Auth_Filter'"),
    ({"gateway": "Public GW"}, "--gateway"),
    ({"pull_secret": "reg_cred"}, "--pull-secret"),
    ({"selector": ["app=x"], "gateway": "public"}, "--selector and --gateway both given"),
    ({"priority": 2**31}, "--priority 2147483648 is out of range"),
    ({"priority": -(2**31) - 1}, "out of range"),
    ({"phase": "LATE"}, "--phase 'LATE'"),
    ({"pull_policy": "Never"}, "--pull-policy 'Never'"),
    ({"match_mode": "OUTBOUND"}, "--match-mode 'OUTBOUND'"),
    ({"kind": "envoyfilter"}, "--kind 'envoyfilter'"),
])
def test_bad_options_are_refused_before_anything(options, fragment):
    with pytest.raises(UsageError) as info:
        istio.manifests(load_manifest(AUTH), IMAGE, sha256=SHA, **options)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_edges_the_api_server_accepts_are_accepted():
    docs = istio.manifests(load_manifest(AUTH), IMAGE, sha256=SHA, selector=["app.kubernetes.io/name=" + "a" * 63],
                           priority=2**31 - 1, namespace="a" * 63, kind="both", phase="UNSPECIFIED")
    assert docs[0]["spec"]["priority"] == docs[1]["spec"]["priority"] == 2**31 - 1
    assert [istio.validate(d).kind for d in docs] == ["WasmPlugin", "TrafficExtension", "EnvoyExtensionPolicy"]


def test_generated_documents_validate(docs):
    assert [(c.kind, c.name) for c in istio.validate_text(istio.render(docs))] == [
        ("WasmPlugin", "auth"), ("TrafficExtension", "auth"), ("EnvoyExtensionPolicy", "auth")]


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


@pytest.mark.parametrize("index,path,value,delete,error", [
    (0, ["spec", "urlx"], "oci://x/y", False, 'unknown field "spec.urlx"'),
    (0, ["spec", "failStrategy"], "FAIL_CLOSED", False, 'spec.failStrategy: Unsupported value: "FAIL_CLOSED"'),
    (0, ["spec", "phase"], "AUTHORIZE", False, "spec.phase: Unsupported value"),
    (0, ["spec", "imagePullPolicy"], "Never", False, "spec.imagePullPolicy: Unsupported value"),
    (0, ["spec", "url"], None, True, "spec.url: Required value"),
    (0, ["spec", "sha256"], "sha256:" + SHA, False, "spec.sha256 in body should match"),
    (0, ["spec", "url"], "ftp://x/y", False, "url must have schema one of"),
    (0, ["spec", "selector"], {"matchLabels": {"app": "x"}}, False, "only one of targetRefs or selector"),
    (0, ["spec", "targetRefs", 0, "namespace"], "other", False, "cross namespace referencing"),
    (0, ["apiVersion"], "extensions.istio.io/v1", False, "no CRD here for kind 'WasmPlugin'"),
    (0, ["metadata", "name"], "Bad_Name", False, 'metadata.name: Invalid value: "Bad_Name"'),
    (1, ["spec", "phase"], "UNSPECIFIED_PHASE", False, "spec.phase: Unsupported value"),
    (1, ["spec", "lua"], {"inlineCode": "x"}, False, "must validate one and only one schema (oneOf)"),
    (1, ["spec", "wasm", "url"], "", False, "spec.wasm.url in body should be at least 1 chars long"),
    (2, ["spec", "wasm", 0, "failOpen"], "nope", False, "spec.wasm[0].failOpen in body must be of type boolean"),
    (2, ["spec", "wasm", 0, "code", "type"], "ConfigMap", False, "spec.wasm[0].code.type: Unsupported value"),
    (2, ["spec", "wasm", 0, "code", "image"], None, True, "If type is Image, image field needs to be set."),
    (2, ["spec", "wasm", 0, "code", "pullPolicy"], "Sometimes", False, "spec.wasm[0].code.pullPolicy"),
    (2, ["spec", "wasm", 0, "rootId"], "auth", False, 'unknown field "spec.wasm[0].rootId"'),
    (2, ["spec", "targetRefs"], None, True, "either targetRef or targetRefs must be used"),
    (2, ["spec", "wasm", 0, "code"], None, True, "spec.wasm[0].code: Required value"),
])
def test_invalid_documents_are_rejected(docs, index, path, value, delete, error):
    bad = _broken(docs[index], path, value, delete)
    with pytest.raises(ConfigInvalidError) as info:
        istio.validate(bad)
    assert error in str(info.value) and "\n" not in str(info.value)


def test_what_envoy_gateway_accepts_is_accepted(docs):
    policy = copy.deepcopy(docs[2])
    policy["spec"]["wasm"][0]["code"]["image"]["url"] = "oci://" + IMAGE
    policy["spec"]["wasm"][0]["code"]["image"]["tls"] = {"caCertificateRef": {"name": "registry-ca"}}
    policy["spec"]["targetRefs"] = [{"group": "gateway.networking.k8s.io", "kind": "ListenerSet", "name": "ls"}]
    policy["spec"]["dynamicModule"] = [{"name": "my-module"}]
    assert istio.validate(policy).kind == "EnvoyExtensionPolicy"


def test_unknown_kind_and_bad_yaml():
    with pytest.raises(ConfigInvalidError, match="no CRD here for kind 'ConfigMap'"):
        istio.validate({"apiVersion": "v1", "kind": "ConfigMap"})
    with pytest.raises(ConfigInvalidError, match="not valid YAML"):
        istio.validate_text("a: [b")
    with pytest.raises(ConfigInvalidError, match="document 2: WasmPlugin 'x'"):
        istio.validate_text("apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: x}\n"
                            "spec: {url: oci://r/x}\n---\napiVersion: extensions.istio.io/v1alpha1\n"
                            "kind: WasmPlugin\nmetadata: {name: x}\nspec: {}\n")


def test_cli_writes_and_checks_manifests(tmp_path):
    out = tmp_path / "deploy.yaml"
    res = run_cli("istio", str(AUTH), "--image", IMAGE, "--sha256", SHA, "-o", str(out), "-n", "shop",
                  "--match-mode", "SERVER", "--match-port", "8080", "--kind", "both")
    assert res.code == 0, res.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    assert [d["kind"] for d in docs] == ["WasmPlugin", "TrafficExtension", "EnvoyExtensionPolicy"]
    assert docs[1]["spec"]["match"] == [{"mode": "SERVER", "ports": [{"number": 8080}]}]
    res = run_cli("istio", "--check", str(out))
    assert res.code == 0 and "valid (WasmPlugin auth, TrafficExtension auth, EnvoyExtensionPolicy auth)" in res.stdout
    docs[0]["spec"]["failStrategy"] = "FAIL_SOMETIMES"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    assert_one_line_error(run_cli("istio", "--check", str(bad)), "document 1", "spec.failStrategy")
    # the existing file is kept
    before = out.read_text()
    assert_one_line_error(run_cli("istio", str(AUTH), "--image", IMAGE, "--sha256", SHA, "-o", str(out)),
                          "already exists")
    assert out.read_text() == before


@pytest.mark.parametrize("args,fragment", [
    (["--image", "not a ref"], "not an image reference"),
    (["--selector", "app=*"], "wildcard not allowed"),
    (["--selector", "app=" + "a" * 64], "not a valid label value"),
    (["--image", "ho#st.example/filters/auth:v1"], "does not make a valid oci:// URL"),
    (["--match-port", "80", "--match-port", "80"], "--match-port 80 given twice"),
    (["-n", "a.b"], "--namespace 'a.b'"),
    (["--selector", "app=x", "--gateway", "public"], "--selector and --gateway both given"),
    (["--sha256", SHA, "--image", f"{IMAGE}@sha256:{'cd' * 32}"], "differs from the digest in --image"),
])
def test_cli_bad_input_writes_nothing(tmp_path, args, fragment):
    out = tmp_path / "deploy.yaml"
    base = ["istio", str(AUTH), "--image", IMAGE, "--sha256", SHA, "-o", str(out)]
    assert_one_line_error(run_cli(*base, *args), fragment)
    assert not out.exists()


# ------------------------------------------------------------------------------ the sha256 as pushed


def test_unreachable_registry_is_one_line_and_writes_nothing(tmp_path):
    from wasmfilter.ship.registry import free_port

    out = tmp_path / "deploy.yaml"
    res = run_cli("istio", str(AUTH), "--image", f"127.0.0.1:{free_port()}/filters/auth:v1", "--insecure",
                  "-o", str(out))
    assert_one_line_error(res, "cannot pin the digest of 127.0.0.1:", "cannot connect", "--local")
    assert not out.exists()


@pytest.fixture(scope="module")
def images(frozen_auth_build):
    """The auth module packaged as the compat and the oci variant (what `push --variant` uploads)."""
    wasm = frozen_auth_build.wasm
    return wasm, image_for_filter(AUTH, wasm=wasm)[0], image_for_filter(AUTH, wasm=wasm, variant="oci")[0]


def test_local_digest_and_a_pinned_digest_that_does_not_match(images, tmp_path):
    wasm, compat, oci = images
    text = istio.generate(AUTH, image=IMAGE, local=True, wasm=wasm)
    assert compat.digest.removeprefix("sha256:") in text
    pinned = istio.generate(AUTH, image=f"{IMAGE}@{oci.digest}", local=True, wasm=wasm, variant="oci",
                            kind="trafficextension")
    assert oci.digest.removeprefix("sha256:") in pinned
    with pytest.raises(UsageError, match="pass --variant oci"):
        istio.generate(AUTH, image=f"{IMAGE}@{oci.digest}", local=True, wasm=wasm)
    out = tmp_path / "deploy.yaml"
    res = run_cli("istio", str(AUTH), "--image", f"{IMAGE}@sha256:{'cd' * 32}", "--local", "--wasm", str(wasm),
                  "-o", str(out))
    assert_one_line_error(res, "--image is pinned to sha256:cdcd", "local module packaged as --variant compat")
    assert not out.exists()


@pytest.mark.skipif(not HAS_REGISTRY, reason="docker-registry not installed")
def test_digest_comes_from_the_registry_as_pushed(images, tmp_path):
    """Default: the registry's manifest digest; a pushed variant or module other than the rendered one is refused."""
    from wasmfilter.ship.registry import LocalRegistry

    wasm, compat, oci = images
    out = tmp_path / "deploy.yaml"
    with LocalRegistry() as reg:
        compat_ref, oci_ref = f"{reg.host}/filters/auth:v1", f"{reg.host}/filters/auth:oci"
        push_image(compat, compat_ref, insecure=True)
        push_image(oci, oci_ref, insecure=True)
        text = istio.generate(AUTH, image=compat_ref, insecure=True, kind="both")
        assert text.count(compat.digest.removeprefix("sha256:")) == 3
        assert oci.digest.removeprefix("sha256:") in istio.generate(AUTH, image=oci_ref, insecure=True)
        assert oci.digest.removeprefix("sha256:") in istio.generate(AUTH, image=oci_ref, insecure=True,
                                                                    variant="oci", wasm=wasm)
        by_digest = istio.generate(AUTH, image=f"{reg.host}/filters/auth@{oci.digest}", insecure=True)
        assert oci.digest.removeprefix("sha256:") in by_digest
        with pytest.raises(UsageError, match="pushed as the oci variant, but --variant compat was given"):
            istio.generate(AUTH, image=oci_ref, insecure=True, variant="compat")
        other = tmp_path / "other.wasm"
        other.write_bytes(wasm.read_bytes() + b"\x00\x06\x01xdata")  # + a custom section: another module
        with pytest.raises(UsageError, match="does not hold --wasm"):
            istio.generate(AUTH, image=compat_ref, insecure=True, wasm=other)
        res = run_cli("istio", str(AUTH), "--image", oci_ref, "--insecure", "--variant", "compat", "-o", str(out))
        assert_one_line_error(res, "pushed as the oci variant", "--variant oci")
        assert not out.exists()
        with pytest.raises(RegistryError, match="cannot pin the digest"):
            istio.generate(AUTH, image=f"{reg.host}/filters/missing:v1", insecure=True)
        res = run_cli("istio", str(AUTH), "--image", compat_ref, "--insecure", "--kind", "both", "-o", str(out))
        assert res.code == 0, res.stderr
    local = istio.generate(AUTH, image=compat_ref, local=True, wasm=wasm, kind="both")
    assert out.read_text() == text == local
