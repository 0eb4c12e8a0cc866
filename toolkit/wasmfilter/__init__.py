"""wasmfilter: build, test, benchmark and ship Envoy proxy-Wasm filters written in Rust."""

from wasmfilter.errors import WasmfilterError

__version__ = "0.1.0"
__all__ = ["WasmfilterError", "__version__"]
