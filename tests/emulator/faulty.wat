;; A proxy-wasm module whose request-headers callback misbehaves on purpose, chosen by the request's header count
;; (Envoy's connection manager passes 7 for a bodiless request — :authority :path :method :scheme x-forwarded-for
;; x-forwarded-proto x-request-id — plus the client's): 8 → loops forever, 9 → allocates without bound (memory.grow
;; until refused, then aborts like Rust's allocator), 10 → calls env.proxy_grpc_stream (Envoy has it, the emulator
;; does not), anything else continues.
(module
  (import "env" "proxy_grpc_stream" (func $grpc_stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "malloc") (param $size i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32) (param $n i32) (param i32) (result i32)
    (if (i32.eq (local.get $n) (i32.const 8)) (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $n) (i32.const 9))
      (then
        (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 256)) (i32.const -1))))
        (unreachable)))
    (if (i32.eq (local.get $n) (i32.const 10))
      (then (drop (call $grpc_stream (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                                     (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))))
    (i32.const 0)))
