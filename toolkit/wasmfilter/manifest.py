"""The filter manifest, `filter.yaml`: which crate, which plugin configuration, which failure policy."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from wasmfilter.errors import ManifestError, UsageError
from wasmfilter.yamlmodel import load_model

MANIFEST_NAME = "filter.yaml"
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
ENVOY_VERSION_PATTERN = r"^(all|\d+\.\d+(\.\d+)?)$"


class FailurePolicy(str, enum.Enum):
    FAIL_CLOSED = "FAIL_CLOSED"
    FAIL_OPEN = "FAIL_OPEN"
    FAIL_RELOAD = "FAIL_RELOAD"


class PublicRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = Field(pattern=r"^/")
    methods: list[str] = Field(default_factory=list)  # empty: every method


class FuzzSpec(BaseModel):
    """`fuzz:` in filter.yaml: what `wasmfilter fuzz` generates for this filter and which invariants it checks
    beyond the common ones (docs/fuzz.md)."""
    model_config = ConfigDict(extra="forbid")

    statuses: list[int] = Field(default_factory=list)       # the filter's documented local replies
    paths: list[str] = Field(default_factory=list)          # seeds for generated paths
    headers: dict[str, list[str]] = Field(default_factory=dict)  # header name -> values worth sending
    credentials: list[dict[str, str]] = Field(default_factory=list)  # header sets that are valid credentials
    # Security invariants: an anonymous request reaches the upstream only at these routes, as every modelled
    # upstream parser reads the path it got; no client value of these headers reaches it, in any spelling.
    public: list[PublicRoute] | None = None
    owned_headers: list[str] = Field(default_factory=list)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    name: str = Field(pattern=NAME_PATTERN)
    crate: str = "."
    root_id: str | None = None
    description: str = ""
    security_relevant: bool = False
    failure_policy: FailurePolicy = FailurePolicy.FAIL_CLOSED
    reload_backoff_ms: int = Field(default=1000, ge=1)
    config: Any = Field(default_factory=dict)
    test_features: list[str] = Field(default_factory=list)
    scenarios: str = "scenarios"
    # Echo upstreams Envoy gets as clusters of these names; the first is the default route.
    upstreams: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    envoy_version: str | None = None
    fuzz: FuzzSpec = Field(default_factory=FuzzSpec)
    # The Envoy versions the filter claims to run on ("all", a minor "1.38" or "1.38.2"): `wasmfilter test` without
    # --envoy-version runs its scenario files on each (harness/matrix.py).
    envoy_versions: list[Annotated[str, StringConstraints(pattern=ENVOY_VERSION_PATTERN)]] = Field(
        default_factory=list)

    # Not part of the file: where it was read from.
    directory: Path = Field(default=Path("."), exclude=True)

    @property
    def crate_dir(self) -> Path:
        return (self.directory / self.crate).resolve()

    @property
    def scenario_dir(self) -> Path:
        return (self.directory / self.scenarios).resolve()

    @property
    def effective_root_id(self) -> str:
        return self.root_id or self.name

    def failure_policy_for_run(self, *, allow_fail_open: bool = False, override: FailurePolicy | None = None
                               ) -> FailurePolicy:
        """The policy Envoy gets. A security-relevant filter never fails open unless explicitly allowed:
        after a panic, FAIL_OPEN skips the filter, which for auth means unauthenticated requests pass."""
        policy = override or self.failure_policy
        if policy is FailurePolicy.FAIL_OPEN and self.security_relevant and not allow_fail_open:
            raise ManifestError(
                f"filter '{self.name}' is security-relevant and FAIL_OPEN would let requests bypass it after a crash",
                fix="use FAIL_CLOSED or FAIL_RELOAD, or pass --allow-fail-open if a bypass is acceptable",
            )
        return policy


def find_manifest(path: str | Path | None = None) -> Path:
    """The filter.yaml for PATH (a directory or the file itself); the current directory by default."""
    target = Path(path) if path is not None else Path.cwd()
    if not target.exists():
        raise UsageError(f"path '{target}' does not exist", fix="pass the directory holding filter.yaml")
    if target.is_file():
        if target.name.endswith((".yaml", ".yml")):
            return target
        raise UsageError(f"'{target}' is not a filter.yaml", fix="pass the filter's directory or its filter.yaml")
    candidate = target / MANIFEST_NAME
    if candidate.is_file():
        return candidate
    hint = "it has a Cargo.toml: add a filter.yaml beside it" if (target / "Cargo.toml").is_file() else (
        "create a filter with `wasmfilter new blank NAME`")
    raise ManifestError(f"no {MANIFEST_NAME} in '{target}'", fix=hint)


def load_manifest(path: str | Path | None = None) -> Manifest:
    file = find_manifest(path)
    manifest = load_model(file, Manifest, error=ManifestError, shape="a mapping of fields",
                          example="filters/auth/filter.yaml",
                          field_fix="correct that field (allowed fields: " + ", ".join(_FIELDS) + ")",
                          extra={"directory": file.parent.resolve()})
    if not (manifest.crate_dir / "Cargo.toml").is_file():
        raise ManifestError(f"{file}: crate '{manifest.crate}' has no Cargo.toml",
                            fix="point 'crate' at the filter's Rust crate directory")
    return manifest


_FIELDS = [name for name in Manifest.model_fields if name != "directory"]

