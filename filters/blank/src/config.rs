//! Plugin configuration: the JSON Envoy passes in `configuration`, parsed strictly.
use serde::Deserialize;
use wasmfilter_common::{ConfigError, check_header_name};

/// The filter's name, which starts every configuration error.
const FILTER: &str = "blank";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlankConfig {
    /// Response header the filter sets (lower-case).
    #[serde(default = "default_header")]
    pub header: String,
    /// Its value.
    #[serde(default = "default_value")]
    pub value: String,
}

fn default_header() -> String {
    "x-wasmfilter-blank".to_owned()
}

fn default_value() -> String {
    "hello".to_owned()
}

impl BlankConfig {
    /// Parses and validates; the error names the offending field. An empty configuration means the defaults.
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        let raw = if raw.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { raw };
        let config: BlankConfig = wasmfilter_common::json::from_slice(raw).map_err(|e| ConfigError::parse(FILTER, e))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_header_name(FILTER, "header", &self.header)?;
        if self.value.bytes().any(|b| b.is_ascii_control()) {
            return Err(ConfigError::field(FILTER, "value", "must not contain control characters"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_configuration_means_defaults() {
        let config = BlankConfig::parse(b"").unwrap();
        assert_eq!(config.header, "x-wasmfilter-blank");
        assert_eq!(config.value, "hello");
    }

    #[test]
    fn parses_header_and_value() {
        let config = BlankConfig::parse(br#"{"header": "x-served-by", "value": "edge-1"}"#).unwrap();
        assert_eq!(config.header, "x-served-by");
        assert_eq!(config.value, "edge-1");
    }

    #[test]
    fn rejects_unknown_field_by_name() {
        let err = BlankConfig::parse(br#"{"headr": "x"}"#).unwrap_err();
        assert!(err.message().contains("unknown field `headr`"), "{err}");
    }

    #[test]
    fn rejects_bad_header_name() {
        for bad in ["", "X-Upper", "has space", "colon:", ":status", "x-é"] {
            let raw = format!(r#"{{"header": "{bad}"}}"#);
            let err = BlankConfig::parse(raw.as_bytes()).unwrap_err();
            assert_eq!(
                err.message(),
                format!("invalid blank configuration: field `header` must be a lower-case header name, got `{bad}`")
            );
        }
    }

    #[test]
    fn rejects_control_characters_in_value() {
        let err = BlankConfig::parse(br#"{"value": "a\r\nset-cookie: x"}"#).unwrap_err();
        assert_eq!(err.message(), "invalid blank configuration: field `value` must not contain control characters");
    }
}
