//! What the wasmfilter filters share: the JSON reader (configuration and JWT parsing), the configuration error type
//! and header-name rule, header maps as text, the `log_level` configuration setting, counters, the test-panic trigger.
//!
//! A plain rlib that each filter crate depends on by path; `wasmfilter new` vendors it into every generated project
//! as `common/`, so it must stay standalone (no workspace inheritance in its Cargo.toml).
pub mod canonical_path;
pub mod config_error;
pub mod header_name;
pub mod header_spelling;
pub mod headers;
pub mod json;
pub mod log_level;
pub mod metrics;

pub use config_error::ConfigError;
pub use header_name::{check_header_name, is_header_name};
pub use log_level::LogLevel;

/// `on_configure`'s error path: a configuration that does not parse (or build) is logged as one error line (Envoy
/// refuses the configuration with it) and gives `None`, so the caller returns false.
pub fn configured<T, E: core::fmt::Display>(parsed: Result<T, E>) -> Option<T> {
    match parsed {
        Ok(value) => Some(value),
        Err(e) => {
            log::error!("{e}");
            None
        }
    }
}

/// Request header that makes a `test-panic` build of a filter panic (see [`test_panic!`]).
pub const PANIC_HEADER: &str = "x-wasmfilter-panic";

/// The test-only panic trigger: in an `HttpContext` method, `wasmfilter_common::test_panic!(self);` panics when the
/// request carries `x-wasmfilter-panic`, so scenarios can prove the failure policy. The `#[cfg]` is expanded in the
/// calling crate: it is compiled only when *that* crate's `test-panic` cargo feature is on (never in release artifacts).
/// The calling scope must have `proxy_wasm::traits::HttpContext` in scope.
#[macro_export]
macro_rules! test_panic {
    ($ctx:expr) => {
        #[cfg(feature = "test-panic")]
        #[allow(clippy::panic)]
        {
            if $ctx.get_http_request_header($crate::PANIC_HEADER).is_some() {
                panic!("panic requested by x-wasmfilter-panic (test-panic build)");
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::configured;

    #[test]
    fn configured_keeps_the_value_and_turns_an_error_into_none() {
        assert_eq!(configured::<u32, String>(Ok(7)), Some(7));
        assert_eq!(configured::<u32, String>(Err("field `x`: bad".to_owned())), None);
    }
}
