"""`wasmfilter run`: prints the URLs, serves through the filter, streams its logs, stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from tests.conftest import AUTH, REPO
from wasmfilter.harness.client import Client
from wasmfilter.harness.scenario import Request


def test_run_serves_streams_logs_and_stops_on_ctrl_c(auth_build):
    proc = subprocess.Popen([sys.executable, "-m", "wasmfilter.cli", "run", str(AUTH)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    lines: list[str] = []
    try:
        url = admin = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (url and admin):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if m := re.search(r"listener\s+(http://\S+)", line):
                url = m.group(1)
            if m := re.search(r"admin\s+(http://\S+)", line):
                admin = m.group(1)
        assert url and admin, "".join(lines)
        assert Client(url).send(Request(path="/")).status == 401
        assert Client(url).send(Request(path="/", headers={"x-api-key": "alice-secret"})).status == 200
        # The filter's own log lines are streamed.
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "][wasm]" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        lines.append(rest)
        assert proc.returncode == 0, "".join(lines)
        assert "stopped" in rest
        port = int(url.rsplit(":", 1)[1])
        with __import__("socket").socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "Envoy still listening after Ctrl-C"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_shows_each_reference_filter():
    from conftest import run_cli

    result = run_cli("demo")
    assert result.code == 0, result.stdout + result.stderr
    assert "demo done" in result.stdout
    assert "401" in result.stdout and "x-auth-identity: alice" in result.stdout
