"""Where this wasmfilter was installed from, as a pip requirement a new project's CI can install: pip's record of
it (PEP 610 `direct_url.json`: a VCS URL with its commit, a wheel or archive URL, a local directory), or — when pip
has no such record because it came from an index — the released version on that index."""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

DIST = "wasmfilter"


@dataclass(frozen=True)
class InstallSource:
    requirement: str  # what `pip install` takes
    kind: str  # "vcs", "archive", "local", "index"
    note: str = ""  # one line when CI cannot reach it as is (a path on this machine)


def from_direct_url(record: dict[str, object] | None, version: str, dist: str = DIST) -> InstallSource:
    """The requirement for a PEP 610 RECORD (None: installed from an index, so VERSION exists there)."""
    if not record or not isinstance(record.get("url"), str):
        return InstallSource(f"{dist}=={version}", "index")
    url = str(record["url"])
    vcs = record.get("vcs_info")
    if isinstance(vcs, dict):
        commit = vcs.get("commit_id") or vcs.get("requested_revision")
        sub = record.get("subdirectory")
        suffix = f"#subdirectory={sub}" if sub else ""
        return InstallSource(f"{dist} @ {vcs.get('vcs', 'git')}+{url}{'@' + str(commit) if commit else ''}{suffix}",
                             "vcs")
    parsed = urlparse(url)
    if isinstance(record.get("archive_info"), dict):
        note = "" if parsed.scheme in ("http", "https") else (
            f"{unquote(parsed.path)} is a file on the machine that ran `wasmfilter new`: publish it (or commit it) "
            "and point WASMFILTER at its URL")
        return InstallSource(f"{dist} @ {url}", "archive", note)
    path = unquote(parsed.path) if parsed.scheme == "file" else url
    return InstallSource(f"{dist} @ {url}", "local",
                         f"{path} is a checkout on the machine that ran `wasmfilter new`: point WASMFILTER at its git "
                         f"URL (git+https://…@<commit>) or a wheel CI can download")


def current(dist: str = DIST) -> InstallSource:
    """Where the running wasmfilter came from."""
    try:
        distribution = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return InstallSource(dist, "index", f"{dist} is not installed as a package here: set WASMFILTER to where "
                                            "CI can install it from")
    text = distribution.read_text("direct_url.json")
    try:
        record = json.loads(text) if text else None
    except ValueError:
        record = None
    return from_direct_url(record if isinstance(record, dict) else None, distribution.version, dist)
