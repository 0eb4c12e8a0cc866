//! The path the decision is made on is the path the upstream gets.
//!
//! `path_normalization` (wasmfilter_common::canonical_path) decides the `:path` first: `reject_ambiguous` (the
//! default) refuses with 400 any path a backend may read differently from the filter and forwards the others
//! unchanged; `forward_canonical` decides on the canonical path and, when the request is allowed, the upstream gets
//! exactly that path (query kept). The policy then only ever sees that one path.
use wasmfilter_common::canonical_path::{self, Refusal};

use crate::path;
use crate::policy::{Denial, Outcome, Policy, Reason, Request};

#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    pub outcome: Outcome,
    /// The `:path` to set before forwarding (an allowed request whose path was rewritten to its canonical form).
    pub rewrite: Option<String>,
    /// Why the path was refused, for the log.
    pub refusal: Option<Refusal>,
}

/// The policy's decision on the path the upstream will get.
pub fn evaluate(policy: &Policy, request: &Request<'_>, now: u64) -> Checked {
    let decided = match canonical_path::decide(request.path, policy.config.path_normalization) {
        Ok(decided) => decided,
        Err(refusal) => {
            let denial = Denial { status: 400, reason: Reason::BadPath, challenges: Vec::new() };
            return Checked { outcome: Outcome::Deny(denial), rewrite: None, refusal: Some(refusal) };
        }
    };
    let forwarded = Request { method: request.method, path: &decided.path, headers: request.headers };
    // `decided.decoded` is the canonical form of the forwarded path (canonicalisation is idempotent: tested below),
    // so the policy does not canonicalise it again.
    let normalised = path::without_trailing_slash(decided.decoded);
    let outcome = policy.evaluate_normalised(&forwarded, &normalised, now);
    let rewrite = (decided.rewritten && matches!(outcome, Outcome::Allow { .. })).then_some(decided.path);
    Checked { outcome, rewrite, refusal: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::digest_hex;
    use wasmfilter_common::canonical_path::{Ambiguity, Invalid};

    fn policy(mode: &str) -> Policy {
        let raw = format!(
            r#"{{"keys": {{"{}": "alice"}}, "path_normalization": "{mode}",
                "rules": [{{"prefix": "/public", "require": "public"}}, {{"prefix": "/admin", "require": "api_key"}}]}}"#,
            digest_hex("alice-secret")
        );
        Policy::parse(raw.as_bytes()).unwrap()
    }

    fn check(mode: &str, path: &str, key: Option<&str>) -> Checked {
        let headers = wasmfilter_common::headers::owned(key.map(|k| vec![("x-api-key", k)]).unwrap_or_default().as_slice());
        evaluate(&policy(mode), &Request { method: "GET", path, headers: &headers }, 0)
    }

    fn status(checked: &Checked) -> u32 {
        match &checked.outcome {
            Outcome::Allow { .. } => 200,
            Outcome::Deny(d) => d.status,
        }
    }

    /// Every differential of issue 12: anonymous requests that a filter deciding `/public` let through to a backend
    /// reading `/admin/...`.
    const DIFFERENTIALS: &[&str] = &[
        "/admin/..;/public",
        "/admin/%2e%2e/public",
        "/admin/..%2fpublic",
        "/admin/x\\..\\..\\public",
        "/admin/x%5c..%5c..%5cpublic",
        "/admin/..%5Cpublic",
        "/admin/.%2e/public",
        "/admin/..;x=1/public",
        "/admin/..%3b/public",
        "/admin;a=b/../public",
        "/admin/../public",
    ];

    #[test]
    fn reject_ambiguous_is_the_default() {
        let raw = format!(r#"{{"keys": {{"{}": "alice"}}}}"#, digest_hex("alice-secret"));
        let p = Policy::parse(raw.as_bytes()).unwrap();
        assert_eq!(p.config.path_normalization, canonical_path::PathNormalization::RejectAmbiguous);
    }

    #[test]
    fn reject_ambiguous_refuses_every_differential_with_400() {
        for path in DIFFERENTIALS {
            let checked = check("reject_ambiguous", path, None);
            assert_eq!(status(&checked), 400, "{path}");
            assert!(matches!(checked.refusal, Some(Refusal::Ambiguous(_))), "{path}");
            assert_eq!(checked.rewrite, None, "{path}");
            // Even with a valid key: the upstream might read another path than the one authorised.
            assert_eq!(status(&check("reject_ambiguous", path, Some("alice-secret"))), 400, "{path}");
        }
    }

    #[test]
    fn forward_canonical_sends_the_upstream_the_path_it_allowed() {
        for path in DIFFERENTIALS {
            let checked = check("forward_canonical", path, None);
            assert_eq!(status(&checked), 200, "{path}");
            assert_eq!(checked.rewrite.as_deref(), Some("/public"), "{path}");
        }
        // And the other way round: the canonical path is protected, whatever the spelling.
        for path in ["/public/..;/admin", "/public/%2e%2e/admin", "/public/..%2fadmin", "/public\\..\\admin", "/%61dmin"] {
            assert_eq!(status(&check("forward_canonical", path, None)), 401, "{path}");
            let allowed = check("forward_canonical", path, Some("alice-secret"));
            assert_eq!((status(&allowed), allowed.rewrite.as_deref()), (200, Some("/admin")), "{path}");
            assert_eq!(status(&check("reject_ambiguous", path, Some("alice-secret"))), 400, "{path}");
        }
    }

    #[test]
    fn the_query_is_forwarded_and_still_carries_the_key() {
        let raw = format!(
            r#"{{"keys": {{"{}": "alice"}}, "key_query_param": "api_key", "path_normalization": "forward_canonical"}}"#,
            digest_hex("alice-secret")
        );
        let p = Policy::parse(raw.as_bytes()).unwrap();
        let checked = evaluate(&p, &Request { method: "GET", path: "/a/./b?api_key=alice-secret", headers: &[] }, 0);
        assert_eq!(status(&checked), 200);
        assert_eq!(checked.rewrite.as_deref(), Some("/a/b?api_key=alice-secret"));
    }

    #[test]
    fn canonical_paths_are_never_rewritten() {
        for mode in ["reject_ambiguous", "forward_canonical"] {
            let checked = check(mode, "/public/x?y=..;/", None);
            assert_eq!((status(&checked), checked.rewrite), (200, None), "{mode}");
            assert_eq!(status(&check(mode, "/admin/x", None)), 401, "{mode}");
        }
    }

    #[test]
    fn a_denied_request_is_never_rewritten() {
        let checked = check("forward_canonical", "/public/../admin", None);
        assert_eq!((status(&checked), checked.rewrite), (401, None));
    }

    #[test]
    fn invalid_paths_are_refused_in_both_modes() {
        for mode in ["reject_ambiguous", "forward_canonical"] {
            for (path, why) in [
                ("/%c0%ae%c0%ae/admin", Invalid::BadUtf8),
                ("/public/%00", Invalid::Control),
                ("/%252e%252e/admin", Invalid::DoubleEncoding),
                ("/public/../../admin", Invalid::AboveRoot),
                ("http://x/admin", Invalid::NotOriginForm),
            ] {
                let checked = check(mode, path, Some("alice-secret"));
                assert_eq!((status(&checked), checked.refusal), (400, Some(Refusal::Invalid(why))), "{mode} {path}");
            }
        }
        let fragment = check("reject_ambiguous", "/public#x", None);
        assert_eq!(fragment.refusal, Some(Refusal::Ambiguous(Ambiguity::Fragment)));
    }

    /// What lets `evaluate` hand the policy `decided.decoded` instead of normalising the forwarded path again: in
    /// both modes the forwarded path normalises to exactly that, and the policy decides the same either way.
    #[test]
    fn the_decided_path_is_already_normalised() {
        let extra = ["/", "/a/", "/a//b/./c/", "/a/b/../c?x=1", "/%7Euser/x", "/caf%C3%A9/", "/a;p=1/b", "/p%41th?q=%2F",
                     "/admin/x/..", "/public/", "/x?a=1#f", "/.", "/a/%2e/b"];
        for mode in ["reject_ambiguous", "forward_canonical"] {
            let p = policy(mode);
            for raw in DIFFERENTIALS.iter().copied().chain(extra) {
                let Ok(decided) = canonical_path::decide(raw, p.config.path_normalization) else { continue };
                let normalised = path::without_trailing_slash(decided.decoded.clone());
                assert_eq!(path::normalise(&decided.path), Ok(normalised.clone()), "{mode} {raw}");
                for key in [None, Some("alice-secret")] {
                    let headers =
                        wasmfilter_common::headers::owned(key.map(|k| vec![("x-api-key", k)]).unwrap_or_default().as_slice());
                    let request = Request { method: "GET", path: &decided.path, headers: &headers };
                    assert_eq!(p.evaluate(&request, 0), p.evaluate_normalised(&request, &normalised, 0), "{mode} {raw}");
                }
            }
        }
    }

    #[test]
    fn an_unknown_mode_is_a_configuration_error() {
        let e = Policy::parse(br#"{"path_normalization": "normalise"}"#).err().unwrap();
        assert!(e.message().contains("unknown variant `normalise`, expected `reject_ambiguous` or `forward_canonical`"), "{}", e.message());
    }
}
