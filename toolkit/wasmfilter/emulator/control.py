"""Host functions that steer a stream or the host: `send_local_response` (Envoy sends it once the callback returns
and stops the iteration), `continue_stream` / `close_stream`, `set_effective_context`, `done`, `get_status`,
foreign functions (`clear_route_cache` here, `verify_signature` in foreign.py; the others Envoy 1.40 has are named
in the error), and the ABI 0.1.0 spellings (`continue_request`, `continue_response`, `clear_route_cache`,
`get_configuration`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wasmfilter.emulator.buffers import Buffer
from wasmfilter.emulator.codes import BufferType, LogLevel, Result, StreamType
from wasmfilter.emulator.memory import decode_pairs

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost

# Foreign functions present in Envoy 1.40 (docs/emulator.md); clear_route_cache and verify_signature are emulated.
ENVOY_FOREIGN_FUNCTIONS = ("clear_route_cache", "declare_property", "set_envoy_filter_state", "verify_signature")


@dataclass
class LocalReply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    details: str = ""
    grpc_status: int = -1


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory

    def send_local_response(status: int, details_ptr: int, details_size: int, body_ptr: int, body_size: int,
                            headers_ptr: int, headers_size: int, grpc_status: int) -> int:
        details = mem().read(details_ptr, details_size).decode("utf-8", "replace")
        body = mem().read(body_ptr, body_size)
        pairs = [(k.decode("utf-8", "replace").lower(), v.decode("utf-8", "replace"))
                 for k, v in decode_pairs(mem().read(headers_ptr, headers_size))]
        stream = host.context().stream
        if stream is None:
            return Result.BAD_ARGUMENT
        stream.local_reply = LocalReply(status, pairs, body, details, grpc_status if grpc_status < 2**31 else -1)
        return Result.OK

    def continue_stream(kind: int) -> int:
        if kind > max(StreamType):
            return Result.BAD_ARGUMENT
        stream = host.context().stream
        if stream is None or kind > StreamType.RESPONSE:
            return Result.BAD_ARGUMENT
        stream.continue_requested(StreamType(kind))
        return Result.OK

    def close_stream(kind: int) -> int:
        if kind > max(StreamType):
            return Result.BAD_ARGUMENT
        stream = host.context().stream
        if stream is None:
            return Result.BAD_ARGUMENT
        stream.reset = True
        return Result.OK

    def set_effective_context(context_id: int) -> int:
        worker = host.context().worker
        if context_id not in worker.contexts:
            return Result.BAD_ARGUMENT
        worker.effective = context_id
        return Result.OK

    def done() -> int:
        return Result.NOT_FOUND  # cpp-host: no pending onDone for this context

    def get_status(code_ptr: int, ptr_ptr: int, size_ptr: int) -> int:
        callout = host.context().root().callout
        code = callout.answer.grpc_status if callout is not None and callout.answer is not None else 0
        message = callout.answer.body if callout is not None and callout.answer is not None and code else b""
        mem().write_u32(code_ptr, code)
        mem().give(message, ptr_ptr, size_ptr)
        return Result.OK

    def call_foreign_function(name_ptr: int, name_size: int, args_ptr: int, args_size: int, results_ptr: int,
                              results_size_ptr: int) -> int:
        name = mem().read(name_ptr, name_size).decode("utf-8", "replace")
        args = mem().read(args_ptr, args_size)
        func = host.foreign.get(name)
        if func is None:
            if name in ENVOY_FOREIGN_FUNCTIONS:
                host.log(LogLevel.WARN, f"foreign function '{name}' exists in Envoy 1.40 but the emulator does not "
                         "emulate it: NotFound", internal=True)
            return Result.NOT_FOUND
        status, result = func(host, args)
        if results_ptr:
            mem().give(result, results_ptr, results_size_ptr)
        elif results_size_ptr:
            mem().write_u32(results_size_ptr, len(result))
        return status

    def clear_route_cache() -> int:
        stream = host.context().stream
        if stream is not None:
            stream.route_cache_cleared += 1
        return Result.OK

    def get_configuration(ptr_ptr: int, size_ptr: int) -> int:
        buf = host.context().buffer(BufferType.PLUGIN_CONFIGURATION) or Buffer(b"")
        mem().give(bytes(buf), ptr_ptr, size_ptr)
        return Result.OK

    return {"proxy_send_local_response": send_local_response, "proxy_continue_stream": continue_stream,
            "proxy_close_stream": close_stream, "proxy_set_effective_context": set_effective_context,
            "proxy_done": done, "proxy_get_status": get_status, "proxy_call_foreign_function": call_foreign_function,
            "proxy_continue_request": lambda: continue_stream(StreamType.REQUEST),
            "proxy_continue_response": lambda: continue_stream(StreamType.RESPONSE),
            "proxy_clear_route_cache": clear_route_cache, "proxy_get_configuration": get_configuration}


def clear_route_cache(host: FilterHost, args: bytes) -> tuple[Result, bytes]:
    """Envoy's `clear_route_cache` foreign function: the route is computed again for this request."""
    stream = host.context().stream
    if stream is not None:
        stream.route_cache_cleared += 1
    return Result.OK, b""
