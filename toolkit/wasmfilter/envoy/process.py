"""Envoy as a local process, the default backend: `--use-dynamic-base-id`, port 0 everywhere (the admin address
read back through `--admin-address-path`, the listener's port from the admin API), readiness from `/ready`, and
a process that dies with the one that started it."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Unpack

from wasmfilter import subprocesses
from wasmfilter.envoy import protocol
from wasmfilter.envoy.admin import Admin
from wasmfilter.envoy.binary import EnvoyBinary, resolve


class EnvoyProcess(protocol.EnvoyBase):
    backend = "process"

    def __init__(self, config: str, *, binary: EnvoyBinary | None = None, **options: Unpack[protocol.RunOptions]):
        super().__init__(config, **options)
        self.binary = binary or resolve()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def version(self) -> str:
        return self.binary.version

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
            self._admin, self.listener_port = protocol.wait_ready(
                what="Envoy", timeout=self.ready_timeout, admin=admin_address, logs=self.logs,
                exited=lambda: None if proc.poll() is None else f"code {proc.returncode}")
        except BaseException:
            self.stop()
            raise
        self._start_seconds = time.perf_counter() - started
        return self

    def stop(self) -> None:
        subprocesses.stop(self.proc)
        self.remove_workdir()
