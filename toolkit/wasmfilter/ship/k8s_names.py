"""Kubernetes' name rules (k8s.io/apimachinery `pkg/util/validation` and `pkg/api/validation` ObjectMeta):
DNS-1123 labels and subdomains, qualified names (label and annotation keys), label values. Each check returns the
API server's error text, or None when the value is valid."""

from __future__ import annotations

import json
import re
from typing import Any

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ANNOTATIONS_TOTAL_BYTES = 256 * 1024
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# ObjectMeta fields a client may send (the rest are set by the server but accepted too).
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
    "managedFields", "selfLink"})


def _bounded(value: str, limit: int, pattern: re.Pattern[str], what: str) -> str | None:
    if len(value) > limit:
        return f"must be no more than {limit} characters"
    return None if pattern.match(value) else what


def dns1123_label(value: str) -> str | None:
    return _bounded(value, 63, DNS1123_LABEL, "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric character")


def dns1123_subdomain(value: str) -> str | None:
    return _bounded(value, 253, DNS1123_SUBDOMAIN, "a lowercase RFC 1123 subdomain must consist of lower case "
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")


def qualified_name(value: str) -> str | None:
    """A label or annotation key: [DNS-subdomain prefix/]name, name at most 63 characters."""
    prefix, slash, name = value.rpartition("/")
    if slash:
        if not prefix:
            return "prefix part must be non-empty"
        problem = dns1123_subdomain(prefix)
        if problem:
            return f"prefix part {problem}"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not QUALIFIED_NAME.match(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
                "an alphanumeric character")
    return None


def label_value(value: str) -> str | None:
    return _bounded(value, 63, LABEL_VALUE, "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character")


def object_meta(meta: Any, *, namespaced: bool = True) -> list[str]:
    """The API server's ObjectMeta checks for a custom resource (name: DNS-1123 subdomain, namespace: label)."""
    if not isinstance(meta, dict):
        return [f"metadata: Invalid value: {json.dumps(meta)}: must be an object"]
    errors = [f'unknown field "metadata.{k}"' for k in meta if k not in OBJECT_META_FIELDS]
    name = meta.get("name")
    if name is None and not meta.get("generateName"):
        errors.append("metadata.name: Required value: name or generateName is required")
    for field, check in (("name", dns1123_subdomain), ("namespace", dns1123_label)):
        value = meta.get(field)
        if value is None:
            continue
        problem = check(value) if isinstance(value, str) else "must be a string"
        if problem:
            errors.append(f"metadata.{field}: Invalid value: {json.dumps(value)}: {problem}")
    if meta.get("namespace") is not None and not namespaced:
        errors.append("metadata.namespace: Forbidden: not allowed on this type")
    for field in ("labels", "annotations"):
        items = meta.get(field)
        if items is None:
            continue
        if not isinstance(items, dict):
            errors.append(f"metadata.{field}: Invalid value: {json.dumps(items)}: must be a map of strings")
            continue
        for key, value in items.items():
            problem = qualified_name(key) if isinstance(key, str) else "must be a string"
            if problem:
                errors.append(f"metadata.{field}: Invalid value: {json.dumps(key)}: {problem}")
            if not isinstance(value, str):
                errors.append(f"metadata.{field}.{key}: Invalid value: {json.dumps(value)}: must be a string")
            elif field == "labels" and (problem := label_value(value)):
                errors.append(f"metadata.labels: Invalid value: {json.dumps(value)}: {problem}")
        if field == "annotations" and sum(len(k) + len(str(v)) for k, v in items.items()) > ANNOTATIONS_TOTAL_BYTES:
            errors.append(f"metadata.annotations: Too long: must have at most {ANNOTATIONS_TOTAL_BYTES} bytes")
    return errors
