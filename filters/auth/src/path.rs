//! Request path normalisation for rule matching, and query-parameter lookup.
//!
//! Rules are matched against the *normalised* path so that `/public/../admin`, `//admin`, `/%2e%2e/admin` or
//! `/public/..;/admin` cannot slip past a rule for `/admin`. Anything that cannot be decoded unambiguously is an
//! error, and the filter refuses the request (fail closed).

use wasmfilter_common::canonical_path::{self, Invalid, hex_value};

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum PathError {
    /// Not an origin-form path, a bad `%` escape, a control character, double encoding or invalid UTF-8.
    Undecodable,
    /// `..` above the root.
    Traversal,
}

/// Splits `:path` into (path, query) at the first `?`; a `#` fragment is dropped.
pub fn split(raw: &str) -> (&str, Option<&str>) {
    let raw = raw.split_once('#').map_or(raw, |(before, _)| before);
    match raw.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw, None),
    }
}

/// Percent-decodes once. `plus_is_space` for query strings. Errors on a malformed escape.
fn percent_decode(input: &str, plus_is_space: bool) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex_value).ok_or(PathError::Undecodable)?;
                let lo = bytes.next().and_then(hex_value).ok_or(PathError::Undecodable)?;
                out.push((hi << 4) | lo);
            }
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The normalised form of the path part of `:path`: the decoded canonical path of
/// `wasmfilter_common::canonical_path` (percent-decoded once, `\` read as `/`, empty and `.` segments removed, `..`
/// applied, `;params` dropped from each segment) without its trailing slash. Always starts with `/`, never ends with
/// one (except the root).
pub fn normalise(raw: &str) -> Result<String, PathError> {
    let (path, _) = split(raw);
    match canonical_path::canonicalise(path) {
        Ok(canonical) => Ok(without_trailing_slash(canonical.decoded)),
        Err(Invalid::AboveRoot) => Err(PathError::Traversal),
        Err(_) => Err(PathError::Undecodable),
    }
}

/// A decoded canonical path as rules match it: without its trailing slash (except the root).
pub fn without_trailing_slash(decoded: String) -> String {
    match decoded.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed.to_owned(),
        _ => decoded,
    }
}

/// Every value of query parameter `name` (decoded), in order. A malformed escape is an error.
pub fn query_values(query: Option<&str>, name: &str) -> Result<Vec<String>, PathError> {
    let mut values = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k, true)?;
        if key == name.as_bytes() {
            let value = percent_decode(v, true)?;
            values.push(String::from_utf8(value).map_err(|_| PathError::Undecodable)?);
        }
    }
    Ok(values)
}

/// Whether normalised `path` is under `prefix`, on whole segments.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dot_segments_and_slashes() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b"),
            ("//admin", "/admin"),
            ("/./admin", "/admin"),
            ("/public/../admin", "/admin"),
            ("/public/./../admin/", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/admin?x=1", "/admin"),
            ("/admin#frag", "/admin"),
            ("/admin;jsessionid=1", "/admin"),
        ] {
            assert_eq!(normalise(raw), Ok(want.to_owned()), "{raw}");
        }
    }

    #[test]
    fn decodes_before_resolving() {
        for (raw, want) in [
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public%2f..%2fadmin", "/admin"),
            ("/public/..%5cadmin", "/admin"),
            ("/public\\..\\admin", "/admin"),
            ("/public/..;/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/caf%C3%A9", "/café"),
        ] {
            assert_eq!(normalise(raw), Ok(want.to_owned()), "{raw}");
        }
    }

    #[test]
    fn fails_closed() {
        assert_eq!(normalise("/%2e%2e/admin"), Err(PathError::Traversal));
        assert_eq!(normalise("/.."), Err(PathError::Traversal));
        for raw in ["/%zz", "/%2", "/%", "/%00", "/a%0d%0a", "/%252e%252e/admin", "/%ff", "admin", "*", ""] {
            assert_eq!(normalise(raw), Err(PathError::Undecodable), "{raw}");
        }
    }

    #[test]
    fn query_parameters() {
        assert_eq!(query_values(Some("a=1&api_key=x%2By&b"), "api_key"), Ok(vec!["x+y".to_owned()]));
        assert_eq!(query_values(Some("api_key=a+b&api_key="), "api_key"), Ok(vec!["a b".to_owned(), String::new()]));
        assert_eq!(query_values(Some("api%5Fkey=v"), "api_key"), Ok(vec!["v".to_owned()]));
        assert_eq!(query_values(None, "api_key"), Ok(vec![]));
        assert_eq!(query_values(Some("api_key=%zz"), "api_key"), Err(PathError::Undecodable));
        assert_eq!(split("/p?q=1#f"), ("/p", Some("q=1")));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(has_prefix("/admin", "/admin"));
        assert!(has_prefix("/admin/x", "/admin"));
        assert!(has_prefix("/admin/x", "/admin/"));
        assert!(!has_prefix("/administrator", "/admin"));
        assert!(has_prefix("/anything", "/"));
    }
}
