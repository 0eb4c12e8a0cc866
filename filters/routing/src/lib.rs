//! proxy-wasm layer: strips a client-sent cluster header, asks the plain-Rust router, applies its answer
//! (cluster header, path rewrite, extra headers), clears Envoy's route cache and counts.
pub mod config;
pub mod matcher;
pub mod regex_prefix;
pub mod request;
pub mod router;
pub mod split;
pub mod upstream_path;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::Cell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;
use wasmfilter_common::configured;
use wasmfilter_common::headers::HeaderBuffer;
use wasmfilter_common::metrics::{bump, counter};

use crate::config::RoutingConfig;
use crate::request::RequestView;
use crate::router::{Decision, Destination, Router};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(RoutingRoot { context_id, state: None })
    });
}}

const PREFIX: &str = "wasmfilter_routing";

/// Counter ids: per rule, per split target of each rule, default route, stripped client cluster headers.
#[derive(Default)]
struct Metrics {
    rules: Vec<u32>,
    targets: Vec<Vec<u32>>,
    default: u32,
    spoofed: u32,
    bad_path: u32,
}

impl Metrics {
    /// Plain loops (once per configuration): three nested `map(..).collect()` cost ~0.7 KB more module.
    fn define(router: &Router) -> Self {
        let (mut rules, mut targets) = (Vec::new(), Vec::new());
        for r in &router.rules {
            rules.push(counter(&format!("{PREFIX}.rule.{}", r.name)));
            let mut split = Vec::new();
            if let Destination::Split(s) = &r.destination {
                for c in &s.clusters {
                    split.push(counter(&format!("{PREFIX}.split.{}.{c}", r.name)));
                }
            }
            targets.push(split);
        }
        Metrics {
            rules,
            targets,
            default: counter(&format!("{PREFIX}.default")),
            spoofed: counter(&format!("{PREFIX}.spoofed_cluster_header")),
            bad_path: counter(&format!("{PREFIX}.bad_path")),
        }
    }
}

struct State {
    router: Router,
    /// `upstream_path::owned_headers(&router)`, computed once.
    owned_headers: Vec<String>,
    metrics: Metrics,
    /// Set once the `clear_route_cache` foreign function failed, so the warning is logged once per VM.
    clear_failed: Cell<bool>,
}

struct RoutingRoot {
    context_id: u32,
    state: Option<Rc<State>>,
}

impl Context for RoutingRoot {}

impl RootContext for RoutingRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let built = RoutingConfig::parse(&raw).and_then(|config| {
            let router = Router::build(&config, self.seed())?;
            Ok((config, router))
        });
        let Some((config, router)) = configured(built) else { return false };
        config.log_level.apply();
        log::info!("routing configured: {} rule(s), cluster header `{}`", router.rules.len(), router.cluster_header);
        let metrics = Metrics::define(&router);
        let owned_headers = upstream_path::owned_headers(&router).into_iter().map(str::to_owned).collect();
        self.state = Some(Rc::new(State { router, owned_headers, metrics, clear_failed: Cell::new(false) }));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let state = self.state.clone()?;
        Some(Box::new(RoutingRequest { state }))
    }
}

impl RoutingRoot {
    /// Seed for the random choice of keyless requests: the clock, mixed with this VM's root context id.
    fn seed(&self) -> u64 {
        let nanos = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
        nanos ^ (u64::from(self.context_id) << 32)
    }
}

struct RoutingRequest {
    state: Rc<State>,
}

impl Context for RoutingRequest {}

impl HttpContext for RoutingRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        wasmfilter_common::test_panic!(self);
        let state = Rc::clone(&self.state);
        let router = &state.router;
        let mut changed = false;

        let buffer = HeaderBuffer::request();
        let mut headers = buffer.pairs();
        // The path the rules see is the path the upstream gets; no header the filter owns comes from the client.
        let guarded = match upstream_path::guard(router, &state.owned_headers, &headers) {
            Ok(guarded) => guarded,
            Err(refusal) => {
                bump(state.metrics.bad_path);
                log::info!("refused path: {}", refusal.as_str());
                let json = [("content-type", "application/json"), ("cache-control", "no-store")];
                self.send_http_response(400, json.to_vec(), Some(br#"{"error":"bad request"}"#));
                return Action::Pause;
            }
        };
        for name in &guarded.remove {
            self.set_http_request_header(name, None);
        }
        headers.retain(|(k, _)| !guarded.remove.iter().any(|r| r == k));
        changed |= !guarded.remove.is_empty();
        if guarded.spoofed_cluster {
            // Never let a client pick the upstream by sending the header the route table reads.
            bump(state.metrics.spoofed);
            log::debug!("removed client-sent `{}` header", router.cluster_header);
        }
        let full_path = guarded.path.path;
        if guarded.path.rewritten {
            self.set_http_request_header(":path", Some(&full_path));
            changed = true;
        }

        match router.decide(&RequestView::new(&full_path, &headers)) {
            Decision::Rule(routed) => {
                let name = router.rules.get(routed.rule).map_or("?", |r| r.name.as_str());
                bump(state.metrics.rules.get(routed.rule).copied().unwrap_or(0));
                if let Some(t) = routed.target {
                    let id = state.metrics.targets.get(routed.rule).and_then(|ts| ts.get(t)).copied();
                    bump(id.unwrap_or(0));
                }
                self.set_http_request_header(&router.cluster_header, Some(routed.cluster));
                if let Some(path) = &routed.path {
                    self.set_http_request_header(":path", Some(path));
                }
                for (name, value) in routed.set_headers {
                    self.set_http_request_header(name, Some(value));
                }
                changed = true;
                log::debug!(
                    "rule `{name}` → cluster `{}` ({:?}){}",
                    routed.cluster,
                    routed.choice,
                    routed.path.as_deref().map(|p| format!(", path rewritten to {p}")).unwrap_or_default()
                );
            }
            Decision::Default(cluster) => {
                bump(state.metrics.default);
                if let Some(cluster) = cluster {
                    self.set_http_request_header(&router.cluster_header, Some(cluster));
                    changed = true;
                }
                log::debug!("no rule matched → {}", cluster.unwrap_or("the route table's default"));
            }
        }

        if changed && router.clear_route_cache && !state.clear_failed.get() {
            // proxy-wasm ABI 0.2.1 has no proxy_clear_route_cache; Envoy offers it as a foreign function.
            // Envoy 1.40 already recomputes the route after a Wasm request-header mutation (proven in
            // tests/test_routing_route_cache.py); the explicit call keeps hosts that do not correct.
            if let Err(status) = hostcalls::call_foreign_function("clear_route_cache", None) {
                state.clear_failed.set(true);
                log::warn!("clear_route_cache foreign function failed ({status:?}); relying on header mutation");
            }
        }
        Action::Continue
    }
}
