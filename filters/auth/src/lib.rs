//! proxy-wasm layer: reads the request, asks the plain-Rust logic (`policy`), acts on the answer.
pub mod apikey;
pub mod config;
pub mod host_crypto;
pub mod jwt;
pub mod jwt_cache;
pub mod jwks_remote;
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
use wasmfilter_common::headers::{HeaderBuffer, first, names};
use wasmfilter_common::metrics::{bump, counter};

use crate::config::RemoteJwksConfig;
use crate::jwks_remote::{Fetch, Schedule};
use crate::jwt::SignatureHost;
use std::time::Duration;
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

/// RS256/ES256 through Envoy's `verify_signature` foreign function (see `host_crypto`).
struct EnvoySignatures;

impl SignatureHost for EnvoySignatures {
    fn verify(&self, key: &host_crypto::HostKey, signature: &[u8], text: &[u8]) -> bool {
        let args = key.arguments(signature, text);
        matches!(proxy_wasm::hostcalls::call_foreign_function(host_crypto::FUNCTION, Some(&args)),
                 Ok(Some(answer)) if host_crypto::verified(&answer))
    }
}

/// Envoy's verify_signature when this Envoy has it and it passes the self-test, else None (in-module code).
fn envoy_signatures() -> Option<Box<dyn SignatureHost>> {
    let call = |args: &[u8]| proxy_wasm::hostcalls::call_foreign_function(host_crypto::FUNCTION, Some(args)).ok().flatten();
    host_crypto::self_test(call).then(|| Box::new(EnvoySignatures) as Box<dyn SignatureHost>)
}

#[derive(Default)]
struct AuthRoot {
    policy: Option<Rc<Policy>>,
    metrics: Rc<Metrics>,
    /// The remote JWKS (`jwt.remote_jwks`): its settings and when to fetch it (see `jwks_remote`).
    jwks: Option<(RemoteJwksConfig, Schedule)>,
    jwks_counters: (u32, u32),
}

impl AuthRoot {
    fn now(&self) -> u64 {
        self.get_current_time().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// Sends the JWKS request when it is due.
    fn fetch_jwks(&mut self) {
        let now = self.now();
        let Some((remote, schedule)) = &self.jwks else { return };
        if schedule.next(now) != Fetch::Now {
            return;
        }
        let authority = remote.authority.as_deref().unwrap_or(&remote.cluster);
        let headers = vec![(":method", "GET"), (":path", remote.path.as_str()), (":authority", authority),
                           ("accept", "application/json")];
        let sent = self.dispatch_http_call(&remote.cluster, headers, None, vec![],
                                           Duration::from_millis(remote.timeout_ms));
        if let Some((remote, schedule)) = &mut self.jwks {
            match sent {
                Ok(_) => schedule.sent(),
                Err(status) => {
                    log::warn!("remote JWKS: cannot call cluster `{}` ({status:?}); retrying", remote.cluster);
                    bump(self.jwks_counters.1);
                    schedule.not_sent(now);
                }
            }
        }
    }
}

impl Context for AuthRoot {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let now = self.now();
        let status = self.get_http_call_response_header(":status");
        let (Some((remote, _)), Some(policy)) = (&self.jwks, &self.policy) else { return };
        let result = jwks_remote::check_answer(remote, status.as_deref(), body_size).and_then(|()| {
            let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
            policy.replace_keys(&body)
        });
        let ok = match result {
            Ok((count, skipped)) => {
                log::info!("remote JWKS: {count} keys from `{}`", remote.cluster);
                for reason in skipped {
                    log::warn!("remote JWKS: skipped {reason}");
                }
                bump(self.jwks_counters.0);
                true
            }
            Err(reason) => {
                // Stale-while-error: the last good key set (or none: fail closed) stays in use.
                log::warn!("remote JWKS from `{}` not used: {reason}; keeping {} keys", remote.cluster,
                           policy.key_count());
                bump(self.jwks_counters.1);
                false
            }
        };
        if let Some((_, schedule)) = &mut self.jwks {
            schedule.answered(ok, now);
        }
    }
}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let Some(mut policy) = configured(Policy::parse(&raw)) else { return false };
        policy.config.log_level.apply();
        let Some(backend) = configured(policy.choose_backend(envoy_signatures)) else { return false };
        log::info!("JWT signatures: {backend}");
        self.metrics = Rc::new(Metrics::define());
        self.jwks = policy.config.jwt.as_ref().and_then(|j| j.remote_jwks.clone()).map(|r| {
            let schedule = Schedule::new(&r);
            (r, schedule)
        });
        self.policy = Some(Rc::new(policy));
        if self.jwks.is_some() {
            self.jwks_counters = (counter("wasmfilter_auth.jwks.fetched"), counter("wasmfilter_auth.jwks.fetch_failed"));
            self.set_tick_period(Duration::from_secs(1));
            self.fetch_jwks();
        }
        true
    }

    fn on_tick(&mut self) {
        self.fetch_jwks();
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
        // One host call for the whole map, read in place; :method and :path are in it (no second fetch).
        let buffer = HeaderBuffer::request();
        let headers = buffer.pairs();
        // Never trust an identity or claim header the client sent itself, in any spelling a backend folds together
        // (only headers that are present are removed: a removal costs a host call).
        for name in spellings_to_remove(names(&headers), self.policy.owned_headers()) {
            self.set_http_request_header(name, None);
        }
        let (method, raw_path) = (first(&headers, ":method"), first(&headers, ":path"));
        let request = Request { method, path: raw_path, headers: &headers };
        // The clock only when a token may be checked (API keys and rules need no time).
        let now = if self.policy.config.jwt.is_some() { self.now() } else { 0 };
        // The decision is made on the path the upstream gets (upstream_path).
        let checked = upstream_path::evaluate(&self.policy, &request, now);
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
                // Formatted only when Envoy logs Wasm at info (`LogLevel::apply`).
                log::info!("denied {method} with {}: {}", denial.status, denial.reason.as_str());
                self.deny(&denial)
            }
        }
    }
}
