"""Filter crashes in Envoy's log, for people: each panic or trap of a Wasm VM as one `Crash` — the filter's panic
message and where it panicked (the proxy-wasm SDK logs it at critical), the callback and trap proxy-wasm-cpp-host
reports, and its in-VM backtrace frames (offsets; names only when the module has a name section) — and the
readable report, symbolized and demangled with build/symbols.py instead of Envoy's raw frames."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from wasmfilter.build import symbols

_RECORD = re.compile(r"^\[(?P<ts>\d{4}-\d\d-\d\d [\d:.]+)\]\[(?P<tid>\d+)\]\[(?P<level>\w+)\]\[(?P<comp>\w+)\] "
                     r"\[[^\]]*\] (?P<text>.*)$")
_PANIC = re.compile(r"^wasm log (?P<who>.*?): panicked at (?P<where>.+?):?$")
_FAILED = re.compile(r"^Function: (?P<function>\S+) failed: (?P<trap>.*)$")
_FRAME = re.compile(r"^\s*(?P<index>\d+):\s+0x(?P<offset>[0-9a-f]+) - (?P<name>.*)$")
BACKTRACE_HEADER = "Proxy-Wasm plugin in-VM backtrace:"
# Frames of the panic machinery itself: folded in the report, the filter's own frames follow them.
_MACHINERY = ("__rust_start_panic", "rust_panic", "rust_begin_unwind", "__rust_abort", "__rustc::", "abort",
              "std::panicking::", "core::panicking::", "std::sys::", "std::sys_common::backtrace::", "std::rt::",
              "std::process::abort", "std::alloc::rust_oom", "core::result::unwrap_failed",
              "core::option::unwrap_failed", "core::option::expect_failed")


@dataclass
class Frame:
    index: int
    offset: int
    name: str | None = None


@dataclass
class Crash:
    time: str
    thread: str
    function: str = ""                 # the callback that failed, e.g. proxy_on_request_headers
    trap: str = ""                     # e.g. "Uncaught RuntimeError: unreachable"
    panic: list[str] = field(default_factory=list)  # the panic message (may span lines)
    panicked_at: str = ""              # file:line:col of the panic
    frames: list[Frame] = field(default_factory=list)


def _records(log: str) -> list[tuple[re.Match[str], list[str]]]:
    """Envoy's log as records: a header line and the lines that continue it (multi-line messages)."""
    out: list[tuple[re.Match[str], list[str]]] = []
    for line in log.splitlines():
        m = _RECORD.match(line)
        if m:
            out.append((m, []))
        elif out:
            out[-1][1].append(line)
    return out


def find_crashes(log: str) -> list[Crash]:
    """Every VM failure in LOG, oldest first; a panic message is joined to the failure on the same thread."""
    crashes: list[Crash] = []
    pending: dict[str, tuple[str, list[str]]] = {}  # thread -> (panicked at, message) not yet followed by a trap
    for head, rest in _records(log):
        if head["comp"] != "wasm":
            continue
        text = head["text"]
        panic = _PANIC.match(text)
        if panic:
            pending[head["tid"]] = (panic["where"], rest)
            continue
        failed = _FAILED.match(text)
        if not failed:
            continue
        where, message = pending.pop(head["tid"], ("", []))
        crash = Crash(head["ts"], head["tid"], failed["function"], failed["trap"], message, where)
        for line in rest:
            frame = _FRAME.match(line)
            if frame:
                name = frame["name"]
                crash.frames.append(Frame(int(frame["index"]), int(frame["offset"], 16),
                                          None if name.startswith("unknown(") else name))
        crashes.append(crash)
    return crashes


def _machinery(name: str) -> bool:
    return name.startswith(_MACHINERY)


def readable(crash: Crash, wasm: str | Path | None = None) -> list[str]:
    """CRASH as lines a person reads: what failed, the panic message and place, the filter's frames (innermost
    first) with demangled names and file:line from WASM's symbols, the panic machinery folded into one line."""
    lines = [f"filter crashed in {crash.function or 'a callback'} ({crash.trap}) at {crash.time}, worker thread "
             f"{crash.thread}"]
    if crash.panic or crash.panicked_at:
        lines.append(f"  panic: {' '.join(line.strip() for line in crash.panic) or '(no message)'}")
        if crash.panicked_at:
            lines.append(f"     at {crash.panicked_at}")
    if not crash.frames:
        lines.append("  no backtrace: the module has no name section (release builds strip it); rebuild with "
                     "`--debug-info` for function names and file:line")
        return lines
    module = symbols.read(wasm) if wasm is not None and Path(wasm).is_file() else None
    found = module.lookup([f.offset for f in crash.frames]) if module is not None else []
    named = symbols.demangle_all([f.name or "" for f in crash.frames])
    resolved = []
    for i, frame in enumerate(crash.frames):
        symbol = found[i] if i < len(found) else None
        name = named[i] if frame.name else (symbol.function if symbol else "?")
        resolved.append((frame, name, symbol.where() if symbol else ""))
    folded = 0
    while folded < len(resolved) - 1 and _machinery(resolved[folded][1]):
        folded += 1
    lines.append("  backtrace (innermost first):")
    if folded:
        lines.append(f"     ({folded} frames of Rust's panic machinery: {resolved[0][1]} … {resolved[folded - 1][1]})")
    for frame, name, where in resolved[folded:]:
        lines.append(f"    {frame.index:>3}: {name}" + (f"  {where}" if where else "") + f"  [0x{frame.offset:x}]")
    return lines


def summary(crash: Crash) -> str:
    """One line: the filter crashed, where, and its panic message."""
    message = " ".join(line.strip() for line in crash.panic) or crash.trap
    return f"the filter crashed in {crash.function}: {message}" + (f" (at {crash.panicked_at})"
                                                                   if crash.panicked_at else "")


def report(log: str, wasm: str | Path | None = None, *, since: int = 0) -> list[str]:
    """The readable report of every crash in LOG after the first SINCE ones (empty when there is none)."""
    out: list[str] = []
    for crash in find_crashes(log)[since:]:
        out += readable(crash, wasm)
    return out


def is_crash_line(line: str) -> bool:
    """A log line the readable report already says (the panic's first line, the trap)."""
    return ": panicked at " in line or bool(re.search(r"Function: \S+ failed: ", line))


def without_raw_frames(text: str) -> str:
    """TEXT (a log tail) without the raw backtrace lines the readable report replaces."""
    kept = [line for line in text.splitlines() if line.strip() != BACKTRACE_HEADER and not _FRAME.match(line)]
    return "\n".join(kept)
