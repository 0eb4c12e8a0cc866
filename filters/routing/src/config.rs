//! Plugin configuration: the JSON Envoy passes in `configuration`, parsed strictly and validated.
//! Regexes are compiled later, by `router::Router::build`, which reports a bad one by its field path.
use std::fmt::Display;

use serde::Deserialize;
use wasmfilter_common::canonical_path::PathNormalization;
use wasmfilter_common::json::StringMap;
use wasmfilter_common::{ConfigError, check_header_name};

/// The filter's name, which starts every configuration error.
const FILTER: &str = "routing";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Request header the route table reads the cluster name from (`cluster_header` in Envoy's route).
    /// Any copy the client sent is removed before the rules run.
    #[serde(default = "default_cluster_header")]
    pub cluster_header: String,
    /// Upstream clusters that exist. When non-empty, every cluster a rule names must be one of them.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// Cluster for requests no rule matches. Unset: the cluster header stays absent and the route
    /// table's default route applies.
    pub default_cluster: Option<String>,
    /// Tried in order; the first rule whose every condition holds decides.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Ask Envoy to recompute the route after the filter changed routing inputs (see README).
    #[serde(default = "yes")]
    pub clear_route_cache: bool,
    #[serde(default)]
    pub log_level: LogLevel,
    /// What a path a backend may read differently gets: 400 (`reject_ambiguous`, default) or the canonical path,
    /// matched and forwarded (`forward_canonical`); see `upstream_path`.
    #[serde(default)]
    pub path_normalization: PathNormalization,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Lower-case letters, digits, `_` and `-`; names the rule's counters.
    pub name: String,
    #[serde(default, rename = "match")]
    pub matches: MatchConfig,
    /// Send matching requests to this cluster. Exactly one of `cluster` and `split`.
    pub cluster: Option<String>,
    /// Split matching requests between clusters by weight.
    pub split: Option<SplitConfig>,
    /// Replace the matched `match.path_prefix` with this value (the query string is kept).
    pub prefix_rewrite: Option<String>,
    /// Request headers set (replaced) on matching requests.
    #[serde(default)]
    pub set_headers: StringMap,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The path (without query string) starts with this string.
    pub path_prefix: Option<String>,
    /// The whole path (without query string) matches this regex.
    pub path_regex: Option<String>,
    #[serde(default)]
    pub headers: Vec<ValueMatchConfig>,
    #[serde(default)]
    pub cookies: Vec<ValueMatchConfig>,
    #[serde(default)]
    pub query: Vec<ValueMatchConfig>,
}

/// One named value (header, cookie or query parameter) and how it must look: exactly one of
/// `exact`, `prefix`, `regex`, `present`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatchConfig {
    pub name: String,
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
    /// true: the value must be there (any value); false: it must be absent.
    pub present: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Header whose value keeps a user on one side of the split. At most one of `hash_header`, `hash_cookie`.
    pub hash_header: Option<String>,
    /// Cookie whose value keeps a user on one side of the split.
    pub hash_cookie: Option<String>,
    /// Weights are integers summing to 100.
    pub targets: Vec<TargetConfig>,
    /// How requests without the key (or when no key is configured) are spread.
    #[serde(default)]
    pub no_key: NoKeyPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub cluster: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoKeyPolicy {
    /// Weighted round robin per worker: every 100 consecutive keyless requests split exactly by weight.
    #[default]
    RoundRobin,
    /// An independent pseudo-random draw per request.
    Random,
}

/// `log_level`: lower-case names, `info` when absent (shared by every filter).
pub use wasmfilter_common::LogLevel;

fn default_cluster_header() -> String {
    "x-wasmfilter-cluster".to_owned()
}

fn yes() -> bool {
    true
}

/// A validation error: ``invalid routing configuration: field `FIELD` PROBLEM``.
pub(crate) fn invalid(field: &str, problem: impl Display) -> ConfigError {
    ConfigError::field(FILTER, field, problem)
}

fn is_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

/// Cluster names travel in a header value and in stat names: visible ASCII, no spaces.
fn is_cluster_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic())
}

/// A header value we may set: visible ASCII and inner spaces/tabs only.
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
}

impl RoutingConfig {
    /// Parses and validates; the error names the offending field.
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        let config: RoutingConfig = wasmfilter_common::json::from_slice(raw).map_err(|e| ConfigError::parse(FILTER, e))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_header_name(FILTER, "cluster_header", &self.cluster_header)?;
        for (i, cluster) in self.clusters.iter().enumerate() {
            // The name check of `check_cluster` (a listed cluster is known to itself): one copy of the message.
            self.check_cluster(&format!("clusters[{i}]"), cluster)?;
        }
        if let Some(cluster) = &self.default_cluster {
            self.check_cluster("default_cluster", cluster)?;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            if !is_rule_name(&rule.name) {
                return Err(invalid(
                    &format!("{at}.name"),
                    format!("must be 1-64 of [a-z0-9_-], got `{}`", rule.name),
                ));
            }
            // Pairwise (a handful of rules, once per configuration): a BTreeSet<&str> cost 4.5 KB of module.
            if self.rules.iter().take(i).any(|earlier| earlier.name == rule.name) {
                return Err(invalid(&format!("{at}.name"), format!("repeats the rule name `{}`", rule.name)));
            }
            self.validate_rule(&at, rule)?;
        }
        Ok(())
    }

    fn validate_rule(&self, at: &str, rule: &RuleConfig) -> Result<(), ConfigError> {
        let m = &rule.matches;
        if let Some(prefix) = &m.path_prefix {
            if !prefix.starts_with('/') {
                return Err(invalid(&format!("{at}.match.path_prefix"), format!("must start with `/`, got `{prefix}`")));
            }
        }
        if m.path_prefix.is_some() && m.path_regex.is_some() {
            return Err(invalid(&format!("{at}.match"), "may have `path_prefix` or `path_regex`, not both"));
        }
        for (kind, list) in [("headers", &m.headers), ("cookies", &m.cookies), ("query", &m.query)] {
            for (j, vm) in list.iter().enumerate() {
                validate_value_match(&format!("{at}.match.{kind}[{j}]"), kind, vm)?;
            }
        }
        match (&rule.cluster, &rule.split) {
            (Some(cluster), None) => self.check_cluster(&format!("{at}.cluster"), cluster)?,
            (None, Some(split)) => self.validate_split(&format!("{at}.split"), split)?,
            _ => return Err(invalid(at, "needs exactly one of `cluster` and `split`")),
        }
        if let Some(rewrite) = &rule.prefix_rewrite {
            if m.path_prefix.is_none() {
                return Err(invalid(&format!("{at}.prefix_rewrite"), "needs `match.path_prefix` (the part it replaces)"));
            }
            if !rewrite.starts_with('/') || !rewrite.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    &format!("{at}.prefix_rewrite"),
                    format!("must start with `/` and hold no spaces or control characters, got `{rewrite}`"),
                ));
            }
        }
        for (name, value) in &rule.set_headers {
            let field = format!("{at}.set_headers.{name}");
            check_header_name(FILTER, &field, name)?;
            if *name == self.cluster_header {
                return Err(invalid(&field, "sets the cluster header: use `cluster` or `split`"));
            }
            if !is_header_value(value) {
                return Err(invalid(&field, "holds control characters"));
            }
        }
        Ok(())
    }

    fn validate_split(&self, at: &str, split: &SplitConfig) -> Result<(), ConfigError> {
        if split.hash_header.is_some() && split.hash_cookie.is_some() {
            return Err(invalid(at, "may have `hash_header` or `hash_cookie`, not both"));
        }
        if let Some(header) = &split.hash_header {
            check_header_name(FILTER, &format!("{at}.hash_header"), header)?;
        }
        if let Some(cookie) = &split.hash_cookie {
            if cookie.is_empty() {
                return Err(invalid(&format!("{at}.hash_cookie"), "must not be empty"));
            }
        }
        if split.targets.is_empty() {
            return Err(invalid(&format!("{at}.targets"), "must not be empty"));
        }
        let mut total: u64 = 0;
        for (j, target) in split.targets.iter().enumerate() {
            self.check_cluster(&format!("{at}.targets[{j}].cluster"), &target.cluster)?;
            total += u64::from(target.weight);
        }
        if total != 100 {
            return Err(invalid(&format!("{at}.targets"), format!("weights must sum to 100, they sum to {total}")));
        }
        Ok(())
    }

    fn check_cluster(&self, field: &str, cluster: &str) -> Result<(), ConfigError> {
        if !is_cluster_name(cluster) {
            return Err(invalid(field, format!("is not a valid cluster name: `{cluster}`")));
        }
        if !self.clusters.is_empty() && !self.clusters.iter().any(|c| c == cluster) {
            // A loop, not `join`: str::join's generic copy costs ~1 KB of module for this one message.
            let mut known = String::new();
            for (i, c) in self.clusters.iter().enumerate() {
                if i > 0 {
                    known.push_str(", ");
                }
                known.push_str(c);
            }
            return Err(invalid(field, format!("names unknown cluster `{cluster}` (known: {known})")));
        }
        Ok(())
    }
}

fn validate_value_match(at: &str, kind: &str, vm: &ValueMatchConfig) -> Result<(), ConfigError> {
    if kind == "headers" {
        check_header_name(FILTER, &format!("{at}.name"), &vm.name)?;
    } else if vm.name.is_empty() {
        return Err(invalid(&format!("{at}.name"), "must be a non-empty name, got ``"));
    }
    let set = [vm.exact.is_some(), vm.prefix.is_some(), vm.regex.is_some(), vm.present.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(invalid(at, "needs exactly one of `exact`, `prefix`, `regex`, `present`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RoutingConfig, ConfigError> {
        RoutingConfig::parse(json.as_bytes())
    }

    fn err(json: &str) -> String {
        parse(json).unwrap_err().message().to_owned()
    }

    #[test]
    fn empty_object_is_a_pass_through_router() {
        let config = parse("{}").unwrap();
        assert_eq!(config.cluster_header, "x-wasmfilter-cluster");
        assert!(config.rules.is_empty());
        assert!(config.clear_route_cache);
        assert_eq!(config.log_level, LogLevel::Info);
    }

    #[test]
    fn parses_a_full_config() {
        let config = parse(
            r#"{"clusters": ["stable", "canary"], "default_cluster": "stable", "log_level": "debug",
                "rules": [
                  {"name": "v2", "match": {"path_prefix": "/api/v2", "headers": [{"name": "x-beta", "exact": "1"}],
                   "cookies": [{"name": "tier", "prefix": "gold"}], "query": [{"name": "c", "present": true}]},
                   "cluster": "canary", "prefix_rewrite": "/v2", "set_headers": {"x-route": "v2"}},
                  {"name": "users", "split": {"hash_header": "x-user-id", "no_key": "random",
                   "targets": [{"cluster": "stable", "weight": 90}, {"cluster": "canary", "weight": 10}]}}
                ]}"#,
        )
        .unwrap();
        assert_eq!(config.rules.len(), 2);
        assert_eq!(config.rules[0].prefix_rewrite.as_deref(), Some("/v2"));
        assert_eq!(config.rules[1].split.as_ref().unwrap().no_key, NoKeyPolicy::Random);
    }

    #[test]
    fn rejects_unknown_fields_by_name() {
        assert!(err(r#"{"rulez": []}"#).contains("unknown field `rulez`"));
        assert!(err(r#"{"rules": [{"name": "a", "cluster": "x", "match": {"paht": "/"}}]}"#).contains("unknown field `paht`"));
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "match": {"paht": "/"}}]}"#);
        assert!(e.starts_with("invalid routing configuration: field `rules[0].match.paht`: unknown field `paht`"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "set_headers": {"x-a": "1", "x-a": "2"}}]}"#);
        assert_eq!(e, "invalid routing configuration: field `rules[0].set_headers`: duplicate field `x-a`");
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x"}"#);
        assert_eq!(e, "invalid routing configuration: field `rules`: EOF while parsing a list at line 1 column 40");
    }

    #[test]
    fn rule_names_are_unique() {
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x"}, {"name": "b", "cluster": "x"}, {"name": "a", "cluster": "y"}]}"#);
        assert_eq!(e, "invalid routing configuration: field `rules[2].name` repeats the rule name `a`");
    }

    #[test]
    fn weights_must_sum_to_100() {
        let e = err(r#"{"rules": [{"name": "s", "split": {"targets": [{"cluster": "a", "weight": 90}, {"cluster": "b", "weight": 20}]}}]}"#);
        assert!(e.contains("field `rules[0].split.targets`") && e.contains("sum to 110"), "{e}");
    }

    #[test]
    fn unknown_cluster_is_named() {
        let e = err(r#"{"clusters": ["stable"], "rules": [{"name": "a", "cluster": "canary"}]}"#);
        assert!(e.contains("field `rules[0].cluster`") && e.contains("unknown cluster `canary`"), "{e}");
        let e = err(r#"{"clusters": ["stable"], "default_cluster": "nope"}"#);
        assert!(e.contains("field `default_cluster`"), "{e}");
    }

    #[test]
    fn rule_needs_exactly_one_destination() {
        assert!(err(r#"{"rules": [{"name": "a"}]}"#).contains("field `rules[0]` needs exactly one of `cluster` and `split`"));
        let both = r#"{"rules": [{"name": "a", "cluster": "x", "split": {"targets": [{"cluster": "x", "weight": 100}]}}]}"#;
        assert!(err(both).contains("exactly one of"));
    }

    #[test]
    fn value_match_needs_exactly_one_operator() {
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "match": {"headers": [{"name": "x-a", "exact": "1", "prefix": "1"}]}}]}"#);
        assert!(e.contains("field `rules[0].match.headers[0]`"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "match": {"query": [{"name": "q"}]}}]}"#);
        assert!(e.contains("field `rules[0].match.query[0]`"), "{e}");
    }

    #[test]
    fn header_names_must_be_lower_case() {
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "match": {"headers": [{"name": "X-Beta", "present": true}]}}]}"#);
        assert!(e.contains("field `rules[0].match.headers[0].name`"), "{e}");
        assert!(err(r#"{"cluster_header": ":authority"}"#).contains("field `cluster_header`"));
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "set_headers": {"X-Route": "v2"}}]}"#);
        assert_eq!(
            e,
            "invalid routing configuration: field `rules[0].set_headers.X-Route` must be a lower-case header name, \
             got `X-Route`"
        );
        let e = err(r#"{"rules": [{"name": "s", "split": {"hash_header": "x user", "targets": [{"cluster": "a", "weight": 100}]}}]}"#);
        assert!(e.contains("field `rules[0].split.hash_header` must be a lower-case header name, got `x user`"), "{e}");
        // The one rule: every RFC 9110 token character, in lower case.
        assert!(parse(r#"{"cluster_header": "x-cluster~v1", "rules": [{"name": "a", "cluster": "x", "set_headers": {"x-a!b": "1"}}]}"#).is_ok());
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "match": {"cookies": [{"name": "", "present": true}]}}]}"#);
        assert!(e.contains("field `rules[0].match.cookies[0].name` must be a non-empty name"), "{e}");
    }

    #[test]
    fn rule_names_are_unique_and_stat_safe() {
        assert!(err(r#"{"rules": [{"name": "A b", "cluster": "x"}]}"#).contains("field `rules[0].name`"));
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x"}, {"name": "a", "cluster": "y"}]}"#);
        assert!(e.contains("field `rules[1].name` repeats"), "{e}");
    }

    #[test]
    fn prefix_rewrite_needs_a_path_prefix() {
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "prefix_rewrite": "/v2"}]}"#);
        assert!(e.contains("field `rules[0].prefix_rewrite` needs `match.path_prefix`"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "match": {"path_prefix": "/a"}, "prefix_rewrite": "v2"}]}"#);
        assert!(e.contains("must start with `/`"), "{e}");
    }

    #[test]
    fn path_prefix_and_regex_are_exclusive() {
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "match": {"path_prefix": "/a", "path_regex": "/a"}}]}"#);
        assert!(e.contains("field `rules[0].match`"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "match": {"path_prefix": "a"}}]}"#);
        assert!(e.contains("field `rules[0].match.path_prefix`"), "{e}");
    }

    #[test]
    fn set_headers_cannot_set_the_cluster_header() {
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "set_headers": {"x-wasmfilter-cluster": "y"}}]}"#);
        assert!(e.contains("field `rules[0].set_headers.x-wasmfilter-cluster`"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "cluster": "x", "set_headers": {"x-a": "b\nc"}}]}"#);
        assert!(e.contains("control characters"), "{e}");
    }

    #[test]
    fn split_key_is_a_header_or_a_cookie() {
        let e = err(r#"{"rules": [{"name": "s", "split": {"hash_header": "x-u", "hash_cookie": "u", "targets": [{"cluster": "a", "weight": 100}]}}]}"#);
        assert!(e.contains("field `rules[0].split`"), "{e}");
        let e = err(r#"{"rules": [{"name": "s", "split": {"targets": []}}]}"#);
        assert!(e.contains("field `rules[0].split.targets` must not be empty"), "{e}");
    }

    #[test]
    fn bad_no_key_policy_is_named() {
        let e = err(r#"{"rules": [{"name": "s", "split": {"no_key": "sticky", "targets": [{"cluster": "a", "weight": 100}]}}]}"#);
        assert!(e.contains("unknown variant `sticky`"), "{e}");
    }
}
