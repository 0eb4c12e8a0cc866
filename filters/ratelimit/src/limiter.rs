//! The decision for one request, made against the shared key table with compare-and-swap, and the sweep
//! that forgets idle keys. Plain Rust: the store is a trait object and the time a parameter.
use crate::bucket::{Bucket, is_idle};
use crate::config::{ExhaustedPolicy, KeyLimitPolicy};
use crate::store::{SharedStore, Update, update};
use crate::table::{Group, Layout};

/// Where a domain's entries live in shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    pub fn new(domain: &str) -> Self {
        Namespace { prefix: format!("wasmfilter.ratelimit.{domain}.") }
    }

    /// `format!` would cost ~550 wasm instructions more per call (the formatter machinery; `to_string` of an
    /// integer skips it): paid on every request and for each of `max_keys / 8` groups at VM start.
    pub fn group(&self, index: u32) -> String {
        let digits = index.to_string();
        let mut key = String::with_capacity(self.prefix.len() + 1 + digits.len());
        key.push_str(&self.prefix);
        key.push('g');
        key.push_str(&digits);
        key
    }

    pub fn overflow(&self, rule: &str) -> String {
        format!("{}overflow.{rule}", self.prefix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub layout: Layout,
    pub idle_ns: u64,
    pub max_attempts: u32,
    pub on_key_limit: KeyLimitPolicy,
    pub on_exhausted: ExhaustedPolicy,
}

/// Which state answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The key's own bucket.
    Key,
    /// The table was full: the rule's shared overflow bucket.
    Overflow,
    /// The table was full and `on_key_limit` decided without a bucket.
    KeyLimit,
    /// Every compare-and-swap attempt lost; `on_cas_exhausted` decided.
    Exhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub reset_ns: u64,
    pub retry_after_ns: u64,
    pub via: Via,
    pub conflicts: u32,
}

impl Decision {
    fn without_bucket(allowed: bool, bucket: &Bucket, via: Via, conflicts: u32) -> Self {
        Decision {
            allowed,
            limit: bucket.burst,
            remaining: 0,
            reset_ns: bucket.interval_ns,
            retry_after_ns: if allowed { 0 } else { bucket.interval_ns },
            via,
            conflicts,
        }
    }

    /// IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers): limit, remaining, and reset in
    /// whole seconds; `retry-after` when limited.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", ceil_seconds(self.reset_ns).to_string()),
        ];
        if !self.allowed {
            h.push(("retry-after", ceil_seconds(self.retry_after_ns).max(1).to_string()));
        }
        h
    }
}

fn ceil_seconds(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

enum InGroup {
    Taken(crate::bucket::Taken),
    Full,
}

/// Charges one request with bucket key `key` under rule `rule` (its name and bucket) at `now`.
pub fn check(
    store: &dyn SharedStore,
    ns: &Namespace,
    limits: &Limits,
    rule: &str,
    bucket: &Bucket,
    key: &[u8],
    now: u64,
) -> Decision {
    let index = limits.layout.group_of(key);
    let capacity = limits.layout.capacity(index);
    let outcome = update(store, &ns.group(index), limits.max_attempts, |raw| {
        // A missing or unreadable group starts empty (it is rewritten whole on the next write).
        let mut group = raw.and_then(|r| Group::decode(r).ok()).unwrap_or_default();
        if let Some(i) = group.find(key) {
            let Some(record) = group.records.get_mut(i) else { return Update::Keep(InGroup::Full) };
            let taken = bucket.take(Some(record.tat), now);
            if !taken.allowed {
                return Update::Keep(InGroup::Taken(taken));
            }
            record.tat = taken.tat;
            return Update::Write(group.encode(), InGroup::Taken(taken));
        }
        if group.records.len() >= capacity {
            group.evict(|r| is_idle(r.tat, now, limits.idle_ns));
        }
        if group.records.len() >= capacity {
            return Update::Keep(InGroup::Full);
        }
        let taken = bucket.take(None, now);
        group.records.push(crate::table::Record { key: key.to_vec(), tat: taken.tat });
        Update::Write(group.encode(), InGroup::Taken(taken))
    });
    let conflicts = outcome.conflicts;
    match outcome.result {
        Some(InGroup::Taken(t)) => decision(t, bucket, Via::Key, conflicts),
        Some(InGroup::Full) => at_key_limit(store, ns, limits, rule, bucket, now, conflicts),
        None => exhausted(limits, bucket, conflicts),
    }
}

fn decision(t: crate::bucket::Taken, bucket: &Bucket, via: Via, conflicts: u32) -> Decision {
    Decision {
        allowed: t.allowed,
        limit: bucket.burst,
        remaining: t.remaining,
        reset_ns: t.reset_ns,
        retry_after_ns: t.retry_after_ns,
        via,
        conflicts,
    }
}

fn exhausted(limits: &Limits, bucket: &Bucket, conflicts: u32) -> Decision {
    Decision::without_bucket(limits.on_exhausted == ExhaustedPolicy::Allow, bucket, Via::Exhausted, conflicts)
}

fn at_key_limit(
    store: &dyn SharedStore,
    ns: &Namespace,
    limits: &Limits,
    rule: &str,
    bucket: &Bucket,
    now: u64,
    conflicts: u32,
) -> Decision {
    match limits.on_key_limit {
        KeyLimitPolicy::Allow => Decision::without_bucket(true, bucket, Via::KeyLimit, conflicts),
        KeyLimitPolicy::Deny => Decision::without_bucket(false, bucket, Via::KeyLimit, conflicts),
        KeyLimitPolicy::OverflowBucket => {
            let outcome = update(store, &ns.overflow(rule), limits.max_attempts, |raw| {
                let tat = raw.and_then(|r| r.try_into().ok()).map(u64::from_le_bytes);
                let taken = bucket.take(tat, now);
                if taken.allowed { Update::Write(taken.tat.to_le_bytes().to_vec(), taken) } else { Update::Keep(taken) }
            });
            let conflicts = conflicts + outcome.conflicts;
            match outcome.result {
                Some(t) => decision(t, bucket, Via::Overflow, conflicts),
                None => exhausted(limits, bucket, conflicts),
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Idle keys forgotten.
    pub removed: u32,
    /// Groups skipped because a request changed them meanwhile (they are visited again next round).
    pub conflicts: u32,
    /// Where the next sweep starts.
    pub next: u32,
}

/// Forgets idle keys in `count` groups starting at `start` (wrapping). Safe with several workers sweeping
/// at once and requests running: each group is rewritten only if unchanged since it was read, and only
/// keys idle at `now` go — forgetting such a key changes no answer, since it would restart full.
pub fn sweep(store: &dyn SharedStore, ns: &Namespace, limits: &Limits, start: u32, count: u32, now: u64) -> Swept {
    let groups = limits.layout.groups();
    let mut out = Swept { next: start % groups, ..Swept::default() };
    for _ in 0..count.min(groups) {
        let index = out.next;
        out.next = (out.next + 1) % groups;
        let r = update(store, &ns.group(index), 1, |raw| {
            let Some(Ok(mut group)) = raw.map(Group::decode) else { return Update::Keep(0) };
            let removed = group.evict(|rec| is_idle(rec.tat, now, limits.idle_ns));
            if removed == 0 { Update::Keep(0) } else { Update::Write(group.encode(), removed) }
        });
        out.conflicts += r.conflicts;
        out.removed += u32::try_from(r.result.unwrap_or(0)).unwrap_or(0);
    }
    out
}

/// Creates the group and overflow entries that do not exist yet. Hosts skip the version check when an
/// entry is missing, so entries are created here, before traffic, and the request path only ever
/// compare-and-swaps existing entries. Returns how many were created.
pub fn prepare<'a>(
    store: &dyn SharedStore,
    ns: &Namespace,
    layout: &Layout,
    rules: impl IntoIterator<Item = &'a str>,
) -> u32 {
    let empty = Group::default().encode();
    let mut created = 0;
    for g in 0..layout.groups() {
        created += u32::from(crate::store::ensure(store, &ns.group(g), &empty));
    }
    for rule in rules {
        created += u32::from(crate::store::ensure(store, &ns.overflow(rule), &0u64.to_le_bytes()));
    }
    created
}

/// Keys currently tracked (tests and diagnostics).
pub fn tracked_keys(store: &dyn SharedStore, ns: &Namespace, layout: &Layout) -> usize {
    (0..layout.groups())
        .filter_map(|g| store.get(&ns.group(g)))
        .filter_map(|(raw, _)| Group::decode(&raw).ok())
        .map(|g| g.records.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fake::FakeStore;
    use crate::table::bucket_key;

    const S: u64 = 1_000_000_000;

    fn limits(max_keys: u32, on_key_limit: KeyLimitPolicy) -> Limits {
        Limits {
            layout: Layout { max_keys },
            idle_ns: 10 * S,
            max_attempts: 8,
            on_key_limit,
            on_exhausted: ExhaustedPolicy::Allow,
        }
    }

    fn prepared(store: FakeStore, l: &Limits) -> FakeStore {
        let n = store.conflicts.replace(0);
        prepare(&store, &Namespace::new("t"), &l.layout, ["r"]);
        store.conflicts.set(n);
        store
    }

    #[test]
    fn prepare_creates_every_entry_once() {
        let store = FakeStore::default();
        let ns = Namespace::new("t");
        let layout = Layout { max_keys: 20 };
        assert_eq!(prepare(&store, &ns, &layout, ["r", "s"]), 5);
        assert_eq!(prepare(&store, &ns, &layout, ["r", "s"]), 0);
        assert_eq!(store.value("wasmfilter.ratelimit.t.g2"), Some(vec![1]));
        assert_eq!(store.value("wasmfilter.ratelimit.t.overflow.s"), Some(vec![0; 8]));
    }

    fn key(s: &str) -> Vec<u8> {
        bucket_key("r", &[s.to_owned()])
    }

    #[test]
    fn exact_limit_for_one_key() {
        let store = FakeStore::default();
        let ns = Namespace::new("t");
        let l = limits(100, KeyLimitPolicy::OverflowBucket);
        let b = Bucket::new(1, 3600 * S, 5);
        let allowed = (0..20).filter(|_| check(&store, &ns, &l, "r", &b, &key("a"), 100 * S).allowed).count();
        assert_eq!(allowed, 5);
        let other = check(&store, &ns, &l, "r", &b, &key("b"), 100 * S);
        assert!(other.allowed && other.via == Via::Key && other.remaining == 4);
    }

    #[test]
    fn concurrent_writers_never_lose_a_token() {
        // Between our read and our write, "another worker" admits a request for the same key (it moves
        // the key's tat forward by one interval). Our CAS fails, we re-read and see its token gone.
        let b = Bucket::new(1, 3600 * S, 3);
        let now = 100 * S;
        let l = limits(100, KeyLimitPolicy::OverflowBucket);
        let store = prepared(
            FakeStore::with_conflicts(2, move |_, raw| {
                let mut g = Group::decode(raw).unwrap_or_default();
                let k = key("a");
                match g.find(&k) {
                    Some(i) => g.records[i].tat = b.take(Some(g.records[i].tat), now).tat,
                    None => g.records.push(crate::table::Record { key: k, tat: b.take(None, now).tat }),
                }
                *raw = g.encode();
            }),
            &l,
        );
        let ns = Namespace::new("t");
        let d = check(&store, &ns, &l, "r", &b, &key("a"), now);
        assert!(d.allowed);
        assert_eq!(d.conflicts, 2);
        assert_eq!(d.remaining, 0, "two tokens went to the other worker, the third to us");
        assert!(!check(&store, &ns, &l, "r", &b, &key("a"), now).allowed);
    }

    #[test]
    fn exhausted_retries_follow_the_policy() {
        let b = Bucket::new(1, S, 1);
        let ns = Namespace::new("t");
        for (policy, allowed) in [(ExhaustedPolicy::Allow, true), (ExhaustedPolicy::Deny, false)] {
            let l = Limits { on_exhausted: policy, ..limits(10, KeyLimitPolicy::OverflowBucket) };
            let store = prepared(FakeStore::with_conflicts(1000, |_, raw| raw.truncate(1)), &l);
            let d = check(&store, &ns, &l, "r", &b, &key("a"), S);
            assert_eq!((d.allowed, d.via, d.conflicts), (allowed, Via::Exhausted, 8));
        }
    }

    #[test]
    fn key_cap_sends_new_keys_to_the_overflow_bucket() {
        let store = FakeStore::default();
        let ns = Namespace::new("t");
        let l = limits(2, KeyLimitPolicy::OverflowBucket);
        let b = Bucket::new(1, 3600 * S, 2);
        let now = 100 * S;
        for k in ["a", "b"] {
            assert_eq!(check(&store, &ns, &l, "r", &b, &key(k), now).via, Via::Key);
        }
        assert_eq!(tracked_keys(&store, &ns, &l.layout), 2);
        // c and d are not tracked: they share one bucket of burst 2.
        let c = check(&store, &ns, &l, "r", &b, &key("c"), now);
        let d = check(&store, &ns, &l, "r", &b, &key("d"), now);
        let e = check(&store, &ns, &l, "r", &b, &key("e"), now);
        assert_eq!((c.via, c.allowed, d.allowed, e.allowed), (Via::Overflow, true, true, false));
        assert_eq!(tracked_keys(&store, &ns, &l.layout), 2, "the cap holds");
        // Tracked keys keep their own buckets.
        assert!(check(&store, &ns, &l, "r", &b, &key("a"), now).allowed);
    }

    #[test]
    fn key_cap_deny_and_allow() {
        let ns = Namespace::new("t");
        let b = Bucket::new(1, 3600 * S, 5);
        for (policy, allowed) in [(KeyLimitPolicy::Deny, false), (KeyLimitPolicy::Allow, true)] {
            let store = FakeStore::default();
            let l = limits(1, policy);
            assert!(check(&store, &ns, &l, "r", &b, &key("a"), S).allowed);
            let d = check(&store, &ns, &l, "r", &b, &key("b"), S);
            assert_eq!((d.allowed, d.via), (allowed, Via::KeyLimit));
        }
    }

    #[test]
    fn idle_keys_make_room_for_new_ones() {
        let store = FakeStore::default();
        let ns = Namespace::new("t");
        let l = limits(1, KeyLimitPolicy::Deny);
        let b = Bucket::new(1, S, 1);
        assert!(check(&store, &ns, &l, "r", &b, &key("a"), 100 * S).allowed);
        // a's bucket is full again at 101 s and idle for 10 s at 111 s.
        assert_eq!(check(&store, &ns, &l, "r", &b, &key("b"), 110 * S).via, Via::KeyLimit);
        let d = check(&store, &ns, &l, "r", &b, &key("b"), 111 * S);
        assert_eq!((d.allowed, d.via), (true, Via::Key));
    }

    #[test]
    fn sweep_forgets_only_idle_keys() {
        let store = FakeStore::default();
        let ns = Namespace::new("t");
        let l = limits(64, KeyLimitPolicy::Deny);
        let b = Bucket::new(1, S, 1);
        for i in 0..20 {
            check(&store, &ns, &l, "r", &b, &key(&format!("old{i}")), 100 * S);
        }
        for i in 0..5 {
            check(&store, &ns, &l, "r", &b, &key(&format!("new{i}")), 109 * S);
        }
        let groups = l.layout.groups();
        let s = sweep(&store, &ns, &l, 0, groups, 111 * S);
        assert_eq!((s.removed, s.next), (20, 0));
        assert_eq!(tracked_keys(&store, &ns, &l.layout), 5);
        // A limited key is never forgotten early: its state is still needed.
        assert!(!check(&store, &ns, &l, "r", &b, &key("new0"), 109 * S).allowed);
    }

    #[test]
    fn sweep_skips_a_group_changed_meanwhile() {
        let b = Bucket::new(1, S, 1);
        let l = limits(1, KeyLimitPolicy::Deny);
        let store = prepared(
            FakeStore::with_conflicts(0, move |_, raw| {
                // A request re-uses the idle key right before the sweep writes.
                let mut g = Group::decode(raw).unwrap();
                g.records[0].tat = 200 * S;
                *raw = g.encode();
            }),
            &l,
        );
        let ns = Namespace::new("t");
        check(&store, &ns, &l, "r", &b, &key("a"), 100 * S);
        store.conflicts.set(1);
        let s = sweep(&store, &ns, &l, 0, 1, 150 * S);
        assert_eq!((s.removed, s.conflicts), (0, 1));
        assert_eq!(tracked_keys(&store, &ns, &l.layout), 1, "the re-used key survived");
    }

    #[test]
    fn sweep_wraps_and_bounds_its_work() {
        let store = FakeStore::default();
        let ns = Namespace::new("t");
        let l = limits(40, KeyLimitPolicy::Deny); // 5 groups
        let s = sweep(&store, &ns, &l, 3, 4, S);
        assert_eq!(s.next, 2);
        assert_eq!(sweep(&store, &ns, &l, 7, 100, S).next, 2);
    }

    #[test]
    fn headers_follow_the_draft() {
        let d = Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset_ns: 2_500_000_000,
            retry_after_ns: 200_000_000,
            via: Via::Key,
            conflicts: 0,
        };
        let h = d.headers();
        assert_eq!(
            h,
            vec![
                ("ratelimit-limit", "10".to_owned()),
                ("ratelimit-remaining", "0".to_owned()),
                ("ratelimit-reset", "3".to_owned()),
                ("retry-after", "1".to_owned()),
            ]
        );
        let ok = Decision { allowed: true, remaining: 4, ..d };
        assert!(ok.headers().iter().all(|(k, _)| *k != "retry-after"));
    }

    #[test]
    fn corrupt_group_is_reset() {
        let store = FakeStore::default();
        let ns = Namespace::new("t");
        let l = limits(8, KeyLimitPolicy::Deny);
        store.set(&ns.group(0), b"garbage", None).unwrap();
        assert!(check(&store, &ns, &l, "r", &Bucket::new(1, S, 1), &key("a"), S).allowed);
        assert_eq!(tracked_keys(&store, &ns, &l.layout), 1);
    }
}
