//! Headers a filter owns (identity, claims, routing) in every spelling a backend may fold into the same name.
//!
//! Envoy keeps `x-auth-identity` and `x_auth_identity` apart, but CGI-style servers (PHP-FPM, many WSGI/Rack
//! adapters, anything reading `HTTP_X_AUTH_IDENTITY`) upper-case the name and turn `-` into `_`: a client-sent
//! `x_auth_identity: root` then arrives next to (or instead of) the filter's `x-auth-identity`. So a filter removes
//! every request header whose *folded* name (ASCII lower case, `_` read as `-`) equals one it owns, before it sets
//! its own.

/// NAME as a CGI-style backend sees it: ASCII lower case, `_` read as `-`.
pub fn fold(name: &str) -> String {
    name.bytes().map(|b| if b == b'_' { '-' } else { char::from(b.to_ascii_lowercase()) }).collect()
}

/// Whether two header names are the same header to some backend.
pub fn same_header(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let (x, y) = (x.to_ascii_lowercase(), y.to_ascii_lowercase());
            x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_'))
        })
}

/// The names in PRESENT (the request's header names, in order) that are a spelling of one of OWNED, each once:
/// what the filter removes before setting its own headers. Only names that are there: removing an absent header is
/// still a header mutation to Envoy (it drops the cached route), and a hostcall per request for nothing.
/// Pseudo-headers are never returned.
pub fn spellings_to_remove<'a>(present: impl IntoIterator<Item = &'a str>, owned: &[impl AsRef<str>]) -> Vec<&'a str> {
    let mut out: Vec<&'a str> = Vec::new();
    for name in present {
        if name.starts_with(':') || out.contains(&name) {
            continue;
        }
        if owned.iter().any(|o| same_header(o.as_ref(), name)) {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_underscore() {
        assert_eq!(fold("X_Auth-Identity"), "x-auth-identity");
        for spelling in ["x-auth-identity", "x_auth_identity", "X-AUTH-IDENTITY", "x_auth-identity", "X-Auth_Identity"]
        {
            assert!(same_header("x-auth-identity", spelling), "{spelling}");
            assert_eq!(fold(spelling), "x-auth-identity");
        }
        for other in ["x-auth-identit", "x-auth-identity2", "xauth-identity", "x.auth.identity", "x-auth identity", ""] {
            assert!(!same_header("x-auth-identity", other), "{other}");
        }
        // Non-ASCII never folds into ASCII (U+212A KELVIN SIGN is `k` to Unicode lower-casing).
        assert!(!same_header("x-k", "x-\u{212a}"));
    }

    #[test]
    fn removes_every_present_spelling_once() {
        let present =
            [":path", "x_auth_identity", "x-auth-identity", "x-api-key", "X_AUTH_IDENTITY", "x_claim_tier", "x_auth_identity"];
        let owned = ["x-auth-identity", "x-claim-tier", "x-claim-sub"];
        assert_eq!(
            spellings_to_remove(present, &owned),
            vec!["x_auth_identity", "x-auth-identity", "X_AUTH_IDENTITY", "x_claim_tier"]
        );
        assert_eq!(spellings_to_remove([":x_auth_identity"], &["x-auth-identity"]), Vec::<&str>::new());
        assert_eq!(spellings_to_remove(["x-api-key"], &["x-auth-identity"]), Vec::<&str>::new());
        assert_eq!(spellings_to_remove(["x-api-key"], &[] as &[&str]), Vec::<&str>::new());
    }
}
