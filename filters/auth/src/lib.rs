//! proxy-wasm layer: reads the request, asks the plain-Rust logic (`policy`), acts on the answer.
pub mod apikey;
pub mod config;
pub mod jwt;
pub mod path;
pub mod policy;
pub mod rules;
pub mod upstream_path;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::UNIX_EPOCH;
use wasmfilter_common::configured;
use wasmfilter_common::header_spelling::spellings_to_remove;
use wasmfilter_common::metrics::{bump, counter};

use crate::policy::{Denial, Outcome, Policy, Reason, Request};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthRoot::default()) });
}}

/// Counter ids. Envoy shows them as `wasmcustom.wasmfilter_auth.<name>`.
#[derive(Default)]
struct Metrics {
    allowed: u32,
    public: u32,
    denied: u32,
    /// One per `Reason::ALL` entry, same order.
    reasons: Vec<u32>,
}

impl Metrics {
    fn define() -> Self {
        Metrics {
            allowed: counter("wasmfilter_auth.allowed"),
            public: counter("wasmfilter_auth.public"),
            denied: counter("wasmfilter_auth.denied"),
            reasons: Reason::ALL.iter().map(|r| counter(&format!("wasmfilter_auth.reason.{}", r.as_str()))).collect(),
        }
    }

    fn bump_reason(&self, reason: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            bump(self.reasons.get(i).copied().unwrap_or(0));
        }
    }
}

#[derive(Default)]
struct AuthRoot {
    policy: Option<Rc<Policy>>,
    metrics: Rc<Metrics>,
}

impl Context for AuthRoot {}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let Some(policy) = configured(Policy::parse(&raw)) else { return false };
        proxy_wasm::set_log_level(policy.config.log_level.to_host());
        self.metrics = Rc::new(Metrics::define());
        self.policy = Some(Rc::new(policy));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.clone()?;
        Some(Box::new(AuthRequest { policy, metrics: Rc::clone(&self.metrics) }))
    }
}

struct AuthRequest {
    policy: Rc<Policy>,
    metrics: Rc<Metrics>,
}

impl Context for AuthRequest {}

impl AuthRequest {
    fn now(&self) -> u64 {
        self.get_current_time().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    fn deny(&self, denial: &Denial) -> Action {
        bump(self.metrics.denied);
        self.metrics.bump_reason(denial.reason);
        let mut headers = vec![("content-type", "application/json"), ("cache-control", "no-store")];
        headers.extend(denial.challenges.iter().map(|c| ("www-authenticate", *c)));
        self.send_http_response(denial.status, headers, Some(denial.body().as_bytes()));
        Action::Pause
    }
}

impl HttpContext for AuthRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        wasmfilter_common::test_panic!(self);
        let headers = self.get_http_request_headers();
        // Never trust an identity or claim header the client sent itself, in any spelling a backend folds together.
        let owned = self.policy.owned_headers();
        for name in spellings_to_remove(headers.iter().map(|(k, _)| k.as_str()), &owned) {
            self.set_http_request_header(name, None);
        }
        let method = self.get_http_request_header(":method").unwrap_or_default();
        let raw_path = self.get_http_request_header(":path").unwrap_or_default();
        let request = Request { method: &method, path: &raw_path, headers: &headers };
        // The decision is made on the path the upstream gets (upstream_path).
        let checked = upstream_path::evaluate(&self.policy, &request, self.now());
        if let Some(refusal) = checked.refusal {
            log::info!("refused path of {method}: {}", refusal.as_str());
        }
        if let Some(path) = &checked.rewrite {
            self.set_http_request_header(":path", Some(path));
        }
        match checked.outcome {
            Outcome::Allow { public, identity, headers } => {
                if public {
                    bump(self.metrics.public);
                    log::debug!("allowed {method} on a public route");
                } else {
                    bump(self.metrics.allowed);
                    log::debug!("allowed {method} as {}", identity.as_deref().unwrap_or("(no identity claim)"));
                }
                for (name, value) in &headers {
                    self.set_http_request_header(name, Some(value));
                }
                Action::Continue
            }
            Outcome::Deny(denial) => {
                // The reason goes to the log and the counters, never to the client; no credential is logged.
                log::info!("denied {method} with {}: {}", denial.status, denial.reason.as_str());
                self.deny(&denial)
            }
        }
    }
}
