//! A literal every match of a path regex starts with, read off the pattern conservatively: the router skips the
//! regex (a miss costs ~2,300 wasm instructions, `wasmfilter profile`) when the path does not start with it. The
//! rules match a regex against the WHOLE path (`^(?:P)$`), so P's leading literal characters, up to the first
//! character with a meaning of its own, start every match; a quantifier after the run may make its last character
//! optional, so that character is left out; a pattern with `|` anywhere gets no prefix.

/// The prefix every path matching PATTERN starts with, when one can be read off safely.
pub fn required_prefix(pattern: &str) -> Option<String> {
    if pattern.contains('|') {
        return None;
    }
    let run = pattern.bytes().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-')).count();
    let next = pattern.as_bytes().get(run).copied();
    let keep = if matches!(next, Some(b'?' | b'*' | b'+' | b'{')) { run.saturating_sub(1) } else { run };
    pattern.get(..keep).filter(|p| !p.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::compile_regex;

    #[test]
    fn reads_the_leading_literal() {
        assert_eq!(required_prefix(r"/orders/\d+/legacy").as_deref(), Some("/orders/"));
        assert_eq!(required_prefix("/api/v1").as_deref(), Some("/api/v1"));
        assert_eq!(required_prefix("/ab?c").as_deref(), Some("/a"));
        assert_eq!(required_prefix("/ab*").as_deref(), Some("/a"));
        assert_eq!(required_prefix("/ab{0,2}").as_deref(), Some("/a"));
        assert_eq!(required_prefix("a?"), None);
        assert_eq!(required_prefix("/a|/b"), None);
        assert_eq!(required_prefix("(?i)/admin"), None);
        assert_eq!(required_prefix(r"\d+"), None);
        assert_eq!(required_prefix(".*"), None);
        assert_eq!(required_prefix("[/]x"), None);
        assert_eq!(required_prefix("/x[|]"), None);
    }

    /// Whatever the regex matches starts with the prefix (the prefilter never hides a match).
    #[test]
    fn every_match_starts_with_the_prefix() {
        let patterns = [r"/orders/\d+/legacy", "/ab?c", "/ab*", "/ab+", "/ab{0,2}", "/a.c", r"/a\.c", "/a(b)?",
                        "/a(?:b|c)", "/a[bc]d", "/x-y_z/.*", "/A/b", "/a$", "/a/", "/ab??"];
        let paths = ["/", "/a", "/ac", "/abc", "/abbc", "/a.c", "/aXc", "/orders/12/legacy", "/orders//legacy",
                     "/ab", "/abd", "/acd", "/x-y_z/q", "/A/b", "/a/b", "/a/", "/abbb"];
        let mut compared = 0;
        for pattern in patterns {
            let Ok(regex) = compile_regex("t", pattern) else { continue };
            let prefix = required_prefix(pattern).unwrap_or_default();
            for path in paths {
                if regex.is_match(path) {
                    compared += 1;
                    assert!(path.starts_with(&prefix), "{pattern} matches {path} but the prefix is {prefix:?}");
                }
            }
        }
        assert!(compared >= 15, "{compared}");
    }
}
