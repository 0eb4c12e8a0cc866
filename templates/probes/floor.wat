;; The floor: the least an HTTP filter can be in Envoy's V8 (built by `wasmfilter bench` with wabt's wat2wasm).
;; It exports only what Envoy calls for a request (context create, request headers, done, delete), makes no host
;; call and lets every request continue. Whatever a real filter adds above this module is its own code and host
;; calls; what this module adds above Envoy without a filter is the price V8 and proxy-wasm charge per request.
(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  ;; A bump allocator: the host only allocates here while it hands over the plugin configuration.
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $at))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))
