//! Header maps from the host as text. proxy-wasm's `get_http_request_headers` converts each value with
//! `String::from_utf8(..).unwrap()`, and Envoy forwards values that are not UTF-8 (obs-text bytes): one such byte
//! from a client would panic the filter and, under FAIL_CLOSED, leave the worker answering 503. The filters fetch
//! the byte form instead and read a value that is not UTF-8 lossily (U+FFFD for each bad sequence): a client can
//! send U+FFFD itself, so the lossy text never matches anything the client could not already send.

/// The map of `get_http_request_headers_bytes` (or any `(name, bytes)` map) as text, lossily where needed.
pub fn text_map(map: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    map.into_iter().map(|(name, value)| (name, text(value))).collect()
}

/// One header value as text: as is when it is UTF-8, else lossily.
pub fn text(value: Vec<u8>) -> String {
    match String::from_utf8(value) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_values_are_kept_as_they_are() {
        let map = vec![(":path".to_string(), b"/caf\xc3\xa9".to_vec()), ("x-a".to_string(), b"".to_vec())];
        assert_eq!(text_map(map), vec![(":path".into(), "/café".into()), ("x-a".into(), String::new())]);
    }

    #[test]
    fn a_value_that_is_not_utf8_is_read_lossily_not_dropped() {
        let map = vec![("x-api-key".to_string(), b"caf\xe9".to_vec()), ("x-b".to_string(), b"ok".to_vec())];
        assert_eq!(text_map(map), vec![("x-api-key".into(), "caf\u{fffd}".into()), ("x-b".into(), "ok".into())]);
    }

    #[test]
    fn overlong_and_truncated_sequences_never_become_ascii() {
        // An overlong '/' (C0 AF) must not turn into a '/' a path check would then see.
        assert_eq!(text(b"/a\xc0\xafb".to_vec()), "/a\u{fffd}\u{fffd}b");
        assert_eq!(text(b"\xe2\x82".to_vec()), "\u{fffd}");
    }
}
