//! The one rule for a header name in a filter's configuration (a header the filter reads, matches, sets or
//! removes): an RFC 9110 `token`, in lower case.
//!
//! ```text
//! token = 1*tchar
//! tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
//! ```
//!
//! Lower case only: Envoy stores header names lower-cased, so a configured `X-Api-Key` would never match.
//! Pseudo-headers (`:path`, `:authority`, ...) are refused: `:` is not a `tchar`, and no filter takes one as a
//! configured header name (a filter reads the path, method or authority as what they are, not as a header).
use crate::ConfigError;

/// The `tchar`s other than DIGIT and ALPHA.
const TCHAR_SYMBOLS: &[u8] = b"!#$%&'*+-.^_`|~";

/// Whether NAME is a header name a configuration may use: non-empty, every byte a lower-case `tchar`.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || TCHAR_SYMBOLS.contains(&b))
}

/// [`is_header_name`], as FILTER's configuration error for FIELD:
/// ``invalid FILTER configuration: field `FIELD` must be a lower-case header name, got `NAME```.
pub fn check_header_name(filter: &str, field: &str, name: &str) -> Result<(), ConfigError> {
    if is_header_name(name) {
        Ok(())
    } else {
        Err(ConfigError::field(filter, field, format_args!("must be a lower-case header name, got `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::{check_header_name, is_header_name};

    #[test]
    fn every_lower_case_tchar_is_accepted() {
        let letters = "abcdefghijklmnopqrstuvwxyz";
        let digits = "0123456789";
        let symbols = "!#$%&'*+-.^_`|~";
        for class in [letters, digits, symbols] {
            assert!(is_header_name(class), "{class}");
            for c in class.chars() {
                assert!(is_header_name(&c.to_string()), "{c}");
                assert!(is_header_name(&format!("x-{c}-y")), "{c}");
            }
        }
        for name in ["x-api-key", "authorization", "x-wasmfilter-cluster", "x_b3.id", "0", "~"] {
            assert!(is_header_name(name), "{name}");
        }
    }

    #[test]
    fn exactly_the_lower_case_tchars_of_ascii_pass() {
        // RFC 9110 section 5.6.2 spelled out again, independently of the implementation.
        let tchar = |c: char| "!#$%&'*+-.^_`|~".contains(c) || c.is_ascii_digit() || c.is_ascii_alphabetic();
        for byte in 0u8..=127 {
            let c = char::from(byte);
            let expected = tchar(c) && !c.is_ascii_uppercase();
            assert_eq!(is_header_name(&format!("x{c}")), expected, "byte {byte:#04x}");
        }
    }

    fn assert_refused(names: &[&str]) {
        for name in names {
            assert!(!is_header_name(name), "{name:?} accepted");
        }
    }

    #[test]
    fn upper_case_is_refused() {
        assert_refused(&["X-Api-Key", "x-Api-key", "AUTHORIZATION", "X", "x-y-Z"]);
    }

    #[test]
    fn empty_is_refused() {
        assert_refused(&[""]);
    }

    #[test]
    fn space_and_other_white_space_are_refused() {
        assert_refused(&[" ", "x api", " x-api", "x-api ", "x\tapi", "x\r\nset-cookie", "x\u{0b}y"]);
    }

    #[test]
    fn colon_and_pseudo_headers_are_refused() {
        assert_refused(&[":path", ":authority", ":method", "x:y", "x-api:", ":"]);
    }

    #[test]
    fn separators_and_controls_are_refused() {
        let names: Vec<String> = "\"(),/;<=>?@[\\]{}\0\u{7f}".chars().map(|c| format!("x{c}y")).collect();
        assert_refused(&names.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn non_ascii_is_refused() {
        // U+212A KELVIN SIGN lower-cases to ASCII `k`; U+0131 dotless i upper-cases to ASCII `I`.
        assert_refused(&["x-é", "ключ", "x-\u{00a0}", "x-\u{212a}", "x-ı"]);
    }

    #[test]
    fn check_names_the_filter_the_field_and_the_value() {
        assert_eq!(check_header_name("auth", "key_header", "x-api-key"), Ok(()));
        let e = check_header_name("ratelimit", "rules[0].key[1].name", "X-User").unwrap_err();
        assert_eq!(
            e.message(),
            "invalid ratelimit configuration: field `rules[0].key[1].name` must be a lower-case header name, got `X-User`"
        );
    }
}
