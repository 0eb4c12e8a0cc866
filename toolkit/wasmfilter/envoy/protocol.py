"""The one interface both backends (local process, Docker container) offer."""

from __future__ import annotations

import socket
import time
from typing import Protocol

from wasmfilter.envoy.admin import Admin
from wasmfilter.errors import UsageError

READY_TIMEOUT_S = 20.0


class Envoy(Protocol):
    backend: str
    admin: Admin
    listener_url: str
    version: str

    def start(self) -> Envoy: ...
    def stop(self) -> None: ...
    def logs(self) -> str: ...

    def __enter__(self) -> Envoy: ...
    def __exit__(self, *exc: object) -> None: ...


def filter_log_lines(logs: str) -> list[str]:
    """The lines the Wasm filter itself logged (Envoy's `wasm` component)."""
    return [line for line in logs.splitlines() if "][wasm]" in line]


def log_tail(logs: str, lines: int = 30) -> str:
    return "\n".join(logs.splitlines()[-lines:])


def ensure_port_free(host: str, port: int) -> None:
    """A clear error before Envoy's own 'cannot bind' when a fixed port is taken (port 0 is always free)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise UsageError(f"port {port} on {host} is already in use ({e.strerror})",
                             fix="pick another with --port, or stop what holds it") from e


def wait_until(predicate, timeout: float, interval: float = 0.005) -> bool:
    """Poll PREDICATE until true or TIMEOUT; the interval is a poll period, not a guess at readiness."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
