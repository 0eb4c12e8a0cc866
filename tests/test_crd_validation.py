"""Validation against the vendored upstream CRDs, as the Kubernetes API server validates: the structural schema with
Kubernetes' extensions and the CEL rules, on Istio's and Envoy Gateway's own valid/invalid examples and our cases
(tests/data/crd_cases/), the hand-translated Kubernetes CEL functions, and the rules the toolkit relies on."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from wasmfilter.ship import cel_rules, crd_schema

CASES = Path(__file__).parent / "data" / "crd_cases"


def _cases():
    for path in sorted(CASES.glob("*.yaml")):
        for i, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
            want = doc.pop("_err", None)
            desc = doc.pop("_desc", None) or (doc.get("metadata") or {}).get("name")
            yield pytest.param(doc, [want] if isinstance(want, str) else want or [], id=f"{path.stem}-{i}-{desc}")


@pytest.mark.parametrize("doc,want", list(_cases()))
def test_agrees_with_the_api_server(doc, want):
    """Valid examples are accepted; each invalid one is rejected with the API server's error text."""
    crd, errors = crd_schema.validate_object(doc)
    assert crd is not None
    if not want:
        assert errors == []
    else:
        for fragment in want:
            assert any(fragment in e for e in errors), f"{fragment!r} not in {errors}"


def test_case_table_covers_both_directions_and_all_three_crds():
    docs = [p.values[0] for p in _cases()]
    kinds = {d["kind"] for d in docs}
    assert kinds == {"WasmPlugin", "TrafficExtension", "EnvoyExtensionPolicy"}
    wants = [p.values[1] for p in _cases()]
    assert sum(1 for w in wants if w) >= 30 and sum(1 for w in wants if not w) >= 30


def test_every_cel_rule_in_the_vendored_crds_compiles_and_runs():
    """Each rule is evaluated on a value of its node's type: never 'Undefined variable or function' — the library
    plus the hand-translated functions know every function the upstream rules call."""
    samples = {"string": "1s", "object": {}, "array": [], "integer": 0, "boolean": False}
    rules: list[tuple[str, object]] = []

    def walk(node):
        if isinstance(node, dict):
            rules.extend((r["rule"], samples.get(node.get("type"), "1s"))
                         for r in node.get("x-kubernetes-validations", []))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for crd in crd_schema.crds().values():
        walk(crd.schema)
    assert len({r for r, _ in rules}) >= 50
    for rule, value in rules:
        why = cel_rules.evaluate(rule, value) or ""
        assert "Undefined variable or function" not in why, (rule, why)


# ----------------------------------------------------------------------------- the rules the toolkit relies on


def test_relied_on_rules_are_in_the_vendored_crds():
    assert crd_schema.missing_relied_on() == []


def test_a_rule_gone_from_the_crd_is_reported():
    ref = cel_rules.RELIED_ON[0]
    schema = copy.deepcopy(crd_schema.crd_by_name(ref.crd).schema)
    node = schema["properties"]["spec"]["properties"]["selector"]["properties"]["matchLabels"]
    node["additionalProperties"]["x-kubernetes-validations"] = []
    assert crd_schema.missing_relied_on({ref.crd: schema}) == [ref]


# ----------------------------------------------------------------- hand-translated Kubernetes CEL functions


@pytest.mark.parametrize("text,ok", [
    ("http://test", True), ("oci://registry.example:5000/filters/auth:v1", True), ("file:///opt/f.wasm", True),
    ("/absolute/path", True), ("mailto:someone", True), ("HTTPS://Example.com/x?y#z", True),
    ("test", False), ("#%blah$#@", False), ("http://#%blah$#@", False), ("", False),
    ("http://host:port/x", False), ("http://a b/", False), ("http://x/%zz", False), ("://x", False),
    ("http://[::1/x", False), ("http://x\x7f", False), ("http://ex%41mple/", False), ("http://%C3%A9.example/", True),
])
def test_is_url_is_go_parse_request_uri(text, ok):
    assert cel_rules.is_url(text) is ok


def test_url_get_scheme_and_string_extensions_in_cel():
    assert cel_rules.to_url("HTTP://x/y#frag")["scheme"] == "http"
    with pytest.raises(ValueError, match="URL parse error"):
        cel_rules.to_url("not a url")
    assert cel_rules.evaluate('url("oci://r/x").getScheme() == "oci" && isURL(self)', "http://x") is None
    assert cel_rules.evaluate('isURL(self)', "relative/path") == "false"
    assert cel_rules.evaluate("self.upperAscii() == 'ÉAB' && self.lowerAscii() == 'Éab'", "Éab") is None
    # url() of an invalid string is an evaluation error: the API server rejects the object
    assert "URL parse error" in (cel_rules.evaluate('url(self).getScheme() == "x"', "::") or "")


def test_cel_language_features_the_upstream_rules_use():
    value = {"labels": {"app": "x", "tier": "web"}, "ports": [1, 2, 3], "name": "envoy.filters.http.x"}
    for rule in ['self.labels.all(k, !k.contains("*"))', "has(self.name) && !has(self.missing)",
                 "self.ports.exists_one(p, p == 2)", "self.ports.size() == 3 && size(self.ports) == 3",
                 "self.name.startsWith('envoy.filters.http')", "self.name.matches('^envoy\\\\.')",
                 "duration('1s') < duration('2s')", "'Gateway' in ['Gateway', 'HTTPRoute']"]:
        assert cel_rules.evaluate(rule, value) is None, rule
    assert cel_rules.evaluate("self.missing == 1", value).startswith("rule evaluation failed")


def test_defaults_apply_before_validation():
    doc = {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy",
           "metadata": {"name": "p"},
           "spec": {"targetSelectors": [{"kind": "HTTPRoute"}],
                    "wasm": [{"code": {"type": "Image", "image": {"url": "r/x", "pullSecretRef": {"name": "s"}}}}]}}
    # pullSecretRef.kind defaults to Secret, so its CEL rule holds; targetSelectors[].group defaults too
    assert crd_schema.validate_object(doc)[1] == []
