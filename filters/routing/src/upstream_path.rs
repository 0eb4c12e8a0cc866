//! What the router may look at: the path the upstream gets, and no header the filter owns.
//!
//! The path: `path_normalization` (wasmfilter_common::canonical_path) — `reject_ambiguous` (default) refuses with
//! 400 any path a backend may read differently from the rules, `forward_canonical` matches the rules on the
//! canonical path and forwards that path (a rule's `prefix_rewrite` applies to it).
//! The headers: the cluster header and every `set_headers` name are the filter's; a client's copy, in any spelling a
//! backend folds together (`x_route` for `x-route`), is removed before the rules look at the request.
use wasmfilter_common::canonical_path::{self, Decided, Refusal};
use wasmfilter_common::header_spelling::{same_header, spellings_to_remove};
use wasmfilter_common::headers::{Pair, first, names};

use crate::router::Router;

#[derive(Debug, PartialEq, Eq)]
pub struct Guarded {
    /// The `:path` the rules match on and the upstream gets (unless a rule rewrites it).
    pub path: Decided,
    /// Request headers to remove: every client spelling of an owned name that the request carries.
    pub remove: Vec<String>,
    /// The client sent the cluster header (in some spelling).
    pub spoofed_cluster: bool,
}

/// The headers this router sets: the cluster header, then every rule's `set_headers` names.
pub fn owned_headers(router: &Router) -> Vec<&str> {
    let mut owned = vec![router.cluster_header.as_str()];
    for rule in &router.rules {
        for (name, _) in &rule.set_headers {
            if !owned.contains(&name.as_str()) {
                owned.push(name);
            }
        }
    }
    owned
}

/// Checks the request's `:path` (in HEADERS) and lists the owned headers to remove. OWNED: `owned_headers(router)`
/// (computed once per configuration).
pub fn guard(router: &Router, owned: &[impl AsRef<str>], headers: &[Pair<'_>]) -> Result<Guarded, Refusal> {
    let path = canonical_path::decide(first(headers, ":path"), router.path_normalization)?;
    let remove = spellings_to_remove(names(headers), owned);
    // The cluster header is owned, so a client's copy (never a pseudo-header) is in the removal list.
    let spoofed_cluster = remove.iter().any(|k| same_header(k, &router.cluster_header));
    Ok(Guarded { path, remove: remove.into_iter().map(str::to_owned).collect(), spoofed_cluster })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoutingConfig;
    use crate::request::RequestView;
    use crate::router::Decision;
    use wasmfilter_common::canonical_path::Ambiguity;

    fn router(mode: &str) -> Router {
        let json = format!(
            r#"{{"path_normalization": "{mode}", "rules": [
                {{"name": "admin", "match": {{"path_prefix": "/admin"}}, "cluster": "internal",
                  "set_headers": {{"x-route": "admin"}}}},
                {{"name": "v2", "match": {{"path_prefix": "/api/v2/"}}, "cluster": "canary", "prefix_rewrite": "/v2/"}},
                {{"name": "beta", "match": {{"headers": [{{"name": "x-route", "exact": "beta"}}]}}, "cluster": "canary",
                  "set_headers": {{"x-route": "beta", "x-tier": "b"}}}}]}}"#
        );
        Router::build(&RoutingConfig::parse(json.as_bytes()).unwrap(), 1).unwrap()
    }

    fn headers(path: &str, extra: &[(&str, &str)]) -> Vec<Pair<'static>> {
        let mut h = wasmfilter_common::headers::owned(&[(":path", path), (":method", "GET")]);
        h.extend(wasmfilter_common::headers::owned(extra));
        h
    }

    /// (rule name or "default", :path the upstream gets) for PATH under MODE.
    fn routed(mode: &str, path: &str) -> Result<(String, String), Refusal> {
        let r = router(mode);
        let h = headers(path, &[]);
        let guarded = guard(&r, &owned_headers(&r), &h)?;
        Ok(match r.decide(&RequestView::new(&guarded.path.path, &h)) {
            Decision::Rule(routed) => {
                let name = r.rules.get(routed.rule).map(|rule| rule.name.clone()).unwrap_or_default();
                (name, routed.path.unwrap_or(guarded.path.path))
            }
            Decision::Default(_) => ("default".to_owned(), guarded.path.path),
        })
    }

    const DIFFERENTIALS: &[&str] = &[
        "/public/..;/admin",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "/public\\..\\admin",
        "/x/..%5cadmin",
        "/%61dmin",
        "/public/../admin",
        "//admin",
    ];

    #[test]
    fn reject_ambiguous_refuses_every_differential() {
        for path in DIFFERENTIALS {
            assert!(matches!(routed("reject_ambiguous", path), Err(Refusal::Ambiguous(_))), "{path}");
        }
        assert_eq!(routed("reject_ambiguous", "/admin/x").unwrap(), ("admin".to_owned(), "/admin/x".to_owned()));
    }

    #[test]
    fn forward_canonical_routes_and_forwards_the_same_path() {
        for path in DIFFERENTIALS {
            assert_eq!(routed("forward_canonical", path).unwrap(), ("admin".to_owned(), "/admin".to_owned()), "{path}");
        }
        // The other way round: a path that looks like /admin but is /public to every backend is not routed as admin.
        for path in ["/admin/..;/public", "/admin/%2e%2e/public", "/admin/x\\..\\..\\public"] {
            assert_eq!(routed("forward_canonical", path).unwrap(), ("default".to_owned(), "/public".to_owned()));
        }
    }

    #[test]
    fn prefix_rewrite_applies_to_the_canonical_path() {
        assert_eq!(
            routed("forward_canonical", "/api/v2/./users/%2e%2e/items?x=..;").unwrap(),
            ("v2".to_owned(), "/v2/items?x=..;".to_owned())
        );
        assert_eq!(
            routed("forward_canonical", "/api/x/..;/v2/users").unwrap(),
            ("v2".to_owned(), "/v2/users".to_owned())
        );
    }

    #[test]
    fn invalid_paths_are_refused_in_both_modes() {
        for mode in ["reject_ambiguous", "forward_canonical"] {
            for path in ["/%c0%ae/admin", "/a%00", "/%252e", "/../admin", "*"] {
                assert!(matches!(routed(mode, path), Err(Refusal::Invalid(_))), "{mode} {path}");
            }
        }
        assert_eq!(routed("reject_ambiguous", "/a#f"), Err(Refusal::Ambiguous(Ambiguity::Fragment)));
    }

    #[test]
    fn owned_headers_are_the_cluster_header_and_every_set_header() {
        assert_eq!(owned_headers(&router("reject_ambiguous")), vec!["x-wasmfilter-cluster", "x-route", "x-tier"]);
    }

    #[test]
    fn every_spelling_of_an_owned_header_is_removed() {
        let r = router("reject_ambiguous");
        let h = headers(
            "/",
            &[("x_wasmfilter_cluster", "internal"), ("x_route", "beta"), ("X-Tier", "a"), ("x-api-key", "k")],
        );
        let guarded = guard(&r, &owned_headers(&r), &h).unwrap();
        assert!(guarded.spoofed_cluster);
        assert_eq!(guarded.remove, vec!["x_wasmfilter_cluster", "x_route", "X-Tier"]);
        // Nothing owned on the request: nothing removed (no header mutation, the cached route stays).
        let clean = guard(&r, &owned_headers(&r), &headers("/", &[("x-api-key", "k")])).unwrap();
        assert!(!clean.spoofed_cluster && clean.remove.is_empty());
    }
}
