//! proxy-wasm layer: reads the configuration once, sets one response header on every response.
pub mod config;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use wasmfilter_common::configured;
use wasmfilter_common::metrics::{bump, counter};

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
        Metrics { responses: counter("wasmfilter_blank.responses") }
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
        let Some(config) = configured(BlankConfig::parse(&raw)) else { return false };
        self.metrics = Metrics::define();
        self.config = Some(Rc::new(config));
        true
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
        wasmfilter_common::test_panic!(self);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Replace, never append: an upstream copy of the header must not survive next to ours.
        self.set_http_response_header(&self.config.header, Some(&self.config.value));
        bump(self.metrics.responses);
        Action::Continue
    }
}
