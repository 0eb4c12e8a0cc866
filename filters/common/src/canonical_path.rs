//! One path for the decision and the upstream: the canonical form of a request's `:path`, and the rule that the
//! path a filter decides on is the path it forwards.
//!
//! A filter that authorises (or routes) the path it normalised but forwards the raw one lets every backend that
//! parses differently (keeps `;` segments, reads `\` literally, keeps `%2F` opaque) serve something the filter never
//! decided on: `/admin/..;/public` is `/public` to the filter and `/admin/..;/public` to nginx. So a filter either
//! forwards the canonical path it decided on ([`PathNormalization::ForwardCanonical`]) or refuses every encoding a
//! backend may read differently ([`PathNormalization::RejectAmbiguous`], the default).
//!
//! The canonical path: percent-decoded once; `\` read as `/`; `;params` dropped from each segment (servlet
//! containers do); empty and `.` segments removed; `..` applied (above the root is refused); a trailing slash kept;
//! re-encoded so that every decoder reads the same segments (only `ALPHA DIGIT - . _ ~ ! $ & ' ( ) * , = : @` stay
//! literal, everything else is `%XX` with upper-case hex). The query string is never changed.
//!
//! Refused in every mode: not origin-form, a malformed escape, a control character or NUL (raw or encoded), double
//! encoding (`%25`), invalid UTF-8 after decoding (which includes overlong forms such as `%C0%AE`), `..` above the root.
use serde::Deserialize;

/// `path_normalization` in a filter's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathNormalization {
    /// 400 for any path a backend may read differently from the filter; other paths are forwarded unchanged.
    #[default]
    RejectAmbiguous,
    /// Decide on the canonical path and rewrite `:path` to it (query kept) before forwarding.
    ForwardCanonical,
}

/// A path no filter can decide on: 400 in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Does not start with `/` (absolute-form, `*`, empty).
    NotOriginForm,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A control character or DEL, raw or percent-encoded (`%00`, `%0d%0a`).
    Control,
    /// `%25`: a second decoder would see another escape.
    DoubleEncoding,
    /// Not UTF-8 once decoded, overlong forms included.
    BadUtf8,
    /// `..` above the root.
    AboveRoot,
}

/// An encoding a backend may read differently: 400 under `reject_ambiguous`, rewritten under `forward_canonical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// `%2F` or `%5C`: one segment to some backends, two to others.
    EncodedSeparator,
    /// A percent-encoded unreserved character (`%2e`, `%61`): the same to decoders, different to the rest.
    EncodedUnreserved,
    /// `;` (raw or `%3B`): a path parameter to servlet containers, part of the segment to others.
    PathParameter,
    /// `\`: a separator to some servers, a literal byte to others.
    Backslash,
    /// A `.` or `..` segment.
    DotSegment,
    /// `//`: merged by some servers, a scheme-relative reference to others.
    EmptySegment,
    /// A byte that must be percent-encoded in a path (space, `"`, `<`, non-ASCII, ...).
    Unencoded,
    /// `#`: never part of a request target.
    Fragment,
    /// A segment ending in `.` or a space (raw or encoded): Windows servers (IIS) drop them, so `/admin.` is `/admin`.
    TrailingDotOrSpace,
}

/// Why a path was refused: logged and counted, never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Invalid(Invalid),
    Ambiguous(Ambiguity),
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Invalid(Invalid::NotOriginForm) => "not an origin-form path",
            Refusal::Invalid(Invalid::BadEscape) => "malformed percent escape",
            Refusal::Invalid(Invalid::Control) => "control character",
            Refusal::Invalid(Invalid::DoubleEncoding) => "double percent-encoding",
            Refusal::Invalid(Invalid::BadUtf8) => "invalid or overlong UTF-8",
            Refusal::Invalid(Invalid::AboveRoot) => "`..` above the root",
            Refusal::Ambiguous(Ambiguity::EncodedSeparator) => "encoded `/` or `\\`",
            Refusal::Ambiguous(Ambiguity::EncodedUnreserved) => "percent-encoded unreserved character",
            Refusal::Ambiguous(Ambiguity::PathParameter) => "`;` path parameter",
            Refusal::Ambiguous(Ambiguity::Backslash) => "backslash",
            Refusal::Ambiguous(Ambiguity::DotSegment) => "dot segment",
            Refusal::Ambiguous(Ambiguity::EmptySegment) => "empty segment",
            Refusal::Ambiguous(Ambiguity::Unencoded) => "byte that must be percent-encoded",
            Refusal::Ambiguous(Ambiguity::Fragment) => "fragment",
            Refusal::Ambiguous(Ambiguity::TrailingDotOrSpace) => "segment ending in `.` or a space",
        }
    }
}

/// The canonical form of the path part (no query) of `:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Decoded segments joined by `/`: what rules on decoded paths match.
    pub decoded: String,
    /// The same segments re-encoded: what is forwarded under `forward_canonical`.
    pub encoded: String,
    /// The first encoding a backend may read differently, if any.
    pub ambiguity: Option<Ambiguity>,
}

/// The path a filter decides on and forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The full `:path` (path and query) to match on and to forward.
    pub path: String,
    /// `path` differs from the received `:path`: the filter must set `:path` to it.
    pub rewritten: bool,
    /// The decoded canonical path (no query).
    pub decoded: String,
}

/// The value of one hex digit of a `%XX` escape.
pub fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes the canonical path keeps literal: unreserved and the `pchar` sub-delimiters other than `;` and `+`
/// (`;` starts a parameter to servlet containers, `+` is a space to some form decoders).
fn stays_literal(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b',' | b'=' | b':' | b'@')
}

/// Bytes a client may send unencoded in a path: `pchar` and `/` (and `%` escapes, handled apart).
fn may_be_raw(b: u8) -> bool {
    stays_literal(b) || matches!(b, b'/' | b';' | b'+')
}

fn encode_segment(segment: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in segment.bytes() {
        if stays_literal(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0')));
            out.push(char::from(HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0')));
        }
    }
}

/// Segment-by-segment builder of the canonical path.
#[derive(Default)]
struct Builder {
    segments: Vec<String>,
    current: Vec<u8>,
    in_params: bool,
    trailing_slash: bool,
    ambiguity: Option<Ambiguity>,
}

impl Builder {
    fn flag(&mut self, ambiguity: Ambiguity) {
        self.ambiguity.get_or_insert(ambiguity);
    }

    fn push(&mut self, b: u8) {
        if !self.in_params {
            self.current.push(b);
        }
    }

    /// Ends the current segment (`last`: at the end of the path, where an empty segment is a trailing slash).
    fn end_segment(&mut self, last: bool) -> Result<(), Invalid> {
        let bytes = std::mem::take(&mut self.current);
        self.in_params = false;
        let segment = String::from_utf8(bytes).map_err(|_| Invalid::BadUtf8)?;
        self.trailing_slash = false;
        match segment.as_str() {
            "" => {
                if last {
                    self.trailing_slash = true;
                } else {
                    self.flag(Ambiguity::EmptySegment);
                }
            }
            "." => {
                self.flag(Ambiguity::DotSegment);
                self.trailing_slash = true;
            }
            ".." => {
                self.flag(Ambiguity::DotSegment);
                self.segments.pop().ok_or(Invalid::AboveRoot)?;
                self.trailing_slash = true;
            }
            _ => {
                if segment.ends_with(['.', ' ']) {
                    self.flag(Ambiguity::TrailingDotOrSpace);
                }
                self.segments.push(segment);
            }
        }
        Ok(())
    }

    fn finish(self) -> CanonicalPath {
        let mut decoded = String::new();
        let mut encoded = String::new();
        for segment in &self.segments {
            decoded.push('/');
            decoded.push_str(segment);
            encoded.push('/');
            encode_segment(segment, &mut encoded);
        }
        if self.segments.is_empty() || self.trailing_slash {
            decoded.push('/');
            encoded.push('/');
        }
        CanonicalPath { decoded, encoded, ambiguity: self.ambiguity }
    }
}

/// The canonical form of PATH (the part of `:path` before `?`).
pub fn canonicalise(path: &str) -> Result<CanonicalPath, Invalid> {
    if already_canonical(path) {
        return Ok(CanonicalPath { decoded: path.to_owned(), encoded: path.to_owned(), ambiguity: None });
    }
    rebuild(path)
}

/// Whether PATH is its own canonical form (decoded and encoded alike, nothing ambiguous): only bytes that stay
/// literal, no empty segment but a trailing slash, no segment ending in `.` (so no `.` or `..`). The common
/// request: it skips the segment-by-segment rebuild (~4,700 wasm instructions for `/orders`, `wasmfilter profile`).
fn already_canonical(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment.ends_with('.') || !segment.bytes().all(stays_literal) {
            return false;
        }
    }
    true
}

/// The canonical form of PATH, segment by segment.
fn rebuild(path: &str) -> Result<CanonicalPath, Invalid> {
    let Some(rest) = path.strip_prefix('/') else { return Err(Invalid::NotOriginForm) };
    let mut builder = Builder::default();
    let mut bytes = rest.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex_value).ok_or(Invalid::BadEscape)?;
                let lo = bytes.next().and_then(hex_value).ok_or(Invalid::BadEscape)?;
                let decoded = (hi << 4) | lo;
                match decoded {
                    b'%' => return Err(Invalid::DoubleEncoding),
                    0..0x20 | 0x7f => return Err(Invalid::Control),
                    b'/' | b'\\' => {
                        builder.flag(Ambiguity::EncodedSeparator);
                        builder.end_segment(false)?;
                    }
                    b';' => {
                        builder.flag(Ambiguity::PathParameter);
                        builder.in_params = true;
                    }
                    other => {
                        if is_unreserved(other) {
                            builder.flag(Ambiguity::EncodedUnreserved);
                        }
                        builder.push(other);
                    }
                }
            }
            b'/' => builder.end_segment(false)?,
            b'\\' => {
                builder.flag(Ambiguity::Backslash);
                builder.end_segment(false)?;
            }
            b';' => {
                builder.flag(Ambiguity::PathParameter);
                builder.in_params = true;
            }
            0..0x20 | 0x7f => return Err(Invalid::Control),
            other => {
                if !may_be_raw(other) {
                    builder.flag(Ambiguity::Unencoded);
                }
                builder.push(other);
            }
        }
    }
    builder.end_segment(true)?;
    Ok(builder.finish())
}

/// The `:path` a filter decides on and forwards, for the received RAW `:path` under MODE.
pub fn decide(raw: &str, mode: PathNormalization) -> Result<Decided, Refusal> {
    let (target, fragment) = match raw.split_once('#') {
        Some((before, _)) => (before, true),
        None => (raw, false),
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let canonical = canonicalise(path).map_err(Refusal::Invalid)?;
    let ambiguity = if fragment { Some(Ambiguity::Fragment) } else { canonical.ambiguity };
    match (mode, ambiguity) {
        (PathNormalization::RejectAmbiguous, Some(a)) => Err(Refusal::Ambiguous(a)),
        (PathNormalization::RejectAmbiguous, None) => {
            Ok(Decided { path: raw.to_owned(), rewritten: false, decoded: canonical.decoded })
        }
        (PathNormalization::ForwardCanonical, _) => {
            let mut full = canonical.encoded;
            if let Some(query) = query {
                full.push('?');
                full.push_str(query);
            }
            let rewritten = full != raw;
            Ok(Decided { path: full, rewritten, decoded: canonical.decoded })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathNormalization::{ForwardCanonical, RejectAmbiguous};

    fn forwarded(raw: &str) -> String {
        decide(raw, ForwardCanonical).unwrap().path
    }

    fn refused(raw: &str) -> Refusal {
        decide(raw, RejectAmbiguous).unwrap_err()
    }

    /// The differentials of issue 12 (and their relatives): under `forward_canonical` the upstream gets the path the
    /// filter decided on; under `reject_ambiguous` they are refused.
    const DIFFERENTIALS: &[(&str, &str, Ambiguity)] = &[
        ("/admin/..;/public", "/public", Ambiguity::PathParameter),
        ("/admin/%2e%2e/public", "/public", Ambiguity::EncodedUnreserved),
        ("/admin/%2E%2E/public", "/public", Ambiguity::EncodedUnreserved),
        ("/admin/..%2fpublic", "/public", Ambiguity::EncodedSeparator),
        ("/admin/..%2Fpublic", "/public", Ambiguity::EncodedSeparator),
        ("/admin/x\\..\\..\\public", "/public", Ambiguity::Backslash),
        ("/admin/x%5c..%5c..%5cpublic", "/public", Ambiguity::EncodedSeparator),
        ("/admin/..%5cpublic", "/public", Ambiguity::EncodedSeparator),
        ("/admin/../public", "/public", Ambiguity::DotSegment),
        ("/admin/./../public", "/public", Ambiguity::DotSegment),
        ("/admin/.%2e/public", "/public", Ambiguity::EncodedUnreserved),
        ("/admin/..;x=1/public", "/public", Ambiguity::PathParameter),
        ("/admin/..%3b/public", "/public", Ambiguity::PathParameter),
        ("/admin;x/../public", "/public", Ambiguity::PathParameter),
        ("//public", "/public", Ambiguity::EmptySegment),
        ("/public/..//admin", "/admin", Ambiguity::DotSegment),
        ("/public/%2e%2e/admin", "/admin", Ambiguity::EncodedUnreserved),
        ("/public;/../admin", "/admin", Ambiguity::PathParameter),
        ("/admin;jsessionid=1", "/admin", Ambiguity::PathParameter),
        ("/%61dmin", "/admin", Ambiguity::EncodedUnreserved),
        ("/public/.", "/public/", Ambiguity::DotSegment),
        ("/a/b/..", "/a/", Ambiguity::DotSegment),
    ];

    #[test]
    fn forward_canonical_forwards_what_it_decided() {
        for (raw, want, _) in DIFFERENTIALS {
            let decided = decide(raw, ForwardCanonical).unwrap();
            assert_eq!(decided.path, *want, "{raw}");
            assert!(decided.rewritten, "{raw}");
            assert_eq!(decided.decoded, *want, "{raw}");
        }
    }

    #[test]
    fn reject_ambiguous_refuses_every_differential() {
        for (raw, _, why) in DIFFERENTIALS {
            assert_eq!(refused(raw), Refusal::Ambiguous(*why), "{raw}");
        }
    }

    #[test]
    fn canonical_paths_pass_unchanged_in_both_modes() {
        for raw in ["/", "/public", "/admin/x", "/a/b/", "/api/v2/users/7?x=1&y=%2F", "/caf%C3%A9", "/caf%c3%a9",
            "/a:b@c!$&'()*,=", "/a+b", "/q%3Fx", "/sp%20ace", "/x?a=..;/../%2e"] {
            let reject = decide(raw, RejectAmbiguous).unwrap();
            assert_eq!((reject.path.as_str(), reject.rewritten), (raw, false), "{raw}");
        }
        for raw in ["/", "/public", "/admin/x", "/a/b/", "/caf%C3%A9", "/a:b@c!$&'()*,=", "/q%3Fx?", "/x?a=..;/%2e"] {
            let forward = decide(raw, ForwardCanonical).unwrap();
            assert_eq!((forward.path.as_str(), forward.rewritten), (raw, false), "{raw}");
        }
    }

    #[test]
    fn the_query_is_kept_as_sent() {
        assert_eq!(forwarded("/admin/..;/public?next=/admin/..;/x&a=%2e"), "/public?next=/admin/..;/x&a=%2e");
        assert_eq!(forwarded("/a/./b?"), "/a/b?");
        assert_eq!(refused("/a/./b?x=1"), Refusal::Ambiguous(Ambiguity::DotSegment));
    }

    #[test]
    fn re_encoding_is_canonical_and_stable() {
        for (raw, want) in [
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a+b", "/a%2Bb"),
            ("/a%2bb", "/a%2Bb"),
            ("/sp ace", "/sp%20ace"),
            ("/q%3f", "/q%3F"),
            ("/h%23x", "/h%23x"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a\"b<c>", "/a%22b%3Cc%3E"),
            ("/a/b/", "/a/b/"),
            ("/a//", "/a/"),
            ("/.", "/"),
            ("/%2e/", "/"),
        ] {
            assert_eq!(forwarded(raw), want, "{raw}");
            // The canonical form is a fixed point, and unambiguous.
            assert_eq!(forwarded(want), want, "{want}");
            assert!(decide(want, RejectAmbiguous).is_ok(), "{want}");
        }
        assert_eq!(decide("/caf%C3%A9", ForwardCanonical).unwrap().decoded, "/café");
        assert_eq!(refused("/caf\u{e9}"), Refusal::Ambiguous(Ambiguity::Unencoded));
        assert_eq!(refused("/sp ace"), Refusal::Ambiguous(Ambiguity::Unencoded));
    }

    #[test]
    fn decoded_separators_never_survive_inside_a_segment() {
        // Whatever the encoding, a decoded segment holds no `/`, `\` or `;`: every backend sees the same segments.
        for raw in ["/a%2Fb", "/a%5Cb", "/a%3Bb/c", "/a\\b", "/a;b/c"] {
            let decided = decide(raw, ForwardCanonical).unwrap();
            let segments = decided.decoded.trim_start_matches('/');
            assert!(!segments.contains(['\\', ';']), "{raw} → {}", decided.decoded);
            assert!(!decided.path.contains(['\\', ';']), "{raw} → {}", decided.path);
        }
        assert_eq!(forwarded("/a%2Fb"), "/a/b");
        assert_eq!(forwarded("/a;b/c"), "/a/c");
    }

    #[test]
    fn trailing_dots_and_spaces_are_ambiguous_but_kept_when_forwarding() {
        for raw in ["/admin./x", "/admin%2e/x", "/admin%20/x", "/admin...", "/a/admin%2E%20"] {
            assert_eq!(refused(raw), Refusal::Ambiguous(canonicalise(raw).unwrap().ambiguity.unwrap()), "{raw}");
            assert!(decide(raw, ForwardCanonical).unwrap().decoded.contains(['.', ' ']), "{raw}");
        }
        assert_eq!(refused("/admin./x"), Refusal::Ambiguous(Ambiguity::TrailingDotOrSpace));
        assert_eq!(refused("/admin%20/x"), Refusal::Ambiguous(Ambiguity::TrailingDotOrSpace));
        // The same bytes are forwarded that were decided on: no backend-specific guess.
        assert_eq!(forwarded("/admin./x"), "/admin./x");
        assert_eq!(forwarded("/admin%20/x"), "/admin%20/x");
        for fine in ["/a.b/c", "/.well-known/x", "/v1.2/x", "/a%20b"] {
            assert!(decide(fine, RejectAmbiguous).is_ok(), "{fine}");
        }
    }

    #[test]
    fn fragments() {
        assert_eq!(forwarded("/public#/../admin"), "/public");
        assert_eq!(forwarded("/p?q=1#f"), "/p?q=1");
        assert_eq!(refused("/public#x"), Refusal::Ambiguous(Ambiguity::Fragment));
    }

    #[test]
    fn invalid_in_every_mode() {
        for (raw, why) in [
            ("", Invalid::NotOriginForm),
            ("*", Invalid::NotOriginForm),
            ("admin", Invalid::NotOriginForm),
            ("http://x/admin", Invalid::NotOriginForm),
            ("/%", Invalid::BadEscape),
            ("/%2", Invalid::BadEscape),
            ("/%zz", Invalid::BadEscape),
            ("/%2g", Invalid::BadEscape),
            ("/%00", Invalid::Control),
            ("/admin%00.json", Invalid::Control),
            ("/a%0d%0aset-cookie:x", Invalid::Control),
            ("/a%7f", Invalid::Control),
            ("/a\u{0}", Invalid::Control),
            ("/a\tb", Invalid::Control),
            ("/%252e%252e/admin", Invalid::DoubleEncoding),
            ("/%25", Invalid::DoubleEncoding),
            ("/%ff", Invalid::BadUtf8),
            ("/%c0%ae%c0%ae/admin", Invalid::BadUtf8),
            ("/%C0%AF", Invalid::BadUtf8),
            ("/%e0%80%ae", Invalid::BadUtf8),
            ("/%ed%a0%80", Invalid::BadUtf8),
            ("/caf%C3", Invalid::BadUtf8),
            ("/..", Invalid::AboveRoot),
            ("/%2e%2e/admin", Invalid::AboveRoot),
            ("/a/../../admin", Invalid::AboveRoot),
            ("/..;/admin", Invalid::AboveRoot),
            ("/x\\..\\..\\admin", Invalid::AboveRoot),
        ] {
            for mode in [RejectAmbiguous, ForwardCanonical] {
                assert_eq!(decide(raw, mode), Err(Refusal::Invalid(why)), "{raw} {mode:?}");
            }
        }
    }

    #[test]
    fn first_ambiguity_is_reported() {
        assert_eq!(canonicalise("/a;x/%2e/b\\c").unwrap().ambiguity, Some(Ambiguity::PathParameter));
        assert_eq!(canonicalise("/a/b").unwrap().ambiguity, None);
    }

    #[test]
    fn every_refusal_has_a_message() {
        let all = [
            Refusal::Invalid(Invalid::NotOriginForm),
            Refusal::Invalid(Invalid::BadEscape),
            Refusal::Invalid(Invalid::Control),
            Refusal::Invalid(Invalid::DoubleEncoding),
            Refusal::Invalid(Invalid::BadUtf8),
            Refusal::Invalid(Invalid::AboveRoot),
            Refusal::Ambiguous(Ambiguity::EncodedSeparator),
            Refusal::Ambiguous(Ambiguity::EncodedUnreserved),
            Refusal::Ambiguous(Ambiguity::PathParameter),
            Refusal::Ambiguous(Ambiguity::Backslash),
            Refusal::Ambiguous(Ambiguity::DotSegment),
            Refusal::Ambiguous(Ambiguity::EmptySegment),
            Refusal::Ambiguous(Ambiguity::Unencoded),
            Refusal::Ambiguous(Ambiguity::Fragment),
            Refusal::Ambiguous(Ambiguity::TrailingDotOrSpace),
        ];
        let messages: std::collections::BTreeSet<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(messages.len(), all.len());
    }

    #[test]
    fn mode_is_configured_by_snake_case_name_and_defaults_to_reject() {
        assert_eq!(PathNormalization::default(), RejectAmbiguous);
        let parse = |s: &str| crate::json::from_slice::<PathNormalization>(s.as_bytes()).ok();
        assert_eq!(parse(r#""forward_canonical""#), Some(ForwardCanonical));
        assert_eq!(parse(r#""reject_ambiguous""#), Some(RejectAmbiguous));
        assert_eq!(parse(r#""ForwardCanonical""#), None);
    }

    /// The shortcut for paths already canonical gives exactly what the rebuild gives, on every path built from
    /// segments that probe its edges (dots, empty segments, escapes, separators, parameters, non-ASCII).
    #[test]
    fn the_already_canonical_shortcut_agrees_with_the_rebuild() {
        let parts = ["", ".", "..", "a", "a.", ".a", "a b", "a%2e", "%41", "a;b", "a+b", "a\\b", "é", "~x-y_z",
                     "!$&'()*,=:@", "a%2Fb", "a%"];
        let mut checked = 0;
        for first in parts {
            for second in parts {
                for third in ["", "c", "."] {
                    for path in [format!("/{first}/{second}/{third}"), format!("/{first}{second}"), format!("{first}/{second}"),
                                 format!("/{first}//{second}/")] {
                        assert_eq!(canonicalise(&path), rebuild(&path), "{path:?}");
                        checked += usize::from(already_canonical(&path));
                    }
                }
            }
        }
        assert!(checked > 100, "the shortcut was taken only {checked} times");
        for path in ["/", "/orders", "/api/v2/users/", "/a/b/c"] {
            assert!(already_canonical(path), "{path}");
            assert_eq!(canonicalise(path), rebuild(path));
        }
    }

    /// Every byte, raw and encoded, in a segment: either refused, or the canonical path is a fixed point whose
    /// decoded segments are exactly what re-decoding the forwarded path gives.
    #[test]
    fn every_byte_round_trips_or_is_refused() {
        for b in 0u8..=255 {
            let encoded = format!("/x%{b:02X}y/z");
            if let Ok(decided) = decide(&encoded, ForwardCanonical) {
                assert_eq!(forwarded(&decided.path), decided.path, "{encoded}");
                let again = canonicalise(&decided.path).unwrap();
                assert_eq!(again.decoded, decided.decoded, "{encoded}");
                assert_eq!(again.ambiguity, None, "{encoded} → {}", decided.path);
            }
            if b.is_ascii() {
                let raw = format!("/x{}y/z", char::from(b));
                if let Ok(decided) = decide(&raw, ForwardCanonical) {
                    assert_eq!(forwarded(&decided.path), decided.path, "{raw:?}");
                    assert!(decide(&decided.path, RejectAmbiguous).is_ok(), "{raw:?} → {}", decided.path);
                }
            }
        }
    }
}
