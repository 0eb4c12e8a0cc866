//! The shared key table: `max_keys` slots split into groups of at most `WAYS` keys. A key always lives in
//! the group its FNV-1a hash picks, and a whole group is one shared-data entry, so every change to a group
//! (take a token, add a key, forget idle keys) is one compare-and-swap and a key can never be in two places.
//! Envoy never frees a shared-data key, only its value; a fixed set of group entries keeps memory bounded.

/// Keys per group.
pub const WAYS: u32 = 8;
/// Longer bucket keys are replaced by a hash so a group entry stays small.
pub const MAX_KEY_BYTES: usize = 128;
const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub tat: u64,
}

/// The keys of one group and their bucket state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub records: Vec<Record>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt;

impl Group {
    /// Never empty, even without records: an empty value would look like a missing entry to some hosts.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.records.iter().map(|r| r.key.len() + 10).sum::<usize>());
        out.push(VERSION);
        for r in &self.records {
            let len = u16::try_from(r.key.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(r.key.get(..usize::from(len)).unwrap_or_default());
            out.extend_from_slice(&r.tat.to_le_bytes());
        }
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Group, Corrupt> {
        let (&version, mut rest) = raw.split_first().ok_or(Corrupt)?;
        if version != VERSION {
            return Err(Corrupt);
        }
        let mut records = Vec::new();
        while !rest.is_empty() {
            let (len, tail) = rest.split_first_chunk::<2>().ok_or(Corrupt)?;
            let len = usize::from(u16::from_le_bytes(*len));
            let key = tail.get(..len).ok_or(Corrupt)?;
            let tail = tail.get(len..).ok_or(Corrupt)?;
            let (tat, tail) = tail.split_first_chunk::<8>().ok_or(Corrupt)?;
            records.push(Record { key: key.to_vec(), tat: u64::from_le_bytes(*tat) });
            rest = tail;
        }
        Ok(Group { records })
    }

    pub fn find(&self, key: &[u8]) -> Option<usize> {
        self.records.iter().position(|r| r.key == key)
    }

    /// Drops the records `idle` says may go; how many went.
    pub fn evict(&mut self, mut idle: impl FnMut(&Record) -> bool) -> usize {
        let before = self.records.len();
        self.records.retain(|r| !idle(r));
        before - self.records.len()
    }
}

/// How `max_keys` slots are split into groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub max_keys: u32,
}

impl Layout {
    pub fn groups(&self) -> u32 {
        self.max_keys.max(1).div_ceil(WAYS)
    }

    /// Every group holds `WAYS` keys except the last, which holds the rest: capacities sum to `max_keys`.
    pub fn capacity(&self, group: u32) -> usize {
        let groups = self.groups();
        let cap = if group + 1 < groups { WAYS } else { self.max_keys.max(1) - WAYS * (groups - 1) };
        usize::try_from(cap).unwrap_or(0)
    }

    pub fn group_of(&self, key: &[u8]) -> u32 {
        u32::try_from(fnv1a(key) % u64::from(self.groups())).unwrap_or(0)
    }
}

/// FNV-1a, 64 bit: the same on every worker and every run (unlike std's randomised hasher).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The bucket key of a request: the rule name and the key parts, unambiguously joined; over
/// `MAX_KEY_BYTES` it becomes the rule name and a hash of the whole.
pub fn bucket_key(rule: &str, parts: &[impl AsRef<str>]) -> Vec<u8> {
    let mut key = Vec::with_capacity(rule.len() + parts.iter().map(|p| p.as_ref().len() + 5).sum::<usize>());
    key.extend_from_slice(rule.as_bytes());
    for p in parts.iter().map(AsRef::as_ref) {
        key.push(0x1f);
        key.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_le_bytes());
        key.extend_from_slice(p.as_bytes());
    }
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    let mut short = rule.as_bytes().to_vec();
    short.push(b'#');
    short.extend_from_slice(&fnv1a(&key).to_le_bytes());
    short.extend_from_slice(&fnv1a(&key).rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_roundtrip() {
        let g = Group {
            records: vec![Record { key: b"a".to_vec(), tat: 7 }, Record { key: vec![0, 1, 2], tat: u64::MAX }],
        };
        assert_eq!(Group::decode(&g.encode()).unwrap(), g);
        assert_eq!(Group::default().encode(), vec![VERSION]);
        assert_eq!(Group::decode(&[VERSION]).unwrap(), Group::default());
    }

    #[test]
    fn corrupt_values_are_rejected() {
        assert_eq!(Group::decode(&[]), Err(Corrupt));
        assert_eq!(Group::decode(&[9]), Err(Corrupt));
        assert_eq!(Group::decode(&[VERSION, 5, 0, b'a']), Err(Corrupt));
        let mut raw = Group { records: vec![Record { key: b"k".to_vec(), tat: 1 }] }.encode();
        raw.pop();
        assert_eq!(Group::decode(&raw), Err(Corrupt));
    }

    #[test]
    fn evict_and_find() {
        let mut g = Group { records: (0..4).map(|i| Record { key: vec![i], tat: u64::from(i) }).collect() };
        assert_eq!(g.find(&[2]), Some(2));
        assert_eq!(g.evict(|r| r.tat < 2), 2);
        assert_eq!(g.find(&[2]), Some(0));
        assert_eq!(g.find(&[0]), None);
    }

    #[test]
    fn capacities_sum_to_max_keys() {
        for max_keys in [1, 2, 7, 8, 9, 100, 10_000, 10_001] {
            let l = Layout { max_keys };
            let total: usize = (0..l.groups()).map(|g| l.capacity(g)).sum();
            assert_eq!(total, max_keys as usize, "max_keys {max_keys}");
            assert!((0..l.groups()).all(|g| (1..=WAYS as usize).contains(&l.capacity(g))));
        }
        assert_eq!(Layout { max_keys: 3 }.groups(), 1);
    }

    #[test]
    fn keys_spread_over_groups_deterministically() {
        let l = Layout { max_keys: 800 };
        let groups: std::collections::BTreeSet<u32> =
            (0..1000).map(|i| l.group_of(format!("key{i}").as_bytes())).collect();
        assert!(groups.len() > 80, "{}", groups.len());
        assert!(groups.iter().all(|&g| g < l.groups()));
        assert_eq!(l.group_of(b"alice"), l.group_of(b"alice"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn bucket_keys_are_unambiguous_and_bounded() {
        let a = bucket_key("r", &["a|b", "c"]);
        let b = bucket_key("r", &["a", "b|c"]);
        assert_ne!(a, b);
        assert_ne!(bucket_key("r", &["ab"]), bucket_key("r", &["a", "b"]));
        assert_ne!(bucket_key("r", &[] as &[&str]), bucket_key("s", &[] as &[&str]));
        let long = bucket_key("r", &["x".repeat(1000)]);
        assert!(long.len() <= MAX_KEY_BYTES);
        assert_ne!(long, bucket_key("r", &["y".repeat(1000)]));
        assert_eq!(long, bucket_key("r", &["x".repeat(1000)]));
    }
}
