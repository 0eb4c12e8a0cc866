"""`wasmfilter dev` as a user runs it (a real subprocess in its own process group, like a terminal): config edits and
source edits go live over ECDS with a `live in N ms` line, a crate that stops compiling and a config Envoy rejects
keep the last good filter serving, Ctrl-C during a build stops everything (no Envoy, cargo or port left); a busy
xDS port is one clear line. The project is `wasmfilter new blank` built into this repo's target dir (warm)."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_one_line_error, http_get, processes_with_mark, run_cli

pytestmark = pytest.mark.slow
ENV = {"CARGO_TARGET_DIR": str(REPO / "filters" / "target")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("dev")
    created = run_cli("new", "blank", "dev-blank", cwd=work)
    assert created.code == 0, created.stderr
    return work / "dev-blank"


class Dev:
    """`wasmfilter dev` in a subprocess; its output lines in a queue."""

    def __init__(self, *args: str):
        self.mark = uuid.uuid4().hex
        env = {**os.environ, **ENV, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", "WASMFILTER_TEST_MARK": self.mark}
        self.proc = subprocess.Popen([sys.executable, "-m", "wasmfilter.cli", "dev", *args], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = 240) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"dev exited {self.proc.returncode}:\n" + "\n".join(self.seen)
                continue
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.seen))

    def interrupt(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        return self.proc.wait(timeout=60)


def header(url: str) -> str | None:
    return http_get(url + "/")[1].get("x-wasmfilter-blank")


def port_open(url: str) -> bool:
    host, port = url.split("://")[1].rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def test_dev_loop_edits_errors_and_ctrl_c_during_a_build(project: Path) -> None:
    manifest = project / "filter.yaml"
    lib = project / "src" / "lib.rs"
    source = lib.read_text()
    dev = Dev(str(project), "--set", "value=from-set", "--concurrency", "1")
    try:
        dev.expect(r"live in \d+ ms \(build \d+ ms, fast profile\)")  # the edit loop builds the `fast` profile
        url = dev.expect(r"listener\s+(\S+)").group(1)
        xds = dev.expect(r"xds\s+(\S+)").group(1)
        dev.expect("watching")
        assert header(url) == "from-set"  # --set overrides filter.yaml's config

        # A config edit: pushed as config, no build. (--set still wins for its key.)
        manifest.write_text(manifest.read_text().replace("header: x-wasmfilter-blank", "header: x-wasmfilter-blank2"))
        dev.expect(r"live in \d+ ms \(build 0 ms, push\+ack \d+ ms\) — config")
        assert http_get(url + "/")[1].get("x-wasmfilter-blank2") == "from-set"
        manifest.write_text(manifest.read_text().replace("header: x-wasmfilter-blank2", "header: x-wasmfilter-blank"))
        dev.expect(r"— config")

        # The crate stops compiling: the error is shown, the last good filter serves.
        lib.write_text(source + "\nfn broken( {\n")
        dev.expect(r"build failed: cargo build failed .*the last good filter keeps serving")
        assert header(url) == "from-set"

        # Fixed again: a module push.
        lib.write_text(source + "\n// edited\n")
        dev.expect(r"live in \d+ ms \(build \d+ ms, push\+ack \d+ ms\) — module")
        assert header(url) == "from-set"

        # A config the filter refuses (deny_unknown_fields): NACKed, one line, the last good filter serves.
        manifest.write_text(manifest.read_text().replace("value: hello", "value: hello\n  bogus: 1"))
        dev.expect(r"not applied: Envoy rejected dev-blank .*Unable to create Wasm.*last good filter keeps serving")
        assert header(url) == "from-set"

        # Ctrl-C while cargo builds.
        lib.write_text(source + "\n// edited again\n")
        deadline = time.monotonic() + 60
        while not any(b"cargo" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _alive(dev.mark)):
            assert time.monotonic() < deadline, "cargo never started"
            time.sleep(0.01)
        code = dev.interrupt()
        rest = dev.proc.stdout.read() if dev.proc.stdout else ""
        assert code == 0, rest
    finally:
        lib.write_text(source)
        if dev.proc.poll() is None:
            dev.proc.kill()
    deadline = time.monotonic() + 10
    while _alive(dev.mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(dev.mark), "dev left processes running"
    assert not port_open(url) and not port_open("http://" + xds)


def _alive(mark: str) -> list[int]:
    alive = []
    for pid in processes_with_mark(mark):
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z":
                alive.append(pid)
        except (OSError, IndexError):
            continue
    return alive


def test_dev_with_a_busy_xds_port_is_one_line(project: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli("dev", str(project), "--xds-port", str(port), env=ENV)
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}")


def test_dev_watches_the_crate_and_its_path_dependencies() -> None:
    from wasmfilter.dev import DevSession, watched

    paths = DevSession(REPO / "filters" / "auth").watch_paths()
    assert (REPO / "filters" / "auth").resolve() in paths and (REPO / "filters" / "common").resolve() in paths
    assert watched(Path("src/lib.rs")) and watched(Path("filter.yaml")) and watched(Path("Cargo.toml"))
    assert not watched(Path("target/release/x.rs")) and not watched(Path("README.md"))
