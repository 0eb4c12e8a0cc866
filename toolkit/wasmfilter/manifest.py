"""The filter manifest, `filter.yaml`: which crate, which plugin configuration, which failure policy, which
callbacks it never receives."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from wasmfilter.build.exports import CallbackGroup
from wasmfilter.errors import ManifestError, UsageError
from wasmfilter.harness.answers import AnswerRule
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
    # Scripted answers of the echo upstreams, per cluster name (harness/answers.py, docs/scenarios.md).
    answers: dict[str, list[AnswerRule]] = Field(default_factory=dict)
    # A prebuilt module instead of a crate (any language, docs/languages.md), and the command that builds it.
    wasm: str | None = None
    build: list[str] | None = Field(default=None, min_length=1)
    # Callback groups Envoy never calls on this filter: `wasmfilter build --opt` removes their exports and the code
    # only they reach (build/exports.py, docs/size.md). A group forgotten here only leaves code in.
    never_receives: list[CallbackGroup] = Field(default_factory=list)

    # Not part of the file: where it was read from.
    directory: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _crate_or_wasm(self) -> Manifest:
        if self.wasm is not None and "crate" in self.model_fields_set:
            raise ValueError("give either 'crate' (a Rust crate) or 'wasm' (a prebuilt module), not both")
        if self.build is not None and self.wasm is None:
            raise ValueError("'build' needs 'wasm': the module the command writes")
        return self

    @property
    def crate_dir(self) -> Path:
        if self.wasm is not None:
            return self.directory.resolve()  # build() finds this filter.yaml there and takes the module
        return (self.directory / self.crate).resolve()

    @property
    def wasm_path(self) -> Path | None:
        """The prebuilt module (`wasm:`), resolved against the manifest's directory; None for a crate."""
        return None if self.wasm is None else (self.directory / self.wasm).resolve()

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
    check_module(file, manifest)
    if manifest.wasm is None and not (manifest.crate_dir / "Cargo.toml").is_file():
        raise ManifestError(f"{file}: crate '{manifest.crate}' has no Cargo.toml",
                            fix="point 'crate' at the filter's Rust crate directory")
    return manifest


def check_module(file: Path, manifest: Manifest) -> None:
    """A `wasm:` manifest: the module exists, or a `build:` command will write it; answers name upstreams."""
    module = manifest.wasm_path
    if module is not None and manifest.build is None and not module.is_file():
        raise ManifestError(f"{file}: wasm module '{manifest.wasm}' does not exist",
                            fix="build it first, or add a `build:` command that writes it (docs/languages.md)")
    unknown = [name for name in manifest.answers if name not in manifest.upstreams]
    if unknown:
        raise ManifestError(f"{file}: answers for '{unknown[0]}', which is not in upstreams",
                            fix="add it to `upstreams:`, or correct the name under `answers:`")


_FIELDS = [name for name in Manifest.model_fields if name != "directory"]

