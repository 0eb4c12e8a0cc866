"""The one interface every Envoy backend offers (`Envoy`), and what they share to honour it: the start-up wait
(readiness through the admin API, with Envoy's reason and log tail when it fails), the log helpers, and the
process figures the bench reads (CPU time, RSS) from the host's /proc, whatever runs Envoy."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Self, TypedDict

from wasmfilter.envoy.admin import Admin
from wasmfilter.envoy.validate import envoy_reason
from wasmfilter.errors import EnvoyError, EnvoyStartError, tail
from wasmfilter.settings import current

READY_TIMEOUT_S = 20.0
LISTENER = "listener"  # the name of the listener every generated bootstrap defines
LOG_TAIL_LINES = 30


class Envoy(Protocol):
    """A started Envoy: its admin API, its listener's URL, its log, its host process."""

    @property
    def backend(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def admin(self) -> Admin: ...
    @property
    def listener_url(self) -> str: ...
    @property
    def start_seconds(self) -> float: ...
    @property
    def pid(self) -> int: ...

    def logs(self) -> str: ...
    def filter_logs(self) -> list[str]: ...
    def cpu_ns(self) -> int: ...
    def rss_kb(self) -> int: ...
    def stop(self) -> None: ...


class RunOptions(TypedDict, total=False):
    """How either backend runs Envoy (keyword arguments of both constructors)."""
    concurrency: int
    log_level: str
    wasm_log_level: str
    ready_timeout: float
    keep_workdir: bool | None  # None: WASMFILTER_KEEP_WORKDIR


class EnvoyBase:
    """What both backends share: how Envoy runs (`RunOptions`), its config, and once started the protocol's figures
    from what `start()` recorded (`_admin`, `_start_seconds`, `_pid`, `listener_port`), the filter's log lines, the
    context manager."""

    what = "Envoy"
    _admin: Admin | None = None
    _start_seconds: float | None = None
    _pid: int | None = None

    def __init__(self, config: str, *, concurrency: int = 2, log_level: str = "info", wasm_log_level: str = "debug",
                 ready_timeout: float = READY_TIMEOUT_S, keep_workdir: bool | None = None):
        self.config = config
        self.concurrency = concurrency
        self.log_level = log_level
        self.wasm_log_level = wasm_log_level
        self.ready_timeout = ready_timeout
        self.keep_workdir = current().keep_workdir if keep_workdir is None else keep_workdir
        self.workdir: Path | None = None
        self.listener_port: int | None = None

    @property
    def listener_url(self) -> str:
        return f"http://127.0.0.1:{self.listener_port}"

    def remove_workdir(self) -> None:
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def logs(self) -> str:
        raise NotImplementedError

    @property
    def admin(self) -> Admin:
        if self._admin is None:
            raise not_started(self.what)
        return self._admin

    @property
    def start_seconds(self) -> float:
        if self._start_seconds is None:
            raise not_started(self.what)
        return self._start_seconds

    @property
    def pid(self) -> int:
        if self._pid is None:
            raise not_started(self.what)
        return self._pid

    def cpu_ns(self) -> int:
        return cpu_ns(self.pid)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def filter_logs(self) -> list[str]:
        return filter_log_lines(self.logs())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def filter_log_lines(logs: str) -> list[str]:
    """The lines the Wasm filter itself logged (Envoy's `wasm` component)."""
    return [line for line in logs.splitlines() if "][wasm]" in line]


def log_tail(logs: str) -> str:
    return tail(logs, LOG_TAIL_LINES)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll PREDICATE until true or TIMEOUT; the interval is a poll period, not a guess at readiness."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def wait_ready(*, what: str, timeout: float, exited: Callable[[], str | None], admin: Callable[[], Admin | None],
               logs: Callable[[], str], interval: float = 0.005, log_source: str = "") -> tuple[Admin, int]:
    """Wait until Envoy's admin answers /ready with LIVE and the listener exists; return the admin API and the
    port the listener is bound to (inside its network namespace).

    WHAT names it in errors ("Envoy", "the Envoy container"); EXITED says how it ended ("code 1") once it has;
    ADMIN gives its admin API once its address is known; LOGS reads its log, whose tail every error carries."""
    fix = "see Envoy's log below" + (f" ({log_source})" if log_source else "")
    found: list[Admin] = []
    ended: list[str] = []

    def ready() -> bool:
        if not found:
            api = admin()
            if api is not None:
                found.append(api)
        if found and found[0].is_ready():
            return True
        how = exited()
        if how is not None:
            ended.append(how)
            return True
        return False

    wait_until(ready, timeout, interval)
    if ended:
        text = logs()
        raise start_error(f"{what} exited during start-up ({ended[0]}): {envoy_reason(text)}", fix, text)
    if not found or not found[0].is_ready():
        raise start_error(f"{what} was not ready within {timeout:.0f}s", fix, logs())
    ports = found[0].listener_ports()
    if LISTENER not in ports:
        raise start_error(f"Envoy started without the '{LISTENER}' listener", "check the config", logs())
    return found[0], ports[LISTENER]


def start_error(problem: str, fix: str, logs: str) -> EnvoyStartError:
    return EnvoyStartError(problem, fix=fix, detail=log_tail(logs))


def not_started(what: str) -> EnvoyError:
    return EnvoyError(f"{what} is not running", fix="start it first (`with ... as envoy:` or `.start()`)")


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of PID so far, in ns (/proc/<pid>/task/*/schedstat, first field)."""
    total = 0
    try:
        tids = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tids:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
