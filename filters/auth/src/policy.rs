//! The whole decision for one request, in plain Rust: normalise the path, find the rule, check the credential,
//! and say what to forward or how to refuse. `lib.rs` only moves data between this and the proxy.
use crate::apikey::{self, Decision, Digests};
use crate::config::{AuthConfig, Require};
use crate::config::Verifier;
use crate::jwt::{self, JwtError, SignatureHost, Validator};
use crate::jwt_cache::{self, Grant, TokenCache};
use std::cell::RefCell;
use crate::path::{self, PathError};
use crate::rules;
use std::borrow::Cow;
use wasmfilter_common::ConfigError;
use wasmfilter_common::headers::Pair;

pub struct Policy {
    pub config: AuthConfig,
    validator: Option<Validator>,
    /// `config.keys` decoded once.
    keys: Digests,
    /// `owned_headers()`, computed once.
    owned: Vec<String>,
    /// Verified tokens of this worker (`jwt_cache`); a RefCell because the policy is shared by the worker's
    /// request contexts, one at a time (a Wasm VM is single-threaded).
    cache: RefCell<TokenCache>,
}

/// The request as the filter sees it. Header names are matched case-insensitively.
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path` as received (path and query).
    pub path: &'a str,
    pub headers: &'a [Pair<'a>],
}

/// Why a request was refused: counted as `wasmfilter_auth.reason.<name>` and logged, never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    BadPath,
    Missing,
    /// Several credentials, or several copies of one: never pick one.
    Ambiguous,
    BadKey,
    Token(JwtError),
    Forbidden,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadPath => "bad_path",
            Reason::Missing => "missing",
            Reason::Ambiguous => "ambiguous",
            Reason::BadKey => "bad_key",
            Reason::Token(e) => e.as_str(),
            Reason::Forbidden => "forbidden",
        }
    }

    /// Every reason, for defining the counters up front.
    pub const ALL: [Reason; 16] = [
        Reason::BadPath,
        Reason::Missing,
        Reason::Ambiguous,
        Reason::BadKey,
        Reason::Forbidden,
        Reason::Token(JwtError::Oversized),
        Reason::Token(JwtError::Malformed),
        Reason::Token(JwtError::UnsupportedAlg),
        Reason::Token(JwtError::UnknownKid),
        Reason::Token(JwtError::AlgMismatch),
        Reason::Token(JwtError::BadSignature),
        Reason::Token(JwtError::Expired),
        Reason::Token(JwtError::NotYetValid),
        Reason::Token(JwtError::WrongIssuer),
        Reason::Token(JwtError::WrongAudience),
        Reason::Token(JwtError::KeysUnavailable),
    ];
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Forward, setting these request headers (identity and claims). `public`: no credential was needed.
    Allow { public: bool, identity: Option<String>, headers: Vec<(String, String)> },
    Deny(Denial),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Denial {
    pub status: u32,
    pub reason: Reason,
    /// `WWW-Authenticate` values (401 only).
    pub challenges: Vec<&'static str>,
}

impl Denial {
    /// The JSON body: a fixed message per status, so it says nothing about which check failed.
    pub fn body(&self) -> &'static str {
        match (self.status, self.reason) {
            (400, _) => r#"{"error":"bad request"}"#,
            (503, _) => r#"{"error":"unavailable"}"#,
            (401, _) => r#"{"error":"missing credentials"}"#,
            (_, Reason::Forbidden) => r#"{"error":"forbidden"}"#,
            _ => r#"{"error":"invalid credentials"}"#,
        }
    }
}

pub const API_KEY_CHALLENGE: &str = r#"ApiKey realm="wasmfilter""#;
pub const BEARER_CHALLENGE: &str = r#"Bearer realm="wasmfilter""#;

/// The result of looking for one kind of credential.
enum Found {
    Missing,
    Invalid(Reason),
    Valid { identity: Option<String>, headers: Vec<(String, String)> },
}

fn deny(status: u32, reason: Reason) -> Outcome {
    Outcome::Deny(Denial { status, reason, challenges: Vec::new() })
}

impl Policy {
    pub fn parse(raw: &[u8]) -> Result<Self, ConfigError> {
        let config = AuthConfig::parse(raw)?;
        let validator = config.jwt.as_ref().map(Validator::new).transpose()?;
        let cache = RefCell::new(TokenCache::new(config.jwt_cache.max_entries));
        let keys = apikey::digests(&config);
        let mut owned = vec![config.identity_header.clone()];
        if let Some(jwt) = &config.jwt {
            owned.extend(jwt.claims_to_headers.values().cloned());
        }
        Ok(Policy { config, validator, keys, owned, cache })
    }

    /// Picks where RS256/ES256 signatures are checked (`jwt.verifier`); `host` runs Envoy's verify_signature
    /// self-test and is called only when an asymmetric key needs it. The answer is for the log.
    pub fn choose_backend(
        &mut self,
        host: impl FnOnce() -> Option<Box<dyn SignatureHost>>,
    ) -> Result<&'static str, ConfigError> {
        let (Some(validator), Some(jwt)) = (self.validator.as_mut(), self.config.jwt.as_ref()) else {
            return Ok("no JWT configured");
        };
        let wanted = validator.has_asymmetric_keys() && jwt.verifier != Verifier::Module;
        validator.choose_backend(jwt.verifier, if wanted { host() } else { None })
    }

    /// A fetched JWKS replaces the key set (see `Validator::replace_keys`); tokens verified under the old set are
    /// forgotten. Err: the answer is unusable and the old set (possibly none) stays.
    pub fn replace_keys(&self, body: &[u8]) -> Result<(usize, Vec<String>), String> {
        let (Some(validator), Some(remote)) =
            (&self.validator, self.config.jwt.as_ref().and_then(|j| j.remote_jwks.as_ref()))
        else {
            return Err("no remote_jwks configured".to_owned());
        };
        let replaced = validator.replace_keys(body, remote.max_keys)?;
        self.cache.borrow_mut().clear();
        Ok(replaced)
    }

    /// Keys in use now (for the log).
    pub fn key_count(&self) -> usize {
        self.validator.as_ref().map(Validator::key_count).unwrap_or(0)
    }

    /// Request headers the filter owns: removed from every request before anything else, so a client can never
    /// supply them itself.
    pub fn owned_headers(&self) -> &[String] {
        &self.owned
    }

    pub fn evaluate(&self, request: &Request<'_>, now: u64) -> Outcome {
        match path::normalise(request.path) {
            Ok(normalised) => self.evaluate_normalised(request, &normalised, now),
            Err(PathError::Undecodable | PathError::Traversal) => deny(400, Reason::BadPath),
        }
    }

    /// `evaluate` for a caller that already holds the request path's normalised form (`path::normalise` of
    /// `request.path`, e.g. from `upstream_path`): the path is not canonicalised a second time.
    pub fn evaluate_normalised(&self, request: &Request<'_>, normalised: &str, now: u64) -> Outcome {
        let requirement = rules::requirement(&self.config, request.method, normalised);
        let (use_key, use_jwt) = match requirement.require {
            Require::Public => return Outcome::Allow { public: true, identity: None, headers: Vec::new() },
            Require::Deny => return deny(403, Reason::Forbidden),
            Require::ApiKey => (true, false),
            Require::Jwt => (false, true),
            Require::Any => (!self.config.keys.is_empty(), self.validator.is_some()),
        };
        let key = if use_key { self.api_key(request) } else { Found::Missing };
        let token = if use_jwt { self.token(request, now) } else { Found::Missing };
        let found = match (key, token) {
            (Found::Missing, Found::Missing) => {
                let mut challenges = Vec::new();
                if use_key {
                    challenges.push(API_KEY_CHALLENGE);
                }
                if use_jwt {
                    challenges.push(BEARER_CHALLENGE);
                }
                return Outcome::Deny(Denial { status: 401, reason: Reason::Missing, challenges });
            }
            // No key set yet (remote JWKS not fetched): fail closed, and say "try again" rather than "invalid".
            (Found::Invalid(reason @ Reason::Token(JwtError::KeysUnavailable)), _)
            | (_, Found::Invalid(reason @ Reason::Token(JwtError::KeysUnavailable))) => return deny(503, reason),
            (Found::Invalid(reason), _) | (_, Found::Invalid(reason)) => return deny(403, reason),
            (Found::Valid { .. }, Found::Valid { .. }) => return deny(403, Reason::Ambiguous),
            (found @ Found::Valid { .. }, Found::Missing) | (Found::Missing, found @ Found::Valid { .. }) => found,
        };
        let Found::Valid { identity, mut headers } = found else { return deny(403, Reason::Forbidden) };
        if !requirement.identities.is_empty() {
            let allowed = identity.as_ref().is_some_and(|id| requirement.identities.iter().any(|a| a == id));
            if !allowed {
                return deny(403, Reason::Forbidden);
            }
        }
        if let Some(id) = &identity {
            headers.push((self.config.identity_header.clone(), id.clone()));
        }
        Outcome::Allow { public: false, identity, headers }
    }

    fn header_values<'r>(request: &'r Request<'_>, name: &str) -> Vec<&'r str> {
        request.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref()).collect()
    }

    fn api_key(&self, request: &Request<'_>) -> Found {
        let mut presented: Vec<Cow<'_, str>> =
            Self::header_values(request, &self.config.key_header).into_iter().map(Cow::Borrowed).collect();
        if let Some(param) = &self.config.key_query_param {
            match path::query_values(path::split(request.path).1, param) {
                Ok(values) => presented.extend(values.into_iter().map(Cow::Owned)),
                Err(_) => return Found::Invalid(Reason::BadPath),
            }
        }
        match apikey::decide(&self.keys, &presented) {
            Decision::Allow { identity } => Found::Valid { identity: Some(identity), headers: Vec::new() },
            Decision::Missing => Found::Missing,
            Decision::Invalid if presented.len() > 1 => Found::Invalid(Reason::Ambiguous),
            Decision::Invalid => Found::Invalid(Reason::BadKey),
        }
    }

    fn token(&self, request: &Request<'_>, now: u64) -> Found {
        let (Some(jwt_config), Some(validator)) = (&self.config.jwt, &self.validator) else { return Found::Missing };
        let values = Self::header_values(request, &jwt_config.header);
        let value = match values.as_slice() {
            [] => return Found::Missing,
            [one] => *one,
            _ => return Found::Invalid(Reason::Ambiguous),
        };
        // Another scheme (e.g. Basic) or an empty token is no bearer credential at all.
        let Some(token) = jwt::bearer_token(value) else { return Found::Missing };
        // A proxy may join repeated headers with commas; a JWT never holds a comma or a space.
        // Bytes, not chars: both are ASCII, which never occurs inside a multi-byte UTF-8 sequence. `[u8]::contains`
        // is memchr, a word at a time (the char-set search decoded every character: ~60 wasm instructions per byte
        // of a 700-byte token).
        if token.as_bytes().contains(&b',') || token.as_bytes().contains(&b' ') {
            return Found::Invalid(Reason::Ambiguous);
        }
        // A token verified before (same bytes, same key set, not past its exp) grants the same again.
        let cached = self.cache.borrow().enabled() && token.len() <= jwt_config.max_token_bytes;
        let key = cached.then(|| jwt_cache::key(token));
        if let Some(Grant { identity, headers }) = key.and_then(|k| self.cache.borrow_mut().get(&k, token, now)) {
            return Found::Valid { identity, headers };
        }
        let claims = match validator.verify(token, now) {
            Ok(claims) => claims,
            Err(e) => return Found::Invalid(Reason::Token(e)),
        };
        let identity = claims.get(&jwt_config.identity_claim).and_then(jwt::claim_header_value);
        let headers: Vec<(String, String)> = jwt_config
            .claims_to_headers
            .iter()
            .filter_map(|(claim, header)| {
                claims.get(claim).and_then(jwt::claim_header_value).map(|v| (header.clone(), v))
            })
            .collect();
        if let (Some(k), Some(exp)) = (key, jwt::expiry(&claims)) {
            let grant = Grant { identity: identity.clone(), headers: headers.clone() };
            self.cache.borrow_mut().insert(k, token, exp, grant, now);
        }
        Found::Valid { identity, headers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::digest_hex;
    use crate::jwt::tests::{NOW, jwt_config_json, token};

    fn policy() -> Policy {
        let raw = format!(
            r#"{{
            "keys": {{"{}": "alice", "{}": "root"}},
            "key_query_param": "api_key",
            "jwt": {},
            "rules": [
                {{"prefix": "/healthz", "methods": ["GET"], "require": "public"}},
                {{"prefix": "/admin", "require": "any", "identities": ["admin", "root"]}},
                {{"prefix": "/keys-only", "require": "api_key"}},
                {{"prefix": "/jwt-only", "require": "jwt"}},
                {{"prefix": "/blocked", "require": "deny"}}
            ]
        }}"#,
            digest_hex("alice-secret"),
            digest_hex("root-secret"),
            jwt_config_json()
        );
        Policy::parse(raw.as_bytes()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<Pair<'static>> {
        wasmfilter_common::headers::owned(pairs)
    }

    fn eval(method: &str, path: &str, pairs: &[(&str, &str)]) -> Outcome {
        let hs = headers(pairs);
        policy().evaluate(&Request { method, path, headers: &hs }, NOW)
    }

    fn status(outcome: &Outcome) -> u32 {
        match outcome {
            Outcome::Allow { .. } => 200,
            Outcome::Deny(d) => d.status,
        }
    }

    fn reason(outcome: &Outcome) -> Option<Reason> {
        match outcome {
            Outcome::Allow { .. } => None,
            Outcome::Deny(d) => Some(d.reason),
        }
    }

    #[test]
    fn public_paths_need_nothing() {
        assert_eq!(eval("GET", "/healthz", &[]), Outcome::Allow { public: true, identity: None, headers: vec![] });
        assert_eq!(status(&eval("POST", "/healthz", &[])), 401);
    }

    #[test]
    fn missing_credentials_get_challenges() {
        let Outcome::Deny(d) = eval("GET", "/orders", &[]) else { panic!("allowed") };
        assert_eq!((d.status, d.reason), (401, Reason::Missing));
        assert_eq!(d.challenges, vec![API_KEY_CHALLENGE, BEARER_CHALLENGE]);
        assert_eq!(d.body(), r#"{"error":"missing credentials"}"#);
        let Outcome::Deny(d) = eval("GET", "/jwt-only", &[("x-api-key", "alice-secret")]) else { panic!() };
        assert_eq!((d.status, d.challenges.as_slice()), (401, [BEARER_CHALLENGE].as_slice()));
        assert_eq!(status(&eval("GET", "/orders", &[("authorization", "Basic YTpi")])), 401);
    }

    #[test]
    fn api_key_from_header_or_query() {
        let allowed = eval("GET", "/orders", &[("X-Api-Key", "alice-secret")]);
        assert_eq!(
            allowed,
            Outcome::Allow {
                public: false,
                identity: Some("alice".into()),
                headers: vec![("x-auth-identity".into(), "alice".into())]
            }
        );
        assert_eq!(status(&eval("GET", "/orders?api_key=alice-secret", &[])), 200);
        assert_eq!(reason(&eval("GET", "/orders?api_key=nope", &[])), Some(Reason::BadKey));
        let both = eval("GET", "/orders?api_key=alice-secret", &[("x-api-key", "root-secret")]);
        assert_eq!(reason(&both), Some(Reason::Ambiguous));
        assert_eq!(reason(&eval("GET", "/orders?api_key=%zz", &[])), Some(Reason::BadPath));
    }

    #[test]
    fn jwt_claims_are_forwarded() {
        let bearer = format!("Bearer {}", token("rs256"));
        let Outcome::Allow { identity, headers, .. } = eval("GET", "/orders", &[("authorization", &bearer)]) else {
            panic!("denied")
        };
        assert_eq!(identity.as_deref(), Some("alice"));
        assert!(headers.contains(&("x-jwt-sub".into(), "alice".into())), "{headers:?}");
        assert!(headers.contains(&("x-jwt-scope".into(), "orders:read".into())), "{headers:?}");
        assert!(headers.contains(&("x-auth-identity".into(), "alice".into())), "{headers:?}");
    }

    #[test]
    fn invalid_credentials_are_403_with_a_generic_body() {
        for name in ["expired", "alg_none", "tampered_payload", "hs256_with_rsa_pem"] {
            let bearer = format!("Bearer {}", token(name));
            let Outcome::Deny(d) = eval("GET", "/orders", &[("authorization", &bearer)]) else { panic!("{name}") };
            assert_eq!(d.status, 403, "{name}");
            assert_eq!(d.body(), r#"{"error":"invalid credentials"}"#);
        }
        let bearer = format!("Bearer {}", token("rs256"));
        let two = eval("GET", "/orders", &[("authorization", &bearer), ("authorization", &bearer)]);
        assert_eq!(reason(&two), Some(Reason::Ambiguous));
        let joined = format!("{bearer}, {bearer}");
        assert_eq!(reason(&eval("GET", "/orders", &[("authorization", &joined)])), Some(Reason::Ambiguous));
        let both = eval("GET", "/orders", &[("authorization", &bearer), ("x-api-key", "alice-secret")]);
        assert_eq!(reason(&both), Some(Reason::Ambiguous));
        // An invalid key next to a valid token still fails.
        let mixed = eval("GET", "/orders", &[("authorization", &bearer), ("x-api-key", "nope")]);
        assert_eq!(reason(&mixed), Some(Reason::BadKey));
    }

    #[test]
    fn identities_and_deny_rules_are_403_forbidden() {
        let alice = format!("Bearer {}", token("rs256"));
        let admin = format!("Bearer {}", token("admin_rs256"));
        let Outcome::Deny(d) = eval("GET", "/admin", &[("authorization", &alice)]) else { panic!() };
        assert_eq!((d.status, d.reason, d.body()), (403, Reason::Forbidden, r#"{"error":"forbidden"}"#));
        assert_eq!(status(&eval("GET", "/admin/x", &[("authorization", &admin)])), 200);
        assert_eq!(status(&eval("GET", "/admin", &[("x-api-key", "root-secret")])), 200);
        assert_eq!(status(&eval("GET", "/blocked", &[("x-api-key", "root-secret")])), 403);
        assert_eq!(status(&eval("GET", "/keys-only", &[("authorization", &admin)])), 401);
    }

    #[test]
    fn encoded_paths_cannot_reach_public_rules() {
        for path in ["/healthz/../admin", "/healthz/%2e%2e/admin", "/healthz%2f..%2fadmin", "/healthz/..;/admin", "//admin"] {
            assert_eq!(status(&eval("GET", path, &[])), 401, "{path}");
        }
        for path in ["/%2e%2e/admin", "/healthz/%252e%252e/admin", "/healthz/%zz", "/a%00"] {
            let Outcome::Deny(d) = eval("GET", path, &[]) else { panic!("{path}") };
            assert_eq!((d.status, d.reason, d.body()), (400, Reason::BadPath, r#"{"error":"bad request"}"#), "{path}");
        }
    }

    #[test]
    fn verified_tokens_are_cached_until_exp() {
        let mut p = policy();
        let (host, calls) = crate::jwt::tests::fake_host(true);
        p.choose_backend(|| Some(host)).unwrap();
        let bearer = format!("Bearer {}", token("rs256"));
        let hs = headers(&[("authorization", &bearer)]);
        let request = Request { method: "GET", path: "/orders", headers: &hs };
        let first = p.evaluate(&request, NOW);
        assert_eq!(status(&first), 200);
        assert_eq!(p.evaluate(&request, NOW + 10), first, "a hit grants the same");
        assert_eq!(calls.borrow().len(), 1, "the second request skipped the signature check");
        let exp = 4_102_444_800; // the fixtures' exp: past it the entry is dropped and the token checked again
        assert_eq!(reason(&p.evaluate(&request, exp + 61)), Some(Reason::Token(JwtError::Expired)));
        assert_eq!(calls.borrow().len(), 2);
        // Off: every request verifies.
        let raw = format!(r#"{{"jwt": {}, "jwt_cache": {{"max_entries": 0}}}}"#, jwt_config_json());
        let mut off = Policy::parse(raw.as_bytes()).unwrap();
        let (host, calls) = crate::jwt::tests::fake_host(true);
        off.choose_backend(|| Some(host)).unwrap();
        for _ in 0..3 {
            assert_eq!(status(&off.evaluate(&request, NOW)), 200);
        }
        assert_eq!(calls.borrow().len(), 3);
    }

    #[test]
    fn remote_keys_fail_closed_with_503_then_serve_and_reset_the_cache() {
        let raw = r#"{"jwt": {"issuer": "https://issuer.example", "audiences": ["wasmfilter"],
            "remote_jwks": {"cluster": "idp", "path": "/jwks"}}}"#;
        let p = Policy::parse(raw.as_bytes()).unwrap();
        let bearer = format!("Bearer {}", token("rs256"));
        let hs = headers(&[("authorization", &bearer)]);
        let request = Request { method: "GET", path: "/orders", headers: &hs };
        let Outcome::Deny(d) = p.evaluate(&request, NOW) else { panic!("allowed without keys") };
        assert_eq!((d.status, d.reason, d.body()), (503, Reason::Token(JwtError::KeysUnavailable), r#"{"error":"unavailable"}"#));
        assert_eq!(status(&p.evaluate(&Request { method: "GET", path: "/orders", headers: &[] }, NOW)), 401);
        let set = crate::jwt::tests::fixtures()["config"]["jwt"]["jwks"].to_string();
        assert_eq!(p.replace_keys(set.as_bytes()).unwrap().0, 3);
        assert_eq!(status(&p.evaluate(&request, NOW)), 200);
        assert_eq!(p.cache.borrow().len(), 1);
        let es_only = serde_json::json!({"keys": [crate::jwt::tests::fixtures()["config"]["jwt"]["jwks"]["keys"][2]]});
        p.replace_keys(es_only.to_string().as_bytes()).unwrap();
        assert!(p.cache.borrow().is_empty(), "a new key set forgets tokens verified under the old one");
        assert_eq!(reason(&p.evaluate(&request, NOW)), Some(Reason::Token(JwtError::UnknownKid)));
    }

    #[test]
    fn owned_headers_include_claim_headers() {
        let p = policy();
        let owned = p.owned_headers();
        assert!(owned.iter().any(|h| h == "x-auth-identity") && owned.iter().any(|h| h == "x-jwt-sub"), "{owned:?}");
    }

    #[test]
    fn reasons_have_distinct_names() {
        let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
