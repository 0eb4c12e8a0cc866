"""Scripted upstream answers: the rules a scenario file or filter.yaml gives an upstream cluster (`answers:`) — which
requests a rule matches (method, path, headers) and what it answers (status, headers, body as text/JSON/bytes,
delay, reset) — and `answer_for`, the one matching function. The echo upstream (harness/upstream.py), its Rust twin
(docker/echo, fed `wire_rules`) and the emulator's http_call/grpc_call answers all follow this spec; the shared table
docker/echo/answer_table.json pins it on both sides."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from wasmfilter.errors import ScenarioError

# Header names an answer may not set: the upstream computes them from the body it sends.
COMPUTED_HEADERS = ("content-length", "transfer-encoding", "connection")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AnswerMatch(_Strict):
    """Which requests a rule answers; every given field must hold (no field: every request).
    `path`/`path_prefix` compare the request path without its query string; header names are case-insensitive,
    values exact (a repeated header matches when any of its values does)."""
    method: str | None = None
    path: str | None = None
    path_prefix: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("path", "path_prefix")
    @classmethod
    def _starts_with_slash(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v

    def matches(self, method: str, path: str, headers: Iterable[tuple[str, str]]) -> bool:
        bare = path.split("?", 1)[0]
        if self.method is not None and method != self.method:
            return False
        if self.path is not None and bare != self.path:
            return False
        if self.path_prefix is not None and not bare.startswith(self.path_prefix):
            return False
        seen = [(k.lower(), v) for k, v in headers]
        return all((name.lower(), value) in seen for name, value in self.headers.items())


class Answer(_Strict):
    """What the upstream sends back. At most one of `body` (UTF-8 text), `json` (any JSON value, serialised
    compactly) and `base64` (raw bytes). `delay_ms` waits before answering; `reset: true` closes the connection
    with a TCP reset instead of answering. `grpc_status` (for grpc_call answers) is sent as a `grpc-status` header."""
    status: int = Field(default=200, ge=200, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    json_body: Any = Field(default=None, alias="json")
    base64: str | None = None
    delay_ms: int = Field(default=0, ge=0, le=60_000)
    reset: bool = False
    grpc_status: int | None = Field(default=None, ge=0, le=16)

    @field_validator("headers")
    @classmethod
    def _settable_headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name.lower() in COMPUTED_HEADERS:
                raise ValueError(f"'{name}' is computed by the upstream and cannot be set")
            if not name or any(c in name for c in ":\r\n ") or any(c in v[name] for c in "\r\n"):
                raise ValueError(f"'{name}' is not a valid header")
        return v

    @field_validator("base64")
    @classmethod
    def _valid_base64(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError) as e:
                raise ValueError(f"not valid base64 ({e})") from e
        return v

    @model_validator(mode="after")
    def _one_body(self) -> Answer:
        given = [k for k in ("body", "json_body", "base64") if k in self.model_fields_set]
        if len(given) > 1:
            names = ["json" if k == "json_body" else k for k in given]
            raise ValueError(f"give one of body, json, base64 (got {', '.join(names)})")
        return self

    def body_bytes(self) -> bytes:
        if "json_body" in self.model_fields_set:
            return json.dumps(self.json_body, separators=(",", ":")).encode()
        if self.base64 is not None:
            return base64.b64decode(self.base64)
        return (self.body or "").encode()

    def content_type(self) -> str:
        if "json_body" in self.model_fields_set:
            return "application/json"
        if self.base64 is not None:
            return "application/octet-stream"
        return "text/plain"

    def header_pairs(self) -> list[tuple[str, str]]:
        """The response headers, names lower-cased, in order: the rule's own, content-type unless it sets one,
        grpc-status when given. (content-length and the echo header are added by the upstream that sends it.)"""
        pairs = [(k.lower(), v) for k, v in self.headers.items()]
        if not any(k == "content-type" for k, _ in pairs):
            pairs.append(("content-type", self.content_type()))
        if self.grpc_status is not None:
            pairs.append(("grpc-status", str(self.grpc_status)))
        return pairs


class AnswerRule(Answer):
    """One rule: `match` (default: every request) and the answer's fields beside it."""
    match: AnswerMatch = Field(default_factory=AnswerMatch)


# Upstream cluster name -> its rules, first match wins.
AnswerRules = dict[str, list[AnswerRule]]


def answer_for(rules: Iterable[AnswerRule], method: str, path: str,
               headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> Answer | None:
    """The first rule of RULES matching the request, or None (the upstream then echoes as without rules)."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    for rule in rules:
        if rule.match.matches(method, path, pairs):
            return rule
    return None


def merged(base: AnswerRules, first: AnswerRules) -> AnswerRules:
    """FIRST's rules (a scenario file's) ahead of BASE's (filter.yaml's), per cluster: the file's win."""
    return {name: [*first.get(name, []), *base.get(name, [])] for name in {**base, **first}}


def check_clusters(rules: AnswerRules, upstreams: list[str], where: str) -> None:
    """Answers for a cluster that is not one of the upstreams would silently never be used: an error."""
    unknown = [name for name in rules if name not in upstreams]
    if unknown:
        raise ScenarioError(f"{where}: answers for '{unknown[0]}', which is not an upstream cluster "
                            f"(upstreams: {', '.join(upstreams)})",
                            fix="add it to `upstreams:` in filter.yaml, or correct the name under `answers:`")


def wire_rules(rules: Iterable[AnswerRule]) -> str:
    """RULES as the compact JSON the echo upstreams read (`--rules FILE`, `--rules-json TEXT`): plain values only,
    bodies in hex, so the std-only Rust twin parses it without a base64 or YAML reader."""
    out = []
    for rule in rules:
        m = rule.match
        out.append({
            "method": m.method, "path": m.path, "path_prefix": m.path_prefix,
            "headers": [[k.lower(), v] for k, v in m.headers.items()],
            "status": rule.status, "answer_headers": [list(p) for p in rule.header_pairs()],
            "body_hex": rule.body_bytes().hex(), "delay_ms": rule.delay_ms, "reset": rule.reset,
        })
    return json.dumps(out, separators=(",", ":"))


class WireRule(BaseModel):
    """One rule as `wire_rules` writes it (what the upstream programs read back)."""
    model_config = ConfigDict(extra="forbid")
    method: str | None
    path: str | None
    path_prefix: str | None
    headers: list[tuple[str, str]]
    status: int = Field(ge=200, le=599)
    answer_headers: list[tuple[str, str]]
    body_hex: str = Field(pattern=r"^([0-9a-fA-F]{2})*$")
    delay_ms: int = Field(ge=0, le=60_000)
    reset: bool

    def to_rule(self) -> AnswerRule:
        headers = dict(self.answer_headers)
        return AnswerRule(match=AnswerMatch(method=self.method, path=self.path, path_prefix=self.path_prefix,
                                            headers=dict(self.headers)),
                          status=self.status, headers=headers, base64=base64.b64encode(bytes.fromhex(self.body_hex))
                          .decode(), delay_ms=self.delay_ms, reset=self.reset)


def read_wire(text: str, source: str) -> list[AnswerRule]:
    """Rules from `wire_rules` text; one-line ScenarioError naming SOURCE and the first bad field otherwise."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"answer rules {source} are not JSON ({e.msg} at line {e.lineno})",
                            fix="write them with wasmfilter.harness.answers.wire_rules") from e
    try:
        return [rule.to_rule() for rule in TypeAdapter(list[WireRule]).validate_python(raw)]
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(rule)"
        raise ScenarioError(f"answer rules {source}: field '{where}': {err['msg']}",
                            fix="write them with wasmfilter.harness.answers.wire_rules") from e


def read_wire_file(path: Path) -> list[AnswerRule]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(f"cannot read answer rules '{path}': {e.strerror}", fix="check the path") from e
    return read_wire(text, f"'{path}'")
