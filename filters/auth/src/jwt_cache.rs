//! The verified-token cache, one per Envoy worker (each worker runs its own VM, so no locking and no shared data):
//! a token whose signature and claims passed is remembered with what it grants (identity and claim headers), so the
//! next request with the same token skips the signature check — the 0.7–1 ms of RS256/ES256 in V8, or the host
//! call. Keyed by a 64-bit SipHash of the token (a few times cheaper per byte than SHA-256 in V8); an
//! entry keeps the token itself and a hit needs the exact bytes (constant-time compare), so a hash collision can
//! only cost a miss, never hand one caller another's grant. Bounded (`jwt_cache.max_entries`; memory at most
//! max_entries × jwt.max_token_bytes plus the grants; the oldest entry makes room, O(1)), never used past the token's
//! `exp` (no clock skew on a hit), and emptied when the key set changes.
//!
//! Layout, chosen for a small module: the entries live in insertion order in a ring of `max_entries` slots (the
//! oldest gives its slot to a new one), found through a `hashbrown::HashMap<u32, u32>` from the low 32 bits of the
//! key to the slot — the very map type the proxy-wasm SDK's dispatcher uses, so no table code of its own (a
//! `BTreeMap` + `VecDeque` cost ~11 KB of module, a `HashMap<u64, Entry>` ~2 KB). Two live tokens whose keys share
//! their low 32 bits take turns in the index: the one not indexed misses (and is verified again), as any collision.
use std::hash::{DefaultHasher, Hasher};

use hashbrown::HashMap;
use subtle::ConstantTimeEq;

pub type CacheKey = u64;

/// What a cached token grants: the identity and the claim headers to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: Option<String>,
    pub headers: Vec<(String, String)>,
}

struct Entry {
    key: CacheKey,
    token: Box<[u8]>,
    exp: u64,
    grant: Grant,
}

pub struct TokenCache {
    max_entries: usize,
    /// Low 32 bits of a key → the slot holding its entry (the latest insertion under those bits).
    index: HashMap<u32, u32>,
    /// The entries in insertion order, a ring of at most `max_entries`; the oldest at `oldest` once it is full. An
    /// expired entry leaves its slot empty.
    slots: Vec<Option<Entry>>,
    oldest: usize,
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

/// The index's key: the low 32 bits (the truncation is the point).
#[allow(clippy::cast_possible_truncation)]
fn short(key: CacheKey) -> u32 {
    key as u32
}

/// Whether `entry` is the one of `token`: the key first, then the exact bytes in constant time.
fn holds(entry: &Entry, key: CacheKey, token: &str) -> bool {
    entry.key == key && same_bytes(&entry.token, token.as_bytes())
}

impl TokenCache {
    pub fn new(max_entries: usize) -> Self {
        // Slots are numbered in a u32 (the config bounds max_entries far below).
        let max_entries = max_entries.min(u32::MAX as usize);
        TokenCache { max_entries, index: HashMap::new(), slots: Vec::new(), oldest: 0 }
    }

    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    /// Tokens that can hit (indexed entries).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The grant of a cached `token` (hashed to `key`) still valid at `now` (seconds); an expired entry is dropped.
    pub fn get(&mut self, key: &CacheKey, token: &str, now: u64) -> Option<Grant> {
        let at = *self.index.get(&short(*key))?;
        let slot = self.slots.get_mut(at as usize)?;
        let entry = slot.as_ref().filter(|e| holds(e, *key, token))?;
        if now > entry.exp {
            *slot = None;
            self.index.remove(&short(*key));
            return None;
        }
        Some(entry.grant.clone())
    }

    /// Remembers a verified token until `exp`. At capacity the oldest insertion makes room.
    pub fn insert(&mut self, key: CacheKey, token: &str, exp: u64, grant: Grant, now: u64) {
        if !self.enabled() || now > exp {
            return;
        }
        let entry = Some(Entry { key, token: token.as_bytes().into(), exp, grant });
        let at = if self.slots.len() < self.max_entries {
            self.slots.push(entry);
            self.slots.len() - 1
        } else {
            // Full: the oldest insertion gives its slot to this one, and its index entry if it still has it.
            let at = self.oldest;
            self.oldest = (at + 1) % self.max_entries;
            let Some(slot) = self.slots.get_mut(at) else { return };
            if let Some(old) = std::mem::replace(slot, entry) {
                if self.index.get(&short(old.key)) == Some(&(at as u32)) {
                    self.index.remove(&short(old.key));
                }
            }
            at
        };
        self.index.insert(short(key), at as u32);
    }

    /// Forgets everything (the key set changed: a token verified by a removed key must be checked again).
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.oldest = 0;
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
            assert!(c.len() <= 3 && c.slots.len() <= 3);
        }
        assert!(c.get(&key("token-999"), "token-999", 0).is_some() && c.get(&key("token-996"), "token-996", 0).is_none());
        // Re-inserting after an expiry drop stays bounded too.
        let k = key("again");
        for now in 0..100 {
            c.insert(k, "again", now, grant("y"), now);
            assert_eq!(c.get(&k, "again", now + 1), None);
        }
        assert!(c.len() <= 3 && c.slots.len() <= 3);
    }

    #[test]
    fn keys_sharing_their_low_bits_take_turns() {
        // Two live tokens whose keys agree in the low 32 bits: the later one is indexed, the other misses (as any
        // collision), neither is ever handed the other's grant, and eviction keeps the index consistent.
        let (ka, kb) = (0x1_0000_0005, 0x2_0000_0005);
        let mut c = TokenCache::new(2);
        c.insert(ka, "a", 100, grant("alice"), 0);
        c.insert(kb, "b", 100, grant("bob"), 0);
        assert_eq!(c.get(&ka, "a", 0), None);
        assert_eq!(c.get(&kb, "b", 0), Some(grant("bob")));
        assert_eq!(c.get(&kb, "a", 0), None);
        // "a" (the oldest) gives its slot to "c": "b" must stay indexed.
        c.insert(key("c"), "c", 100, grant("carol"), 0);
        assert_eq!(c.get(&kb, "b", 0), Some(grant("bob")));
        assert_eq!(c.get(&key("c"), "c", 0), Some(grant("carol")));
        // "b" gives its slot to "a" again: the index moves with it.
        c.insert(ka, "a", 100, grant("alice"), 0);
        assert_eq!(c.get(&ka, "a", 0), Some(grant("alice")));
        assert_eq!(c.get(&kb, "b", 0), None);
        assert_eq!(c.len(), 2);
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
