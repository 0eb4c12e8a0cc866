//! Plugin configuration: the JSON Envoy passes in `configuration`, read with serde into typed structs (unknown
//! fields are errors) and then validated. Every error names the offending field by its full path, e.g.
//! `field `rules[0].rate` must be ...` (the common JSON reader tracks the path through the derived deserializers).
use std::fmt::Display;

use crate::bucket::Bucket;
use serde::Deserialize;
use wasmfilter_common::{ConfigError, check_header_name};

/// The filter's name, which starts every configuration error.
const FILTER: &str = "ratelimit";

/// Upper bound on `rate` (per unit); keeps the emission interval at least 1 ns for `second`.
pub const MAX_RATE: u32 = 1_000_000;
/// Upper bound on `max_keys`: bounded shared memory (each tracked key costs well under 200 bytes).
pub const MAX_KEYS: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Namespace of the shared-data entries; filters with the same `vm_id` and `domain` share buckets.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Tried in order; the first rule whose `match` holds charges the request.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Applies when no rule matched (it must not have a `match`). Without it such requests are not limited.
    pub default_rule: Option<Rule>,
    /// Cap on tracked keys across all rules and workers.
    #[serde(default = "default_max_keys")]
    pub max_keys: u32,
    /// What a new key gets when the table is full (see README).
    #[serde(default)]
    pub on_key_limit: KeyLimitPolicy,
    /// A key whose bucket is full again and unused for this long is forgotten.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u32,
    /// How often each worker sweeps idle keys, and how many key groups one sweep visits.
    #[serde(default = "default_sweep_interval_ms")]
    pub sweep_interval_ms: u32,
    #[serde(default = "default_sweep_batch")]
    pub sweep_batch: u32,
    /// Compare-and-swap attempts on the shared bucket state before `on_cas_exhausted` decides.
    #[serde(default = "default_max_cas_retries")]
    pub max_cas_retries: u32,
    #[serde(default)]
    pub on_cas_exhausted: ExhaustedPolicy,
    /// Count and report, never block (per rule `shadow` overrides it).
    #[serde(default)]
    pub shadow_mode: bool,
    #[serde(default = "default_shadow_header")]
    pub shadow_header: String,
    /// Send ratelimit-limit / ratelimit-remaining / ratelimit-reset on allowed responses too.
    #[serde(default = "yes")]
    pub response_headers: bool,
    #[serde(default)]
    pub log_level: LogLevel,
}

fn default_domain() -> String {
    "default".to_owned()
}
fn default_max_keys() -> u32 {
    10_000
}
fn default_idle_timeout_ms() -> u32 {
    60_000
}
fn default_sweep_interval_ms() -> u32 {
    1_000
}
fn default_sweep_batch() -> u32 {
    128
}
fn default_max_cas_retries() -> u32 {
    64
}
fn default_shadow_header() -> String {
    "x-ratelimit-shadow".to_owned()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: Option<Match>,
    /// The parts of the bucket key; empty means one bucket for the whole rule.
    #[serde(default)]
    pub key: Vec<KeyPart>,
    /// Tokens added per `unit`.
    pub rate: u32,
    #[serde(default)]
    pub unit: Unit,
    /// Bucket capacity: how many requests may pass back to back. Defaults to `rate`.
    pub burst: Option<u32>,
    /// Overrides the top-level `shadow_mode` for this rule.
    pub shadow: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub path_prefix: Option<String>,
    /// Any of these methods (upper case).
    #[serde(default)]
    pub methods: Vec<String>,
    /// All of these must hold: the header is present, and equals `value` when given.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    pub value: Option<String>,
}

/// One part of the bucket key, `{"source": "header", "name": "x-user"}`, `{"source": "path"}`, ...
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "KeyPartConfig")]
pub enum KeyPart {
    /// A request header's value (missing header: the empty value).
    Header {
        name: String,
    },
    /// The client IP (Envoy property `source.address`, port removed).
    ClientAddress,
    /// The request path without the query string.
    Path,
    Method,
}

/// A key part as written. Not an internally tagged enum (`#[serde(tag = "source")]`): that buffers the object
/// and added 15 KB to the `--opt` module, and serde lets its unit variants ignore unknown fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPartConfig {
    source: KeySource,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeySource {
    Header,
    ClientAddress,
    Path,
    Method,
}

impl TryFrom<KeyPartConfig> for KeyPart {
    type Error = &'static str;

    fn try_from(c: KeyPartConfig) -> Result<Self, Self::Error> {
        match (c.source, c.name) {
            (KeySource::Header, Some(name)) => Ok(KeyPart::Header { name }),
            (KeySource::Header, None) => Err("missing field `name` (required for source header)"),
            (_, Some(_)) => Err("unknown field `name` (only source header takes a name)"),
            (KeySource::ClientAddress, None) => Ok(KeyPart::ClientAddress),
            (KeySource::Path, None) => Ok(KeyPart::Path),
            (KeySource::Method, None) => Ok(KeyPart::Method),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    #[default]
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    pub fn nanos(self) -> u64 {
        const S: u64 = 1_000_000_000;
        match self {
            Unit::Second => S,
            Unit::Minute => 60 * S,
            Unit::Hour => 3600 * S,
            Unit::Day => 86_400 * S,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyLimitPolicy {
    /// New keys beyond the cap share one bucket per rule (same rate and burst).
    #[default]
    OverflowBucket,
    /// New keys beyond the cap are answered 429.
    Deny,
    /// New keys beyond the cap pass unlimited (counted in `overflow`).
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExhaustedPolicy {
    /// Let the request through (availability over exactness under extreme contention).
    #[default]
    Allow,
    /// Answer 429.
    Deny,
}

/// `log_level`: lower-case names, `info` when absent (shared by every filter).
pub use wasmfilter_common::LogLevel;

/// A validation error: ``invalid ratelimit configuration: field `FIELD` WHY``.
fn invalid(field: &str, why: impl Display) -> ConfigError {
    ConfigError::field(FILTER, field, why)
}

impl Rule {
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    pub fn bucket(&self) -> Bucket {
        Bucket::new(self.rate, self.unit.nanos(), self.burst())
    }

    fn validate(&self, at: &str, is_default: bool) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 40
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(invalid(&format!("{at}.name"), "must be 1-40 characters of a-z, 0-9, _ or -"));
        }
        if self.rate == 0 || self.rate > MAX_RATE {
            return Err(invalid(&format!("{at}.rate"), format!("must be between 1 and {MAX_RATE}")));
        }
        if self.burst() == 0 {
            return Err(invalid(&format!("{at}.burst"), "must be at least 1"));
        }
        if is_default && self.matcher.is_some() {
            return Err(invalid(
                &format!("{at}.match"),
                "is not allowed: the default rule applies when no rule matched",
            ));
        }
        for (i, part) in self.key.iter().enumerate() {
            if let KeyPart::Header { name } = part {
                check_header_name(FILTER, &format!("{at}.key[{i}].name"), name)?;
            }
        }
        if let Some(m) = &self.matcher {
            if let Some(prefix) = &m.path_prefix {
                if !prefix.starts_with('/') {
                    return Err(invalid(&format!("{at}.match.path_prefix"), "must start with '/'"));
                }
            }
            for (i, method) in m.methods.iter().enumerate() {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(invalid(&format!("{at}.match.methods[{i}]"), "must be an upper-case HTTP method"));
                }
            }
            for (i, h) in m.headers.iter().enumerate() {
                check_header_name(FILTER, &format!("{at}.match.headers[{i}].name"), &h.name)?;
            }
        }
        Ok(())
    }
}

impl RateLimitConfig {
    /// Parses and validates; the error names the offending field.
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        // The JSON reader's errors name the field: `field `rules[0].unit`: unknown variant `week`, ...`.
        let config: Self = wasmfilter_common::json::from_slice(raw).map_err(|e| ConfigError::parse(FILTER, e))?;
        config.validate()?;
        Ok(config)
    }

    /// The rules in evaluation order, the default rule last.
    pub fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().chain(self.default_rule.iter())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate(&format!("rules[{i}]"), false)?;
        }
        if let Some(rule) = &self.default_rule {
            rule.validate("default_rule", true)?;
        }
        if self.rules.is_empty() && self.default_rule.is_none() {
            return Err(invalid("rules", "must not be empty when there is no `default_rule`"));
        }
        for (i, rule) in self.all_rules().enumerate() {
            if self.all_rules().take(i).any(|r| r.name == rule.name) {
                return Err(invalid("rules", format!("has two rules named `{}`", rule.name)));
            }
        }
        let domain_ok = !self.domain.is_empty()
            && self.domain.len() <= 64
            && self.domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !domain_ok {
            return Err(invalid("domain", "must be 1-64 characters of A-Z, a-z, 0-9, _ or -"));
        }
        if self.max_keys == 0 || self.max_keys > MAX_KEYS {
            return Err(invalid("max_keys", format!("must be between 1 and {MAX_KEYS}")));
        }
        if self.idle_timeout_ms == 0 {
            return Err(invalid("idle_timeout_ms", "must be at least 1"));
        }
        if self.sweep_interval_ms == 0 {
            return Err(invalid("sweep_interval_ms", "must be at least 1"));
        }
        if self.sweep_batch == 0 {
            return Err(invalid("sweep_batch", "must be at least 1"));
        }
        if self.max_cas_retries == 0 {
            return Err(invalid("max_cas_retries", "must be at least 1"));
        }
        check_header_name(FILTER, "shadow_header", &self.shadow_header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(raw: &str) -> String {
        RateLimitConfig::parse(raw.as_bytes()).unwrap_err().message().to_owned()
    }

    #[test]
    fn parses_minimal_config_with_defaults() {
        let c = RateLimitConfig::parse(br#"{"default_rule": {"name": "all", "rate": 5}}"#).unwrap();
        let rule = c.default_rule.as_ref().unwrap();
        assert_eq!((rule.rate, rule.burst(), rule.unit), (5, 5, Unit::Second));
        assert_eq!(c.max_keys, 10_000);
        assert_eq!(c.on_key_limit, KeyLimitPolicy::OverflowBucket);
        assert_eq!(c.on_cas_exhausted, ExhaustedPolicy::Allow);
        assert_eq!(c.shadow_header, "x-ratelimit-shadow");
        assert!(c.response_headers && !c.shadow_mode);
        assert_eq!(c.all_rules().count(), 1);
    }

    #[test]
    fn parses_full_rule() {
        let c = RateLimitConfig::parse(
            br#"{"rules": [{"name": "login", "match": {"path_prefix": "/login", "methods": ["POST"],
                 "headers": [{"name": "x-tier", "value": "free"}, {"name": "x-api-key"}]},
                 "key": [{"source": "header", "name": "x-api-key"}, {"source": "client_address"},
                         {"source": "path"}, {"source": "method"}],
                 "rate": 10, "unit": "minute", "burst": 3, "shadow": true}],
                 "on_key_limit": "deny", "on_cas_exhausted": "deny", "log_level": "debug"}"#,
        )
        .unwrap();
        let rule = &c.rules[0];
        assert_eq!(rule.key.len(), 4);
        assert_eq!(rule.key[0], KeyPart::Header { name: "x-api-key".into() });
        assert_eq!(rule.burst(), 3);
        assert_eq!(rule.shadow, Some(true));
        assert_eq!(rule.matcher.as_ref().unwrap().headers[1].value, None);
        assert_eq!(c.log_level, LogLevel::Debug);
    }

    #[test]
    fn rejects_zero_rate_by_field() {
        assert!(err(r#"{"rules": [{"name": "a", "rate": 0}]}"#).contains("field `rules[0].rate`"));
    }

    #[test]
    fn rejects_zero_burst_by_field() {
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "burst": 0}}"#);
        assert!(e.contains("field `default_rule.burst`"), "{e}");
    }

    #[test]
    fn rejects_unknown_key_source() {
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "key": [{"source": "cookie"}]}}"#);
        assert!(e.contains("field `default_rule.key[0].source`: unknown variant `cookie`"), "{e}");
        assert!(e.contains("expected one of `header`, `client_address`, `path`, `method`"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "rate": 1, "key": [{"source": "path"}, {"source": 5}]}]}"#);
        assert!(e.contains("field `rules[0].key[1].source`"), "{e}");
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "key": [{"source": "path", "name": "x"}]}}"#);
        assert!(e.contains("field `default_rule.key[0]`: unknown field `name`"), "{e}");
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "key": [{"source": "header"}]}}"#);
        assert!(e.contains("field `default_rule.key[0]`: missing field `name`"), "{e}");
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "key": [{"name": "x"}]}}"#);
        assert!(e.contains("field `default_rule.key[0]`: missing field `source`"), "{e}");
    }

    #[test]
    fn rejects_unknown_fields() {
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1}, "burst": 3}"#).contains("unknown field `burst`"));
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "rat": 2}}"#);
        assert!(e.contains("field `default_rule.rat`: unknown field `rat`"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "rate": 1, "match": {"headers": [{"name": "x", "valu": "y"}]}}]}"#);
        assert!(e.contains("field `rules[0].match.headers[0].valu`: unknown field `valu`"), "{e}");
    }

    #[test]
    fn rejects_duplicate_fields() {
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "rate": 2}}"#);
        assert!(e.contains("field `default_rule`: duplicate field `rate`"), "{e}");
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1}, "max_keys": 1, "max_keys": 2}"#);
        assert!(e.contains("duplicate field `max_keys` at the top level"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "rate": 1, "key": [{"source": "path", "source": "path"}]}]}"#);
        assert!(e.contains("field `rules[0].key[0]`: duplicate field `source`"), "{e}");
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        assert!(err(r#"{}"#).contains("field `rules`"));
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1, "match": {}}}"#).contains("default_rule.match"));
        assert!(err(r#"{"rules": [{"name": "A", "rate": 1}]}"#).contains("rules[0].name"));
        assert!(err(r#"{"rules": [{"name": "a", "rate": 1}, {"name": "a", "rate": 1}]}"#).contains("two rules"));
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1}, "max_keys": 0}"#).contains("max_keys"));
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1}, "max_cas_retries": 0}"#).contains("max_cas_retries"));
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1}, "domain": "a.b"}"#).contains("domain"));
        let e = err(r#"{"rules": [{"name": "a", "rate": 1, "match": {"methods": ["get"]}}]}"#);
        assert!(e.contains("rules[0].match.methods[0]"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "rate": 1, "key": [{"source": "header", "name": "X-Y"}]}]}"#);
        assert!(e.contains("rules[0].key[0].name"), "{e}");
        let e = err(r#"{"rules": [{"name": "a", "rate": 1, "match": {"path_prefix": "x"}}]}"#);
        assert!(e.contains("rules[0].match.path_prefix"), "{e}");
        assert!(err(r#"{"rules": [{"name": "a", "rate": 2000000}]}"#).contains("rules[0].rate"));
    }

    #[test]
    fn header_names_are_lower_case_tokens() {
        let key = |name: &str| {
            format!(r#"{{"rules": [{{"name": "a", "rate": 1, "key": [{{"source": "header", "name": "{name}"}}]}}]}}"#)
        };
        for bad in ["", "X-User", "x user", ":authority", "x/y", "x@y", "x(y)", "x\\ty", "x-é"] {
            let e = err(&key(bad));
            assert!(e.contains("field `rules[0].key[0].name` must be a lower-case header name"), "{bad}: {e}");
        }
        assert!(RateLimitConfig::parse(key("x-user_id.v1~!").as_bytes()).is_ok());
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1}, "shadow_header": "X-Shadow"}"#);
        assert_eq!(
            e,
            "invalid ratelimit configuration: field `shadow_header` must be a lower-case header name, got `X-Shadow`"
        );
        let e = err(r#"{"rules": [{"name": "a", "rate": 1, "match": {"headers": [{"name": "x;y"}]}}]}"#);
        assert!(e.contains("field `rules[0].match.headers[0].name`"), "{e}");
    }

    #[test]
    fn rejects_wrong_types_and_bad_json() {
        let e = err(r#"{"default_rule": {"name": "a", "rate": "5"}}"#);
        assert_eq!(
            e,
            r#"invalid ratelimit configuration: field `default_rule.rate`: invalid type: string "5", expected u32"#
        );
        assert!(
            err(r#"{"default_rule": {"name": "a", "rate": 1.5}}"#).contains("field `default_rule.rate`: invalid type")
        );
        assert!(
            err(r#"{"default_rule": {"name": "a", "rate": -1}}"#).contains("field `default_rule.rate`: invalid value")
        );
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "unit": "week"}}"#);
        assert!(e.contains("field `default_rule.unit`: unknown variant `week`"), "{e}");
        assert!(err(r#"{"default_rule": {"name": "a"}}"#).contains("field `default_rule`: missing field `rate`"));
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1}, "shadow_mode": 1}"#).contains("field `shadow_mode`"));
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1}, "idle_timeout_ms": 5000000000}"#);
        assert!(e.contains("field `idle_timeout_ms`: invalid value"), "{e}");
        assert!(err(r#"{"rules": {}}"#).contains("field `rules`: invalid type: map, expected a sequence"));
        let e = err(r#"{"default_rule": "#);
        assert_eq!(
            e,
            "invalid ratelimit configuration: field `default_rule`: EOF while parsing a value at line 1 column 17"
        );
        assert!(
            err(r#"{"default_rule" 1}"#).starts_with("invalid ratelimit configuration: invalid JSON: expected `:`")
        );
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1}} x"#);
        assert!(e.contains("invalid JSON: trailing characters at line 1"), "{e}");
        assert!(err(r#""x""#).contains("invalid type: string \"x\", expected struct RateLimitConfig"));
    }

    #[test]
    fn null_is_absent_only_for_optional_fields() {
        let c = RateLimitConfig::parse(br#"{"default_rule": {"name": "a", "rate": 1, "burst": null, "match": null}}"#);
        assert_eq!(c.unwrap().default_rule.unwrap().burst, None);
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1}, "max_keys": null}"#);
        assert!(e.contains("field `max_keys`: invalid type: null, expected u32"), "{e}");
    }

    #[test]
    fn units_in_nanoseconds() {
        assert_eq!(Unit::Minute.nanos(), 60_000_000_000);
        assert_eq!(Unit::Day.nanos(), 86_400_000_000_000);
    }
}
