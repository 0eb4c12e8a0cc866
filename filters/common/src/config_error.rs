//! The one configuration error every filter returns: a one-line message that starts with the filter's name and
//! names the offending field, e.g. ``invalid auth configuration: field `keys` must not be empty``.
//!
//! `on_configure` logs it through [`crate::configured`] and returns false, so Envoy refuses the configuration with
//! that line as the reason.
use core::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    /// A validation error: ``invalid FILTER configuration: field `FIELD` PROBLEM``.
    pub fn field(filter: &str, field: &str, problem: impl fmt::Display) -> Self {
        ConfigError { message: format!("invalid {filter} configuration: field `{field}` {problem}") }
    }

    /// A configuration that does not parse (a [`crate::json::Error`], which names the field itself):
    /// `invalid FILTER configuration: ERROR`.
    pub fn parse(filter: &str, error: impl fmt::Display) -> Self {
        ConfigError { message: format!("invalid {filter} configuration: {error}") }
    }

    /// The whole one-line message (the same text as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    #[test]
    fn field_error_names_the_filter_and_the_field() {
        let e = ConfigError::field("auth", "keys", "must not be empty");
        assert_eq!(e.message(), "invalid auth configuration: field `keys` must not be empty");
        assert_eq!(e.to_string(), e.message());
        let e = ConfigError::field("ratelimit", "rules[0].rate", format_args!("must be between 1 and {}", 10));
        assert_eq!(e.message(), "invalid ratelimit configuration: field `rules[0].rate` must be between 1 and 10");
    }

    #[test]
    fn parse_error_keeps_the_parser_text() {
        let serde_error = crate::json::from_slice::<u32>(b"\"5\"").err().map(|e| e.to_string()).unwrap_or_default();
        let e = ConfigError::parse("blank", &serde_error);
        assert_eq!(e.message(), format!("invalid blank configuration: {serde_error}"));
        assert!(e.message().contains("invalid type: string \"5\", expected u32"), "{e}");
    }

    #[test]
    fn is_a_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(ConfigError::parse("routing", "bad"));
        assert_eq!(e.to_string(), "invalid routing configuration: bad");
    }
}
