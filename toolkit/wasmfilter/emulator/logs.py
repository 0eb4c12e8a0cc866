"""Logs: `proxy_log` by level (a level above critical is BadArgument; lines below the host's level are dropped, as
Envoy drops lines below its `wasm` logger's level) and `proxy_get_log_level`; each line keeps its context id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wasmfilter.emulator.codes import LogLevel, Result

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost


@dataclass(frozen=True)
class LogLine:
    level: LogLevel
    message: str
    context_id: int
    worker: int

    def __str__(self) -> str:
        return f"[{self.level.name.lower()}] [ctx {self.context_id}] {self.message}"


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory

    def log(level: int, ptr: int, size: int) -> int:
        if level > LogLevel.CRITICAL:
            return Result.BAD_ARGUMENT
        host.log(LogLevel(level), mem().read(ptr, size).decode("utf-8", "replace"))
        return Result.OK

    def get_log_level(level_ptr: int) -> int:
        mem().write_u32(level_ptr, host.log_level)
        return Result.OK

    return {"proxy_log": log, "proxy_get_log_level": get_log_level}
