"""The WASI preview1 functions Envoy provides, with its stubs (proxy-wasm-cpp-host src/exports.cc): fd_write to
stdout/stderr becomes an info/error log line (a trailing newline dropped), other fds EBADF; fd_read ENOSYS; fd_seek
and fd_close succeed doing nothing; fd_fdstat_get only for 1 and 2; environ from the VM's environment variables;
no args; clock_time_get only for the realtime clock (the test clock), others ENOTSUP; random_get from the OS;
proc_exit logs and returns; no preopened directories. Any other WASI import links a stub that traps when called,
as Envoy's does."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from wasmfilter.emulator.codes import WASI_EBADF, WASI_ENOSYS, WASI_ENOTSUP, WASI_SUCCESS, LogLevel

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost


def functions(host: FilterHost) -> dict[str, Callable[..., int | None]]:
    mem = host.memory

    def fd_write(fd: int, iovs: int, iovs_len: int, nwritten_ptr: int) -> int:
        if fd not in (1, 2):
            return WASI_EBADF
        chunks = []
        for i in range(iovs_len):
            buf, size = struct.unpack("<II", mem().read(iovs + 8 * i, 8))
            chunks.append(mem().read(buf, size))
        text = b"".join(chunks)
        if text:
            host.log(LogLevel.INFO if fd == 1 else LogLevel.ERROR,
                     text[:-1].decode("utf-8", "replace") if text.endswith(b"\n")
                     else text.decode("utf-8", "replace"))
        mem().write_u32(nwritten_ptr, len(text))
        return WASI_SUCCESS

    def fd_read(fd: int, iovs: int, iovs_len: int, nread_ptr: int) -> int:
        return WASI_ENOSYS

    def fd_seek(fd: int, offset: int, whence: int, new_offset_ptr: int) -> int:
        return WASI_SUCCESS

    def fd_close(fd: int) -> int:
        return WASI_SUCCESS

    def fd_fdstat_get(fd: int, stat_ptr: int) -> int:
        if fd not in (1, 2):
            return WASI_EBADF
        mem().write(stat_ptr, struct.pack("<QQQ", 0, 64, 0))
        return WASI_SUCCESS

    def environ_entries() -> list[bytes]:
        return [f"{k}={v}".encode() + b"\0" for k, v in host.plugin.environment.items()]

    def environ_get(environ_ptr: int, buf_ptr: int) -> int:
        for entry in environ_entries():
            mem().write_u32(environ_ptr, buf_ptr)
            mem().write(buf_ptr, entry)
            environ_ptr += 4
            buf_ptr += len(entry)
        return WASI_SUCCESS

    def environ_sizes_get(count_ptr: int, size_ptr: int) -> int:
        entries = environ_entries()
        mem().write_u32(count_ptr, len(entries))
        mem().write_u32(size_ptr, sum(len(e) for e in entries))
        return WASI_SUCCESS

    def args_get(argv_ptr: int, buf_ptr: int) -> int:
        return WASI_SUCCESS

    def args_sizes_get(argc_ptr: int, size_ptr: int) -> int:
        mem().write_u32(argc_ptr, 0)
        mem().write_u32(size_ptr, 0)
        return WASI_SUCCESS

    def clock_time_get(clock_id: int, precision: int, time_ptr: int) -> int:
        if clock_id != 0:
            return WASI_ENOTSUP
        mem().write_u64(time_ptr, host.clock.now_ns)
        return WASI_SUCCESS

    def random_get(buf_ptr: int, size: int) -> int:
        mem().write(buf_ptr, os.urandom(size))
        return WASI_SUCCESS

    def proc_exit(code: int) -> None:
        host.log(LogLevel.ERROR, f"wasi proc_exit({code})", internal=True)

    def fd_prestat_get(fd: int, prestat_ptr: int) -> int:
        return WASI_EBADF

    def fd_prestat_dir_name(fd: int, path_ptr: int, path_len: int) -> int:
        return WASI_ENOSYS

    def path_open(*args: int) -> int:
        return WASI_ENOSYS

    return {"fd_write": fd_write, "fd_read": fd_read, "fd_seek": fd_seek, "fd_close": fd_close,
            "fd_fdstat_get": fd_fdstat_get, "environ_get": environ_get, "environ_sizes_get": environ_sizes_get,
            "args_get": args_get, "args_sizes_get": args_sizes_get, "clock_time_get": clock_time_get,
            "random_get": random_get, "proc_exit": proc_exit, "fd_prestat_get": fd_prestat_get,
            "fd_prestat_dir_name": fd_prestat_dir_name, "path_open": path_open}
