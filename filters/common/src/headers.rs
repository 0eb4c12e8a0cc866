//! Header maps from the host as text, read in place. The SDK's `get_http_request_headers_bytes` copies every name
//! into a `String` and every value into a `Vec<u8>` (two allocations per header, then `text_map` a third vector):
//! ~1,500 wasm instructions per header, measured with `wasmfilter profile`. [`HeaderBuffer`] keeps the one buffer
//! the host wrote and [`parse`] borrows names and values from it.
//!
//! proxy-wasm's `get_http_request_headers` converts each value with `String::from_utf8(..).unwrap()`, and Envoy
//! forwards values that are not UTF-8 (obs-text bytes): one such byte from a client would panic the filter and, under
//! FAIL_CLOSED, leave the worker answering 503. A value (or name) that is not UTF-8 is read lossily instead (U+FFFD
//! for each bad sequence): a client can send U+FFFD itself, so the lossy text never matches anything the client
//! could not already send.
use std::borrow::Cow;

/// One header as text: borrowed from the host's buffer when it is UTF-8 (always, in practice).
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// A header map as the host serialised it (proxy-wasm: a little-endian u32 count, then a u32 name length and a
/// u32 value length per header, then each name and each value followed by a NUL byte).
#[derive(Debug, Default)]
pub struct HeaderBuffer(Vec<u8>);

impl HeaderBuffer {
    /// The request header map, in one host call (empty when the host has none or refuses).
    pub fn request() -> Self {
        HeaderBuffer(host::header_map_pairs(host::REQUEST_HEADERS))
    }

    /// A buffer in the host's serialisation (for tests).
    pub fn from_serialized(bytes: Vec<u8>) -> Self {
        HeaderBuffer(bytes)
    }

    /// Every header in the host's order, borrowed from the buffer.
    pub fn pairs(&self) -> Vec<Pair<'_>> {
        parse(&self.0)
    }
}

fn le_u32(word: &[u8]) -> usize {
    match word {
        [a, b, c, d] => usize::try_from(u32::from_le_bytes([*a, *b, *c, *d])).unwrap_or(usize::MAX),
        _ => usize::MAX,
    }
}

/// The headers of a serialised map; a truncated or inconsistent buffer gives the headers read before the fault.
pub fn parse(bytes: &[u8]) -> Vec<Pair<'_>> {
    let Some((count, rest)) = bytes.split_at_checked(4) else { return Vec::new() };
    let count = le_u32(count);
    let Some((sizes, data)) = count.checked_mul(8).and_then(|n| rest.split_at_checked(n)) else {
        return Vec::new();
    };
    // One UTF-8 check for every name and value at once (the NUL separators are ASCII, so each piece of a valid
    // whole is valid too); a piece is checked alone only when the whole is not UTF-8.
    let whole = std::str::from_utf8(data).ok();
    let text = |range: std::ops::Range<usize>| -> Option<Cow<'_, str>> {
        match whole.and_then(|w| w.get(range.clone())) {
            Some(text) => Some(Cow::Borrowed(text)),
            None => data.get(range).map(String::from_utf8_lossy),
        }
    };
    let mut out = Vec::with_capacity(count);
    let mut at = 0usize;
    for entry in sizes.chunks_exact(8) {
        let (name_len, value_len) = entry.split_at(4);
        let name_end = at.saturating_add(le_u32(name_len));
        let value_start = name_end.saturating_add(1);
        let value_end = value_start.saturating_add(le_u32(value_len));
        let (Some(name), Some(value)) = (text(at..name_end), text(value_start..value_end)) else { break };
        out.push((name, value));
        at = value_end.saturating_add(1);
    }
    out
}

/// One owned value as text (e.g. a callout answer's header from the SDK): as is when it is UTF-8, else lossily.
pub fn text(value: Vec<u8>) -> String {
    match String::from_utf8(value) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The header names of PAIRS (for `header_spelling::spellings_to_remove`).
pub fn names<'p>(pairs: &'p [Pair<'_>]) -> impl Iterator<Item = &'p str> {
    pairs.iter().map(|(k, _)| k.as_ref())
}

/// The first value of header NAME (exact, lower-case name as Envoy hands them over), "" when absent.
pub fn first<'p>(pairs: &'p [Pair<'_>], name: &str) -> &'p str {
    pairs.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_ref())
}

/// Any list of (name, value) text pairs, read by index: the borrowed pairs of a fetched map, or the owned pairs a
/// unit test builds. Plain-Rust request views hold a `&dyn HeaderList` so they take either.
pub trait HeaderList {
    fn pair(&self, index: usize) -> Option<(&str, &str)>;
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderList for Vec<(K, V)> {
    fn pair(&self, index: usize) -> Option<(&str, &str)> {
        self.get(index).map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

/// Every pair of LIST, in order.
pub fn iter(list: &dyn HeaderList) -> impl Iterator<Item = (&str, &str)> {
    (0..).map_while(move |i| list.pair(i))
}

/// Owned pairs as a header list (tests of the filters' plain-Rust logic).
pub fn owned<'a>(pairs: &[(&str, &str)]) -> Vec<Pair<'a>> {
    pairs.iter().map(|(k, v)| (Cow::Owned((*k).to_owned()), Cow::Owned((*v).to_owned()))).collect()
}

/// The host call, straight: `proxy_get_header_map_pairs`, the buffer it allocated taken over (the SDK does the same
/// in `hostcalls::get_map_bytes`, then copies it apart).
#[cfg(target_arch = "wasm32")]
mod host {
    pub const REQUEST_HEADERS: u32 = 0;

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    }

    pub fn header_map_pairs(map_type: u32) -> Vec<u8> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer it got from this module's `proxy_on_memory_allocate` (a boxed slice of
        // exactly `size` bytes) or null; on success the buffer is ours to own, as the SDK's get_map_bytes owns it.
        unsafe {
            if proxy_get_header_map_pairs(map_type, &mut data, &mut size) != 0 || data.is_null() {
                return Vec::new();
            }
            Vec::from_raw_parts(data, size, size)
        }
    }
}

/// Off wasm (cargo test on the host) there is no proxy: an empty map.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    pub const REQUEST_HEADERS: u32 = 0;

    pub fn header_map_pairs(_map_type: u32) -> Vec<u8> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialise(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = u32::try_from(pairs.len()).unwrap().to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend(u32::try_from(k.len()).unwrap().to_le_bytes());
            out.extend(u32::try_from(v.len()).unwrap().to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn utf8_values_are_borrowed_as_they_are() {
        let buffer = HeaderBuffer::from_serialized(serialise(&[(b":path", b"/caf\xc3\xa9"), (b"x-a", b"")]));
        let pairs = buffer.pairs();
        assert_eq!(pairs, owned(&[(":path", "/café"), ("x-a", "")]));
        assert!(pairs.iter().all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_)))));
        assert_eq!(first(&pairs, ":path"), "/café");
        assert_eq!(first(&pairs, ":method"), "");
        assert_eq!(names(&pairs).collect::<Vec<_>>(), vec![":path", "x-a"]);
    }

    #[test]
    fn a_value_that_is_not_utf8_is_read_lossily_not_dropped() {
        assert_eq!(parse(&serialise(&[(b"x-api-key", b"caf\xe9"), (b"x-b", b"ok")])), owned(&[("x-api-key", "caf\u{fffd}"), ("x-b", "ok")]));
    }

    #[test]
    fn overlong_and_truncated_sequences_never_become_ascii() {
        // An overlong '/' (C0 AF) must not turn into a '/' a path check would then see.
        assert_eq!(parse(&serialise(&[(b":path", b"/a\xc0\xafb"), (b"x", b"\xe2\x82")])), owned(&[(":path", "/a\u{fffd}\u{fffd}b"), ("x", "\u{fffd}")]));
    }

    #[test]
    fn owned_and_borrowed_lists_read_alike() {
        let strings: Vec<(String, String)> = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        let borrowed = owned(&[("a", "1"), ("b", "2")]);
        let want = vec![("a", "1"), ("b", "2")];
        assert_eq!(iter(&strings).collect::<Vec<_>>(), want);
        assert_eq!(iter(&borrowed).collect::<Vec<_>>(), want);
    }

    #[test]
    fn an_owned_value_is_kept_or_read_lossily() {
        assert_eq!(text(b"ok".to_vec()), "ok");
        assert_eq!(text(b"/a\xc0\xafb".to_vec()), "/a\u{fffd}\u{fffd}b");
    }

    #[test]
    fn repeated_headers_keep_their_order() {
        assert_eq!(parse(&serialise(&[(b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")])), owned(&[("cookie", "a=1"), ("x", "y"), ("cookie", "b=2")]));
    }

    #[test]
    fn a_short_or_lying_buffer_gives_what_it_holds_and_never_panics() {
        let good = serialise(&[(b"a", b"1"), (b"bb", b"22")]);
        assert_eq!(parse(&[]), owned(&[]));
        assert_eq!(parse(&[1, 0]), owned(&[]));
        for cut in 0..good.len() {
            let pairs = parse(good.get(..cut).unwrap());
            assert!(pairs.len() <= 2, "{cut}");
        }
        assert_eq!(parse(good.get(..good.len() - 4).unwrap()), owned(&[("a", "1")]));
        let mut huge = good.clone();
        huge.splice(0..4, u32::MAX.to_le_bytes());
        assert!(parse(&huge).is_empty());
        let mut long_value = good;
        long_value.splice(8..12, 1000u32.to_le_bytes());
        assert!(parse(&long_value).is_empty());
    }
}
