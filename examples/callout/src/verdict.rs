//! The decision, from the callout's answer alone: allowed only when it answered 200 with a body whose first byte
//! is even (as the proxy-wasm SDK's http_auth_random example); anything else — odd byte, empty body, other status,
//! no answer (reset, timeout) — forbids.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Forbid(&'static str),
}

/// STATUS is the answer's `:status` (None: the call failed), BODY its body.
pub fn verdict(status: Option<&str>, body: &[u8]) -> Verdict {
    match (status, body.first()) {
        (None, _) => Verdict::Forbid("the callout failed"),
        (Some(s), _) if s != "200" => Verdict::Forbid("the callout did not answer 200"),
        (Some(_), None) => Verdict::Forbid("the callout answered an empty body"),
        (Some(_), Some(b)) if b % 2 == 0 => Verdict::Allow,
        (Some(_), Some(_)) => Verdict::Forbid("the callout's first byte is odd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_first_byte_of_a_200_allows() {
        assert_eq!(verdict(Some("200"), &[2, 1]), Verdict::Allow);
        assert_eq!(verdict(Some("200"), &[0]), Verdict::Allow);
    }

    #[test]
    fn everything_else_forbids() {
        assert!(matches!(verdict(Some("200"), &[3]), Verdict::Forbid(_)));
        assert!(matches!(verdict(Some("200"), b""), Verdict::Forbid(_)));
        assert!(matches!(verdict(Some("503"), &[2]), Verdict::Forbid(_)));
        assert!(matches!(verdict(None, &[2]), Verdict::Forbid(_)));
    }
}
