//! Envoy's `verify_signature` foreign function: RS256/ES256 checked by BoringSSL in the host instead of by RSA and
//! P-256 code compiled into the module (Envoy's `source/extensions/common/wasm/foreign.cc`).
//!
//! The arguments are the protobuf `envoy.source.extensions.common.wasm.VerifySignatureArguments`
//! (`hash_function` = 1, `public_key` = 2 as DER SubjectPublicKeyInfo, `signature` = 3, `text` = 4); the answer is
//! `VerifySignatureResult` (`result` = 1, `error` = 2). BoringSSL's `EVP_DigestVerify` wants an ECDSA signature in
//! DER, so the JWS form (`r || s`) is converted here. Plain Rust: the host call is passed in as a closure, so all of
//! this is unit-tested without a proxy, and `self_test` proves at `on_configure` that the host function exists and
//! answers right (a known-good and a tampered signature) before any request depends on it.

/// The foreign function's name in Envoy.
pub const FUNCTION: &str = "verify_signature";

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    der_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// Appends a non-negative INTEGER from big-endian bytes: leading zeros dropped, one added when the top bit is set.
fn push_der_uint(out: &mut Vec<u8>, bytes: &[u8]) {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let digits = bytes.get(skip..).unwrap_or_default();
    let pad = digits.first().is_none_or(|b| b & 0x80 != 0);
    out.push(0x02);
    der_len(out, digits.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 6);
    push_der_uint(&mut out, bytes);
    out
}

fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(key);
    der(0x30, &[der(0x30, algorithm), der(0x03, &bits)].concat())
}

/// DER SubjectPublicKeyInfo of an RSA public key from its JWK `n` and `e` (big-endian).
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let algorithm = [der(0x06, OID_RSA_ENCRYPTION), vec![0x05, 0x00]].concat();
    let key = der(0x30, &[der_uint(n), der_uint(e)].concat());
    spki(&algorithm, &key)
}

/// DER SubjectPublicKeyInfo of a P-256 public key from its JWK `x` and `y` (32 bytes each).
pub fn p256_spki(x: &[u8], y: &[u8]) -> Vec<u8> {
    let algorithm = [der(0x06, OID_EC_PUBLIC_KEY), der(0x06, OID_PRIME256V1)].concat();
    spki(&algorithm, &[&[0x04], x, y].concat())
}

/// A JWS ES256 signature (`r || s`, exactly 64 bytes) as a DER ECDSA-Sig-Value; None for any other length (a DER
/// signature inside a JWS is not ES256 and must fail, as it does in-module). One allocation: r and s take at most 35
/// bytes each, so the SEQUENCE length is one byte.
pub fn ecdsa_der(signature: &[u8]) -> Option<Vec<u8>> {
    if signature.len() != 64 {
        return None;
    }
    let (r, s) = signature.split_at(32);
    let mut out = Vec::with_capacity(72);
    out.extend_from_slice(&[0x30, 0]);
    push_der_uint(&mut out, r);
    push_der_uint(&mut out, s);
    let content = out.len() - 2;
    if let Some(len) = out.get_mut(1) {
        *len = content as u8;
    }
    Some(out)
}

fn pb_field(out: &mut Vec<u8>, number: u8, value: &[u8]) {
    out.push(number << 3 | 2); // length-delimited
    let mut len = value.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(value);
}

/// A public key as `verify_signature` takes it, encoded once per key (configuration, JWKS refresh): the
/// `VerifySignatureArguments` fields no request changes (`hash_function` sha256, `public_key` the DER
/// SubjectPublicKeyInfo), so a request only appends its signature and text.
pub struct HostKey {
    fields: Vec<u8>,
    /// Where the SubjectPublicKeyInfo starts in `fields`.
    spki_at: usize,
}

impl HostKey {
    pub fn new(spki: &[u8]) -> Self {
        let mut fields = Vec::with_capacity(spki.len() + 12);
        pb_field(&mut fields, 1, b"sha256");
        pb_field(&mut fields, 2, spki);
        HostKey { spki_at: fields.len() - spki.len(), fields }
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki(&self) -> &[u8] {
        self.fields.get(self.spki_at..).unwrap_or_default()
    }

    /// `VerifySignatureArguments` for a SHA-256 signature over `text` by this key.
    pub fn arguments(&self, signature: &[u8], text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.fields.len() + signature.len() + text.len() + 8);
        out.extend_from_slice(&self.fields);
        pb_field(&mut out, 3, signature);
        pb_field(&mut out, 4, text);
        out
    }
}

/// `VerifySignatureResult.result`: true only for an explicit `result: true` (field 1, varint 1). Proto3 omits a
/// false bool, so an answer without field 1 (e.g. only an `error` string) is false.
pub fn verified(result: &[u8]) -> bool {
    let mut rest = result;
    while let Some((&tag, after)) = rest.split_first() {
        match tag {
            0x08 => return after.first() == Some(&1),
            0x12 => {
                // error string: skip it (length < 2^14 in practice; longer lengths are parsed too)
                let mut len = 0usize;
                let mut shift = 0;
                let mut i = 0;
                loop {
                    let Some(&b) = after.get(i) else { return false };
                    len |= usize::from(b & 0x7f) << shift;
                    i += 1;
                    if b & 0x80 == 0 || shift > 28 {
                        break;
                    }
                    shift += 7;
                }
                rest = after.get(i.saturating_add(len)..).unwrap_or_default();
            }
            _ => return false,
        }
    }
    false
}

/// Proves the host function: Envoy must accept a known-good P-256 signature and refuse the same one with a flipped
/// bit. `call` sends the arguments to the host: Some(answer) or None when the call failed (function absent).
pub fn self_test(call: impl Fn(&[u8]) -> Option<Vec<u8>>) -> bool {
    let (Ok(x), Ok(y), Ok(sig)) = (hex::decode(SELF_TEST_X), hex::decode(SELF_TEST_Y), hex::decode(SELF_TEST_SIG))
    else {
        return false;
    };
    let key = HostKey::new(&p256_spki(&x, &y));
    let Some(good) = ecdsa_der(&sig) else { return false };
    let mut bad_sig = sig.clone();
    if let Some(last) = bad_sig.last_mut() {
        *last ^= 1;
    }
    let Some(bad) = ecdsa_der(&bad_sig) else { return false };
    let answer = |s: &[u8]| call(&key.arguments(s, SELF_TEST_TEXT)).is_some_and(|r| verified(&r));
    answer(&good) && !answer(&bad)
}

/// The self-test vector: a test-only P-256 key (sha256 of a fixed phrase as the scalar) and its deterministic
/// (RFC 6979) signature over SELF_TEST_TEXT.
const SELF_TEST_X: &str = "8be2baddf99acb6b83ba90966146ef408493fbbad12c1f273b90d92e27f5a910";
const SELF_TEST_Y: &str = "a70cd392a235bbe5951c57378334e275419ad9d162404751ce1a9a150a07d584";
const SELF_TEST_SIG: &str = "2f7ae2b51400b6921fdf318427b4b0fd7eaa2ad8c9b17ccbcae0ae8cbaf66115\
                             b3ca8ac44526152bd3c80442f2a2631e42f809329f63f9175220c83f69ba63f0";
const SELF_TEST_TEXT: &[u8] = b"wasmfilter: is verify_signature there and right?";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::tests::fixtures;

    fn hex_of(name: &str) -> Vec<u8> {
        hex::decode(fixtures()["der"][name].as_str().unwrap_or_else(|| panic!("no fixture {name}"))).unwrap()
    }

    fn jwk(kid: &str, field: &str) -> Vec<u8> {
        use base64ct::{Base64UrlUnpadded, Encoding};
        let keys = fixtures()["config"]["jwt"]["jwks"]["keys"].as_array().unwrap().clone();
        let key = keys.iter().find(|k| k["kid"] == kid).unwrap();
        Base64UrlUnpadded::decode_vec(key[field].as_str().unwrap()).unwrap()
    }

    #[test]
    fn public_keys_match_what_openssl_writes() {
        assert_eq!(rsa_spki(&jwk("rs1", "n"), &jwk("rs1", "e")), hex_of("rs1_spki"));
        assert_eq!(p256_spki(&jwk("es1", "x"), &jwk("es1", "y")), hex_of("es1_spki"));
    }

    #[test]
    fn es256_signature_becomes_der() {
        let token = crate::jwt::tests::token("es256");
        let sig_b64 = token.rsplit('.').next().unwrap();
        use base64ct::{Base64UrlUnpadded, Encoding};
        let raw = Base64UrlUnpadded::decode_vec(sig_b64).unwrap();
        assert_eq!(ecdsa_der(&raw).unwrap(), hex_of("es256_sig_der"));
        assert_eq!(ecdsa_der(&hex_of("es256_sig_der")), None, "a DER signature is not ES256");
        assert_eq!(ecdsa_der(&[]), None);
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(der_uint(&[0, 0, 0x7f]), vec![0x02, 1, 0x7f]);
        assert_eq!(der_uint(&[0x80]), vec![0x02, 2, 0, 0x80]);
        assert_eq!(der_uint(&[0, 0]), vec![0x02, 1, 0]);
        let mut long = Vec::new();
        der_len(&mut long, 300);
        assert_eq!(long, vec![0x82, 0x01, 0x2c]);
    }

    #[test]
    fn arguments_and_results_are_protobuf() {
        let key = HostKey::new(b"K");
        assert_eq!(key.spki(), b"K");
        let args = key.arguments(b"S", &[7u8; 200]);
        assert_eq!(args.get(..8), Some(&b"\x0a\x06sha256"[..]));
        assert_eq!(args.get(8..14), Some(&b"\x12\x01K\x1a\x01S"[..]));
        assert_eq!(args.get(14..17), Some(&[0x22, 0xc8, 0x01][..]));
        assert!(verified(&[0x08, 1]));
        assert!(verified(&[0x12, 0, 0x08, 1]));
        assert!(!verified(&[]));
        assert!(!verified(b"\x12\x05wrong"));
        assert!(!verified(&[0x08, 0]));
        assert!(!verified(&[0x12, 0x7f]));
    }

    #[test]
    fn self_test_needs_a_host_that_tells_good_from_bad() {
        assert!(!self_test(|_| None), "no host function");
        assert!(!self_test(|_| Some(vec![0x08, 1])), "a host that says yes to everything");
        assert!(!self_test(|_| Some(vec![])), "a host that says no to everything");
    }

    #[cfg(feature = "es256")]
    #[test]
    fn self_test_vector_is_a_valid_p256_signature() {
        use p256::ecdsa::signature::Verifier;
        let (x, y, sig) = (hex::decode(SELF_TEST_X).unwrap(), hex::decode(SELF_TEST_Y).unwrap(), hex::decode(SELF_TEST_SIG).unwrap());
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&[&[4u8], &x[..], &y[..]].concat()).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        assert!(key.verify(SELF_TEST_TEXT, &sig).is_ok());
    }
}
