//! proxy-wasm layer: each request pauses while an HTTP callout asks the configured cluster; the answer's verdict
//! (verdict.rs) resumes the request or answers 403.
pub mod config;
pub mod verdict;

use log::info;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;
use wasmfilter_common::configured;
use wasmfilter_common::metrics::{bump, counter};

use crate::config::CalloutConfig;
use crate::verdict::{Verdict, verdict};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CalloutRoot::default()) });
}}

/// Counter ids of `callout.allowed` / `callout.forbidden` (`wasmcustom.callout.*` in Envoy).
#[derive(Clone, Copy, Default)]
struct Metrics {
    allowed: u32,
    forbidden: u32,
}

#[derive(Default)]
struct CalloutRoot {
    config: Option<Rc<CalloutConfig>>,
    metrics: Metrics,
}

impl Context for CalloutRoot {}

impl RootContext for CalloutRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let Some(config) = configured(CalloutConfig::parse(&raw)) else { return false };
        self.metrics = Metrics { allowed: counter("callout.allowed"), forbidden: counter("callout.forbidden") };
        self.config = Some(Rc::new(config));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(CalloutRequest { config, metrics: self.metrics }))
    }
}

struct CalloutRequest {
    config: Rc<CalloutConfig>,
    metrics: Metrics,
}

impl CalloutRequest {
    fn forbid(&self, why: &str) {
        info!("callout: access forbidden ({why})");
        bump(self.metrics.forbidden);
        self.send_http_response(403, vec![("powered-by", "proxy-wasm")], Some(b"Access forbidden.\n"));
    }
}

impl Context for CalloutRequest {
    fn on_http_call_response(&mut self, _token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        // No headers: the call failed (reset, timeout, no cluster) and Envoy reports it this way.
        let status = if num_headers == 0 { None } else { self.get_http_call_response_header(":status") };
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        match verdict(status.as_deref(), &body) {
            Verdict::Allow => {
                info!("callout: access granted");
                bump(self.metrics.allowed);
                self.resume_http_request();
            }
            Verdict::Forbid(why) => self.forbid(why),
        }
    }
}

impl HttpContext for CalloutRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let forwarded: Vec<(String, String)> = self
            .config
            .forward_headers
            .iter()
            .filter_map(|name| {
                let value = self.get_http_request_header_bytes(name)?;
                Some((name.clone(), wasmfilter_common::headers::text(value)))
            })
            .collect();
        let mut headers: Vec<(&str, &str)> =
            vec![(":method", "GET"), (":path", &self.config.path), (":authority", &self.config.cluster)];
        headers.extend(forwarded.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match self.dispatch_http_call(&self.config.cluster, headers, None, vec![], timeout) {
            Ok(_) => Action::Pause,
            Err(status) => {
                self.forbid(&format!("the callout could not be sent: {status:?}"));
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("powered-by", Some("proxy-wasm"));
        Action::Continue
    }
}
