//! proxy-wasm layer: reads the request, asks the plain-Rust logic, acts on the answer.
//! Bucket state lives in proxy-wasm shared data, so every Envoy worker thread sees the same buckets.
pub mod bucket;
pub mod config;
pub mod limiter;
pub mod matcher;
pub mod store;
pub mod table;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use wasmfilter_common::configured;
use wasmfilter_common::headers::HeaderBuffer;
use wasmfilter_common::metrics::{add, counter};

use crate::config::{RateLimitConfig, Rule};
use crate::limiter::{Decision, Limits, Namespace, Via};
use crate::matcher::RequestView;
use crate::store::{SetError, SharedStore};
use crate::table::Layout;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(RateLimitRoot::default()) });
}}

/// The host's shared data.
#[cfg_attr(feature = "test-local-buckets", allow(dead_code))]
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((value, Some(cas))) => Some((value.unwrap_or_default(), cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(_) => Err(SetError::Other),
        }
    }
}

/// Per-VM buckets: the wrong design, compiled only into the negative-control test build.
#[cfg(feature = "test-local-buckets")]
struct LocalStore;

#[cfg(feature = "test-local-buckets")]
impl SharedStore for LocalStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        LOCAL.with(|m| m.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], _cas: Option<u32>) -> Result<(), SetError> {
        LOCAL.with(|m| {
            let mut m = m.borrow_mut();
            let version = m.get(key).map_or(1, |(_, v)| v.wrapping_add(1));
            m.insert(key.to_owned(), (value.to_vec(), version));
        });
        Ok(())
    }
}

#[cfg(feature = "test-local-buckets")]
thread_local! {
    static LOCAL: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>> = Default::default();
}

#[cfg(feature = "test-local-buckets")]
fn store() -> &'static dyn SharedStore {
    &LocalStore
}

#[cfg(not(feature = "test-local-buckets"))]
fn store() -> &'static dyn SharedStore {
    &HostStore
}

/// Host clock (proxy_get_current_time_nanoseconds), the only time source; the logic takes it as a number.
fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[derive(Clone, Copy, Default)]
struct RuleMetrics {
    allowed: u32,
    limited: u32,
    shadow_limited: u32,
}

#[derive(Clone, Default)]
struct Metrics {
    allowed: u32,
    limited: u32,
    shadow_limited: u32,
    overflow: u32,
    cas_conflicts: u32,
    cas_exhausted: u32,
    swept: u32,
    /// Same order as `RateLimitConfig::all_rules`.
    rules: Vec<RuleMetrics>,
}

impl Metrics {
    fn define(config: &RateLimitConfig) -> Self {
        let m = |n: &str| counter(&format!("wasmfilter_ratelimit.{n}"));
        Metrics {
            allowed: m("allowed"),
            limited: m("limited"),
            shadow_limited: m("shadow_limited"),
            overflow: m("overflow"),
            cas_conflicts: m("cas_conflicts"),
            cas_exhausted: m("cas_exhausted"),
            swept: m("swept"),
            rules: config
                .all_rules()
                .map(|r| RuleMetrics {
                    allowed: m(&format!("rule.{}.allowed", r.name)),
                    limited: m(&format!("rule.{}.limited", r.name)),
                    shadow_limited: m(&format!("rule.{}.shadow_limited", r.name)),
                })
                .collect(),
        }
    }
}

/// Everything a request needs, built once per configuration.
struct Plugin {
    config: RateLimitConfig,
    ns: Namespace,
    limits: Limits,
    metrics: Metrics,
    /// Only then is the `source.address` property fetched.
    needs_client_address: bool,
}

#[derive(Default)]
struct RateLimitRoot {
    plugin: Option<Rc<Plugin>>,
    sweep_cursor: u32,
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let Some(config) = configured(RateLimitConfig::parse(&raw)) else { return false };
        config.log_level.apply();
        let ns = Namespace::new(&config.domain);
        let limits = Limits {
            layout: Layout { max_keys: config.max_keys },
            idle_ns: u64::from(config.idle_timeout_ms).saturating_mul(1_000_000),
            max_attempts: config.max_cas_retries,
            on_key_limit: config.on_key_limit,
            on_exhausted: config.on_cas_exhausted,
        };
        let created = limiter::prepare(store(), &ns, &limits.layout, config.all_rules().map(|r| r.name.as_str()));
        log::debug!(
            "ratelimit configured: {} rules, {} key groups ({} created)",
            config.all_rules().count(),
            limits.layout.groups(),
            created
        );
        self.set_tick_period(Duration::from_millis(u64::from(config.sweep_interval_ms)));
        // Workers start their sweeps at different places, so together they cover the table sooner.
        self.sweep_cursor = u32::try_from(now_ns() % u64::from(limits.layout.groups())).unwrap_or(0);
        let metrics = Metrics::define(&config);
        let needs_client_address =
            config.all_rules().any(|r| r.key.iter().any(|k| matches!(k, config::KeyPart::ClientAddress)));
        self.plugin = Some(Rc::new(Plugin { config, ns, limits, metrics, needs_client_address }));
        true
    }

    fn on_tick(&mut self) {
        let Some(p) = &self.plugin else { return };
        let swept = limiter::sweep(store(), &p.ns, &p.limits, self.sweep_cursor, p.config.sweep_batch, now_ns());
        self.sweep_cursor = swept.next;
        add(p.metrics.swept, swept.removed);
        if swept.removed > 0 {
            log::debug!("swept {} idle keys", swept.removed);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let plugin = self.plugin.clone()?;
        Some(Box::new(RateLimitRequest { plugin, answer: None }))
    }
}

/// What the response needs to carry for an admitted request.
struct Answer {
    decision: Decision,
    shadow_limited: bool,
}

struct RateLimitRequest {
    plugin: Rc<Plugin>,
    answer: Option<Answer>,
}

impl Context for RateLimitRequest {}

impl RateLimitRequest {
    /// The request as the rules see it, borrowed from BUFFER (the request header map, one host call).
    fn view<'b>(&self, buffer: &'b HeaderBuffer) -> RequestView<'b> {
        let mut view = RequestView::default();
        let mut headers = buffer.pairs();
        headers.retain(|(name, value)| match name.as_ref() {
            ":method" => {
                view.method = value.clone();
                false
            }
            ":path" => {
                view.path = value.clone();
                false
            }
            _ => true,
        });
        view.headers = headers;
        if !self.plugin.needs_client_address {
            return view;
        }
        view.source_address = self.get_property(vec!["source", "address"]).and_then(|b| String::from_utf8(b).ok());
        view
    }

    fn limit(&self, rule: &Rule, rule_index: usize, decision: &Decision) -> Action {
        let p = &self.plugin;
        add(p.metrics.limited, 1);
        add(p.metrics.rules.get(rule_index).map_or(0, |m| m.limited), 1);
        log::debug!("rate limited by rule {} (retry after {} ms)", rule.name, decision.retry_after_ns / 1_000_000);
        let headers = decision.headers();
        let mut pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pairs.push(("content-type", "application/json"));
        let body = [r#"{"error":"rate limited","rule":""#, rule.name.as_str(), r#""}"#].concat();
        self.send_http_response(429, pairs, Some(body.as_bytes()));
        Action::Pause
    }
}

impl HttpContext for RateLimitRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        wasmfilter_common::test_panic!(self);
        let plugin = Rc::clone(&self.plugin);
        let buffer = HeaderBuffer::request();
        let view = self.view(&buffer);
        let Some(rule) = matcher::select(&plugin.config, &view) else { return Action::Continue };
        let rule_index = plugin.config.all_rules().position(|r| std::ptr::eq(r, rule)).unwrap_or(usize::MAX);
        let key = matcher::key_for(rule, &view);
        let decision = limiter::check(store(), &plugin.ns, &plugin.limits, &rule.name, &rule.bucket(), &key, now_ns());
        let m = &plugin.metrics;
        add(m.cas_conflicts, decision.conflicts);
        match decision.via {
            Via::Exhausted => {
                add(m.cas_exhausted, 1);
                log::warn!(
                    "rule {}: shared bucket contended past max_cas_retries; on_cas_exhausted decided",
                    rule.name
                );
            }
            Via::Overflow | Via::KeyLimit => add(m.overflow, 1),
            Via::Key => {}
        }
        let rule_metrics = m.rules.get(rule_index).copied().unwrap_or_default();
        if decision.allowed {
            add(m.allowed, 1);
            add(rule_metrics.allowed, 1);
            log::debug!("allowed by rule {} ({} left)", rule.name, decision.remaining);
            self.answer = Some(Answer { decision, shadow_limited: false });
            return Action::Continue;
        }
        if rule.shadow.unwrap_or(plugin.config.shadow_mode) {
            add(m.shadow_limited, 1);
            add(rule_metrics.shadow_limited, 1);
            log::info!("shadow mode: rule {} would limit this request; letting it through", rule.name);
            self.answer = Some(Answer { decision, shadow_limited: true });
            return Action::Continue;
        }
        self.limit(rule, rule_index, &decision)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(answer) = &self.answer else { return Action::Continue };
        if self.plugin.config.response_headers {
            for (name, value) in answer.decision.headers() {
                if name != "retry-after" {
                    self.set_http_response_header(name, Some(&value));
                }
            }
        }
        if answer.shadow_limited {
            self.set_http_response_header(&self.plugin.config.shadow_header, Some("limited"));
        }
        Action::Continue
    }
}
