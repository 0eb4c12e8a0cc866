//! Token-bucket arithmetic as GCRA (generic cell rate algorithm): the whole bucket state is one number,
//! the theoretical arrival time `tat` in nanoseconds. A bucket of capacity `burst` refilling one token every
//! `interval` ns is full when `tat <= now`; each admitted request moves `tat` forward by `interval`, and a
//! request is admitted while `tat` stays within `burst * interval` of now. Pure integer math; time is a
//! parameter, so tests drive it with a fake clock.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Nanoseconds per token.
    pub interval_ns: u64,
    /// Capacity in tokens.
    pub burst: u32,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub allowed: bool,
    /// The state to store (unchanged when limited).
    pub tat: u64,
    /// Tokens left after this request.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_ns: u64,
    /// Until the next request would be admitted (0 when allowed).
    pub retry_after_ns: u64,
}

impl Bucket {
    pub fn new(rate: u32, unit_ns: u64, burst: u32) -> Self {
        Bucket { interval_ns: (unit_ns / u64::from(rate.max(1))).max(1), burst: burst.max(1) }
    }

    fn tolerance(&self) -> u64 {
        self.interval_ns.saturating_mul(u64::from(self.burst))
    }

    /// Takes one token at `now` from a bucket whose state is `tat` (`None`: a new, full bucket).
    pub fn take(&self, tat: Option<u64>, now: u64) -> Taken {
        let start = tat.unwrap_or(now).max(now);
        let next = start.saturating_add(self.interval_ns);
        let ahead = next - now;
        if ahead > self.tolerance() {
            return Taken {
                allowed: false,
                tat: tat.unwrap_or(now),
                remaining: 0,
                reset_ns: start - now,
                retry_after_ns: ahead - self.tolerance(),
            };
        }
        let remaining = (self.tolerance() - ahead) / self.interval_ns;
        Taken {
            allowed: true,
            tat: next,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_ns: ahead,
            retry_after_ns: 0,
        }
    }

    /// Tokens available at `now` without taking one.
    pub fn available(&self, tat: u64, now: u64) -> u32 {
        let used = tat.saturating_sub(now).div_ceil(self.interval_ns);
        u32::try_from(u64::from(self.burst).saturating_sub(used)).unwrap_or(0)
    }
}

/// A key is idle (and may be forgotten without changing any answer) once its bucket has been full for
/// `idle_ns`: a forgotten key starts again as a full bucket, which is exactly what it was.
pub fn is_idle(tat: u64, now: u64, idle_ns: u64) -> bool {
    now >= tat.saturating_add(idle_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn full_bucket_admits_burst_then_limits() {
        let b = Bucket::new(1, 3600 * S, 3);
        let now = 1_000 * S;
        let mut tat = None;
        let mut remaining = vec![];
        for _ in 0..3 {
            let t = b.take(tat, now);
            assert!(t.allowed);
            remaining.push(t.remaining);
            tat = Some(t.tat);
        }
        assert_eq!(remaining, vec![2, 1, 0]);
        let t = b.take(tat, now);
        assert!(!t.allowed);
        assert_eq!(t.tat, tat.unwrap(), "a limited request does not change the state");
        assert_eq!(t.retry_after_ns, 3600 * S);
        assert_eq!(t.reset_ns, 3 * 3600 * S);
    }

    #[test]
    fn refills_one_token_per_interval() {
        let b = Bucket::new(10, S, 2); // one token per 100 ms
        let mut now = 5 * S;
        let t1 = b.take(None, now);
        let t2 = b.take(Some(t1.tat), now);
        assert!(t1.allowed && t2.allowed);
        assert!(!b.take(Some(t2.tat), now).allowed);
        now += 99_999_999;
        let limited = b.take(Some(t2.tat), now);
        assert!(!limited.allowed);
        assert_eq!(limited.retry_after_ns, 1);
        now += 1;
        let t3 = b.take(Some(t2.tat), now);
        assert!(t3.allowed);
        assert_eq!(t3.remaining, 0);
    }

    #[test]
    fn long_idle_does_not_exceed_burst() {
        let b = Bucket::new(1, S, 2);
        let t = b.take(Some(0), 1_000_000 * S);
        assert!(t.allowed);
        assert_eq!(t.remaining, 1);
        assert_eq!(b.available(t.tat, 1_000_000 * S), 1);
        assert_eq!(b.available(t.tat, 1_000_001 * S), 2);
    }

    #[test]
    fn clock_going_backwards_is_safe() {
        let b = Bucket::new(1, S, 1);
        let t = b.take(None, 100 * S);
        let back = b.take(Some(t.tat), 50 * S);
        assert!(!back.allowed);
        assert_eq!(back.tat, t.tat);
    }

    #[test]
    fn rate_per_minute_interval() {
        let b = Bucket::new(60, 60 * S, 1);
        assert_eq!(b.interval_ns, S);
        assert_eq!(Bucket::new(3, S, 1).interval_ns, 333_333_333);
    }

    #[test]
    fn idle_only_after_full_for_timeout() {
        assert!(!is_idle(10 * S, 10 * S, S));
        assert!(!is_idle(10 * S, 11 * S - 1, S));
        assert!(is_idle(10 * S, 11 * S, S));
        assert!(!is_idle(u64::MAX, 0, S));
    }
}
