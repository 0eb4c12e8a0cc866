//! [`StringMap`]: a configuration object of string values (`set_headers`, `keys`, `claims_to_headers`) as a
//! key-sorted `Vec`, in place of a `BTreeMap<String, String>`: the same order and lookups for a handful of entries,
//! without the B-tree's code (~2.5 KB of a module for one map type, more with removal).
use core::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// String → string, sorted by key, each key once (the reader refuses a key twice in one object).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StringMap(Vec<(String, String)>);

type Pair<'a> = (&'a String, &'a String);
/// The iterator over the entries in key order.
pub type Iter<'a> = core::iter::Map<core::slice::Iter<'a, (String, String)>, fn(&(String, String)) -> Pair<'_>>;

fn pair(entry: &(String, String)) -> Pair<'_> {
    (&entry.0, &entry.1)
}

impl StringMap {
    /// Sets `key` to `value` (replacing an earlier value), keeping the keys sorted.
    pub fn insert(&mut self, key: String, value: String) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => {
                if let Some(slot) = self.0.get_mut(i) {
                    slot.1 = value;
                }
            }
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        let i = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        self.0.get(i).map(|(_, v)| v)
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_> {
        self.0.iter().map(pair)
    }

    /// The entries in key order, as a slice.
    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn values(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a StringMap {
    type Item = Pair<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<const N: usize> From<[(String, String); N]> for StringMap {
    fn from(entries: [(String, String); N]) -> Self {
        let mut map = StringMap::default();
        for (k, v) in entries {
            map.insert(k, v);
        }
        map
    }
}

struct StringMapVisitor;

impl<'de> Visitor<'de> for StringMapVisitor {
    type Value = StringMap;

    /// serde's words for a map (what a `BTreeMap` field said).
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StringMap, A::Error> {
        let mut map = StringMap::default();
        while let Some((key, value)) = access.next_entry::<String, String>()? {
            map.insert(key, value);
        }
        Ok(map)
    }
}

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StringMapVisitor)
    }
}
