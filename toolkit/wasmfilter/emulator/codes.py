"""The proxy-wasm 0.2.1 ABI's numbers, as proxy-wasm-cpp-host defines them (include/proxy-wasm/wasm_api_impl.h,
context_interface.h): results, header map and buffer types, actions, log levels, metric and stream types."""

from __future__ import annotations

from enum import IntEnum


class Result(IntEnum):
    """WasmResult: what every `env.proxy_*` host function returns."""
    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    BAD_EXPRESSION = 5
    INVALID_MEMORY_ACCESS = 6
    EMPTY = 7
    CAS_MISMATCH = 8
    RESULT_MISMATCH = 9
    INTERNAL_FAILURE = 10
    BROKEN_CONNECTION = 11
    UNIMPLEMENTED = 12


class MapType(IntEnum):
    REQUEST_HEADERS = 0
    REQUEST_TRAILERS = 1
    RESPONSE_HEADERS = 2
    RESPONSE_TRAILERS = 3
    GRPC_RECEIVE_INITIAL_METADATA = 4
    GRPC_RECEIVE_TRAILING_METADATA = 5
    HTTP_CALL_RESPONSE_HEADERS = 6
    HTTP_CALL_RESPONSE_TRAILERS = 7


class BufferType(IntEnum):
    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_RECEIVE_BUFFER = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7
    CALL_DATA = 8


class Action(IntEnum):
    """What an HTTP callback returns (FilterHeadersStatus / FilterDataStatus as the SDKs use them)."""
    CONTINUE = 0
    PAUSE = 1  # StopIteration (headers, trailers) / StopIterationAndBuffer (bodies)
    END_STREAM_OR_WATERMARK = 2
    STOP_ALL_BUFFER = 3
    STOP_ALL_WATERMARK = 4


class LogLevel(IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5


class MetricType(IntEnum):
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


class StreamType(IntEnum):
    REQUEST = 0
    RESPONSE = 1
    DOWNSTREAM = 2
    UPSTREAM = 3


# WASI errno values Envoy's stubs return.
WASI_SUCCESS = 0
WASI_EBADF = 8
WASI_EFAULT = 21
WASI_ENOSYS = 52
WASI_ENOTSUP = 58
