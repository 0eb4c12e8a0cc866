//! Compiled conditions: path prefix / regex and header, cookie and query-parameter value matchers.
//!
//! Regexes use `regex-lite` (see README, "Size"): RE2/`regex` syntax with linear-time matching, but no
//! Unicode classes: `\d`, `\w`, `\s` are ASCII, `.` is any character but `\n`. A regex must match the
//! WHOLE value (as Envoy's `safe_regex` does), not just a part of it.
use regex_lite::{Regex, RegexBuilder};

use crate::config::{MatchConfig, ValueMatchConfig, invalid};
use crate::request::RequestView;
use wasmfilter_common::ConfigError;

/// Compiled programs above this size are refused; keeps a hostile or careless pattern from eating memory.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

pub fn compile_regex(field: &str, pattern: &str) -> Result<Regex, ConfigError> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let message = e.to_string();
            invalid(field, format_args!("is not a valid regex `{pattern}`: {}", last_line(&message).trim()))
        })
}

/// The last line of `text` as `str::lines().last()` has it (a final `\n` ends the last line, an empty text has
/// none: `invalid`), by bytes: `lines()` links ~0.5 KB of backwards splitting for this one error message.
fn last_line(text: &str) -> &str {
    if text.is_empty() {
        return "invalid";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.bytes().rposition(|b| b == b'\n') {
        Some(i) => body.get(i + 1..).unwrap_or_default(),
        None => body,
    }
}

#[derive(Debug, Clone)]
pub enum ValueTest {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present(bool),
}

impl ValueTest {
    pub fn compile(field: &str, vm: &ValueMatchConfig) -> Result<Self, ConfigError> {
        if let Some(exact) = &vm.exact {
            return Ok(ValueTest::Exact(exact.clone()));
        }
        if let Some(prefix) = &vm.prefix {
            return Ok(ValueTest::Prefix(prefix.clone()));
        }
        if let Some(pattern) = &vm.regex {
            return Ok(ValueTest::Regex(compile_regex(&format!("{field}.regex"), pattern)?));
        }
        Ok(ValueTest::Present(vm.present.unwrap_or(true)))
    }

    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (ValueTest::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (ValueTest::Exact(e), Some(v)) => v == e,
            (ValueTest::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (ValueTest::Regex(r), Some(v)) => r.is_match(v),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NamedTest {
    pub name: String,
    pub test: ValueTest,
}

#[derive(Debug, Clone)]
pub enum PathTest {
    Any,
    Prefix(String),
    Regex(Regex),
}

/// Every condition of one rule; all must hold.
#[derive(Debug, Clone)]
pub struct Conditions {
    pub path: PathTest,
    pub headers: Vec<NamedTest>,
    pub cookies: Vec<NamedTest>,
    pub query: Vec<NamedTest>,
}

/// A plain loop: `map(..).collect::<Result<Vec<_>, _>>()` costs ~1 KB more module for the same work.
fn compile_list(at: &str, kind: &str, list: &[ValueMatchConfig]) -> Result<Vec<NamedTest>, ConfigError> {
    let mut tests = Vec::with_capacity(list.len());
    for (j, vm) in list.iter().enumerate() {
        tests.push(NamedTest { name: vm.name.clone(), test: ValueTest::compile(&format!("{at}.{kind}[{j}]"), vm)? });
    }
    Ok(tests)
}

impl Conditions {
    /// `at` is the field path of the `match` object, for error messages.
    pub fn compile(at: &str, m: &MatchConfig) -> Result<Self, ConfigError> {
        let path = match (&m.path_prefix, &m.path_regex) {
            (Some(prefix), _) => PathTest::Prefix(prefix.clone()),
            (None, Some(pattern)) => PathTest::Regex(compile_regex(&format!("{at}.path_regex"), pattern)?),
            (None, None) => PathTest::Any,
        };
        Ok(Conditions {
            path,
            headers: compile_list(at, "headers", &m.headers)?,
            cookies: compile_list(at, "cookies", &m.cookies)?,
            query: compile_list(at, "query", &m.query)?,
        })
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let path_ok = match &self.path {
            PathTest::Any => true,
            PathTest::Prefix(p) => req.path().starts_with(p.as_str()),
            PathTest::Regex(r) => r.is_match(req.path()),
        };
        path_ok
            && self.headers.iter().all(|t| t.test.matches(req.header(&t.name).as_deref()))
            && self.cookies.iter().all(|t| t.test.matches(req.cookie(&t.name)))
            && self.query.iter().all(|t| t.test.matches(req.query(&t.name).as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(json: &str) -> ValueMatchConfig {
        wasmfilter_common::json::from_slice(json.as_bytes()).unwrap()
    }

    fn conditions(json: &str) -> Conditions {
        Conditions::compile("m", &wasmfilter_common::json::from_slice(json.as_bytes()).unwrap()).unwrap()
    }

    fn req_matches(c: &Conditions, path: &str, headers: &[(&str, &str)]) -> bool {
        let h: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        c.matches(&RequestView::new(path, &h))
    }

    #[test]
    fn value_tests() {
        let exact = ValueTest::compile("f", &vm(r#"{"name": "a", "exact": "1"}"#)).unwrap();
        assert!(exact.matches(Some("1")) && !exact.matches(Some("10")) && !exact.matches(None));
        let prefix = ValueTest::compile("f", &vm(r#"{"name": "a", "prefix": "be"}"#)).unwrap();
        assert!(prefix.matches(Some("beta")) && !prefix.matches(Some("alpha")) && !prefix.matches(None));
        let present = ValueTest::compile("f", &vm(r#"{"name": "a", "present": true}"#)).unwrap();
        assert!(present.matches(Some("")) && !present.matches(None));
        let absent = ValueTest::compile("f", &vm(r#"{"name": "a", "present": false}"#)).unwrap();
        assert!(absent.matches(None) && !absent.matches(Some("x")));
    }

    #[test]
    fn last_line_is_what_lines_last_gives() {
        for text in ["", "one", "one\n", "a\nb", "a\nb\n", "a\r\nb\r\n", "a\n\n", "\n", "x\n  error: bad  "] {
            assert_eq!(last_line(text).trim(), text.lines().last().unwrap_or("invalid").trim(), "{text:?}");
        }
    }

    #[test]
    fn regex_must_match_the_whole_value() {
        let r = ValueTest::compile("f", &vm(r#"{"name": "a", "regex": "v[0-9]+"}"#)).unwrap();
        assert!(r.matches(Some("v12")));
        assert!(!r.matches(Some("xv12")) && !r.matches(Some("v12x")) && !r.matches(None));
        let alternation = ValueTest::compile("f", &vm(r#"{"name": "a", "regex": "a|b"}"#)).unwrap();
        assert!(alternation.matches(Some("b")) && !alternation.matches(Some("ab")));
    }

    #[test]
    fn perl_classes_are_ascii() {
        let r = compile_regex("f", r"/users/\d+/\w+").unwrap();
        assert!(r.is_match("/users/42/profile_1"));
        assert!(!r.is_match("/users/٤٢/x"));
        let dot = compile_regex("f", "caf.").unwrap();
        assert!(dot.is_match("cafe") && dot.is_match("café"));
    }

    #[test]
    fn bad_regex_names_the_field() {
        let e = ValueTest::compile("rules[0].match.headers[1]", &vm(r#"{"name": "a", "regex": "v[0-9"}"#)).unwrap_err();
        assert!(e.message().contains("field `rules[0].match.headers[1].regex` is not a valid regex `v[0-9`"), "{e}");
        let e = Conditions::compile("rules[2].match", &wasmfilter_common::json::from_slice(br#"{"path_regex": "(/a"}"#).unwrap()).unwrap_err();
        assert!(e.message().contains("field `rules[2].match.path_regex`"), "{e}");
    }

    #[test]
    fn huge_regex_is_refused() {
        assert!(compile_regex("f", "a{10000}{10000}").is_err());
    }

    #[test]
    fn path_conditions_ignore_the_query_string() {
        let prefix = conditions(r#"{"path_prefix": "/api/v2"}"#);
        assert!(req_matches(&prefix, "/api/v2/users?x=1", &[]));
        assert!(req_matches(&prefix, "/api/v2", &[]));
        assert!(!req_matches(&prefix, "/api/v1/users", &[]));
        assert!(!req_matches(&prefix, "/x?/api/v2", &[]));
        let regex = conditions(r#"{"path_regex": "/users/[0-9]+"}"#);
        assert!(req_matches(&regex, "/users/42?full=1", &[]));
        assert!(!req_matches(&regex, "/users/42/orders", &[]));
        assert!(req_matches(&conditions("{}"), "/anything", &[]));
    }

    #[test]
    fn all_conditions_must_hold() {
        let c = conditions(
            r#"{"path_prefix": "/a", "headers": [{"name": "x-beta", "exact": "1"}],
                "cookies": [{"name": "tier", "exact": "gold"}], "query": [{"name": "v", "regex": "[0-9]"}]}"#,
        );
        let all = [("x-beta", "1"), ("cookie", "tier=gold")];
        assert!(req_matches(&c, "/a?v=2", &all));
        assert!(!req_matches(&c, "/b?v=2", &all));
        assert!(!req_matches(&c, "/a?v=x", &all));
        assert!(!req_matches(&c, "/a?v=2", &[("x-beta", "1")]));
        assert!(!req_matches(&c, "/a?v=2", &[("x-beta", "2"), ("cookie", "tier=gold")]));
    }
}
