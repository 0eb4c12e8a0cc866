//! Plugin configuration: the JSON Envoy passes in `configuration`, parsed strictly.
//!
//! Every error names the offending field (`field `jwt.jwks.keys[1].n`: ...`) so `on_configure` can log it and
//! Envoy refuses the configuration with that reason.
use std::fmt::Display;

use serde::Deserialize;
use wasmfilter_common::canonical_path::PathNormalization;
use wasmfilter_common::json::StringMap;
use wasmfilter_common::{ConfigError, check_header_name};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Request header carrying the API key.
    #[serde(default = "default_key_header")]
    pub key_header: String,
    /// Query parameter that may carry the API key instead of the header (unset: header only).
    pub key_query_param: Option<String>,
    /// SHA-256 digest of each accepted key (lower-case hex) → the identity forwarded upstream.
    #[serde(default)]
    pub keys: StringMap,
    /// Header set on the upstream request with the caller's identity; any incoming copy is removed.
    #[serde(default = "default_identity_header")]
    pub identity_header: String,
    /// JWT bearer tokens (unset: API keys only).
    pub jwt: Option<JwtConfig>,
    /// Access rules by path prefix and method; the first matching rule decides.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What a request no rule matches needs.
    #[serde(default = "default_require")]
    pub default_require: Require,
    #[serde(default)]
    pub log_level: LogLevel,
    /// What a path a backend may read differently gets: 400 (`reject_ambiguous`, default) or the canonical path
    /// (`forward_canonical`); see `upstream_path`.
    #[serde(default)]
    pub path_normalization: PathNormalization,
    /// The per-worker cache of verified JWTs (see `jwt_cache`).
    #[serde(default)]
    pub jwt_cache: JwtCacheConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtCacheConfig {
    /// Verified tokens remembered per worker (0: off). Each hit skips the signature check until the token's `exp`.
    #[serde(default = "default_jwt_cache_entries")]
    pub max_entries: usize,
}

impl Default for JwtCacheConfig {
    fn default() -> Self {
        JwtCacheConfig { max_entries: default_jwt_cache_entries() }
    }
}

const fn default_jwt_cache_entries() -> usize {
    1024
}

const MAX_JWT_CACHE_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Header holding `Bearer <token>`.
    #[serde(default = "default_jwt_header")]
    pub header: String,
    /// Required `iss` claim (unset: not checked).
    pub issuer: Option<String>,
    /// The `aud` claim must contain one of these (empty: not checked).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Tolerance, in seconds, applied to `exp` and `nbf`.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_s: u64,
    /// Longer tokens are refused before any decoding.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Claim name → request header set upstream with the claim's value (incoming copies always removed).
    #[serde(default)]
    pub claims_to_headers: StringMap,
    /// Claim used as the identity (forwarded in `identity_header`, matched by rule `identities`).
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
    /// Inline JSON Web Key Set (with `remote_jwks`: the keys used until the first successful fetch).
    pub jwks: Option<JwksConfig>,
    /// A JWKS fetched from an Envoy cluster and refreshed (see `jwks_remote`).
    pub remote_jwks: Option<RemoteJwksConfig>,
    /// Where RS256/ES256 signatures are checked: `auto` (Envoy's verify_signature when it passes a self-test at
    /// start, else the in-module code), `envoy` (refuse the configuration without it) or `module`.
    #[serde(default)]
    pub verifier: Verifier,
}

/// Where the key set comes from when it is not (only) inline. Before the first successful fetch a token is refused
/// with 503 (fail closed) unless inline `jwks` are given; after it, a failed refresh keeps the last good set
/// (stale-while-error) and retries every `retry_s`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwksConfig {
    /// The Envoy cluster serving the JWKS.
    pub cluster: String,
    /// Request path, e.g. `/.well-known/jwks.json`.
    pub path: String,
    /// `:authority` of the request (default: the cluster name).
    pub authority: Option<String>,
    #[serde(default = "default_refresh_s")]
    pub refresh_s: u64,
    #[serde(default = "default_retry_s")]
    pub retry_s: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A longer answer is refused unread.
    #[serde(default = "default_jwks_max_bytes")]
    pub max_bytes: usize,
    /// At most this many keys are taken from an answer (more: the answer is refused).
    #[serde(default = "default_jwks_max_keys")]
    pub max_keys: usize,
}

const fn default_refresh_s() -> u64 {
    300
}

const fn default_retry_s() -> u64 {
    5
}

const fn default_timeout_ms() -> u64 {
    2000
}

const fn default_jwks_max_bytes() -> usize {
    64 * 1024
}

const fn default_jwks_max_keys() -> usize {
    32
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verifier {
    #[default]
    Auto,
    Envoy,
    Module,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    pub keys: Vec<JwkConfig>,
}

/// One JSON Web Key (RFC 7517/7518). Only public material for RSA and EC keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwkConfig {
    pub kty: String,
    pub kid: Option<String>,
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    pub key_ops: Option<Vec<String>>,
    /// oct: the shared secret (base64url).
    pub k: Option<String>,
    /// RSA: modulus and exponent (base64url, big-endian).
    pub n: Option<String>,
    pub e: Option<String>,
    /// EC: curve and affine coordinates.
    pub crv: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
    /// Private exponent / scalar: accepted by the parser only to refuse it with a clear message.
    pub d: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Path prefix, matched on whole segments against the normalised path (`/admin` matches `/admin/x`,
    /// not `/administrator`).
    pub prefix: String,
    /// Upper-case methods this rule applies to (empty: every method).
    #[serde(default)]
    pub methods: Vec<String>,
    pub require: Require,
    /// If non-empty, only these identities pass (others get 403).
    #[serde(default)]
    pub identities: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// No credential needed.
    Public,
    /// An API key or a JWT.
    Any,
    ApiKey,
    Jwt,
    /// Always 403.
    Deny,
}

/// `log_level`: lower-case names, `info` when absent (shared by every filter).
pub use wasmfilter_common::LogLevel;

fn default_key_header() -> String {
    "x-api-key".to_owned()
}

fn default_identity_header() -> String {
    "x-auth-identity".to_owned()
}

fn default_jwt_header() -> String {
    "authorization".to_owned()
}

fn default_identity_claim() -> String {
    "sub".to_owned()
}

fn default_require() -> Require {
    Require::Any
}

const fn default_clock_skew() -> u64 {
    60
}

const fn default_max_token_bytes() -> usize {
    4096
}

/// The most headers a config may name, and the longest token it may allow: bounds on per-request work.
const MAX_TOKEN_BYTES_LIMIT: usize = 16 * 1024;
const MAX_CLOCK_SKEW_S: u64 = 3600;

/// The filter's name, which starts every configuration error.
const FILTER: &str = "auth";

/// A validation error: ``invalid auth configuration: field `FIELD` PROBLEM``.
pub(crate) fn invalid(field: &str, problem: impl Display) -> ConfigError {
    ConfigError::field(FILTER, field, problem)
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

impl AuthConfig {
    /// Parses and validates; the error names the offending field. Key material is checked by `jwt::Jwks`.
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        let config: AuthConfig =
            wasmfilter_common::json::from_slice(raw).map_err(|e| ConfigError::parse(FILTER, e))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.keys.is_empty() && self.jwt.is_none() {
            return Err(invalid("keys", "must not be empty when `jwt` is not configured"));
        }
        // The entry is named by its identity, never by its (possibly mistakenly plaintext) key.
        for (digest, identity) in &self.keys {
            let well_formed = digest.len() == 64 && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !is_header_value(identity) || identity.is_empty() {
                return Err(invalid("keys", "has an identity that is empty or not printable ASCII"));
            }
            if !well_formed {
                return Err(invalid(
                    "keys",
                    format!("entry for identity `{identity}` is not a lower-case hex SHA-256 digest"),
                ));
            }
        }
        let mut headers = vec![("key_header", self.key_header.as_str()), ("identity_header", &self.identity_header)];
        if let Some(jwt) = &self.jwt {
            headers.push(("jwt.header", &jwt.header));
            for header in jwt.claims_to_headers.values() {
                headers.push(("jwt.claims_to_headers", header));
            }
        }
        for (field, value) in headers {
            check_header_name(FILTER, field, value)?;
        }
        if let Some(param) = &self.key_query_param {
            if param.is_empty() || !param.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) {
                return Err(invalid(
                    "key_query_param",
                    "must be a non-empty unreserved query parameter name",
                ));
            }
        }
        if let Some(jwt) = &self.jwt {
            if jwt.max_token_bytes == 0 || jwt.max_token_bytes > MAX_TOKEN_BYTES_LIMIT {
                return Err(invalid(
                    "jwt.max_token_bytes",
                    format!("must be between 1 and {MAX_TOKEN_BYTES_LIMIT}"),
                ));
            }
            if jwt.clock_skew_s > MAX_CLOCK_SKEW_S {
                return Err(invalid("jwt.clock_skew_s", format!("must be at most {MAX_CLOCK_SKEW_S}")));
            }
            match (&jwt.jwks, &jwt.remote_jwks) {
                (None, None) => return Err(invalid("jwt.jwks", "or `jwt.remote_jwks` is required")),
                (Some(jwks), _) if jwks.keys.is_empty() => {
                    return Err(invalid("jwt.jwks.keys", "must not be empty"));
                }
                _ => {}
            }
            if let Some(remote) = &jwt.remote_jwks {
                remote.validate()?;
            }
            let reserved = [self.identity_header.as_str(), self.key_header.as_str(), jwt.header.as_str()];
            if jwt.claims_to_headers.values().any(|h| reserved.contains(&h.as_str())) {
                return Err(invalid(
                    "jwt.claims_to_headers",
                    "must not name the identity, key or token header",
                ));
            }
        }
        if self.jwt_cache.max_entries > MAX_JWT_CACHE_ENTRIES {
            return Err(invalid("jwt_cache.max_entries", format!("must be at most {MAX_JWT_CACHE_ENTRIES}")));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if !is_normal_prefix(&rule.prefix) {
                return Err(invalid(
                    &format!("rules[{i}].prefix"),
                    format!("must be a normalised path starting with `/` (no `//`, `.`, `..`, `%`), got `{}`", rule.prefix),
                ));
            }
            if let Some(bad) = rule.methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
                return Err(invalid(
                    &format!("rules[{i}].methods"),
                    format!("has `{bad}`; use upper-case HTTP methods"),
                ));
            }
            let needs_keys = matches!(rule.require, Require::ApiKey);
            let needs_jwt = matches!(rule.require, Require::Jwt);
            if (needs_keys && self.keys.is_empty()) || (needs_jwt && self.jwt.is_none()) {
                return Err(invalid(
                    &format!("rules[{i}].require"),
                    "needs a credential type that is not configured",
                ));
            }
            if !rule.identities.is_empty() && matches!(rule.require, Require::Public | Require::Deny) {
                return Err(invalid(
                    &format!("rules[{i}].identities"),
                    "only applies to rules that require a credential",
                ));
            }
        }
        Ok(())
    }
}

impl RemoteJwksConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let f = |name: &str| format!("jwt.remote_jwks.{name}");
        if self.cluster.is_empty() || !is_header_value(&self.cluster) {
            return Err(invalid(&f("cluster"), "must name an Envoy cluster"));
        }
        if !self.path.starts_with('/') || !is_header_value(&self.path) || self.path.contains(' ') {
            return Err(invalid(&f("path"), "must be a request path starting with `/`"));
        }
        if self.authority.as_deref().is_some_and(|a| a.is_empty() || !is_header_value(a) || a.contains(' ')) {
            return Err(invalid(&f("authority"), "must be a host name"));
        }
        for (name, value, low, high) in [
            ("refresh_s", self.refresh_s, 1, 86_400),
            ("retry_s", self.retry_s, 1, 3_600),
            ("timeout_ms", self.timeout_ms, 10, 60_000),
            ("max_bytes", self.max_bytes as u64, 64, 1024 * 1024),
            ("max_keys", self.max_keys as u64, 1, 256),
        ] {
            if !(low..=high).contains(&value) {
                return Err(invalid(&f(name), format!("must be between {low} and {high}")));
            }
        }
        Ok(())
    }
}

pub fn is_header_value(value: &str) -> bool {
    value.len() <= 1024 && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn is_normal_prefix(prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let Some(rest) = prefix.strip_prefix('/') else { return false };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    !rest.is_empty()
        && rest.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['%', '\\', ';', '?', '#']))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    fn with(extra: &str) -> Result<AuthConfig, ConfigError> {
        AuthConfig::parse(format!(r#"{{"keys": {{"{DIGEST}": "alice"}}{extra}}}"#).as_bytes())
    }

    #[test]
    fn parses_minimal_config_with_defaults() {
        let config = with("").unwrap();
        assert_eq!(config.key_header, "x-api-key");
        assert_eq!(config.identity_header, "x-auth-identity");
        assert_eq!(config.keys.get(DIGEST).map(String::as_str), Some("alice"));
        assert_eq!(config.default_require, Require::Any);
        assert!(config.jwt.is_none());
    }

    #[test]
    fn rejects_unknown_field_by_name() {
        let err = with(r#", "key_headr": "x""#).unwrap_err();
        assert!(err.message().contains("unknown field `key_headr`"), "{err}");
        let err = with(r#", "jwt": {"jwks": {"keys": []}, "isuer": "x"}"#).unwrap_err();
        assert!(err.message().contains("field `jwt.isuer`: unknown field `isuer`"), "{err}");
        let err = with(r#", "rules": [{"prefix": "/", "require": "any", "method": ["GET"]}]"#).unwrap_err();
        assert!(err.message().contains("unknown field `method`"), "{err}");
    }

    #[test]
    fn rejects_plaintext_key_without_echoing_it() {
        let err = AuthConfig::parse(br#"{"keys": {"supersecretvalue": "alice"}}"#).unwrap_err();
        assert!(err.message().contains("field `keys` entry for identity `alice`"), "{err}");
        assert!(!err.message().contains("supers"), "{err}");
    }

    #[test]
    fn rejects_empty_keys_without_jwt() {
        let err = AuthConfig::parse(br#"{"keys": {}}"#).unwrap_err();
        assert!(err.message().contains("must not be empty"), "{err}");
    }

    #[test]
    fn rejects_bad_header_names() {
        let err = with(r#", "identity_header": "X-Id""#).unwrap_err();
        assert!(err.message().contains("field `identity_header` must be a lower-case header name, got `X-Id`"), "{err}");
        for bad in ["", "x id", "x-é", "x(y)"] {
            let err = with(&format!(r#", "key_header": "{bad}""#)).unwrap_err();
            assert!(err.message().contains("field `key_header`"), "{bad}: {err}");
        }
        let jwks = r#""jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}"#;
        for (field, bad) in [("header", "\"Authorization\""), ("claims_to_headers", r#"{"sub": ":path"}"#)] {
            let err = with(&format!(r#", "jwt": {{{jwks}, "{field}": {bad}}}"#)).unwrap_err();
            assert!(err.message().contains(&format!("field `jwt.{field}` must be a lower-case header name")), "{err}");
        }
    }

    #[test]
    fn rejects_bad_rules() {
        let err = with(r#", "rules": [{"prefix": "/a/../b", "require": "any"}]"#).unwrap_err();
        assert!(err.message().contains("field `rules[0].prefix`"), "{err}");
        let err = with(r#", "rules": [{"prefix": "/a", "methods": ["get"], "require": "any"}]"#).unwrap_err();
        assert!(err.message().contains("field `rules[0].methods`"), "{err}");
        let err = with(r#", "rules": [{"prefix": "/a", "require": "jwt"}]"#).unwrap_err();
        assert!(err.message().contains("field `rules[0].require`"), "{err}");
        let err = with(r#", "rules": [{"prefix": "/a", "require": "sometimes"}]"#).unwrap_err();
        assert!(err.message().contains("unknown variant `sometimes`"), "{err}");
    }

    #[test]
    fn rejects_bad_jwt_settings() {
        let jwks = r#""jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}"#;
        let err = with(&format!(r#", "jwt": {{{jwks}, "max_token_bytes": 0}}"#)).unwrap_err();
        assert!(err.message().contains("field `jwt.max_token_bytes`"), "{err}");
        let err = with(&format!(r#", "jwt": {{{jwks}, "clock_skew_s": 99999}}"#)).unwrap_err();
        assert!(err.message().contains("field `jwt.clock_skew_s`"), "{err}");
        let err = with(&format!(r#", "jwt": {{{jwks}, "claims_to_headers": {{"sub": "x-auth-identity"}}}}"#))
            .unwrap_err();
        assert!(err.message().contains("field `jwt.claims_to_headers`"), "{err}");
        let err = with(r#", "jwt": {"jwks": {"keys": []}}"#).unwrap_err();
        assert!(err.message().contains("field `jwt.jwks.keys`"), "{err}");
    }

    #[test]
    fn jwt_cache_and_verifier_settings() {
        assert_eq!(with("").unwrap().jwt_cache.max_entries, 1024);
        assert_eq!(with(r#", "jwt_cache": {"max_entries": 0}"#).unwrap().jwt_cache.max_entries, 0);
        let err = with(r#", "jwt_cache": {"max_entries": 1000000}"#).unwrap_err();
        assert!(err.message().contains("field `jwt_cache.max_entries`"), "{err}");
        let err = with(r#", "jwt_cache": {"size": 1}"#).unwrap_err();
        assert!(err.message().contains("unknown field `size`"), "{err}");
        let jwks = r#""jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}"#;
        let config = with(&format!(r#", "jwt": {{{jwks}, "verifier": "module"}}"#)).unwrap();
        assert_eq!(config.jwt.map(|j| j.verifier), Some(Verifier::Module));
        let err = with(&format!(r#", "jwt": {{{jwks}, "verifier": "boringssl"}}"#)).unwrap_err();
        assert!(err.message().contains("unknown variant `boringssl`"), "{err}");
    }

    #[test]
    fn remote_jwks_settings() {
        let remote = r#""remote_jwks": {"cluster": "idp", "path": "/jwks.json"}"#;
        let config = with(&format!(r#", "jwt": {{{remote}}}"#)).unwrap();
        let r = config.jwt.and_then(|j| j.remote_jwks).unwrap();
        assert_eq!((r.refresh_s, r.retry_s, r.timeout_ms, r.max_bytes, r.max_keys), (300, 5, 2000, 65536, 32));
        let err = with(r#", "jwt": {}"#).unwrap_err();
        assert!(err.message().contains("field `jwt.jwks` or `jwt.remote_jwks` is required"), "{err}");
        for (extra, field) in [
            (r#""path": "jwks.json""#, "path"),
            (r#""cluster": """#, "cluster"),
            (r#""refresh_s": 0"#, "refresh_s"),
            (r#""max_bytes": 10000000"#, "max_bytes"),
            (r#""max_keys": 0"#, "max_keys"),
            (r#""timeout_ms": 1"#, "timeout_ms"),
        ] {
            let remote = format!(r#""remote_jwks": {{"cluster": "idp", "path": "/j", {extra}}}"#)
                .replacen(r#""cluster": "idp", "path": "/j", "path""#, r#""cluster": "idp", "path""#, 1)
                .replacen(r#""cluster": "idp", "path": "/j", "cluster""#, r#""path": "/j", "cluster""#, 1);
            let err = with(&format!(r#", "jwt": {{{remote}}}"#)).unwrap_err();
            assert!(err.message().contains(&format!("field `jwt.remote_jwks.{field}`")), "{extra}: {err}");
        }
        let err = with(r#", "jwt": {"remote_jwks": {"cluster": "idp", "path": "/j", "url": "x"}}"#).unwrap_err();
        assert!(err.message().contains("unknown field `url`"), "{err}");
    }

    #[test]
    fn prefix_normal_form() {
        for good in ["/", "/a", "/a/", "/a/b-c"] {
            assert!(is_normal_prefix(good), "{good}");
        }
        for bad in ["", "a", "//a", "/a//b", "/./a", "/a/..", "/%61", "/a;b"] {
            assert!(!is_normal_prefix(bad), "{bad}");
        }
    }
}
