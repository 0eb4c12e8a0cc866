"""The build stage: from a filter's Rust crate to a `.wasm` Envoy can load. It finds a toolchain that can build
wasm32-wasip1 (a sysroot with the target, or Debian's rustc building std itself), runs cargo (one artifact per
feature set), runs the size build (`--opt`: size flags, the callback exports filter.yaml declares never received
removed, and wasm-opt), runs the host unit tests and clippy, and checks the module's ABI against what Envoy's
proxy-wasm host provides."""
