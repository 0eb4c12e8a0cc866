"""Envoy as a local process, the default backend: `--use-dynamic-base-id`, port 0 everywhere (the admin address
read back through `--admin-address-path`, the listener's port from the admin API), readiness from `/ready`, and
a process that dies with the one that started it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from wasmfilter import subprocesses
from wasmfilter.envoy import protocol
from wasmfilter.envoy.admin import Admin
from wasmfilter.envoy.binary import EnvoyBinary, resolve
from wasmfilter.settings import current


class EnvoyProcess(protocol.EnvoyBase):
    backend = "process"

    def __init__(self, config: str, *, binary: EnvoyBinary | None = None, concurrency: int = 2,
                 log_level: str = "info", wasm_log_level: str = "debug",
                 ready_timeout: float = protocol.READY_TIMEOUT_S, keep_workdir: bool | None = None):
        self.config = config
        self.binary = binary or resolve()
        self.concurrency = concurrency
        self.log_level = log_level
        self.wasm_log_level = wasm_log_level
        self.ready_timeout = ready_timeout
        self.keep_workdir = current().keep_workdir if keep_workdir is None else keep_workdir
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.listener_port: int | None = None

    @property
    def version(self) -> str:
        return self.binary.version

    @property
    def listener_url(self) -> str:
        return f"http://127.0.0.1:{self.listener_port}"

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "envoy.log" if self.workdir is not None else None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

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
        with open(self.workdir / "envoy.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    preexec_fn=subprocesses.die_with_parent, start_new_session=True)
        self.proc = proc
        self._pid = proc.pid

        def admin_address() -> Admin | None:
            text = address_path.read_text().strip() if address_path.exists() else ""
            if not text:
                return None
            host, _, port = text.rpartition(":")
            return Admin(host, int(port))

        try:
            self._admin = protocol.wait_ready(
                what="Envoy", timeout=self.ready_timeout, admin=admin_address, logs=self.logs,
                exited=lambda: None if proc.poll() is None else f"code {proc.returncode}")
            self.listener_port = self._admin.listener_ports()[protocol.LISTENER]
        except BaseException:
            self.stop()
            raise
        self._start_seconds = time.perf_counter() - started
        return self

    def stop(self) -> None:
        subprocesses.stop(self.proc)
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
