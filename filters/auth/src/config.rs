//! Plugin configuration: the JSON Envoy passes in `configuration`, parsed strictly.
use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Request header carrying the API key.
    #[serde(default = "default_key_header")]
    pub key_header: String,
    /// SHA-256 digest of each accepted key (lower-case hex) → the identity forwarded upstream.
    pub keys: BTreeMap<String, String>,
    /// Header set on the upstream request with the caller's identity; any incoming copy is removed.
    #[serde(default = "default_identity_header")]
    pub identity_header: String,
    #[serde(default)]
    pub log_level: LogLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

fn default_key_header() -> String {
    "x-api-key".to_owned()
}

fn default_identity_header() -> String {
    "x-auth-identity".to_owned()
}

#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AuthConfig {
    /// Parses and validates; the error names the offending field.
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        let config: AuthConfig =
            serde_json::from_slice(raw).map_err(|e| ConfigError(format!("invalid auth configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.keys.is_empty() {
            return Err(ConfigError("invalid auth configuration: field `keys` must not be empty".into()));
        }
        for digest in self.keys.keys() {
            let well_formed = digest.len() == 64 && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !well_formed {
                return Err(ConfigError(format!(
                    "invalid auth configuration: field `keys` entry `{digest}` is not a lower-case hex SHA-256 digest"
                )));
            }
        }
        for (field, value) in [("key_header", &self.key_header), ("identity_header", &self.identity_header)] {
            if value.is_empty() || value.bytes().any(|b| b.is_ascii_uppercase() || b == b':' || b.is_ascii_whitespace()) {
                return Err(ConfigError(format!(
                    "invalid auth configuration: field `{field}` must be a lower-case header name, got `{value}`"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    #[test]
    fn parses_minimal_config_with_defaults() {
        let raw = format!(r#"{{"keys": {{"{DIGEST}": "alice"}}}}"#);
        let config = AuthConfig::parse(raw.as_bytes()).unwrap();
        assert_eq!(config.key_header, "x-api-key");
        assert_eq!(config.identity_header, "x-auth-identity");
        assert_eq!(config.keys.get(DIGEST).map(String::as_str), Some("alice"));
    }

    #[test]
    fn rejects_unknown_field_by_name() {
        let raw = format!(r#"{{"keys": {{"{DIGEST}": "alice"}}, "key_headr": "x"}}"#);
        let err = AuthConfig::parse(raw.as_bytes()).unwrap_err();
        assert!(err.0.contains("unknown field `key_headr`"), "{err}");
    }

    #[test]
    fn rejects_plaintext_key() {
        let err = AuthConfig::parse(br#"{"keys": {"secret": "alice"}}"#).unwrap_err();
        assert!(err.0.contains("field `keys`"), "{err}");
    }

    #[test]
    fn rejects_empty_keys() {
        let err = AuthConfig::parse(br#"{"keys": {}}"#).unwrap_err();
        assert!(err.0.contains("must not be empty"), "{err}");
    }
}
