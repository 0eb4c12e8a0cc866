//! API-key verification: keys are held as SHA-256 digests and compared in constant time.
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow { identity: String },
    /// No credential presented: 401.
    Missing,
    /// A credential was presented and is not valid: 403.
    Invalid,
}

pub fn digest_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// `presented` holds every value of the key header (a request may repeat it).
pub fn decide(config: &AuthConfig, presented: &[String]) -> Decision {
    let key = match presented {
        [] => return Decision::Missing,
        [only] if only.trim().is_empty() => return Decision::Missing,
        [only] => only.trim(),
        // Several copies of the key header are ambiguous; never pick one.
        _ => return Decision::Invalid,
    };
    let digest = Sha256::digest(key.as_bytes());
    let mut found: Option<&String> = None;
    // Compare against every stored digest so timing does not reveal which one matched.
    for (stored_hex, identity) in &config.keys {
        let Ok(stored) = hex::decode(stored_hex) else { continue };
        if bool::from(stored.as_slice().ct_eq(digest.as_slice())) {
            found = Some(identity);
        }
    }
    match found {
        Some(identity) => Decision::Allow { identity: identity.clone() },
        None => Decision::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        let raw = format!(r#"{{"keys": {{"{}": "alice"}}}}"#, digest_hex("alice-secret"));
        AuthConfig::parse(raw.as_bytes()).unwrap()
    }

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn allows_known_key() {
        assert_eq!(decide(&config(), &values(&["alice-secret"])), Decision::Allow { identity: "alice".into() });
    }

    #[test]
    fn missing_and_empty_are_401() {
        assert_eq!(decide(&config(), &[]), Decision::Missing);
        assert_eq!(decide(&config(), &values(&["  "])), Decision::Missing);
    }

    #[test]
    fn wrong_or_duplicated_key_is_403() {
        assert_eq!(decide(&config(), &values(&["nope"])), Decision::Invalid);
        assert_eq!(decide(&config(), &values(&["alice-secret", "alice-secret"])), Decision::Invalid);
    }
}
