//! The routing decision: first matching rule → cluster (fixed or split), path rewrite, headers to set.
use std::borrow::Cow;
use std::cell::Cell;

use crate::config::{NoKeyPolicy, RoutingConfig, SplitConfig, invalid};
use crate::matcher::Conditions;
use crate::request::RequestView;
use crate::split::{XorShift, bucket_of_key, bucket_of_ticket, pick};
use wasmfilter_common::ConfigError;
use wasmfilter_common::canonical_path::PathNormalization;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitKey {
    Header(String),
    Cookie(String),
    None,
}

#[derive(Debug)]
pub struct Split {
    pub key: SplitKey,
    pub clusters: Vec<String>,
    pub weights: Vec<u32>,
    pub no_key: NoKeyPolicy,
    /// Round-robin position for keyless requests (per VM, i.e. per Envoy worker).
    ticket: Cell<u64>,
}

#[derive(Debug)]
pub enum Destination {
    Cluster(String),
    Split(Split),
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub conditions: Conditions,
    pub destination: Destination,
    pub prefix_rewrite: Option<(String, String)>,
    pub set_headers: Vec<(String, String)>,
    /// A path regex's required literal prefix (`regex_prefix`): a path without it skips the rule's conditions.
    path_hint: Option<String>,
}

impl Rule {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        self.path_hint.as_deref().is_none_or(|hint| req.path().starts_with(hint)) && self.conditions.matches(req)
    }
}

#[derive(Debug)]
pub struct Router {
    pub cluster_header: String,
    pub default_cluster: Option<String>,
    pub clear_route_cache: bool,
    pub path_normalization: PathNormalization,
    pub rules: Vec<Rule>,
    rng: Cell<XorShift>,
}

/// How a split chose its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Fixed,
    /// By the hash of the user's key: sticky.
    Keyed,
    /// No key on the request: round robin or random.
    NoKey,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Routed<'r> {
    /// Index into `Router::rules`.
    pub rule: usize,
    pub cluster: &'r str,
    /// Index of the split target, when the rule splits.
    pub target: Option<usize>,
    pub choice: Choice,
    /// The rewritten `:path` (query string kept), when the rule rewrites.
    pub path: Option<String>,
    pub set_headers: &'r [(String, String)],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'r> {
    Rule(Routed<'r>),
    /// No rule matched: the configured default cluster, or none (the route table's default).
    Default(Option<&'r str>),
}

impl Split {
    fn build(config: &SplitConfig) -> Self {
        let key = match (&config.hash_header, &config.hash_cookie) {
            (Some(h), _) => SplitKey::Header(h.clone()),
            (None, Some(c)) => SplitKey::Cookie(c.clone()),
            (None, None) => SplitKey::None,
        };
        let (mut clusters, mut weights) = (Vec::new(), Vec::new());
        for target in &config.targets {
            clusters.push(target.cluster.clone());
            weights.push(target.weight);
        }
        Split { key, clusters, weights, no_key: config.no_key, ticket: Cell::new(0) }
    }

    fn key_of<'q>(&self, req: &RequestView<'q>) -> Option<Cow<'q, str>> {
        let value = match &self.key {
            SplitKey::Header(h) => req.header(h),
            SplitKey::Cookie(c) => req.cookie(c).map(Cow::Borrowed),
            SplitKey::None => None,
        };
        value.filter(|v| !v.is_empty())
    }
}

impl Router {
    /// Compiles a validated configuration. `seed` seeds the random choice for keyless requests.
    pub fn build(config: &RoutingConfig, seed: u64) -> Result<Self, ConfigError> {
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let conditions = Conditions::compile(&format!("rules[{i}].match"), &rule.matches)?;
            let destination = match (&rule.cluster, &rule.split) {
                (_, Some(split)) => Destination::Split(Split::build(split)),
                (Some(cluster), None) => Destination::Cluster(cluster.clone()),
                (None, None) => {
                    return Err(invalid(&format!("rules[{i}]"), "needs exactly one of `cluster` and `split`"));
                }
            };
            let prefix_rewrite = match (&rule.matches.path_prefix, &rule.prefix_rewrite) {
                (Some(prefix), Some(rewrite)) => Some((prefix.clone(), rewrite.clone())),
                _ => None,
            };
            // The path test is the prefix when both are set, else the regex (as `Conditions::compile` reads them).
            let path_hint = match (&rule.matches.path_prefix, &rule.matches.path_regex) {
                (None, Some(pattern)) => crate::regex_prefix::required_prefix(pattern),
                _ => None,
            };
            rules.push(Rule {
                name: rule.name.clone(),
                conditions,
                destination,
                prefix_rewrite,
                set_headers: rule.set_headers.as_slice().to_vec(),
                path_hint,
            });
        }
        Ok(Router {
            cluster_header: config.cluster_header.clone(),
            default_cluster: config.default_cluster.clone(),
            clear_route_cache: config.clear_route_cache,
            path_normalization: config.path_normalization,
            rules,
            rng: Cell::new(XorShift::new(seed)),
        })
    }

    pub fn decide(&self, req: &RequestView<'_>) -> Decision<'_> {
        let Some((index, rule)) = self.rules.iter().enumerate().find(|(_, r)| r.matches(req)) else {
            return Decision::Default(self.default_cluster.as_deref());
        };
        let (cluster, target, choice) = match &rule.destination {
            Destination::Cluster(c) => (c.as_str(), None, Choice::Fixed),
            Destination::Split(split) => {
                let (bucket, choice) = match split.key_of(req) {
                    Some(key) => (bucket_of_key(key.as_bytes()), Choice::Keyed),
                    None => (self.keyless_bucket(split), Choice::NoKey),
                };
                let t = pick(&split.weights, bucket);
                (split.clusters.get(t).map_or("", String::as_str), Some(t), choice)
            }
        };
        let path = rule.prefix_rewrite.as_ref().and_then(|(prefix, rewrite)| {
            let full = req.path();
            let rest = full.strip_prefix(prefix.as_str())?;
            let query = req.query_string();
            // One exact allocation, as `concat` made, without linking `join`'s generic copy (~0.5 KB of module).
            let mut path = String::with_capacity(rewrite.len() + rest.len() + 1 + query.len());
            path.push_str(rewrite);
            path.push_str(rest);
            if !query.is_empty() {
                path.push('?');
                path.push_str(query);
            }
            Some(path)
        });
        Decision::Rule(Routed { rule: index, cluster, target, choice, path, set_headers: &rule.set_headers })
    }

    fn keyless_bucket(&self, split: &Split) -> u32 {
        match split.no_key {
            NoKeyPolicy::RoundRobin => {
                let ticket = split.ticket.get();
                split.ticket.set(ticket.wrapping_add(1));
                bucket_of_ticket(ticket)
            }
            NoKeyPolicy::Random => {
                let mut rng = self.rng.get();
                let bucket = rng.bucket();
                self.rng.set(rng);
                bucket
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "clusters": ["stable", "canary", "legacy"],
        "rules": [
          {"name": "v2", "match": {"path_prefix": "/api/v2"}, "cluster": "canary", "prefix_rewrite": "/v2",
           "set_headers": {"x-route": "v2"}},
          {"name": "beta", "match": {"headers": [{"name": "x-beta", "exact": "1"}]}, "cluster": "canary"},
          {"name": "legacy", "match": {"path_regex": "/old/[0-9]+"}, "cluster": "legacy"},
          {"name": "users", "match": {"path_prefix": "/users"},
           "split": {"hash_header": "x-user-id", "targets": [{"cluster": "stable", "weight": 90}, {"cluster": "canary", "weight": 10}]}},
          {"name": "shop", "match": {"path_prefix": "/shop"},
           "split": {"hash_cookie": "uid", "no_key": "random", "targets": [{"cluster": "stable", "weight": 50}, {"cluster": "canary", "weight": 50}]}}
        ]}"#;

    fn router(json: &str) -> Router {
        Router::build(&RoutingConfig::parse(json.as_bytes()).unwrap(), 7).unwrap()
    }

    fn decide<'r>(r: &'r Router, path: &str, headers: &[(&str, &str)]) -> Decision<'r> {
        let h: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        r.decide(&RequestView::new(path, &h))
    }

    fn routed<'r>(d: Decision<'r>) -> Routed<'r> {
        match d {
            Decision::Rule(r) => r,
            Decision::Default(c) => panic!("expected a rule to match, got default {c:?}"),
        }
    }

    #[test]
    fn prefix_rule_rewrites_and_sets_headers() {
        let r = router(CONFIG);
        let d = routed(decide(&r, "/api/v2/users/7?x=1", &[]));
        assert_eq!((d.rule, d.cluster, d.choice), (0, "canary", Choice::Fixed));
        assert_eq!(d.path.as_deref(), Some("/v2/users/7?x=1"));
        assert_eq!(d.set_headers, &[("x-route".to_owned(), "v2".to_owned())]);
        assert_eq!(routed(decide(&r, "/api/v2", &[])).path.as_deref(), Some("/v2"));
    }

    #[test]
    fn first_matching_rule_wins() {
        let r = router(CONFIG);
        // Matches both `v2` and `beta`: `v2` comes first.
        assert_eq!(routed(decide(&r, "/api/v2/x", &[("x-beta", "1")])).rule, 0);
        let beta = routed(decide(&r, "/other", &[("x-beta", "1")]));
        assert_eq!((beta.rule, beta.cluster, beta.path), (1, "canary", None));
        assert_eq!(routed(decide(&r, "/old/12", &[])).cluster, "legacy");
    }

    #[test]
    fn no_match_is_the_default_route() {
        assert_eq!(decide(&router(CONFIG), "/old/12/x", &[]), Decision::Default(None));
        let with_default = router(r#"{"default_cluster": "stable"}"#);
        assert_eq!(decide(&with_default, "/", &[]), Decision::Default(Some("stable")));
    }

    #[test]
    fn keyed_split_is_sticky_and_follows_the_hash() {
        let r = router(CONFIG);
        for user in ["alice", "bob", "carol", "user-17"] {
            let first = routed(decide(&r, "/users", &[("x-user-id", user)]));
            assert_eq!(first.choice, Choice::Keyed);
            let expected = if bucket_of_key(user.as_bytes()) < 90 { "stable" } else { "canary" };
            assert_eq!(first.cluster, expected, "{user}");
            for _ in 0..5 {
                assert_eq!(routed(decide(&r, "/users/x", &[("x-user-id", user)])).cluster, first.cluster);
            }
        }
    }

    #[test]
    fn keyed_split_is_close_to_its_weights() {
        let r = router(CONFIG);
        let canary = (0..2000)
            .filter(|i| {
                let id = format!("user-{i}");
                routed(decide(&r, "/users", &[("x-user-id", id.as_str())])).cluster == "canary"
            })
            .count();
        // 2000 draws at p = 0.1: mean 200, sd 13.4; allow 4 sd.
        assert!((146..=254).contains(&canary), "{canary}");
    }

    #[test]
    fn keyless_round_robin_is_exact_per_100() {
        let r = router(CONFIG);
        let mut canary = 0;
        for _ in 0..100 {
            let d = routed(decide(&r, "/users", &[]));
            assert_eq!(d.choice, Choice::NoKey);
            canary += usize::from(d.cluster == "canary");
        }
        assert_eq!(canary, 10);
        // An empty key counts as no key.
        assert_eq!(routed(decide(&r, "/users", &[("x-user-id", "")])).choice, Choice::NoKey);
    }

    #[test]
    fn cookie_split_and_random_keyless() {
        let r = router(CONFIG);
        let d = routed(decide(&r, "/shop", &[("cookie", "uid=alice")]));
        assert_eq!(d.choice, Choice::Keyed);
        assert_eq!(d.target, Some(if bucket_of_key(b"alice") < 50 { 0 } else { 1 }));
        let stable = (0..1000).filter(|_| routed(decide(&r, "/shop", &[])).cluster == "stable").count();
        // p = 0.5, n = 1000: sd 15.8; allow 5 sd.
        assert!((421..=579).contains(&stable), "{stable}");
    }
}
