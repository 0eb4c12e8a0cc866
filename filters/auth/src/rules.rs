//! Access rules: the first rule whose path prefix and method match a request decides what it needs.
use crate::config::{AuthConfig, Require, RuleConfig};
use crate::path::has_prefix;

/// What a request needs, as decided by the matching rule (or the default).
#[derive(Debug, PartialEq, Eq)]
pub struct Requirement<'a> {
    pub require: Require,
    /// Identities allowed (empty: any authenticated identity).
    pub identities: &'a [String],
}

/// `path` must already be normalised (see `path::normalise`); `method` as sent (`:method`).
pub fn requirement<'a>(config: &'a AuthConfig, method: &str, path: &str) -> Requirement<'a> {
    let matches = |rule: &RuleConfig| {
        has_prefix(path, &rule.prefix) && (rule.methods.is_empty() || rule.methods.iter().any(|m| m == method))
    };
    match config.rules.iter().find(|rule| matches(rule)) {
        Some(rule) => Requirement { require: rule.require, identities: &rule.identities },
        None => Requirement { require: config.default_require, identities: &[] },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig::parse(
            br#"{
            "keys": {"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b": "alice"},
            "rules": [
                {"prefix": "/healthz", "methods": ["GET", "HEAD"], "require": "public"},
                {"prefix": "/admin", "methods": ["GET"], "require": "api_key", "identities": ["root"]},
                {"prefix": "/admin", "require": "deny"},
                {"prefix": "/public/", "require": "public"}
            ],
            "default_require": "api_key"
        }"#,
        )
        .unwrap()
    }

    #[test]
    fn first_matching_rule_wins() {
        let c = config();
        assert_eq!(requirement(&c, "GET", "/healthz").require, Require::Public);
        assert_eq!(requirement(&c, "HEAD", "/healthz/live").require, Require::Public);
        let admin = requirement(&c, "GET", "/admin/users");
        assert_eq!(admin.require, Require::ApiKey);
        assert_eq!(admin.identities, ["root".to_owned()]);
        assert_eq!(requirement(&c, "DELETE", "/admin/users").require, Require::Deny);
        assert_eq!(requirement(&c, "GET", "/public/x").require, Require::Public);
    }

    #[test]
    fn method_or_prefix_mismatch_falls_through_to_default() {
        let c = config();
        assert_eq!(requirement(&c, "POST", "/healthz").require, Require::ApiKey);
        assert_eq!(requirement(&c, "GET", "/healthzz").require, Require::ApiKey);
        assert_eq!(requirement(&c, "GET", "/publicity").require, Require::ApiKey);
        assert_eq!(requirement(&c, "get", "/healthz").require, Require::ApiKey);
        assert!(requirement(&c, "GET", "/other").identities.is_empty());
    }
}
