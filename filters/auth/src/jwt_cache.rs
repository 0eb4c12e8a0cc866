//! The verified-token cache, one per Envoy worker (each worker runs its own VM, so no locking and no shared data):
//! a token whose signature and claims passed is remembered with what it grants (identity and claim headers), so the
//! next request with the same token skips the signature check — the 0.7–1 ms of RS256/ES256 in V8, or the host
//! call. Keyed by a 64-bit SipHash of the token (a few times cheaper per byte than SHA-256 in V8); an
//! entry keeps the token itself and a hit needs the exact bytes (constant-time compare), so a hash collision can
//! only cost a miss, never hand one caller another's grant. Bounded (`jwt_cache.max_entries`; memory at most
//! max_entries × jwt.max_token_bytes plus the grants; the oldest entry makes room, O(log n)), never used past the
//! token's `exp` (no clock skew on a hit), and emptied when the key set changes.
use std::collections::{BTreeMap, VecDeque};
use std::hash::{DefaultHasher, Hasher};

use subtle::ConstantTimeEq;

pub type CacheKey = u64;

/// What a cached token grants: the identity and the claim headers to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: Option<String>,
    pub headers: Vec<(String, String)>,
}

struct Entry {
    token: Box<[u8]>,
    exp: u64,
    grant: Grant,
}

pub struct TokenCache {
    max_entries: usize,
    entries: BTreeMap<CacheKey, Entry>,
    /// Insertion order, for eviction. Holds every key in `entries` (and possibly stale ones): its length bounds both.
    order: VecDeque<CacheKey>,
}

/// Constant-time equality of two byte strings (the length is not secret: a token's length is public). Eight bytes at
/// a time: the OR of their XORs, no branch on the data, the accumulator through `black_box` at every step so the
/// compiler cannot stop early; subtle's byte-wise `ct_eq` decides the end. subtle's `ct_eq` on the whole slices
/// costs ~30 wasm instructions per byte (~21,000 for a 700-byte RS256 token on every cache hit, `wasmfilter profile`).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (words_a, words_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = 0u64;
    for (x, y) in words_a.remainder().iter().zip(words_b.remainder()) {
        diff |= u64::from(x ^ y);
    }
    for (x, y) in words_a.zip(words_b) {
        // Chunks of exactly 8 bytes: the conversions cannot fail; if they did, the words would differ.
        let x = <[u8; 8]>::try_from(x).map_or(u64::MAX, u64::from_le_bytes);
        let y = <[u8; 8]>::try_from(y).map_or(0, u64::from_le_bytes);
        diff = std::hint::black_box(diff | (x ^ y));
    }
    bool::from(diff.ct_eq(&0))
}

/// The cache key of a token: SipHash-1-3 of its bytes (fixed keys: the map is per worker and a collision is only a
/// miss, see the module docs).
pub fn key(token: &str) -> CacheKey {
    let mut hasher = DefaultHasher::new();
    hasher.write(token.as_bytes());
    hasher.finish()
}

impl TokenCache {
    pub fn new(max_entries: usize) -> Self {
        TokenCache { max_entries, entries: BTreeMap::new(), order: VecDeque::new() }
    }

    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The grant of a cached `token` (hashed to `key`) still valid at `now` (seconds); an expired entry is dropped.
    pub fn get(&mut self, key: &CacheKey, token: &str, now: u64) -> Option<Grant> {
        let entry = self.entries.get(key)?;
        if !same_bytes(&entry.token, token.as_bytes()) {
            return None;
        }
        if now > entry.exp {
            self.entries.remove(key);
            return None;
        }
        Some(entry.grant.clone())
    }

    /// Remembers a verified token until `exp`. At capacity the oldest insertion makes room.
    pub fn insert(&mut self, key: CacheKey, token: &str, exp: u64, grant: Grant, now: u64) {
        if !self.enabled() || now > exp {
            return;
        }
        while self.order.len() >= self.max_entries {
            let Some(old) = self.order.pop_front() else { break };
            self.entries.remove(&old);
        }
        self.order.push_back(key);
        self.entries.insert(key, Entry { token: token.as_bytes().into(), exp, grant });
    }

    /// Forgets everything (the key set changed: a token verified by a removed key must be checked again).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str) -> Grant {
        Grant { identity: Some(id.into()), headers: vec![("x-jwt-sub".into(), id.into())] }
    }

    #[test]
    fn same_bytes_is_equality() {
        let token = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        for len in 0..token.len() {
            let a = token.get(..len).unwrap();
            assert!(same_bytes(a, a), "{len}");
            assert!(!same_bytes(a, token), "{len}");
            for i in 0..len {
                let mut b = a.to_vec();
                b[i] ^= 0x20;
                assert!(!same_bytes(a, &b), "{len} {i}");
            }
        }
    }

    #[test]
    fn hit_until_exp_then_miss() {
        let mut c = TokenCache::new(4);
        let k = key("a.b.c");
        c.insert(k, "a.b.c", 100, grant("alice"), 50);
        assert_eq!(c.get(&k, "a.b.c", 100), Some(grant("alice")));
        assert_eq!(c.get(&k, "a.b.c", 101), None, "never past exp");
        assert!(c.is_empty(), "the expired entry is dropped");
        c.insert(k, "a.b.c", 100, grant("alice"), 101);
        assert!(c.is_empty(), "an already expired token is not cached");
    }

    #[test]
    fn distinct_tokens_have_distinct_keys() {
        assert_ne!(key("a.b.c"), key("a.b.d"));
        let mut c = TokenCache::new(4);
        c.insert(key("a.b.c"), "a.b.c", 100, grant("alice"), 0);
        assert_eq!(c.get(&key("a.b.d"), "a.b.d", 0), None);
        // Even under the same key (a collision), another token gets nothing.
        assert_eq!(c.get(&key("a.b.c"), "a.b.d", 0), None);
    }

    #[test]
    fn bounded_oldest_goes_first() {
        let mut c = TokenCache::new(3);
        for i in 0..1000u64 {
            let t = format!("token-{i}");
            c.insert(key(&t), &t, 10_000, grant("x"), 0);
            assert!(c.len() <= 3 && c.order.len() <= 3);
        }
        assert!(c.get(&key("token-999"), "token-999", 0).is_some() && c.get(&key("token-996"), "token-996", 0).is_none());
        // Re-inserting after an expiry drop stays bounded too.
        let k = key("again");
        for now in 0..100 {
            c.insert(k, "again", now, grant("y"), now);
            assert_eq!(c.get(&k, "again", now + 1), None);
        }
        assert!(c.len() <= 3 && c.order.len() <= 3);
    }

    #[test]
    fn off_and_clear() {
        let mut off = TokenCache::new(0);
        off.insert(key("t"), "t", 100, grant("a"), 0);
        assert!(off.is_empty() && !off.enabled());
        let mut c = TokenCache::new(2);
        c.insert(key("t"), "t", 100, grant("a"), 0);
        c.clear();
        assert_eq!(c.get(&key("t"), "t", 0), None);
    }
}
