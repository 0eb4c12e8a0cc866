"""The emulator stage: a proxy-wasm 0.2.1 host written in Python on wasmtime, with Envoy's semantics (context ids,
the HTTP lifecycle in Envoy's order, header maps, buffers, properties, metrics, shared data, queues, ticks, callouts
answered from a script, failure policies), a clock the test moves, and the scenario backend `emulator` built on it.

`FilterHost.load(wasm, config=...)` is the entry point (host.py); `docs/emulator.md` has one example per feature."""
