//! proxy-wasm layer: reads the request, asks the plain-Rust logic, acts on the answer.
pub mod apikey;
pub mod config;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::rc::Rc;

use crate::apikey::Decision;
use crate::config::AuthConfig;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthRoot::default()) });
}}

#[derive(Clone, Copy, Default)]
struct Metrics {
    allowed: u32,
    denied: u32,
}

impl Metrics {
    fn define() -> Self {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0);
        Metrics { allowed: counter("wasmfilter_auth.allowed"), denied: counter("wasmfilter_auth.denied") }
    }

    fn bump(id: u32) {
        if id != 0 {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

#[derive(Default)]
struct AuthRoot {
    config: Option<Rc<AuthConfig>>,
    metrics: Metrics,
}

impl Context for AuthRoot {}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match AuthConfig::parse(&raw) {
            Ok(config) => {
                proxy_wasm::set_log_level(to_host_level(config.log_level));
                self.metrics = Metrics::define();
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(AuthRequest { config, metrics: self.metrics }))
    }
}

fn to_host_level(level: config::LogLevel) -> LogLevel {
    match level {
        config::LogLevel::Trace => LogLevel::Trace,
        config::LogLevel::Debug => LogLevel::Debug,
        config::LogLevel::Info => LogLevel::Info,
        config::LogLevel::Warn => LogLevel::Warn,
        config::LogLevel::Error => LogLevel::Error,
    }
}

struct AuthRequest {
    config: Rc<AuthConfig>,
    metrics: Metrics,
}

impl Context for AuthRequest {}

impl AuthRequest {
    fn header_values(&self, name: &str) -> Vec<String> {
        self.get_http_request_headers()
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    fn deny(&self, status: u32, error: &str) -> Action {
        Metrics::bump(self.metrics.denied);
        let body = format!(r#"{{"error":"{error}"}}"#);
        let mut headers = vec![("content-type", "application/json")];
        if status == 401 {
            headers.push(("www-authenticate", r#"ApiKey realm="wasmfilter""#));
        }
        self.send_http_response(status, headers, Some(body.as_bytes()));
        Action::Pause
    }
}

impl HttpContext for AuthRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "test-panic")]
        #[allow(clippy::panic)]
        if self.get_http_request_header("x-wasmfilter-panic").is_some() {
            panic!("panic requested by x-wasmfilter-panic (test-panic build)");
        }
        // Never trust an identity the client sent itself.
        self.set_http_request_header(&self.config.identity_header, None);
        let presented = self.header_values(&self.config.key_header);
        match apikey::decide(&self.config, &presented) {
            Decision::Allow { identity } => {
                Metrics::bump(self.metrics.allowed);
                log::debug!("allowed identity {identity}");
                self.set_http_request_header(&self.config.identity_header, Some(&identity));
                Action::Continue
            }
            Decision::Missing => {
                log::info!("denied: no credential");
                self.deny(401, "missing credentials")
            }
            Decision::Invalid => {
                log::info!("denied: invalid credential");
                self.deny(403, "invalid credentials")
            }
        }
    }
}
