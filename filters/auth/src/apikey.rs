//! API-key verification: keys are held as SHA-256 digests and compared in constant time.
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;

/// The configured keys as raw digests, decoded from hex once at configuration (not per request).
pub type Digests = Vec<([u8; 32], String)>;

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

/// The keys of CONFIG as raw digests; a key that is not 64 hex digits can match nothing and is left out.
pub fn digests(config: &AuthConfig) -> Digests {
    config
        .keys
        .iter()
        .filter_map(|(stored_hex, identity)| {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(stored_hex, &mut digest).ok().map(|()| (digest, identity.clone()))
        })
        .collect()
}

/// `presented` holds every value of the key header (a request may repeat it).
pub fn decide(keys: &[([u8; 32], String)], presented: &[impl AsRef<str>]) -> Decision {
    let key = match presented {
        [] => return Decision::Missing,
        [only] if only.as_ref().trim().is_empty() => return Decision::Missing,
        [only] => only.as_ref().trim(),
        // Several copies of the key header are ambiguous; never pick one.
        _ => return Decision::Invalid,
    };
    let digest = Sha256::digest(key.as_bytes());
    let mut found: Option<&String> = None;
    // Compare against every stored digest so timing does not reveal which one matched.
    for (stored, identity) in keys {
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

    fn config() -> Digests {
        let raw = format!(r#"{{"keys": {{"{}": "alice"}}}}"#, digest_hex("alice-secret"));
        digests(&AuthConfig::parse(raw.as_bytes()).unwrap())
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
        assert_eq!(decide(&config(), &[] as &[&str]), Decision::Missing);
        assert_eq!(decide(&config(), &values(&["  "])), Decision::Missing);
    }

    #[test]
    fn digests_are_decoded_once_and_a_malformed_one_matches_nothing() {
        let keys = config();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.first().map(|(d, id)| (hex::encode(d), id.as_str())),
                   Some((digest_hex("alice-secret"), "alice")));
    }

    #[test]
    fn wrong_or_duplicated_key_is_403() {
        assert_eq!(decide(&config(), &values(&["nope"])), Decision::Invalid);
        assert_eq!(decide(&config(), &values(&["alice-secret", "alice-secret"])), Decision::Invalid);
    }
}
