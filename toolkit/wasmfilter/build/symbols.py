"""Symbols of a built module, for crash reports: which function holds a code offset (the code section's bodies),
its name (the module's `name` section, parsed here), demangled (Rust legacy `_ZN…E` here; v0 `_R…` through
llvm-cxxfilt when installed), and file:line from DWARF line tables (`wasmfilter build --debug-info`) through
llvm-addr2line."""

from __future__ import annotations

import bisect
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from wasmfilter.varint import read as _leb

CODE_SECTION, IMPORT_SECTION, CUSTOM_SECTION = 10, 2, 0
ADDR2LINE = ("llvm-addr2line", "llvm-addr2line-22", "llvm-symbolizer-22")
CXXFILT = ("llvm-cxxfilt", "llvm-cxxfilt-22")
_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")", "C": ","}


@dataclass(frozen=True)
class Symbol:
    offset: int
    function: str            # demangled; `func[N]` when the module has no name for it
    file: str | None = None
    line: int | None = None

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file and self.line else ""


@dataclass
class ModuleSymbols:
    """One module's function bodies (module offsets), names by function index, and whether it has DWARF."""
    path: Path
    body_starts: list[int] = field(default_factory=list)
    imported_functions: int = 0
    names: dict[int, str] = field(default_factory=dict)
    code_payload_start: int = 0
    has_dwarf: bool = False

    def function_index(self, offset: int) -> int | None:
        i = bisect.bisect_right(self.body_starts, offset) - 1
        return None if i < 0 else self.imported_functions + i

    def lookup(self, offsets: list[int]) -> list[Symbol]:
        """The symbol of each module offset (file:line in one llvm-addr2line call when the module has DWARF)."""
        lines = _addr2line(self.path, [o - self.code_payload_start for o in offsets]) if self.has_dwarf else []
        indices = [self.function_index(offset) for offset in offsets]
        raw = [self.names.get(i, f"func[{i}]") if i is not None else "?" for i in indices]
        out = []
        for i, (offset, name) in enumerate(zip(offsets, demangle_all(raw))):
            file, line = lines[i] if i < len(lines) else (None, None)
            out.append(Symbol(offset, name, file, line))
        return out


def _name(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = _leb(data, pos)
    return data[pos:pos + size].decode("utf-8", "replace"), pos + size


def read(path: str | Path) -> ModuleSymbols:
    """The symbols of the module at PATH (a module that is not Wasm gives no bodies and no names)."""
    data = Path(path).read_bytes()
    out = ModuleSymbols(Path(path))
    if data[:4] != b"\0asm":
        return out
    pos = 8
    while pos < len(data):
        section = data[pos]
        size, start = _leb(data, pos + 1)
        end = start + size
        if section == IMPORT_SECTION:
            out.imported_functions = _count_function_imports(data, start)
        elif section == CODE_SECTION:
            out.code_payload_start = start
            count, p = _leb(data, start)
            for _ in range(count):
                out.body_starts.append(p)
                body, p = _leb(data, p)
                p += body
        elif section == CUSTOM_SECTION:
            name, p = _name(data, start)
            if name == "name":
                out.names = _function_names(data, p, end)
            elif name.startswith(".debug_line"):
                out.has_dwarf = True
        pos = end
    return out


def _count_function_imports(data: bytes, pos: int) -> int:
    count, pos = _leb(data, pos)
    functions = 0
    for _ in range(count):
        _, pos = _name(data, pos)
        _, pos = _name(data, pos)
        kind = data[pos]
        pos += 1
        if kind == 0:    # function: type index
            functions += 1
            _, pos = _leb(data, pos)
        elif kind == 1:  # table: reftype, limits
            pos = _limits(data, pos + 1)
        elif kind == 2:  # memory: limits
            pos = _limits(data, pos)
        else:            # global: valtype, mutability
            pos += 2
    return functions


def _limits(data: bytes, pos: int) -> int:
    flags = data[pos]
    _, pos = _leb(data, pos + 1)
    if flags & 1:
        _, pos = _leb(data, pos)
    return pos


def _function_names(data: bytes, pos: int, end: int) -> dict[int, str]:
    names: dict[int, str] = {}
    while pos < end:
        kind = data[pos]
        size, p = _leb(data, pos + 1)
        if kind == 1:  # function names: a vector of (index, name)
            count, q = _leb(data, p)
            for _ in range(count):
                index, q = _leb(data, q)
                names[index], q = _name(data, q)
        pos = p + size
    return names


def demangle(name: str) -> str:
    """Rust's legacy mangling (`_ZN4core6result13unwrap_failed17h…E` → `core::result::unwrap_failed`) in Python;
    v0 (`_R…`) through llvm-cxxfilt when it is installed; anything else as it is."""
    if name.startswith("_R"):
        return _cxxfilt([name])[0]
    m = re.fullmatch(r"_?_ZN(.*)E(\.llvm\.\d+)?", name)
    if not m:
        return name
    rest, parts = m.group(1), []
    while rest:
        num = re.match(r"\d+", rest)
        if not num:
            return name
        size = int(num.group())
        ident, rest = rest[num.end():num.end() + size], rest[num.end() + size:]
        parts.append(ident)
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    return "::".join(_unescape(p) for p in parts)


def demangle_all(names: list[str]) -> list[str]:
    """`demangle` for many names, with one llvm-cxxfilt run for all v0 names."""
    v0 = [n for n in names if n.startswith("_R")]
    done = dict(zip(v0, _cxxfilt(v0))) if v0 else {}
    return [done.get(n) or demangle(n) for n in names]


def _unescape(ident: str) -> str:
    if ident.startswith("_$"):
        ident = ident[1:]
    ident = ident.replace("..", "::")

    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code in _ESCAPES:
            return _ESCAPES[code]
        if code.startswith("u"):
            try:
                return chr(int(code[1:], 16))
            except ValueError:
                return m.group(0)
        return m.group(0)

    return re.sub(r"\$([A-Za-z0-9]+)\$", one, ident)


def _tool(names: tuple[str, ...]) -> str | None:
    return next((p for p in (shutil.which(n) for n in names) if p), None)


def _cxxfilt(names: list[str]) -> list[str]:
    tool = _tool(CXXFILT)
    if tool is None:
        return names
    out = subprocess.run([tool, *names], capture_output=True, text=True, timeout=30)
    lines = out.stdout.splitlines() if out.returncode == 0 else []
    return lines if len(lines) == len(names) else names


def _addr2line(path: Path, addresses: list[int]) -> list[tuple[str | None, int | None]]:
    """file:line of each code-section-relative address from the module's DWARF ((None, None) where unknown)."""
    tool = _tool(ADDR2LINE)
    if tool is None or not addresses:
        return []
    out = subprocess.run([tool, "-e", str(path), *(hex(max(a, 0)) for a in addresses)], capture_output=True,
                         text=True, timeout=60)
    found: list[tuple[str | None, int | None]] = []
    for text in out.stdout.splitlines() if out.returncode == 0 else []:
        file, _, line = text.strip().rpartition(":")
        line = line.split()[0] if line else ""
        found.append((file, int(line)) if file and not file.startswith("??") and line.isdigit() and int(line) > 0
                     else (None, None))
    return found


def symbolize(path: str | Path, offsets: list[int]) -> list[Symbol]:
    return read(path).lookup(offsets)
