//! Shared data (one key-value store per VM id, shared by all Envoy worker threads) behind a small trait,
//! and the compare-and-swap loop every bucket change goes through. The real store is the proxy-wasm host
//! (lib.rs); tests use `fake::FakeStore`, which can inject writes from "other workers" between a read
//! and the write that follows it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Someone wrote the entry since we read it.
    CasMismatch,
    Other,
}

pub trait SharedStore {
    /// The value and its version, or `None` when the entry does not exist.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes when the entry still has version `cas` (`None`: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

/// What the caller decides after seeing the current value.
pub enum Update<R> {
    Write(Vec<u8>, R),
    Keep(R),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Updated<R> {
    /// `None` when every attempt lost the race (the caller applies its exhaustion policy).
    pub result: Option<R>,
    /// Attempts that lost to a concurrent writer.
    pub conflicts: u32,
}

/// Read-modify-write of `key` with up to `max_attempts` compare-and-swap attempts. `decide` sees the
/// current value (`None`: missing) and may run several times; only the result of the attempt whose write
/// landed (or that chose not to write) is returned.
pub fn update<R>(
    store: &dyn SharedStore,
    key: &str,
    max_attempts: u32,
    mut decide: impl FnMut(Option<&[u8]>) -> Update<R>,
) -> Updated<R> {
    let mut conflicts = 0;
    for _ in 0..max_attempts.max(1) {
        let current = store.get(key);
        let (value, cas) = match &current {
            Some((v, cas)) => (Some(v.as_slice()), Some(*cas)),
            None => (None, None),
        };
        match decide(value) {
            Update::Keep(r) => return Updated { result: Some(r), conflicts },
            Update::Write(new, r) => match store.set(key, &new, cas) {
                Ok(()) => return Updated { result: Some(r), conflicts },
                Err(SetError::CasMismatch) => conflicts += 1,
                Err(SetError::Other) => return Updated { result: None, conflicts },
            },
        }
    }
    Updated { result: None, conflicts }
}

/// Creates `key` with `initial` unless it exists. Hosts do not check the version of an entry that does not
/// exist yet, so creation is not atomic: do it before traffic (on_configure), never on the request path.
pub fn ensure(store: &dyn SharedStore, key: &str, initial: &[u8]) -> bool {
    if store.get(key).is_some() {
        return false;
    }
    store.set(key, initial, None).is_ok()
}

#[cfg(test)]
pub mod fake {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    type Interferer = Box<dyn FnMut(&str, &mut Vec<u8>)>;

    /// An in-memory store with Envoy's semantics (versions bump on every write; a missing entry is written
    /// without a version check). `interfere` runs just before a `set` while `conflicts` is positive: it
    /// plays another worker that changed the entry after our read, so that `set` fails its CAS.
    #[derive(Default)]
    pub struct FakeStore {
        pub map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: Cell<u32>,
        pub conflicts: Cell<u32>,
        pub interfere: RefCell<Option<Interferer>>,
        pub sets: Cell<u32>,
    }

    impl FakeStore {
        pub fn with_conflicts(n: u32, f: impl FnMut(&str, &mut Vec<u8>) + 'static) -> Self {
            let s = FakeStore::default();
            s.conflicts.set(n);
            *s.interfere.borrow_mut() = Some(Box::new(f));
            s
        }

        fn bump(&self) -> u32 {
            self.next_cas.set(self.next_cas.get() + 1);
            self.next_cas.get()
        }

        pub fn value(&self, key: &str) -> Option<Vec<u8>> {
            self.map.borrow().get(key).map(|(v, _)| v.clone())
        }
    }

    impl SharedStore for FakeStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.map.borrow().get(key).cloned()
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
            if self.conflicts.get() > 0 {
                self.conflicts.set(self.conflicts.get() - 1);
                let mut current = self.value(key).unwrap_or_default();
                if let Some(f) = self.interfere.borrow_mut().as_mut() {
                    f(key, &mut current);
                }
                let v = self.bump();
                self.map.borrow_mut().insert(key.to_owned(), (current, v));
            }
            let mut map = self.map.borrow_mut();
            if let (Some(want), Some((_, have))) = (cas, map.get(key)) {
                if want != *have {
                    return Err(SetError::CasMismatch);
                }
            }
            let v = self.bump();
            map.insert(key.to_owned(), (value.to_vec(), v));
            self.sets.set(self.sets.get() + 1);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeStore;
    use super::*;

    fn increment(store: &FakeStore, attempts: u32) -> Updated<u8> {
        update(store, "n", attempts, |v| {
            let n = v.and_then(|v| v.first().copied()).unwrap_or(0) + 1;
            Update::Write(vec![n], n)
        })
    }

    #[test]
    fn writes_without_conflict() {
        let store = FakeStore::default();
        assert_eq!(increment(&store, 3), Updated { result: Some(1), conflicts: 0 });
        assert_eq!(increment(&store, 3), Updated { result: Some(2), conflicts: 0 });
        assert_eq!(store.value("n"), Some(vec![2]));
    }

    #[test]
    fn retries_on_conflict_and_keeps_the_other_write() {
        // Another worker increments between each of our reads and writes, twice.
        let store = FakeStore::with_conflicts(2, |_, v| {
            let n = v.first().copied().unwrap_or(0);
            *v = vec![n + 1];
        });
        store.map.borrow_mut().insert("n".into(), (vec![10], 1000));
        let r = increment(&store, 5);
        assert_eq!(r, Updated { result: Some(13), conflicts: 2 });
        assert_eq!(store.value("n"), Some(vec![13]), "no increment lost");
    }

    #[test]
    fn gives_up_after_bounded_attempts() {
        let store = FakeStore::with_conflicts(100, |_, v| *v = vec![99]);
        store.map.borrow_mut().insert("n".into(), (vec![1], 1000));
        let r = increment(&store, 4);
        assert_eq!(r, Updated { result: None, conflicts: 4 });
        assert_eq!(store.value("n"), Some(vec![99]), "our write never landed");
    }

    #[test]
    fn keep_does_not_write() {
        let store = FakeStore::default();
        store.set("n", &[1], None).unwrap();
        let before = store.sets.get();
        let r = update(&store, "n", 3, |v| Update::<Option<u8>>::Keep(v.and_then(|v| v.first().copied())));
        assert_eq!(r.result, Some(Some(1)));
        assert_eq!(store.sets.get(), before);
    }

    #[test]
    fn ensure_creates_once() {
        let store = FakeStore::default();
        assert!(ensure(&store, "g", &[1]));
        store.set("g", &[1, 2], None).unwrap();
        assert!(!ensure(&store, "g", &[1]));
        assert_eq!(store.value("g"), Some(vec![1, 2]));
    }
}
