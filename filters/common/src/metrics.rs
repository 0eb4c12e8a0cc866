//! Counters. Envoy shows a counter defined as `NAME` as `wasmcustom.NAME`. Id 0 means "not defined" (the host
//! refused it): incrementing it does nothing.
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Defines counter NAME; 0 if the host refused to define it.
pub fn counter(name: &str) -> u32 {
    hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0)
}

/// Adds BY to counter ID (nothing for id 0 or BY 0; a host error is ignored: a lost count must not fail the request).
pub fn add(id: u32, by: u32) {
    if id != 0 && by != 0 {
        let _ = hostcalls::increment_metric(id, i64::from(by));
    }
}

/// Adds one to counter ID (nothing for id 0).
pub fn bump(id: u32) {
    add(id, 1);
}
