"""Scenario files as data: a request and what must come back (status, headers, body), what the upstream
must have seen, and how Envoy's stats must move — the model, and reading it from YAML. The same file runs on every
backend (harness/checks.py runs a case; harness/runner.py a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wasmfilter.envoy.hardening import SAFE, RequestHardening
from wasmfilter.errors import ScenarioError
from wasmfilter.manifest import FailurePolicy
from wasmfilter.yamlmodel import load_model

Headers = list[tuple[str, str]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Request(_Strict):
    method: str = "GET"
    path: str = "/"
    # A mapping, or a list of [name, value] pairs when a header repeats or its case matters.
    headers: dict[str, str] | list[tuple[str, str]] = Field(default_factory=dict)
    body: str = ""

    @field_validator("path")
    @classmethod
    def _path_starts_with_slash(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v

    def header_pairs(self) -> Headers:
        return list(self.headers.items()) if isinstance(self.headers, dict) else [(k, v) for k, v in self.headers]


class UpstreamExpect(_Strict):
    reached: bool = True
    name: str | None = None
    path: str | None = None
    method: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    headers_absent: list[str] = Field(default_factory=list)
    body: str | None = None


class Expect(_Strict):
    status: int | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    headers_absent: list[str] = Field(default_factory=list)
    body: str | None = None
    body_contains: str | None = None
    body_not_contains: list[str] = Field(default_factory=list)
    json_body: dict[str, Any] | None = Field(default=None, alias="json")
    upstream: UpstreamExpect | None = None
    # Envoy stat name -> how much it must grow during this case.
    stats: dict[str, int] = Field(default_factory=dict)
    # For repeated cases: status -> how many responses must have it.
    status_counts: dict[int, int] | None = None


class Eventually(_Strict):
    timeout_ms: int = Field(default=5000, ge=1)
    interval_ms: int = Field(default=20, ge=1)


class Case(_Strict):
    name: str
    request: Request = Field(default_factory=Request)
    expect: Expect = Field(default_factory=Expect)
    repeat: int = Field(default=1, ge=1)
    parallel: int = Field(default=1, ge=1)
    # Retry the case until it passes, for expectations that hold only after Envoy acts (e.g. a VM reload).
    eventually: Eventually | None = None


class ScenarioFile(_Strict):
    description: str = ""
    # Plugin configuration for this file: replaces the manifest's, or is merged onto it.
    config: Any = None
    config_patch: dict[str, Any] | None = None
    failure_policy: FailurePolicy | None = None
    allow_fail_open: bool = False
    features: list[str] = Field(default_factory=list)  # cargo features of the build under test
    concurrency: int = Field(default=2, ge=1)
    # Envoy's request hardening for this file (default: the safe settings every generated config has).
    request_hardening: RequestHardening = SAFE
    cases: list[Case] = Field(min_length=1)

    path: Path = Field(default=Path("."), exclude=True)

    def plugin_config(self, manifest_config: Any) -> Any:
        if self.config is not None:
            return self.config
        if self.config_patch is not None:
            return deep_merge(manifest_config, self.config_patch)
        return manifest_config


def deep_merge(base: Any, patch: dict[str, Any]) -> Any:
    """PATCH over BASE, recursively for mappings (a non-mapping in PATCH replaces)."""
    if not isinstance(base, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        merge = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = deep_merge(out.get(key), value) if merge else value
    return out


def load(path: str | Path) -> ScenarioFile:
    file = Path(path)
    return load_model(file, ScenarioFile, error=ScenarioError, what="scenario file",
                      shape="a mapping with a 'cases' list", example="filters/auth/scenarios/",
                      field_fix="correct that field (see docs/scenarios.md)", extra={"path": file})


def discover(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
