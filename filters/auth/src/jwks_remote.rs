//! When to fetch the remote JWKS (`jwt.remote_jwks`) and what to make of the answer, in plain Rust; `lib.rs` only
//! sends the `http_call` and hands the answer here. One schedule per worker (each worker's root context fetches for
//! its own VM). First fetch at start; after a success the next one `refresh_s` later; after a failure (down, timeout,
//! non-200, oversized, unusable) the last good key set stays in use (stale-while-error) and a retry follows after
//! `retry_s`. Before the first success, tokens are refused with 503 (fail closed) unless inline keys were given.
use crate::config::RemoteJwksConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Send a request now.
    Now,
    /// A request is out; wait for its answer (Envoy enforces `timeout_ms`).
    InFlight,
    /// Nothing to do until this time (seconds).
    At(u64),
}

pub struct Schedule {
    refresh_s: u64,
    retry_s: u64,
    next_at: u64,
    in_flight: bool,
    pub fetched_once: bool,
}

/// Why an answer was not used (logged; counted as `jwks.fetch_failed`).
pub fn check_answer(config: &RemoteJwksConfig, status: Option<&str>, body_size: usize) -> Result<(), String> {
    match status {
        None => Err("no answer (cluster down, reset or timeout)".to_owned()),
        Some("200") if body_size > config.max_bytes => {
            Err(format!("answer of {body_size} bytes is larger than max_bytes {}", config.max_bytes))
        }
        Some("200") if body_size == 0 => Err("empty answer".to_owned()),
        Some("200") => Ok(()),
        Some(other) => Err(format!("status {other}")),
    }
}

impl Schedule {
    pub fn new(config: &RemoteJwksConfig) -> Self {
        Schedule { refresh_s: config.refresh_s, retry_s: config.retry_s, next_at: 0, in_flight: false, fetched_once: false }
    }

    pub fn next(&self, now: u64) -> Fetch {
        if self.in_flight {
            Fetch::InFlight
        } else if now >= self.next_at {
            Fetch::Now
        } else {
            Fetch::At(self.next_at)
        }
    }

    pub fn sent(&mut self) {
        self.in_flight = true;
    }

    /// The request could not even be sent (e.g. unknown cluster): retry later.
    pub fn not_sent(&mut self, now: u64) {
        self.in_flight = false;
        self.next_at = now.saturating_add(self.retry_s);
    }

    pub fn answered(&mut self, ok: bool, now: u64) {
        self.in_flight = false;
        self.fetched_once |= ok;
        self.next_at = now.saturating_add(if ok { self.refresh_s } else { self.retry_s });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RemoteJwksConfig {
        wasmfilter_common::json::from_slice(br#"{"cluster": "idp", "path": "/jwks", "refresh_s": 300, "retry_s": 5, "max_bytes": 100}"#)
            .unwrap()
    }

    #[test]
    fn fetch_at_start_refresh_after_success_retry_after_failure() {
        let mut s = Schedule::new(&config());
        assert_eq!(s.next(1000), Fetch::Now);
        s.sent();
        assert_eq!(s.next(1001), Fetch::InFlight, "one request at a time");
        s.answered(false, 1002);
        assert!(!s.fetched_once);
        assert_eq!(s.next(1003), Fetch::At(1007));
        assert_eq!(s.next(1007), Fetch::Now);
        s.sent();
        s.answered(true, 1008);
        assert!(s.fetched_once);
        assert_eq!(s.next(1100), Fetch::At(1308));
        s.answered(false, 1308);
        assert!(s.fetched_once, "a failed refresh keeps the first success");
        s.not_sent(1400);
        assert_eq!(s.next(1400), Fetch::At(1405));
    }

    #[test]
    fn answers_that_are_not_used() {
        let c = config();
        assert_eq!(check_answer(&c, Some("200"), 50), Ok(()));
        assert!(check_answer(&c, None, 0).unwrap_err().contains("no answer"));
        assert!(check_answer(&c, Some("503"), 10).unwrap_err().contains("status 503"));
        assert!(check_answer(&c, Some("200"), 101).unwrap_err().contains("max_bytes 100"));
        assert!(check_answer(&c, Some("200"), 0).unwrap_err().contains("empty"));
    }
}
