"""Child processes the toolkit starts (Envoy, the registry, the bench's helpers): the executable found on PATH or a
one-line error saying what needs it and how to install it; each dies with the Python process that started it, and
each is stopped the same way."""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess

from wasmfilter.errors import ToolchainError, WasmfilterError

_PR_SET_PDEATHSIG = 1


def require(name: str, problem: str, fix: str, error: type[WasmfilterError] = ToolchainError) -> str:
    """The path of executable NAME on PATH; ERROR(PROBLEM, fix=FIX) when it is not there."""
    found = shutil.which(name)
    if not found:
        raise error(problem, fix=fix)
    return found


def die_with_parent() -> None:
    """`preexec_fn` for Popen: the kernel sends the child SIGTERM when its parent dies, even by SIGKILL, so
    nothing is left running. SIGTERM, not SIGKILL: Envoy then exits cleanly and frees its shared memory."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if PROC has not exited within TIMEOUT; waits for it either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
