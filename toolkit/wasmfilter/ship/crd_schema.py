"""Validation of a custom resource against its vendored CRD (ship/crds/), in the API server's order
(k8s.io/apiextensions-apiserver, as istio/api `tests/validator.go` drives it): defaulting, ObjectMeta, the
openAPI v3 structural schema with Kubernetes' extensions (nullable, x-kubernetes-int-or-string,
x-kubernetes-preserve-unknown-fields, x-kubernetes-list-type set/map + list-map-keys, enum, pattern, formats,
min/max, allOf/anyOf/oneOf/not), unknown fields (kubectl's default strict field validation), then the
x-kubernetes-validations CEL rules (ship/cel_rules.py). Errors are the API server's text, e.g.
`spec.url: Required value`, `spec: Invalid value: "object": only one of targetRefs or selector can be set`."""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wasmfilter.ship import cel_rules, k8s_names

CRD_DIR = Path(__file__).with_name("crds")
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# Errors after which the API server skips the CEL rules (apiextensions-apiserver strategy.go hasBlockingErr).
BLOCKING = ("Unsupported value", "Required value", "Too long", "Too many", "in body must be of type")
PY_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
                                         "integer": (int,), "number": (int, float)}


@dataclass(frozen=True)
class Crd:
    name: str
    api_version: str
    kind: str
    namespaced: bool
    schema: dict[str, Any]


@functools.lru_cache(maxsize=1)
def crds() -> dict[tuple[str, str], Crd]:
    """The vendored CRDs by (apiVersion, kind): one entry per served version."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        doc = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader (C or Python)
        spec = doc["spec"]
        for version in spec["versions"]:
            if version.get("served", True):
                crd = Crd(doc["metadata"]["name"], f"{spec['group']}/{version['name']}", spec["names"]["kind"],
                          spec["scope"] == "Namespaced", version["schema"]["openAPIV3Schema"])
                out[(crd.api_version, crd.kind)] = crd
    return out


def crd_by_name(name: str) -> Crd:
    return next(c for c in crds().values() if c.name == name)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _has_type(value: Any, wanted: str) -> bool:
    if isinstance(value, bool) and wanted in ("integer", "number"):
        return False
    return isinstance(value, PY_TYPES.get(wanted, (object,)))


def apply_defaults(value: Any, schema: dict[str, Any]) -> None:
    """Structural defaulting: a missing (or null, non-nullable) property with a `default` gets it."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if "default" in sub and (key not in value or value[key] is None and not sub.get("nullable")):
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub:
                apply_defaults(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


class _Walk:
    """One pass over a value and its schema, collecting structural errors and the CEL rules to run."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.rules: list[tuple[str, dict[str, Any], Any]] = []

    def value_checks(self, v: Any, s: dict[str, Any], path: str) -> None:
        """Type-independent value validations: enum, string/number/array/object bounds, formats, combinators."""
        err = self.errors.append
        if "enum" in s and v not in s["enum"]:
            err(f"{path}: Unsupported value: {json.dumps(v)}: supported values: "
                + ", ".join(json.dumps(e) for e in s["enum"]))
        if isinstance(v, str):
            if "maxLength" in s and len(v) > s["maxLength"]:
                err(f"{path}: Too long: may not be more than {s['maxLength']} bytes")
            if "minLength" in s and len(v) < s["minLength"]:
                err(f"{path}: Invalid value: {json.dumps(v)}: {path} in body should be at least {s['minLength']} "
                    "chars long")
            if "pattern" in s and not re.search(s["pattern"], v):
                err(f"{path}: Invalid value: {json.dumps(v)}: {path} in body should match '{s['pattern']}'")
            fmt = s.get("format")
            if fmt == "date-time" and not DATE_TIME.match(v):
                err(f"{path}: Invalid value: {json.dumps(v)}: {path} in body must be of type date-time")
            if fmt == "byte":
                try:
                    base64.b64decode(v, validate=True)
                except (binascii.Error, ValueError):
                    err(f"{path}: Invalid value: {json.dumps(v)}: {path} in body must be of type byte")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if "maximum" in s and (v > s["maximum"] or s.get("exclusiveMaximum") and v == s["maximum"]):
                err(f"{path}: Invalid value: {v}: {path} in body should be less than or equal to {s['maximum']}")
            if "minimum" in s and (v < s["minimum"] or s.get("exclusiveMinimum") and v == s["minimum"]):
                err(f"{path}: Invalid value: {v}: {path} in body should be greater than or equal to "
                    f"{s['minimum']}")
            low, high = INT_RANGES.get(s.get("format", ""), (None, None))
            if low is not None and high is not None and not low <= v <= high:
                err(f"{path}: Invalid value: {v}: {path} in body must be of type {s['format']}")
        if isinstance(v, list):
            if "maxItems" in s and len(v) > s["maxItems"]:
                err(f"{path}: Too many: {len(v)}: must have at most {s['maxItems']} items")
            if "minItems" in s and len(v) < s["minItems"]:
                err(f"{path}: Invalid value: {len(v)}: {path} in body should have at least {s['minItems']} items")
        if isinstance(v, dict):
            if "maxProperties" in s and len(v) > s["maxProperties"]:
                err(f"{path}: Too many: {len(v)}: must have at most {s['maxProperties']} items")
            if "minProperties" in s and len(v) < s["minProperties"]:
                err(f"{path}: Invalid value: {len(v)}: {path} in body should have at least "
                    f"{s['minProperties']} properties")
            for key in s.get("required", []) if "properties" not in s else []:
                if key not in v:  # `required` inside a combinator (no properties): a value validation
                    err(f"{_join(path, key)}: Required value")
        self.combinators(v, s, path)

    def _passes(self, v: Any, s: dict[str, Any], path: str) -> bool:
        probe = _Walk()
        probe.value_checks(v, s, path)
        if "type" in s and not _has_type(v, s["type"]):
            return False
        return not probe.errors

    def combinators(self, v: Any, s: dict[str, Any], path: str) -> None:
        for sub in s.get("allOf", []):
            self.value_checks(v, sub, path)
        if "anyOf" in s and not s.get("x-kubernetes-int-or-string") and not any(
                self._passes(v, sub, path) for sub in s["anyOf"]):
            self.errors.append(f"{path}: Invalid value: {_show(v)}: {path} in body must validate at least one "
                               "schema (anyOf)")
        if "oneOf" in s and sum(self._passes(v, sub, path) for sub in s["oneOf"]) != 1:
            self.errors.append(f"{path}: Invalid value: {_show(v)}: {path} in body must validate one and only one "
                               "schema (oneOf)")
        if "not" in s and self._passes(v, s["not"], path):
            self.errors.append(f"{path}: Invalid value: {_show(v)}: {path} in body must not validate the schema "
                               "(not)")

    def node(self, v: Any, s: dict[str, Any], path: str) -> None:
        err = self.errors.append
        if v is None:
            if not s.get("nullable") and ("type" in s or s.get("x-kubernetes-int-or-string")):
                err(f'{path}: Invalid value: "null": {path} in body must be of type {s.get("type", "string")}: '
                    '"null"')
            return
        if s.get("x-kubernetes-int-or-string"):
            if not (_has_type(v, "integer") or isinstance(v, str)):
                err(f"{path}: Invalid value: {_show(v)}: {path} in body must be of type integer or string")
                return
        elif "type" in s and not _has_type(v, s["type"]):
            err(f'{path}: Invalid value: {_show(v)}: {path} in body must be of type {s["type"]}: '
                f'"{_type_name(v)}"')
            return
        self.value_checks(v, s, path)
        if isinstance(v, dict):
            self.object(v, s, path)
        elif isinstance(v, list):
            self.array(v, s, path)
        for rule in s.get("x-kubernetes-validations", []):
            self.rules.append((path, rule, v))

    def object(self, v: dict[str, Any], s: dict[str, Any], path: str) -> None:
        props = s.get("properties")
        extra = s.get("additionalProperties")
        for key in s.get("required", []) if props is not None else []:
            if key not in v:
                self.errors.append(f"{_join(path, key)}: Required value")
        for key, item in v.items():
            if props and key in props:
                self.node(item, props[key], _join(path, key))
            elif isinstance(extra, dict):
                self.node(item, extra, f"{path}[{key}]")
            elif not s.get("x-kubernetes-preserve-unknown-fields"):
                self.errors.append(f'unknown field "{_join(path, key)}"')

    def array(self, v: list[Any], s: dict[str, Any], path: str) -> None:
        items = s.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(v):
                self.node(item, items, f"{path}[{i}]")
        list_type = s.get("x-kubernetes-list-type")
        if list_type not in ("set", "map"):
            return
        keys = s.get("x-kubernetes-list-map-keys", [])
        seen: set[str] = set()
        for i, item in enumerate(v):
            ident = item if list_type == "set" or not isinstance(item, dict) else {k: item.get(k) for k in keys}
            text = json.dumps(ident, sort_keys=True, separators=(",", ":"))
            if text in seen:
                self.errors.append(f"{path}[{i}]: Duplicate value: {text}")
            seen.add(text)


def validate_object(doc: Any) -> tuple[Crd | None, list[str]]:
    """All errors the API server would report for creating DOC (empty list: it would be accepted)."""
    if not isinstance(doc, dict):
        return None, [f"Object: Invalid value: {_show(doc)}: a manifest document must be a mapping"]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    crd = crds().get((api_version, kind)) if isinstance(api_version, str) and isinstance(kind, str) else None
    if crd is None:
        known = ", ".join(f"{k} ({a})" for a, k in crds())
        return None, [f"no CRD here for kind {kind!r} in apiVersion {api_version!r} (known: {known})"]
    obj = copy.deepcopy(doc)
    apply_defaults(obj, crd.schema)
    walk = _Walk()
    walk.errors.extend(k8s_names.object_meta(obj.get("metadata"), namespaced=crd.namespaced))
    root = {k: v for k, v in crd.schema.items() if k != "properties"}
    top = ("apiVersion", "kind", "metadata")  # checked above, whatever the schema says of them
    root["properties"] = {k: v for k, v in crd.schema.get("properties", {}).items() if k not in top}
    walk.node({k: v for k, v in obj.items() if k not in top}, root, "")
    errors = walk.errors
    if any(marker in e for e in errors for marker in BLOCKING):
        return crd, [*errors, "some validation rules were not checked because the object was invalid; correct the "
                              "existing errors to complete validation"]
    for path, rule, value in walk.rules:
        why = cel_rules.evaluate(rule["rule"], value)
        if why is not None:
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            detail = "" if why == "false" else f" ({why})"
            errors.append(f"{path or '<root>'}: Invalid value: {_show(value)}: {message}{detail}")
    return crd, errors


def _node(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = schema
    for step in path:
        key = {"[]": "items", "{}": "additionalProperties"}.get(step)
        node = node.get(key) if key else (node.get("properties") or {}).get(step)
        if not isinstance(node, dict):
            return None
    return node


def missing_relied_on(schemas: dict[str, dict[str, Any]] | None = None) -> list[cel_rules.RuleRef]:
    """The rules of cel_rules.RELIED_ON not found (same message and rule text, whitespace aside) in the vendored
    CRDs — or in SCHEMAS, by CRD name, where given."""
    missing = []
    for ref in cel_rules.RELIED_ON:
        schema = (schemas or {}).get(ref.crd) or crd_by_name(ref.crd).schema
        node = _node(schema, ref.path) or {}
        found = any(" ".join(r.get("rule", "").split()) == " ".join(ref.rule.split())
                    and r.get("message") == ref.message for r in node.get("x-kubernetes-validations", []))
        if not found:
            missing.append(ref)
    return missing
