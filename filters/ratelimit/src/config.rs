//! Plugin configuration: the JSON Envoy passes in `configuration`, parsed strictly (unknown fields are
//! errors) and validated. Every error names the offending field, e.g. `field `rules[0].rate` must be ...`.
use crate::bucket::Bucket;
use crate::json::{Obj, Value, field_error};

/// Upper bound on `rate` (per unit); keeps the emission interval at least 1 ns for `second`.
pub const MAX_RATE: u32 = 1_000_000;
/// Upper bound on `max_keys`: bounded shared memory (each tracked key costs well under 200 bytes).
pub const MAX_KEYS: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Namespace of the shared-data entries; filters with the same `vm_id` and `domain` share buckets.
    pub domain: String,
    /// Tried in order; the first rule whose `match` holds charges the request.
    pub rules: Vec<Rule>,
    /// Applies when no rule matched (it must not have a `match`). Without it such requests are not limited.
    pub default_rule: Option<Rule>,
    /// Cap on tracked keys across all rules and workers.
    pub max_keys: u32,
    /// What a new key gets when the table is full (see README).
    pub on_key_limit: KeyLimitPolicy,
    /// A key whose bucket is full again and unused for this long is forgotten.
    pub idle_timeout_ms: u64,
    /// How often each worker sweeps idle keys, and how many key groups one sweep visits.
    pub sweep_interval_ms: u64,
    pub sweep_batch: u32,
    /// Compare-and-swap attempts on the shared bucket state before `on_cas_exhausted` decides.
    pub max_cas_retries: u32,
    pub on_cas_exhausted: ExhaustedPolicy,
    /// Count and report, never block (per rule `shadow` overrides it).
    pub shadow_mode: bool,
    pub shadow_header: String,
    /// Send ratelimit-limit / ratelimit-remaining / ratelimit-reset on allowed responses too.
    pub response_headers: bool,
    pub log_level: LogLevel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub matcher: Option<Match>,
    /// The parts of the bucket key; empty means one bucket for the whole rule.
    pub key: Vec<KeyPart>,
    /// Tokens added per `unit`.
    pub rate: u32,
    pub unit: Unit,
    /// Bucket capacity: how many requests may pass back to back. Defaults to `rate`.
    pub burst: Option<u32>,
    /// Overrides the top-level `shadow_mode` for this rule.
    pub shadow: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Match {
    pub path_prefix: Option<String>,
    /// Any of these methods (upper case).
    pub methods: Vec<String>,
    /// All of these must hold: the header is present, and equals `value` when given.
    pub headers: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyLimitPolicy {
    /// New keys beyond the cap share one bucket per rule (same rate and burst).
    #[default]
    OverflowBucket,
    /// New keys beyond the cap are answered 429.
    Deny,
    /// New keys beyond the cap pass unlimited (counted in `overflow`).
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExhaustedPolicy {
    /// Let the request through (availability over exactness under extreme contention).
    #[default]
    Allow,
    /// Answer 429.
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(field: &str, why: &str) -> String {
    field_error(field, why)
}

fn small(o: &mut Obj<'_>, name: &str) -> Result<Option<u32>, String> {
    Ok(o.uint(name, u64::from(u32::MAX))?.and_then(|n| u32::try_from(n).ok()))
}

fn strings(o: &mut Obj<'_>, name: &str) -> Result<Vec<String>, String> {
    let at = o.path(name);
    o.array(name)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(invalid(&format!("{at}[{i}]"), "must be a string")),
        })
        .collect()
}

impl Match {
    fn read(at: &str, v: &Value) -> Result<Self, String> {
        let mut o = Obj::new(at, v)?;
        let path_prefix = o.string("path_prefix")?;
        let methods = strings(&mut o, "methods")?;
        let headers_at = o.path("headers");
        let headers = o
            .array("headers")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut h = Obj::new(&format!("{headers_at}[{i}]"), v)?;
                let name = h.string("name")?.ok_or_else(|| invalid(&h.path("name"), "is required"))?;
                let value = h.string("value")?;
                h.finish()?;
                Ok(HeaderMatch { name, value })
            })
            .collect::<Result<_, String>>()?;
        o.finish()?;
        Ok(Match { path_prefix, methods, headers })
    }
}

impl KeyPart {
    fn read(at: &str, v: &Value) -> Result<Self, String> {
        let mut o = Obj::new(at, v)?;
        let source = o.string("source")?.ok_or_else(|| invalid(&o.path("source"), "is required"))?;
        let part = match source.as_str() {
            "header" => KeyPart::Header {
                name: o.string("name")?.ok_or_else(|| invalid(&o.path("name"), "is required for source header"))?,
            },
            "client_address" => KeyPart::ClientAddress,
            "path" => KeyPart::Path,
            "method" => KeyPart::Method,
            other => {
                return Err(invalid(
                    &o.path("source"),
                    &format!("has unknown key source `{other}`, expected one of: header, client_address, path, method"),
                ));
            }
        };
        o.finish()?;
        Ok(part)
    }
}

impl Rule {
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    pub fn bucket(&self) -> Bucket {
        Bucket::new(self.rate, self.unit.nanos(), self.burst())
    }

    fn read(at: &str, v: &Value, is_default: bool) -> Result<Self, String> {
        let mut o = Obj::new(at, v)?;
        let name = o.string("name")?.ok_or_else(|| invalid(&o.path("name"), "is required"))?;
        let matcher = match o.get("match") {
            None => None,
            Some(m) => Some(Match::read(&o.path("match"), m)?),
        };
        let key_at = o.path("key");
        let key = o
            .array("key")?
            .iter()
            .enumerate()
            .map(|(i, v)| KeyPart::read(&format!("{key_at}[{i}]"), v))
            .collect::<Result<_, String>>()?;
        let rate = small(&mut o, "rate")?.ok_or_else(|| invalid(&o.path("rate"), "is required"))?;
        let unit = o
            .choice(
                "unit",
                &[("second", Unit::Second), ("minute", Unit::Minute), ("hour", Unit::Hour), ("day", Unit::Day)],
            )?
            .unwrap_or_default();
        let burst = small(&mut o, "burst")?;
        let shadow = o.boolean("shadow")?;
        o.finish()?;
        let rule = Rule { name, matcher, key, rate, unit, burst, shadow };
        rule.validate(at, is_default)?;
        Ok(rule)
    }

    fn validate(&self, at: &str, is_default: bool) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 40
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(invalid(&format!("{at}.name"), "must be 1-40 characters of a-z, 0-9, _ or -"));
        }
        if self.rate == 0 || self.rate > MAX_RATE {
            return Err(invalid(&format!("{at}.rate"), &format!("must be between 1 and {MAX_RATE}")));
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
                check_header_name(&format!("{at}.key[{i}].name"), name)?;
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
                check_header_name(&format!("{at}.match.headers[{i}].name"), &h.name)?;
            }
        }
        Ok(())
    }
}

fn check_header_name(field: &str, value: &str) -> Result<(), String> {
    let bad = value.is_empty()
        || value.bytes().any(|b| b.is_ascii_uppercase() || b == b':' || b.is_ascii_whitespace() || !b.is_ascii());
    if bad {
        return Err(invalid(field, &format!("must be a lower-case header name, got `{value}`")));
    }
    Ok(())
}

impl RateLimitConfig {
    /// Parses and validates; the error names the offending field.
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        Self::read(raw).map_err(|e| ConfigError(format!("invalid ratelimit configuration: {e}")))
    }

    fn read(raw: &[u8]) -> Result<Self, String> {
        let root = crate::json::parse(raw)?;
        let mut o = Obj::new("", &root)?;
        let rules = o
            .array("rules")?
            .iter()
            .enumerate()
            .map(|(i, v)| Rule::read(&format!("rules[{i}]"), v, false))
            .collect::<Result<Vec<_>, String>>()?;
        let default_rule = match o.get("default_rule") {
            None => None,
            Some(v) => Some(Rule::read("default_rule", v, true)?),
        };
        let config = RateLimitConfig {
            domain: o.string("domain")?.unwrap_or_else(|| "default".to_owned()),
            rules,
            default_rule,
            max_keys: small(&mut o, "max_keys")?.unwrap_or(10_000),
            on_key_limit: o
                .choice(
                    "on_key_limit",
                    &[
                        ("overflow_bucket", KeyLimitPolicy::OverflowBucket),
                        ("deny", KeyLimitPolicy::Deny),
                        ("allow", KeyLimitPolicy::Allow),
                    ],
                )?
                .unwrap_or_default(),
            idle_timeout_ms: o.uint("idle_timeout_ms", u64::from(u32::MAX))?.unwrap_or(60_000),
            sweep_interval_ms: o.uint("sweep_interval_ms", u64::from(u32::MAX))?.unwrap_or(1_000),
            sweep_batch: small(&mut o, "sweep_batch")?.unwrap_or(128),
            max_cas_retries: small(&mut o, "max_cas_retries")?.unwrap_or(64),
            on_cas_exhausted: o
                .choice("on_cas_exhausted", &[("allow", ExhaustedPolicy::Allow), ("deny", ExhaustedPolicy::Deny)])?
                .unwrap_or_default(),
            shadow_mode: o.boolean("shadow_mode")?.unwrap_or(false),
            shadow_header: o.string("shadow_header")?.unwrap_or_else(|| "x-ratelimit-shadow".to_owned()),
            response_headers: o.boolean("response_headers")?.unwrap_or(true),
            log_level: o
                .choice(
                    "log_level",
                    &[
                        ("trace", LogLevel::Trace),
                        ("debug", LogLevel::Debug),
                        ("info", LogLevel::Info),
                        ("warn", LogLevel::Warn),
                        ("error", LogLevel::Error),
                    ],
                )?
                .unwrap_or_default(),
        };
        o.finish()?;
        config.validate()?;
        Ok(config)
    }

    /// The rules in evaluation order, the default rule last.
    pub fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().chain(self.default_rule.iter())
    }

    fn validate(&self) -> Result<(), String> {
        if self.rules.is_empty() && self.default_rule.is_none() {
            return Err(invalid("rules", "must not be empty when there is no `default_rule`"));
        }
        for (i, rule) in self.all_rules().enumerate() {
            if self.all_rules().take(i).any(|r| r.name == rule.name) {
                return Err(invalid("rules", &format!("has two rules named `{}`", rule.name)));
            }
        }
        let domain_ok = !self.domain.is_empty()
            && self.domain.len() <= 64
            && self.domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !domain_ok {
            return Err(invalid("domain", "must be 1-64 characters of A-Z, a-z, 0-9, _ or -"));
        }
        if self.max_keys == 0 || self.max_keys > MAX_KEYS {
            return Err(invalid("max_keys", &format!("must be between 1 and {MAX_KEYS}")));
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
        check_header_name("shadow_header", &self.shadow_header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(raw: &str) -> String {
        RateLimitConfig::parse(raw.as_bytes()).unwrap_err().0
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
        assert!(e.contains("field `default_rule.key[0].source` has unknown key source `cookie`"), "{e}");
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "key": [{"source": "path", "name": "x"}]}}"#);
        assert!(e.contains("unknown field `name` in `default_rule.key[0]`"), "{e}");
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "key": [{"source": "header"}]}}"#);
        assert!(e.contains("field `default_rule.key[0].name` is required"), "{e}");
    }

    #[test]
    fn rejects_unknown_fields() {
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1}, "burst": 3}"#).contains("unknown field `burst`"));
        let e = err(r#"{"default_rule": {"name": "a", "rate": 1, "rat": 2}}"#);
        assert!(e.contains("unknown field `rat`"), "{e}");
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
    fn rejects_wrong_types_and_bad_json() {
        assert!(err(r#"{"default_rule": {"name": "a", "rate": "5"}}"#).contains("field `default_rule.rate` must be"));
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1.5}}"#).contains("default_rule.rate"));
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1, "unit": "week"}}"#).contains("unknown value `week`"));
        assert!(err(r#"{"default_rule": {"name": "a"}}"#).contains("field `default_rule.rate` is required"));
        assert!(err(r#"{"default_rule": {"name": "a", "rate": 1}, "shadow_mode": 1}"#).contains("shadow_mode"));
        assert!(err(r#"{"rules": {}}"#).contains("field `rules` must be an array"));
        assert!(err(r#"{"default_rule": "#).starts_with("invalid ratelimit configuration: invalid JSON at byte"));
        assert!(err(r#"[]"#).contains("must be an object"));
    }

    #[test]
    fn units_in_nanoseconds() {
        assert_eq!(Unit::Minute.nanos(), 60_000_000_000);
        assert_eq!(Unit::Day.nanos(), 86_400_000_000_000);
    }
}
