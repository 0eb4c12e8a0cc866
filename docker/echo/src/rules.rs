//! Scripted answers: the twin of `toolkit/wasmfilter/harness/answers.py` (`answer_for`), reading the rules in the
//! compact JSON `answers.wire_rules` writes (`--rules FILE` or `--rules-json TEXT`). First matching rule wins;
//! `path`/`path_prefix` compare the path without its query; header names case-insensitive, values exact.
//! Standard library only: a small JSON reader for that one shape.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    List(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("not JSON: {what} at byte {}", self.at))
    }

    fn skip_ws(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.text.get(self.at..self.at + word.len()) == Some(word.as_bytes()) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_ws();
        let v = match self.text.get(self.at) {
            None => return self.err("unexpected end"),
            Some(b'{') => self.object()?,
            Some(b'[') => self.list()?,
            Some(b'"') => Json::Str(self.string()?),
            Some(b'n') if self.eat("null") => Json::Null,
            Some(b't') if self.eat("true") => Json::Bool(true),
            Some(b'f') if self.eat("false") => Json::Bool(false),
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => return self.err("unexpected character"),
        };
        self.skip_ws();
        Ok(v)
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        while matches!(self.text.get(self.at), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
            self.at += 1;
        }
        let text = String::from_utf8_lossy(self.text.get(start..self.at).unwrap_or_default());
        text.parse::<f64>().map(Json::Num).or_else(|_| self.err("bad number"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.text.get(self.at..self.at + 4).unwrap_or_default();
        let text = std::str::from_utf8(digits).unwrap_or("");
        let n = u32::from_str_radix(text, 16).or_else(|_| self.err("bad \\u escape"))?;
        self.at += 4;
        Ok(n)
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1; // the opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.text.get(self.at) else { return self.err("unterminated string") };
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.text.get(self.at) else { return self.err("unterminated escape") };
                    self.at += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let mut n = self.hex4()?;
                            if (0xd800..0xdc00).contains(&n) && self.eat("\\u") {
                                let low = self.hex4()?;
                                n = 0x10000 + ((n - 0xd800) << 10) + (low.wrapping_sub(0xdc00) & 0x3ff);
                            }
                            char::from_u32(n).unwrap_or('\u{fffd}')
                        }
                        _ => return self.err("bad escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(b),
            }
        }
        String::from_utf8(out).or_else(|_| self.err("string is not UTF-8"))
    }

    fn list(&mut self) -> Result<Json, String> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.eat("]") {
            return Ok(Json::List(items));
        }
        loop {
            items.push(self.value()?);
            if self.eat("]") {
                return Ok(Json::List(items));
            }
            if !self.eat(",") {
                return self.err("expected ',' or ']'");
            }
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.at += 1;
        let mut map = BTreeMap::new();
        self.skip_ws();
        if self.eat("}") {
            return Ok(Json::Obj(map));
        }
        loop {
            self.skip_ws();
            if self.text.get(self.at) != Some(&b'"') {
                return self.err("expected a key");
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(":") {
                return self.err("expected ':'");
            }
            map.insert(key, self.value()?);
            if self.eat("}") {
                return Ok(Json::Obj(map));
            }
            if !self.eat(",") {
                return self.err("expected ',' or '}'");
            }
        }
    }
}

fn parse(text: &str) -> Result<Json, String> {
    let mut reader = Reader { text: text.as_bytes(), at: 0 };
    let v = reader.value()?;
    if reader.at != text.len() {
        return reader.err("trailing text");
    }
    Ok(v)
}

/// One rule, as answers.py's `WireRule`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub method: Option<String>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub headers: Vec<(String, String)>,
    pub status: u16,
    pub answer_headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay_ms: u64,
    pub reset: bool,
}

const FIELDS: [&str; 9] =
    ["method", "path", "path_prefix", "headers", "status", "answer_headers", "body_hex", "delay_ms", "reset"];

fn opt_str(rule: &BTreeMap<String, Json>, field: &str, at: &str) -> Result<Option<String>, String> {
    match rule.get(field) {
        Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) => Ok(Some(s.clone())),
        _ => Err(format!("field '{at}.{field}': must be a string or null")),
    }
}

fn pairs(rule: &BTreeMap<String, Json>, field: &str, at: &str) -> Result<Vec<(String, String)>, String> {
    let bad = || format!("field '{at}.{field}': must be a list of [name, value] strings");
    let Some(Json::List(items)) = rule.get(field) else { return Err(bad()) };
    items
        .iter()
        .map(|item| match item {
            Json::List(pair) => match pair.as_slice() {
                [Json::Str(k), Json::Str(v)] => Ok((k.clone(), v.clone())),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        })
        .collect()
}

fn int(rule: &BTreeMap<String, Json>, field: &str, at: &str, min: f64, max: f64) -> Result<f64, String> {
    match rule.get(field) {
        Some(Json::Num(n)) if n.fract() == 0.0 && *n >= min && *n <= max => Ok(*n),
        _ => Err(format!("field '{at}.{field}': must be a whole number in {min}..={max}")),
    }
}

fn hex(text: &str, at: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("field '{at}.body_hex': must be hex digits");
    if !text.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..text.len() / 2)
        .map(|i| text.get(2 * i..2 * i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()).ok_or_else(bad))
        .collect()
}

/// The rules in TEXT, or one line naming the first bad field (`field '1.status': ...`).
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let Json::List(items) = parse(text)? else { return Err("must be a JSON list of rules".to_string()) };
    let mut rules = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = i.to_string();
        let Json::Obj(rule) = item else { return Err(format!("field '{at}': must be an object")) };
        if let Some(extra) = rule.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!("field '{at}.{extra}': unknown field"));
        }
        let reset = match rule.get("reset") {
            Some(Json::Bool(b)) => *b,
            _ => return Err(format!("field '{at}.reset': must be true or false")),
        };
        let body = match rule.get("body_hex") {
            Some(Json::Str(s)) => hex(s, &at)?,
            _ => return Err(format!("field '{at}.body_hex': must be a string")),
        };
        rules.push(Rule {
            method: opt_str(rule, "method", &at)?,
            path: opt_str(rule, "path", &at)?,
            path_prefix: opt_str(rule, "path_prefix", &at)?,
            headers: pairs(rule, "headers", &at)?,
            status: int(rule, "status", &at, 200.0, 599.0)? as u16,
            answer_headers: pairs(rule, "answer_headers", &at)?,
            body,
            delay_ms: int(rule, "delay_ms", &at, 0.0, 60_000.0)? as u64,
            reset,
        });
    }
    Ok(rules)
}

impl Rule {
    fn matches(&self, method: &str, path: &str, headers: &[(String, String)]) -> bool {
        let bare = path.split('?').next().unwrap_or("");
        self.method.as_deref().is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| p == bare)
            && self.path_prefix.as_deref().is_none_or(|p| bare.starts_with(p))
            && self.headers.iter().all(|(name, value)| {
                headers.iter().any(|(k, v)| k.eq_ignore_ascii_case(name) && v == value)
            })
    }
}

/// The first rule of RULES matching the request (headers with lower-cased names), as answers.answer_for.
pub fn answer_for<'a>(rules: &'a [Rule], method: &str, path: &str, headers: &[(String, String)]) -> Option<&'a Rule> {
    rules.iter().find(|r| r.matches(method, path, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_wire_form_and_matches_first() {
        let text = r#"[{"method":"GET","path":"/a","path_prefix":null,"headers":[["x-k","v\u00e9"]],"status":201,
            "answer_headers":[["content-type","text/plain"]],"body_hex":"6869","delay_ms":0,"reset":false},
            {"method":null,"path":null,"path_prefix":"/","headers":[],"status":404,"answer_headers":[],
            "body_hex":"","delay_ms":5,"reset":true}]"#;
        let rules = parse_rules(text).unwrap();
        assert_eq!(rules[0].body, b"hi");
        let hdrs = vec![("x-k".to_string(), "vé".to_string())];
        assert_eq!(answer_for(&rules, "GET", "/a?q=1", &hdrs).unwrap().status, 201);
        assert_eq!(answer_for(&rules, "GET", "/a", &[]).unwrap().status, 404);
        assert_eq!(answer_for(&rules, "POST", "/a", &hdrs).unwrap().status, 404);
    }

    #[test]
    fn bad_fields_are_named() {
        let err = parse_rules(r#"[{"method":null}]"#).unwrap_err();
        assert!(err.starts_with("field '0."), "{err}");
        let err = parse_rules(r#"[{"method":null,"path":null,"path_prefix":null,"headers":[],"status":99,
            "answer_headers":[],"body_hex":"","delay_ms":0,"reset":false}]"#)
        .unwrap_err();
        assert_eq!(err, "field '0.status': must be a whole number in 200..=599");
        assert!(parse_rules("{").unwrap_err().starts_with("not JSON"));
    }
}
