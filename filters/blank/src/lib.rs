//! proxy-wasm layer: reads the configuration once, sets one response header on every response.
pub mod config;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::rc::Rc;

use crate::config::BlankConfig;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BlankRoot::default()) });
}}

/// Counter id of `wasmfilter_blank.responses` (Envoy shows it as `wasmcustom.wasmfilter_blank.responses`); 0 if
/// the host refused to define it.
#[derive(Clone, Copy, Default)]
struct Metrics {
    responses: u32,
}

impl Metrics {
    fn define() -> Self {
        Metrics { responses: hostcalls::define_metric(MetricType::Counter, "wasmfilter_blank.responses").unwrap_or(0) }
    }

    fn bump(id: u32) {
        if id != 0 {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

#[derive(Default)]
struct BlankRoot {
    config: Option<Rc<BlankConfig>>,
    metrics: Metrics,
}

impl Context for BlankRoot {}

impl RootContext for BlankRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match BlankConfig::parse(&raw) {
            Ok(config) => {
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
        Some(Box::new(BlankRequest { config, metrics: self.metrics }))
    }
}

struct BlankRequest {
    config: Rc<BlankConfig>,
    metrics: Metrics,
}

impl Context for BlankRequest {}

impl HttpContext for BlankRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "test-panic")]
        #[allow(clippy::panic)]
        if self.get_http_request_header("x-wasmfilter-panic").is_some() {
            panic!("panic requested by x-wasmfilter-panic (test-panic build)");
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Replace, never append: an upstream copy of the header must not survive next to ours.
        self.set_http_response_header(&self.config.header, Some(&self.config.value));
        Metrics::bump(self.metrics.responses);
        Action::Continue
    }
}
