//! Plugin configuration: which cluster and path the callout asks, which request headers it forwards, its timeout.
use serde::Deserialize;
use wasmfilter_common::{ConfigError, check_header_name};

const FILTER: &str = "callout";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalloutConfig {
    /// The Envoy cluster the callout goes to.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// The callout's path.
    #[serde(default = "default_path")]
    pub path: String,
    /// Request headers copied onto the callout (lower-case names), so the answer can depend on the request.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// How long the filter waits for the answer; no answer in time forbids the request.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_cluster() -> String {
    "httpbin".to_owned()
}

fn default_path() -> String {
    "/bytes/1".to_owned()
}

fn default_timeout_ms() -> u64 {
    5000
}

impl CalloutConfig {
    /// Parses and validates; the error names the offending field. An empty configuration means the defaults.
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        let raw = if raw.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { raw };
        let config: CalloutConfig = wasmfilter_common::json::from_slice(raw).map_err(|e| ConfigError::parse(FILTER, e))?;
        if config.cluster.is_empty() {
            return Err(ConfigError::field(FILTER, "cluster", "must not be empty"));
        }
        if !config.path.starts_with('/') || config.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(ConfigError::field(FILTER, "path", "must start with '/' and hold no spaces or controls"));
        }
        for (i, name) in config.forward_headers.iter().enumerate() {
            check_header_name(FILTER, &format!("forward_headers[{i}]"), name)?;
        }
        if !(1..=60_000).contains(&config.timeout_ms) {
            return Err(ConfigError::field(FILTER, "timeout_ms", "must be between 1 and 60000"));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_configuration_means_the_sdk_example() {
        let config = CalloutConfig::parse(b"").unwrap();
        assert_eq!((config.cluster.as_str(), config.path.as_str(), config.timeout_ms), ("httpbin", "/bytes/1", 5000));
    }

    #[test]
    fn rejects_fields_by_name() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"clustr": "x"}"#, "unknown field `clustr`"),
            (br#"{"path": "bytes"}"#, "field `path`"),
            (br#"{"forward_headers": ["X-User"]}"#, "field `forward_headers[0]`"),
            (br#"{"timeout_ms": 0}"#, "field `timeout_ms`"),
        ];
        for (raw, want) in cases {
            let err = CalloutConfig::parse(raw).unwrap_err();
            assert!(err.message().contains(want), "{err}");
        }
    }
}
