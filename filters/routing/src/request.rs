//! A read-only view of the request the rules look at: path, query parameters, headers and cookies.
use std::borrow::Cow;
use wasmfilter_common::headers::{self, HeaderList};

/// Headers as Envoy hands them over: lower-case names, repeats kept in order.
pub struct RequestView<'a> {
    path: &'a str,
    query: &'a str,
    headers: &'a dyn HeaderList,
}

impl<'a> RequestView<'a> {
    /// `full_path` is the `:path` pseudo-header (path plus optional `?query`); `headers` borrowed from the host's
    /// map (`wasmfilter_common::headers`) or owned pairs.
    pub fn new(full_path: &'a str, headers: &'a dyn HeaderList) -> Self {
        let (path, query) = split_path(full_path);
        RequestView { path, query, headers }
    }

    /// The path without its query string.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The query string without `?` (empty when there is none).
    pub fn query_string(&self) -> &'a str {
        self.query
    }

    /// A header's value; repeated headers are joined with `,` (as Envoy's own header matcher does). Borrowed when
    /// the header is there once.
    pub fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        let mut values = headers::iter(self.headers).filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let mut joined = Cow::Borrowed(values.next()?);
        for v in values {
            let text = joined.to_mut();
            text.push(',');
            text.push_str(v);
        }
        Some(joined)
    }

    /// The first cookie of that name across all `cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        headers::iter(self.headers)
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"'))
            })
    }

    /// The first query parameter of that name, percent-decoded (`+` is a space).
    pub fn query(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (!pair.is_empty() && percent_decode(k) == name).then(|| percent_decode(v))
        })
    }
}

/// (`/a/b`, `x=1`) from `/a/b?x=1`; a `#fragment` (never sent by well-behaved clients) is dropped.
pub fn split_path(full: &str) -> (&str, &str) {
    let full = full.split_once('#').map_or(full, |(before, _)| before);
    full.split_once('?').unwrap_or((full, ""))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding; a malformed escape is kept as written. Text without `%` or `+`
/// decodes to itself (borrowed: no allocation per query parameter looked at).
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let decoded = match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                    (Some(hi), Some(lo)) => Some(hi * 16 + lo),
                    _ => None,
                };
                if let Some(value) = decoded {
                    out.push(value);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn splits_path_and_query() {
        assert_eq!(split_path("/a/b?x=1&y"), ("/a/b", "x=1&y"));
        assert_eq!(split_path("/a"), ("/a", ""));
        assert_eq!(split_path("/a?"), ("/a", ""));
        assert_eq!(split_path("/a#frag?x"), ("/a", ""));
    }

    #[test]
    fn joins_repeated_headers() {
        let h = headers(&[("x-a", "1"), ("x-b", "2"), ("X-A", "3")]);
        let view = RequestView::new("/", &h);
        assert_eq!(view.header("x-a").as_deref(), Some("1,3"));
        assert_eq!(view.header("x-b").as_deref(), Some("2"));
        assert_eq!(view.header("x-c"), None);
    }

    #[test]
    fn finds_cookies_across_headers() {
        let h = headers(&[("cookie", "a=1; uid=alice ;b"), ("cookie", "uid=bob; tier=\"gold\"")]);
        let view = RequestView::new("/", &h);
        assert_eq!(view.cookie("uid"), Some("alice"));
        assert_eq!(view.cookie("tier"), Some("gold"));
        assert_eq!(view.cookie("b"), None);
        assert_eq!(view.cookie("ui"), None);
    }

    #[test]
    fn reads_decoded_query_parameters() {
        let h: Vec<(String, String)> = Vec::new();
        let view = RequestView::new("/p?a=1&version=v%32&name=a+b&flag&a=2&%76=x", &h);
        assert_eq!(view.path(), "/p");
        assert_eq!(view.query("a").as_deref(), Some("1"));
        assert_eq!(view.query("version").as_deref(), Some("v2"));
        assert_eq!(view.query("name").as_deref(), Some("a b"));
        assert_eq!(view.query("flag").as_deref(), Some(""));
        assert_eq!(view.query("v").as_deref(), Some("x"));
        assert_eq!(view.query("missing"), None);
        assert_eq!(RequestView::new("/p", &h).query(""), None);
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41%62c"), "Abc");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
