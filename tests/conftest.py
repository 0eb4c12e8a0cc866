"""Shared test helpers. Fixtures from the wasmfilter pytest plugin (envoy_stack, wasmfilter_build, ...) are
available everywhere too."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FILTERS = REPO / "filters"
AUTH = FILTERS / "auth"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""


def processes_with_mark(mark: str) -> list[int]:
    """PIDs of live processes whose environment carries WASMFILTER_TEST_MARK=MARK (children inherit it)."""
    needle = f"WASMFILTER_TEST_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> CliResult:
    """The real `wasmfilter` command in a subprocess, as a user runs it. Afterwards nothing it started may
    still be running."""
    mark = uuid.uuid4().hex
    full_env = {**os.environ, "COLUMNS": "200", "WASMFILTER_TEST_MARK": mark, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "wasmfilter.cli", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    # Children told to stop by the kernel (PR_SET_PDEATHSIG) may take a moment to exit: poll, briefly.
    deadline = time.monotonic() + 10
    while (leftovers := processes_with_mark(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leftovers, f"`wasmfilter {' '.join(args)}` left processes running: {leftovers}"
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """Exit non-zero; the last stderr line is `error: <problem>; <fix>` and names each fragment."""
    assert result.code != 0, f"expected failure, got exit 0\n{result.stdout}\n{result.stderr}"
    line = result.error_line
    assert line.startswith("error: "), f"last stderr line is not an error line: {line!r}\n{result.stderr}"
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert "Traceback" not in result.stderr, result.stderr


@pytest.fixture(scope="session")
def auth_build(pytestconfig: pytest.Config):
    from wasmfilter.harness.pytest_plugin import cached_build

    return cached_build(pytestconfig, AUTH)


@pytest.fixture(scope="session")
def frozen_auth_build(pytestconfig, tmp_path_factory):
    """A private copy of the session build: a concurrent rebuild of filters/auth cannot change it mid-test."""
    from wasmfilter.harness.pytest_plugin import cached_build

    auth_build = cached_build(pytestconfig, AUTH)
    frozen = tmp_path_factory.mktemp("auth-build") / "auth.wasm"
    shutil.copyfile(auth_build.wasm, frozen)
    return dataclasses.replace(auth_build, wasm=frozen, sha256=hashlib.sha256(frozen.read_bytes()).hexdigest())


@pytest.fixture
def docker_session():
    """A DockerSession for one test (labels, image choice, reaper), closed — and swept — after it."""
    from wasmfilter.harness.docker import DockerSession

    with DockerSession() as session:
        yield session


@pytest.fixture
def wasmfilter_env(monkeypatch):
    """`wasmfilter_env(NAME, VALUE)`: set a WASMFILTER_* variable for one test; the settings are re-read then and
    again after the test (they are read once per process otherwise)."""
    from wasmfilter import settings

    def set_env(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        settings.reload()

    yield set_env
    monkeypatch.undo()
    settings.reload()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET URL: status, lower-cased headers, body (an HTTP error status is returned, not raised)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
