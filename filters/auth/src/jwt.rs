//! JWT (RFC 7519) verification with keys from an inline JWKS: HS256, RS256 and ES256 only.
//!
//! Each key is bound to exactly one algorithm by its `kty`, so a token can never make the filter use an RSA or EC
//! public key as an HMAC secret (algorithm confusion), and `alg: none` or any other algorithm is refused.
//! The time is passed in, so the logic is testable without a proxy.
use hmac::{Hmac, Mac};
#[cfg(feature = "es256")]
use p256::ecdsa::signature::Verifier as _;
#[cfg(all(feature = "rs256", not(feature = "es256")))]
use rsa::signature::Verifier as _;
use sha2::Sha256;
use std::cell::RefCell;
use std::rc::Rc;

use crate::config::{JwkConfig, JwtConfig, Verifier, invalid, is_header_value};
use crate::host_crypto::{self, HostKey};
use wasmfilter_common::ConfigError;
use wasmfilter_common::json::{self, Number, Object, Value};

/// A verified token's claims: a JSON object (duplicate claim names make the token malformed, RFC 7519 §4).
pub type Claims = Object;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    Rs256,
    Es256,
}

impl Alg {
    fn from_name(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::Hs256),
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

/// Why a token was refused. Logged and counted; never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Oversized,
    Malformed,
    UnsupportedAlg,
    UnknownKid,
    /// The token's `alg` does not match the algorithm its key is bound to.
    AlgMismatch,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    /// No key set yet: the remote JWKS has not been fetched successfully (fail closed).
    KeysUnavailable,
}

impl JwtError {
    pub fn as_str(self) -> &'static str {
        match self {
            JwtError::Oversized => "oversized",
            JwtError::Malformed => "malformed",
            JwtError::UnsupportedAlg => "unsupported_alg",
            JwtError::UnknownKid => "unknown_kid",
            JwtError::AlgMismatch => "alg_mismatch",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::KeysUnavailable => "keys_unavailable",
        }
    }
}

enum Material {
    Hmac(Vec<u8>),
    /// The key as Envoy's `verify_signature` takes it (encoded once) and, when compiled in, the in-module key.
    Rsa {
        spki: HostKey,
        #[cfg(feature = "rs256")]
        key: rsa::pkcs1v15::VerifyingKey<Sha256>,
    },
    Ec {
        spki: HostKey,
        #[cfg(feature = "es256")]
        key: p256::ecdsa::VerifyingKey,
    },
}

/// Checks RS256/ES256 signatures outside the module: Envoy's `verify_signature` foreign function (BoringSSL).
/// Chosen once, at `on_configure` (see `host_crypto::self_test`); without one the in-module code checks them.
pub trait SignatureHost {
    /// True only when the host says the DER `signature` over `text` is valid for `key`.
    fn verify(&self, key: &HostKey, signature: &[u8], text: &[u8]) -> bool;
}

struct Key {
    kid: Option<String>,
    alg: Alg,
    material: Material,
}

impl Key {
    fn verify(&self, signing_input: &[u8], signature: &[u8], host: Option<&dyn SignatureHost>) -> bool {
        match &self.material {
            Material::Hmac(secret) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
                mac.update(signing_input);
                mac.verify_slice(signature).is_ok() // constant time
            }
            #[cfg_attr(not(feature = "rs256"), allow(unused_variables))]
            Material::Rsa { spki, .. } => {
                if let Some(host) = host {
                    return host.verify(spki, signature, signing_input);
                }
                #[cfg(feature = "rs256")]
                if let Material::Rsa { key, .. } = &self.material {
                    return match rsa::pkcs1v15::Signature::try_from(signature) {
                        Ok(sig) => key.verify(signing_input, &sig).is_ok(),
                        Err(_) => false,
                    };
                }
                false
            }
            Material::Ec { spki, .. } => {
                if let Some(host) = host {
                    // JWS `r || s` → DER; any other length is no ES256 signature.
                    return host_crypto::ecdsa_der(signature).is_some_and(|der| host.verify(spki, &der, signing_input));
                }
                #[cfg(feature = "es256")]
                if let Material::Ec { key, .. } = &self.material {
                    return match p256::ecdsa::Signature::from_slice(signature) {
                        Ok(sig) => key.verify(signing_input, &sig).is_ok(),
                        Err(_) => false,
                    };
                }
                false
            }
        }
    }

    fn asymmetric(&self) -> bool {
        !matches!(self.material, Material::Hmac(_))
    }

    /// Whether the in-module code can check this key's signatures (its cargo feature is compiled in).
    fn compiled_in(&self) -> bool {
        match self.material {
            Material::Hmac(_) => true,
            Material::Rsa { .. } => cfg!(feature = "rs256"),
            Material::Ec { .. } => cfg!(feature = "es256"),
        }
    }
}

/// The JWK members a fetched key may carry into `JwkConfig` (the rest are ignored).
const JWK_MEMBERS: &[&str] = &["kty", "kid", "alg", "use", "key_ops", "k", "n", "e", "crv", "x", "y", "d"];

const MIN_HMAC_BYTES: usize = 32;
const MIN_RSA_BITS: usize = 2048;

/// Bits of a big-endian unsigned integer (leading zero bytes ignored).
fn modulus_bits(n: &[u8]) -> usize {
    let skip = n.iter().take_while(|b| **b == 0).count();
    match n.get(skip) {
        Some(top) => (n.len() - skip - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    }
}

fn b64(field: &str, value: Option<&String>) -> Result<Vec<u8>, ConfigError> {
    let value = value.ok_or_else(|| invalid(field, "is required for this key type"))?;
    base64url(value).ok_or_else(|| invalid(field, "is not unpadded base64url"))
}

fn build_key(at: &str, jwk: &JwkConfig) -> Result<Key, ConfigError> {
    let f = |name: &str| format!("{at}.{name}");
    if let Some(usage) = &jwk.use_ {
        if usage != "sig" {
            return Err(invalid(&f("use"), "must be `sig`"));
        }
    }
    let (alg, material) = match jwk.kty.as_str() {
        "oct" => {
            let secret = b64(&f("k"), jwk.k.as_ref())?;
            if secret.len() < MIN_HMAC_BYTES {
                return Err(invalid(&f("k"), "must be at least 32 bytes (256 bits)"));
            }
            (Alg::Hs256, Material::Hmac(secret))
        }
        "RSA" => {
            if jwk.d.is_some() {
                return Err(invalid(&f("d"), "is private key material; configure the public key only"));
            }
            let n = b64(&f("n"), jwk.n.as_ref())?;
            let e = b64(&f("e"), jwk.e.as_ref())?;
            if modulus_bits(&n) < MIN_RSA_BITS || e.iter().all(|b| *b == 0) || e.len() > 8 {
                return Err(invalid(&f("n"), "must be an RSA modulus of at least 2048 bits (with a usable `e`)"));
            }
            let spki = HostKey::new(&host_crypto::rsa_spki(&n, &e));
            #[cfg(feature = "rs256")]
            let key = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e))
                .map(rsa::pkcs1v15::VerifyingKey::new)
                .map_err(|e| invalid(&f("n"), format!("is not a usable RSA public key ({e})")))?;
            #[cfg(feature = "rs256")]
            let material = Material::Rsa { spki, key };
            #[cfg(not(feature = "rs256"))]
            let material = Material::Rsa { spki };
            (Alg::Rs256, material)
        }
        "EC" => {
            if jwk.d.is_some() {
                return Err(invalid(&f("d"), "is private key material; configure the public key only"));
            }
            if jwk.crv.as_deref() != Some("P-256") {
                return Err(invalid(&f("crv"), "must be `P-256`"));
            }
            let x = b64(&f("x"), jwk.x.as_ref())?;
            let y = b64(&f("y"), jwk.y.as_ref())?;
            if x.len() != 32 || y.len() != 32 {
                return Err(invalid(&f("x"), "and `y` must be 32-byte P-256 coordinates"));
            }
            let spki = HostKey::new(&host_crypto::p256_spki(&x, &y));
            #[cfg(feature = "es256")]
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&[&[0x04], &x[..], &y[..]].concat())
                .map_err(|_| invalid(&f("x"), "and `y` are not a point on P-256"))?;
            #[cfg(feature = "es256")]
            let material = Material::Ec { spki, key };
            #[cfg(not(feature = "es256"))]
            let material = Material::Ec { spki };
            (Alg::Es256, material)
        }
        other => {
            return Err(invalid(&f("kty"), format!("`{other}` is not supported (use oct, RSA or EC)")));
        }
    };
    if let Some(name) = &jwk.alg {
        if Alg::from_name(name) != Some(alg) {
            return Err(invalid(
                &f("alg"),
                format!("`{name}` does not match kty `{}` (oct: HS256, RSA: RS256, EC: ES256)", jwk.kty),
            ));
        }
    }
    Ok(Key { kid: jwk.kid.clone(), alg, material })
}

/// The token's protected header. Extra members are tolerated except `crit`, which we must understand.
struct Header<'a> {
    alg: &'a str,
    kid: Option<&'a str>,
    /// Present and not null.
    crit: bool,
}

impl<'a> Header<'a> {
    /// `alg` a string, `kid` a string or null when present; anything else is malformed.
    fn read(header: &'a Object) -> Result<Self, JwtError> {
        let alg = header.get("alg").and_then(Value::as_str).ok_or(JwtError::Malformed)?;
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(JwtError::Malformed),
        };
        Ok(Header { alg, kid, crit: !matches!(header.get("crit"), None | Some(Value::Null)) })
    }
}

/// The value of each base64url character (RFC 4648 §5), 0xff for every other byte. Built at compile time: an index
/// out of bounds would fail the build, never a request.
#[allow(clippy::indexing_slicing)]
const BASE64URL: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// A token part: unpadded base64url decoded as strictly as base64ct does (only the 64 characters, no `=`, no length
/// of the form 4n+1, zero trailing bits: one text per byte string), a table lookup per character. Not constant-time,
/// and need not be: a token's parts are what the client sent, no secret (a JWK's `k` is decoded with it once, at
/// configuration, where no request can time it). base64ct's constant-time decoding cost
/// ~160 wasm instructions per character, ~110,000 of an RS256 request's 197,000 (`wasmfilter profile`).
fn base64url(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let value = |c: &u8| BASE64URL.get(usize::from(*c)).copied().unwrap_or(0xff);
    // Whole groups are written in place (no capacity check per group), the last partial one pushed.
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    out.resize(text.len() / 4 * 3, 0);
    let mut chunks = text.chunks_exact(4);
    let mut bad = 0u8; // 0..=63 never set the top bit, 0xff does
    for (chunk, bytes) in (&mut chunks).zip(out.chunks_exact_mut(3)) {
        let (&[a, b, c, d], [x, y, z]) = (chunk, bytes) else { return None };
        let (a, b, c, d) = (value(&a), value(&b), value(&c), value(&d));
        bad |= a | b | c | d;
        let bits = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        (*x, *y, *z) = ((bits >> 16) as u8, (bits >> 8) as u8, bits as u8);
    }
    if bad & 0x80 != 0 {
        return None;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let (mut bits, mut bad) = (0u32, 0u8);
        for v in rest.iter().map(value) {
            bad |= v;
            bits = bits << 6 | u32::from(v);
        }
        // 2 characters: 12 bits → 1 byte and 4 spare bits; 3 characters: 18 bits → 2 bytes and 2 spare bits.
        let spare = if rest.len() == 2 { 4 } else { 2 };
        if bad & 0x80 != 0 || bits & ((1 << spare) - 1) != 0 {
            return None;
        }
        let bits = bits >> spare;
        if rest.len() == 3 {
            out.push((bits >> 8) as u8);
        }
        out.push(bits as u8);
    }
    Some(out)
}

/// A base64url JWT part holding a JSON object.
fn decode_object(part: &str) -> Result<Object, JwtError> {
    let bytes = base64url(part).ok_or(JwtError::Malformed)?;
    match json::parse(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(JwtError::Malformed),
    }
}

pub struct Validator {
    /// Where RS256/ES256 signatures are checked: Envoy (Some) or the in-module code (None).
    host: Option<Box<dyn SignatureHost>>,
    /// Replaced as a whole when a remote JWKS arrives (requests hold their own Rc while they verify).
    keys: RefCell<Rc<Vec<Key>>>,
    /// A remote JWKS is configured: RSA/EC keys may arrive later.
    remote: bool,
    issuer: Option<String>,
    audiences: Vec<String>,
    skew: u64,
    max_bytes: usize,
}

impl Validator {
    pub fn new(config: &JwtConfig) -> Result<Self, ConfigError> {
        let mut keys: Vec<Key> = Vec::new();
        let inline = config.jwks.as_ref().map(|j| j.keys.as_slice()).unwrap_or_default();
        for (i, jwk) in inline.iter().enumerate() {
            let key = build_key(&format!("jwt.jwks.keys[{i}]"), jwk)?;
            if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
                return Err(invalid(&format!("jwt.jwks.keys[{i}].kid"), "is used by another key"));
            }
            keys.push(key);
        }
        Ok(Validator {
            host: None,
            keys: RefCell::new(Rc::new(keys)),
            remote: config.remote_jwks.is_some(),
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            skew: config.clock_skew_s,
            max_bytes: config.max_token_bytes,
        })
    }

    /// Picks where RS256/ES256 signatures are checked, once, at configuration: `host` is Envoy's
    /// `verify_signature` when its self-test passed. The answer is for the log.
    pub fn choose_backend(&mut self, verifier: Verifier, host: Option<Box<dyn SignatureHost>>) -> Result<&'static str, ConfigError> {
        let missing = self.keys.borrow().iter().position(|k| !k.compiled_in());
        if !self.has_asymmetric_keys() {
            return Ok("HS256 only: no asymmetric key, nothing to choose");
        }
        match (verifier, host) {
            (Verifier::Module, _) | (Verifier::Auto, None) => match missing {
                Some(i) => Err(invalid(
                    &format!("jwt.jwks.keys[{i}].kty"),
                    "needs Envoy's verify_signature (absent or failing its self-test here) or the filter built with \
                     cargo feature rs256/es256",
                )),
                None => Ok("RS256/ES256 in-module (RSA/P-256 compiled into the filter)"),
            },
            (Verifier::Envoy | Verifier::Auto, Some(host)) => {
                self.host = Some(host);
                Ok("RS256/ES256 by Envoy's verify_signature foreign function (BoringSSL)")
            }
            (Verifier::Envoy, None) => Err(invalid(
                "jwt.verifier",
                "is `envoy` but this Envoy has no working verify_signature foreign function",
            )),
        }
    }

    /// Whether any key is RSA or EC (only then is Envoy's verify_signature worth a self-test).
    pub fn has_asymmetric_keys(&self) -> bool {
        self.remote || self.keys.borrow().iter().any(Key::asymmetric)
    }

    pub fn key_count(&self) -> usize {
        self.keys.borrow().len()
    }

    /// Replaces the key set with a fetched JWKS document. Keys this filter cannot use (other types, curves or
    /// uses, RSA/EC without a verifier for them, private material, duplicate kids) are skipped and named in the
    /// second list; no usable key, JSON that is not a JWKS or more than `max_keys` keys: Err, the old set stays.
    pub fn replace_keys(&self, body: &[u8], max_keys: usize) -> Result<(usize, Vec<String>), String> {
        let doc = json::parse(body).map_err(|e| format!("not JSON ({e})"))?;
        let keys_member = match doc {
            Value::Object(members) => members.into_iter().find(|(name, _)| name == "keys").map(|(_, value)| value),
            _ => None,
        };
        let Some(Value::Array(entries)) = keys_member else {
            return Err("no `keys` array".to_owned());
        };
        if entries.len() > max_keys {
            return Err(format!("{} keys, more than max_keys {max_keys}", entries.len()));
        }
        let mut keys: Vec<Key> = Vec::new();
        let mut skipped = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let at = format!("keys[{i}]");
            // Identity providers add members we do not use (x5c, x5t, ...): keep only the JWK members we read.
            let known = match entry {
                Value::Object(members) => {
                    Value::Object(members.into_iter().filter(|(k, _)| JWK_MEMBERS.contains(&k.as_str())).collect())
                }
                other => other,
            };
            let key = json::from_value::<JwkConfig>(&known)
                .map_err(|e| e.at_index(i).at_key("keys").to_string())
                .and_then(|jwk| build_key(&at, &jwk).map_err(|e| e.message().to_owned()));
            match key {
                Ok(key) if self.host.is_none() && !key.compiled_in() => {
                    skipped.push(format!("{at}: no verifier for its algorithm in this build and Envoy"));
                }
                Ok(key) if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) => {
                    skipped.push(format!("{at}: kid used by another key"));
                }
                Ok(key) => keys.push(key),
                Err(e) => skipped.push(e),
            }
        }
        if keys.is_empty() {
            let reasons = skipped.iter().fold(String::new(), |all, why| if all.is_empty() { why.clone() } else { all + "; " + why });
            return Err(format!("no usable key ({reasons})"));
        }
        let count = keys.len();
        *self.keys.borrow_mut() = Rc::new(keys);
        Ok((count, skipped))
    }

    fn key_for<'k>(keys: &'k [Key], alg: Alg, kid: Option<&str>) -> Result<&'k Key, JwtError> {
        match kid {
            Some(kid) => {
                let key = keys.iter().find(|k| k.kid.as_deref() == Some(kid)).ok_or(JwtError::UnknownKid)?;
                if key.alg == alg { Ok(key) } else { Err(JwtError::AlgMismatch) }
            }
            // Without a kid the choice must be unambiguous: exactly one key for that algorithm.
            None => {
                let mut candidates = keys.iter().filter(|k| k.alg == alg);
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Ok(key),
                    _ => Err(JwtError::UnknownKid),
                }
            }
        }
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch); its claims on success.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, JwtError> {
        if token.len() > self.max_bytes {
            return Err(JwtError::Oversized);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header = decode_object(header_b64)?;
        let header = Header::read(&header)?;
        if header.crit {
            return Err(JwtError::UnsupportedAlg);
        }
        let alg = Alg::from_name(header.alg).ok_or(JwtError::UnsupportedAlg)?;
        let signature = base64url(signature_b64).ok_or(JwtError::Malformed)?;
        if signature.is_empty() {
            return Err(JwtError::Malformed);
        }
        let keys = Rc::clone(&self.keys.borrow());
        if keys.is_empty() {
            return Err(JwtError::KeysUnavailable);
        }
        let key = Self::key_for(&keys, alg, header.kid)?;
        let signing_input_len = header_b64.len() + 1 + payload_b64.len();
        let signing_input = token.as_bytes().get(..signing_input_len).ok_or(JwtError::Malformed)?;
        if !key.verify(signing_input, &signature, self.host.as_deref()) {
            return Err(JwtError::BadSignature);
        }
        let claims = decode_object(payload_b64)?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Claims, now: u64) -> Result<(), JwtError> {
        let exp = numeric_date(claims.get("exp"))?.ok_or(JwtError::Malformed)?;
        if now > exp.saturating_add(self.skew) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_date(claims.get("nbf"))? {
            if now.saturating_add(self.skew) < nbf {
                return Err(JwtError::NotYetValid);
            }
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(JwtError::WrongIssuer);
            }
        }
        if !self.audiences.is_empty() {
            let matches = |aud: &str| self.audiences.iter().any(|a| a == aud);
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => matches(aud),
                Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(matches),
                _ => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        Ok(())
    }
}

/// The `exp` of verified claims (every verified token has one), for the token cache.
pub fn expiry(claims: &Claims) -> Option<u64> {
    numeric_date(claims.get("exp")).ok().flatten()
}

/// Bound on a NumericDate written as a fraction or with an exponent (an integer may be any u64).
const MAX_FRACTIONAL_DATE: u64 = 1_000_000_000_000_000;

/// A NumericDate claim: absent → None; present but not a non-negative number → malformed.
fn numeric_date(value: Option<&Value>) -> Result<Option<u64>, JwtError> {
    match value {
        None => Ok(None),
        Some(Value::Number(Number::Unsigned(n))) => Ok(Some(*n)),
        // Fractional seconds are allowed by RFC 7519; truncating them (exactly, from the text) is safe for both
        // exp and nbf checks only within the skew, which is what we want.
        Some(Value::Number(n)) => match n.integer_part() {
            Some(seconds) if seconds < MAX_FRACTIONAL_DATE => Ok(Some(seconds)),
            _ => Err(JwtError::Malformed),
        },
        Some(_) => Err(JwtError::Malformed),
    }
}

/// The header value for a claim: strings as they are, numbers as written in the token (integers in decimal),
/// booleans printed, arrays of strings joined by spaces (e.g. `scope`). None for anything else or a value unsafe in
/// a header.
pub fn claim_header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let mut joined = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    joined.push(' ');
                }
                joined.push_str(item.as_str()?);
            }
            joined
        }
        _ => return None,
    };
    is_header_value(&text).then_some(text)
}

/// Extracts the token from an `Authorization`-style header value: `Bearer <token>` (scheme case-insensitive).
/// None when the scheme is not Bearer or the token is empty.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64ct::{Base64UrlUnpadded, Encoding};
    use crate::config::AuthConfig;
    /// The fixtures are built and edited with serde_json (a test dependency), then read by the filter's own reader.
    use serde_json::Value as Json;

    /// Written by scenarios/gen_fixtures.py: the JWKS, issuer/audience, and named tokens.
    pub(crate) const FIXTURES: &str = include_str!("../testdata/jwt_fixtures.json");
    /// 2026-01-01: inside the validity of every "valid" fixture token (they expire in 2100).
    pub(crate) const NOW: u64 = 1_767_225_600;

    pub(crate) fn fixtures() -> Json {
        serde_json::from_str(FIXTURES).unwrap()
    }

    pub(crate) fn token(name: &str) -> String {
        fixtures()["tokens"][name].as_str().unwrap_or_else(|| panic!("no fixture token {name}")).to_owned()
    }

    pub(crate) fn jwt_config_json() -> String {
        fixtures()["config"]["jwt"].to_string()
    }

    fn validator() -> Validator {
        let config: JwtConfig = json::from_slice(jwt_config_json().as_bytes()).unwrap();
        Validator::new(&config).unwrap()
    }

    #[test]
    fn accepts_each_algorithm() {
        let v = validator();
        for name in ["hs256", "rs256", "es256", "es256_nokid"] {
            let claims = v.verify(&token(name), NOW).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(claims.get("sub").and_then(Value::as_str), Some("alice"), "{name}");
        }
        assert_eq!(v.verify(&token("admin_rs256"), NOW).unwrap().get("sub").and_then(Value::as_str), Some("admin"));
    }

    #[test]
    fn refuses_attacks() {
        let v = validator();
        for (name, want) in [
            ("alg_none", JwtError::UnsupportedAlg),
            ("alg_none_unsigned", JwtError::UnsupportedAlg),
            ("alg_none_mixed_case", JwtError::UnsupportedAlg),
            ("hs256_with_rsa_pem", JwtError::AlgMismatch),
            ("hs256_with_rsa_n_nokid", JwtError::BadSignature),
            ("hs384", JwtError::UnsupportedAlg),
            ("crit_header", JwtError::UnsupportedAlg),
            ("tampered_payload", JwtError::BadSignature),
            ("tampered_header", JwtError::BadSignature),
            ("wrong_rsa_key", JwtError::BadSignature),
            ("es256_der_signature", JwtError::BadSignature),
            ("truncated", JwtError::Malformed),
            ("two_parts", JwtError::Malformed),
            ("padded", JwtError::Malformed),
            ("bad_base64", JwtError::Malformed),
            ("header_not_json", JwtError::Malformed),
            ("expired", JwtError::Expired),
            ("not_yet_valid", JwtError::NotYetValid),
            ("wrong_issuer", JwtError::WrongIssuer),
            ("wrong_audience", JwtError::WrongAudience),
            ("unknown_kid", JwtError::UnknownKid),
            ("no_exp", JwtError::Malformed),
            ("exp_string", JwtError::Malformed),
            ("oversized", JwtError::Oversized),
        ] {
            assert_eq!(v.verify(&token(name), NOW).err(), Some(want), "{name}");
        }
    }

    #[test]
    fn clock_skew_applies_to_exp_and_nbf() {
        let v = validator(); // 60 s skew
        let claims = object(r#"{"exp": 1000, "nbf": 900, "iss": "https://issuer.example", "aud": "wasmfilter"}"#);
        assert_eq!(v.check_claims(&claims, 1060), Ok(()));
        assert_eq!(v.check_claims(&claims, 1061), Err(JwtError::Expired));
        assert_eq!(v.check_claims(&claims, 840), Ok(()));
        assert_eq!(v.check_claims(&claims, 839), Err(JwtError::NotYetValid));
        let audiences = object(r#"{"exp": 1000, "iss": "https://issuer.example", "aud": ["x", "wasmfilter"]}"#);
        assert_eq!(v.check_claims(&audiences, 0), Ok(()));
        let fractional = object(r#"{"exp": 1000.5, "iss": "https://issuer.example", "aud": "wasmfilter"}"#);
        assert_eq!(v.check_claims(&fractional, 1000), Ok(()));
        assert_eq!(v.check_claims(&fractional, 1061), Err(JwtError::Expired));
        let exponent = object(r#"{"exp": 1.0605e3, "iss": "https://issuer.example", "aud": "wasmfilter"}"#);
        assert_eq!((v.check_claims(&exponent, 1120), v.check_claims(&exponent, 1121)), (Ok(()), Err(JwtError::Expired)));
        for bad in [r#"{"exp": -1}"#, r#"{"exp": -0.5}"#, r#"{"exp": 1e15}"#, r#"{"exp": 1e400}"#, r#"{"exp": "1000"}"#,
                    r#"{"exp": 1000, "nbf": true}"#, r#"{"nbf": 1}"#] {
            assert_eq!(v.check_claims(&object(bad), 0), Err(JwtError::Malformed), "{bad}");
        }
        assert_eq!(expiry(&object(r#"{"exp": 18446744073709551615}"#)), Some(u64::MAX), "an integer may be any u64");
    }

    fn object(text: &str) -> Object {
        match json::parse(text.as_bytes()) {
            Ok(Value::Object(object)) => object,
            other => panic!("{text}: {other:?}"),
        }
    }

    /// An HS256 token signed with the fixtures' `hs1` key, from header and claims as written.
    fn hs256_token(header: &str, claims: &str) -> String {
        let key = fixtures()["config"]["jwt"]["jwks"]["keys"][0]["k"].as_str().map(str::to_owned).unwrap();
        let key = Base64UrlUnpadded::decode_vec(&key).unwrap();
        let encode = |part: &str| Base64UrlUnpadded::encode_string(part.as_bytes());
        let input = format!("{}.{}", encode(header), encode(claims));
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes()))
    }

    #[test]
    fn token_json_is_read_strictly() {
        const CLAIMS: &str = r#"{"sub": "alice", "exp": 4102444800, "iss": "https://issuer.example", "aud": "wasmfilter"}"#;
        const HEADER: &str = r#"{"alg": "HS256", "kid": "hs1", "typ": "JWT"}"#;
        let v = validator();
        assert!(v.verify(&hs256_token(HEADER, CLAIMS), NOW).is_ok());
        // Header: extra members and a null kid or crit are fine; wrong types, duplicates, non-objects are malformed.
        let lenient = r#"{"alg": "HS256", "kid": null, "crit": null, "x": [1, {"y": 2.5}]}"#;
        assert!(v.verify(&hs256_token(lenient, CLAIMS), NOW).is_ok());
        for (header, want) in [
            (r#"{"alg": "HS256", "kid": "hs1", "alg": "HS256"}"#, JwtError::Malformed),
            (r#"{"alg": "HS256", "kid": 1}"#, JwtError::Malformed),
            (r#"{"alg": ["HS256"]}"#, JwtError::Malformed),
            (r#"{"kid": "hs1"}"#, JwtError::Malformed),
            (r#"["HS256"]"#, JwtError::Malformed),
            (r#"{"alg": "HS256"} {}"#, JwtError::Malformed),
            (r#"{"alg": "HS256", "kid": "hs\ud800"}"#, JwtError::Malformed),
            (r#"{"alg": "HS256", "kid": "hs1", "crit": []}"#, JwtError::UnsupportedAlg),
        ] {
            assert_eq!(v.verify(&hs256_token(header, CLAIMS), NOW).err(), Some(want), "{header}");
        }
        // Claims: validly signed but not one clean JSON object.
        let deep = format!(r#"{{"sub": "alice", "exp": 4102444800, "x": {}1{}}}"#, "[".repeat(200), "]".repeat(200));
        let dup = r#"{"sub": "alice", "exp": 4102444800, "iss": "https://issuer.example", "aud": "wasmfilter", "sub": "admin"}"#;
        let lone = r#"{"sub": "\udc00", "exp": 4102444800, "iss": "https://issuer.example", "aud": "wasmfilter"}"#;
        for claims in [dup, &deep, lone, "[]", r#"{"sub": "alice", "exp": 4102444800,}"#] {
            assert_eq!(v.verify(&hs256_token(HEADER, claims), NOW).err(), Some(JwtError::Malformed), "{claims}");
        }
        // Whatever JSON a claim holds is kept (numbers as written).
        let rich = r#"{"sub": "alice", "exp": 4102444800, "iss": "https://issuer.example", "aud": "wasmfilter",
                       "n": 1.50, "big": 123456789012345678901234567890, "o": {"a": [null, true]}, "u": "\u00e9\ud83d\ude00"}"#;
        let claims = v.verify(&hs256_token(HEADER, rich), NOW).unwrap();
        assert_eq!(claims.get("n").and_then(claim_header_value).as_deref(), Some("1.50"));
        assert_eq!(claims.get("big").and_then(claim_header_value).as_deref(), Some("123456789012345678901234567890"));
        assert_eq!(claims.get("u").and_then(Value::as_str), Some("é😀"));
        assert_eq!(claims.get("o").and_then(claim_header_value), None);
    }

    #[test]
    fn base64url_decodes_exactly_what_base64ct_does() {
        let alphabet = b"AQgw-_=+/. \xc3";
        let mut texts: Vec<String> = vec![String::new()];
        for len in 1..=5 {
            let mut index = vec![0usize; len];
            'all: loop {
                let bytes: Vec<u8> = index.iter().map(|i| alphabet[*i]).collect();
                texts.extend(String::from_utf8(bytes).ok());
                for digit in index.iter_mut() {
                    *digit += 1;
                    if *digit < alphabet.len() {
                        continue 'all;
                    }
                    *digit = 0;
                }
                break;
            }
        }
        texts.push(token("rs256").split('.').map(str::to_owned).collect::<Vec<_>>().join(""));
        texts.push("eyJhbGciOiJIUzI1NiJ9".into());
        texts.push("eyJhbGciOiJIUzI1NiJ9==".into());
        for text in &texts {
            assert_eq!(base64url(text), Base64UrlUnpadded::decode_vec(text).ok(), "{text:?}");
        }
        assert!(texts.len() > 100_000);
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn claim_values_for_headers() {
        let value = |text: &str| json::parse(text.as_bytes()).unwrap();
        assert_eq!(claim_header_value(&value(r#""a""#)), Some("a".into()));
        assert_eq!(claim_header_value(&value("3")), Some("3".into()));
        assert_eq!(claim_header_value(&value("-3")), Some("-3".into()));
        assert_eq!(claim_header_value(&value("true")), Some("true".into()));
        assert_eq!(claim_header_value(&value(r#"["r", "w"]"#)), Some("r w".into()));
        assert_eq!(claim_header_value(&value(r#"["r", 1]"#)), None);
        assert_eq!(claim_header_value(&value(r#""a\r\nx-evil: 1""#)), None);
        assert_eq!(claim_header_value(&value(r#"{"a": 1}"#)), None);
        assert_eq!(claim_header_value(&value("null")), None);
    }

    /// (public key, signature) pairs a fake host was asked about.
    pub(crate) type Calls = std::rc::Rc<std::cell::RefCell<Vec<(Vec<u8>, Vec<u8>)>>>;

    /// A stand-in for Envoy's verify_signature: records what it was asked, answers `answer`.
    pub(crate) struct FakeHost {
        pub(crate) calls: Calls,
        pub(crate) answer: bool,
    }

    impl SignatureHost for FakeHost {
        fn verify(&self, key: &HostKey, signature: &[u8], _text: &[u8]) -> bool {
            self.calls.borrow_mut().push((key.spki().to_vec(), signature.to_vec()));
            self.answer
        }
    }

    pub(crate) fn fake_host(answer: bool) -> (Box<dyn SignatureHost>, Calls) {
        let calls = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        (Box::new(FakeHost { calls: calls.clone(), answer }), calls)
    }

    #[test]
    fn envoy_verifies_asymmetric_signatures_when_chosen() {
        let der = |name: &str| hex::decode(fixtures()["der"][name].as_str().unwrap()).unwrap();
        let mut v = validator();
        let (host, calls) = fake_host(true);
        assert!(v.choose_backend(Verifier::Auto, Some(host)).unwrap().contains("verify_signature"));
        assert!(v.verify(&token("es256"), NOW).is_ok());
        assert_eq!(calls.borrow().last(), Some(&(der("es1_spki"), der("es256_sig_der"))), "DER key and signature");
        assert!(v.verify(&token("rs256"), NOW).is_ok());
        assert_eq!(calls.borrow().last().map(|c| c.0.clone()), Some(der("rs1_spki")));
        assert!(v.verify(&token("hs256"), NOW).is_ok());
        assert_eq!(calls.borrow().len(), 2, "HS256 never leaves the module");
        assert_eq!(v.verify(&token("es256_der_signature"), NOW).err(), Some(JwtError::BadSignature));
        assert_eq!(calls.borrow().len(), 2, "a DER signature in a JWS is refused before the host call");
        let mut refusing = validator();
        refusing.choose_backend(Verifier::Envoy, Some(fake_host(false).0)).unwrap();
        assert_eq!(refusing.verify(&token("rs256"), NOW).err(), Some(JwtError::BadSignature));
    }

    #[test]
    fn backend_choice_follows_the_verifier_setting() {
        let mut module = validator();
        let (host, calls) = fake_host(true);
        assert!(module.choose_backend(Verifier::Module, Some(host)).unwrap().contains("in-module"));
        assert_eq!(module.verify(&token("tampered_payload"), NOW).err(), Some(JwtError::BadSignature));
        assert!(calls.borrow().is_empty());
        let mut auto = validator();
        assert!(auto.choose_backend(Verifier::Auto, None).unwrap().contains("in-module"));
        let err = validator().choose_backend(Verifier::Envoy, None).unwrap_err();
        assert!(err.message().contains("field `jwt.verifier`"), "{err}");
    }

    fn remote_only() -> Validator {
        let config: JwtConfig =
            json::from_slice(br#"{"issuer": "https://issuer.example", "audiences": ["wasmfilter"],
                "remote_jwks": {"cluster": "idp", "path": "/jwks"}}"#).unwrap();
        Validator::new(&config).unwrap()
    }

    #[test]
    fn remote_key_sets_replace_and_fail_safely() {
        let v = remote_only();
        assert!(v.has_asymmetric_keys(), "RSA/EC keys may arrive: the host self-test is worth running");
        assert_eq!(v.verify(&token("rs256"), NOW).err(), Some(JwtError::KeysUnavailable), "fail closed before a fetch");
        let mut set = fixtures()["config"]["jwt"]["jwks"].clone();
        set["keys"][1]["x5c"] = Json::from(vec!["MIIB..."]); // members we do not read are ignored
        set["keys"].as_array_mut().unwrap().push(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"}));
        let (count, skipped) = v.replace_keys(set.to_string().as_bytes(), 32).unwrap();
        assert_eq!((count, skipped.len()), (3, 1), "{skipped:?}");
        assert!(skipped[0].contains("keys[3]") && skipped[0].contains("OKP"), "{skipped:?}");
        assert!(v.verify(&token("rs256"), NOW).is_ok() && v.verify(&token("es256"), NOW).is_ok());
        // Garbage, no keys, too many keys, nothing usable: Err, and the good set stays.
        for (body, why) in [
            (&b"<html>oops</html>"[..], "not JSON"),
            (br#"{"kys": []}"#, "no `keys`"),
            (br#"{"keys": [{"kty": "oct", "k": "c2hvcnQ"}]}"#, "no usable key"),
        ] {
            let err = v.replace_keys(body, 32).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert!(v.replace_keys(set.to_string().as_bytes(), 2).unwrap_err().contains("max_keys 2"));
        assert!(v.verify(&token("rs256"), NOW).is_ok(), "stale-while-error: the last good set stays");
        // Rotation: a set without rs1 makes its tokens unknown.
        let rotated = serde_json::json!({"keys": [set["keys"][2].clone()]});
        assert_eq!(v.replace_keys(rotated.to_string().as_bytes(), 32).unwrap().0, 1);
        assert_eq!(v.verify(&token("rs256"), NOW).err(), Some(JwtError::UnknownKid));
        assert!(v.verify(&token("es256"), NOW).is_ok());
    }

    fn config_error(jwks: &str) -> String {
        let raw = format!(r#"{{"jwt": {{"jwks": {{"keys": [{jwks}]}}}}}}"#);
        let config = AuthConfig::parse(raw.as_bytes()).unwrap();
        match Validator::new(config.jwt.as_ref().unwrap()) {
            Ok(_) => String::new(),
            Err(e) => e.message().to_owned(),
        }
    }

    #[test]
    fn refuses_bad_keys_naming_the_field() {
        let f = fixtures();
        let rsa = &f["config"]["jwt"]["jwks"]["keys"][1];
        let ec = &f["config"]["jwt"]["jwks"]["keys"][2];
        assert!(config_error(r#"{"kty": "oct", "k": "c2hvcnQ"}"#).contains("`jwt.jwks.keys[0].k`"));
        assert!(config_error(r#"{"kty": "oct", "k": "!!"}"#).contains("`jwt.jwks.keys[0].k`"));
        assert!(config_error(r#"{"kty": "oct"}"#).contains("`jwt.jwks.keys[0].k` is required"));
        assert!(config_error(r#"{"kty": "OKP"}"#).contains("`jwt.jwks.keys[0].kty`"));
        assert!(config_error(r#"{"kty": "RSA", "n": "AQAB", "e": "AQAB"}"#).contains("`jwt.jwks.keys[0].n`"));
        let mut private = rsa.clone();
        private["d"] = Json::from("AQAB");
        assert!(config_error(&private.to_string()).contains("`jwt.jwks.keys[0].d`"));
        let mut confused = rsa.clone();
        confused["alg"] = Json::from("HS256");
        assert!(config_error(&confused.to_string()).contains("`jwt.jwks.keys[0].alg`"));
        let mut off_curve = ec.clone();
        off_curve["y"] = off_curve["x"].clone();
        assert!(config_error(&off_curve.to_string()).contains("`jwt.jwks.keys[0].x`"));
        let mut p384 = ec.clone();
        p384["crv"] = Json::from("P-384");
        assert!(config_error(&p384.to_string()).contains("`jwt.jwks.keys[0].crv`"));
        let dup = format!("{ec},{ec}");
        assert!(config_error(&dup).contains("`jwt.jwks.keys[1].kid`"));
        assert_eq!(config_error(&rsa.to_string()), "");
    }
}
