"""Envoy as a local process: the default backend."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from wasmfilter.envoy.admin import Admin
from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.envoy.bootstrap import envoy_reason
from wasmfilter.envoy.protocol import READY_TIMEOUT_S, filter_log_lines, log_tail, wait_until
from wasmfilter.errors import EnvoyStartError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If the Python process dies (even by SIGKILL), the kernel stops Envoy too: nothing is left running.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class EnvoyProcess:
    backend = "process"

    def __init__(self, config: str, *, binary: EnvoyBinary | None = None, concurrency: int = 2,
                 log_level: str = "info", wasm_log_level: str = "debug", ready_timeout: float = READY_TIMEOUT_S):
        self.config = config
        self.binary = binary or resolve()
        self.concurrency = concurrency
        self.log_level = log_level
        self.wasm_log_level = wasm_log_level
        self.ready_timeout = ready_timeout
        self.workdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.admin: Admin | None = None
        self.listener_port: int | None = None
        self.start_seconds: float | None = None

    @property
    def version(self) -> str:
        return self.binary.version

    @property
    def listener_url(self) -> str:
        return f"http://127.0.0.1:{self.listener_port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "envoy.log"

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    def filter_logs(self) -> list[str]:
        return filter_log_lines(self.logs())

    def start(self) -> EnvoyProcess:
        self.workdir = Path(tempfile.mkdtemp(prefix="wasmfilter-envoy-"))
        config_path = self.workdir / "envoy.yaml"
        config_path.write_text(self.config)
        address_path = self.workdir / "admin-address"
        cmd = [str(self.binary.path), "-c", str(config_path), "--use-dynamic-base-id",
               "--admin-address-path", str(address_path),
               "-l", self.log_level, "--component-log-level", f"wasm:{self.wasm_log_level}",
               "--concurrency", str(self.concurrency)]
        started = time.perf_counter()
        # Envoy's log goes to stderr, which is flushed per line (its --log-path file sink is buffered), into a file.
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         preexec_fn=_die_with_parent, start_new_session=True)
        try:
            self._wait_ready(address_path)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started
        return self

    def _wait_ready(self, address_path: Path) -> None:
        assert self.proc is not None

        def ready() -> bool:
            if self.proc.poll() is not None:
                return True
            if self.admin is None:
                text = address_path.read_text().strip() if address_path.exists() else ""
                if not text:
                    return False
                host, _, port = text.rpartition(":")
                self.admin = Admin(host, int(port))
            return self.admin.is_ready()

        wait_until(ready, self.ready_timeout)
        if self.proc.poll() is not None:
            logs = self.logs()
            raise EnvoyStartError(f"Envoy exited during start-up (code {self.proc.returncode}): {envoy_reason(logs)}",
                                  fix="see Envoy's log below", detail=log_tail(logs))
        if self.admin is None or not self.admin.is_ready():
            raise EnvoyStartError(f"Envoy was not ready within {self.ready_timeout:.0f}s",
                                  fix="see Envoy's log below", detail=log_tail(self.logs()))
        ports = self.admin.listener_ports()
        if "listener" not in ports:
            raise EnvoyStartError("Envoy started without the 'listener' listener", fix="check the config",
                                  detail=log_tail(self.logs()))
        self.listener_port = ports["listener"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.workdir is not None and not os.environ.get("WASMFILTER_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
