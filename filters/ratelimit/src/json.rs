//! A small strict JSON reader for the plugin configuration, plus typed field access that names the field on
//! every error (`rules[0].rate`). Replaces serde/serde_json, which were ~40% of the module size.
//! Numbers are integers only (the configuration has no fractional values); duplicate keys are rejected.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    /// `None`: a number that is not an integer in i64 range (fraction, exponent, too large).
    Number(Option<i64>),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

const MAX_DEPTH: usize = 32;

pub fn parse(raw: &[u8]) -> Result<Value, String> {
    let mut p = Parser { raw, pos: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.pos != raw.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.raw.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.bump() == Some(b) {
            Ok(())
        } else {
            self.pos = self.pos.saturating_sub(1);
            Err(self.err(&format!("expected `{}`", char::from(b))))
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
        if self.raw.get(self.pos..self.pos + word.len()) == Some(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("expected a JSON value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => Ok(self.number()),
            Some(_) => Err(self.err("expected a JSON value")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        self.expect(b'{')?;
        let mut fields: Vec<(String, Value)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(fields));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a field name"));
            }
            let key = self.string()?;
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(self.err(&format!("duplicate field `{key}`")));
            }
            self.ws();
            self.expect(b':')?;
            self.ws();
            let v = self.value(depth + 1)?;
            fields.push((key, v));
            self.ws();
            match self.bump() {
                Some(b',') => continue,
                Some(b'}') => return Ok(Value::Object(fields)),
                _ => {
                    self.pos = self.pos.saturating_sub(1);
                    return Err(self.err("expected `,` or `}`"));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.bump() {
                Some(b',') => continue,
                Some(b']') => return Ok(Value::Array(items)),
                _ => {
                    self.pos = self.pos.saturating_sub(1);
                    return Err(self.err("expected `,` or `]`"));
                }
            }
        }
    }

    fn number(&mut self) -> Value {
        let start = self.pos;
        let mut integral = true;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' | b'-' => {}
                b'.' | b'e' | b'E' | b'+' => integral = false,
                _ => break,
            }
            self.pos += 1;
        }
        let text = std::str::from_utf8(self.raw.get(start..self.pos).unwrap_or_default()).unwrap_or("");
        Value::Number(if integral { text.parse::<i64>().ok() } else { None })
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.raw.get(self.pos..self.pos + 4).ok_or_else(|| self.err("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(text, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.bump() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    let c = match self.bump() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                if self.bump() != Some(b'\\') || self.bump() != Some(b'u') {
                                    return Err(self.err("unpaired surrogate"));
                                }
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err("unpaired surrogate"));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or_else(|| self.err("invalid \\u escape"))?
                        }
                        _ => return Err(self.err("invalid escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(b) if b < 0x20 => return Err(self.err("control character in string")),
                Some(b) => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// A configuration error naming the field.
pub fn field_error(at: &str, why: &str) -> String {
    if at.is_empty() { why.to_owned() } else { format!("field `{at}` {why}") }
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() { name.to_owned() } else { format!("{at}.{name}") }
}

/// Typed access to one JSON object: every field read is marked, `finish` rejects the rest by name.
pub struct Obj<'a> {
    at: String,
    fields: &'a [(String, Value)],
    used: Vec<bool>,
}

impl<'a> Obj<'a> {
    pub fn new(at: &str, v: &'a Value) -> Result<Self, String> {
        match v {
            Value::Object(fields) => Ok(Obj { at: at.to_owned(), fields, used: vec![false; fields.len()] }),
            other => Err(field_error(at, &format!("must be an object, got {}", other.kind()))),
        }
    }

    pub fn path(&self, name: &str) -> String {
        join(&self.at, name)
    }

    /// The field's value; `null` counts as absent.
    pub fn get(&mut self, name: &str) -> Option<&'a Value> {
        let i = self.fields.iter().position(|(k, _)| k == name)?;
        if let Some(u) = self.used.get_mut(i) {
            *u = true;
        }
        self.fields.get(i).map(|(_, v)| v).filter(|v| **v != Value::Null)
    }

    pub fn string(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(field_error(&self.path(name), &format!("must be a string, got {}", other.kind()))),
        }
    }

    pub fn boolean(&mut self, name: &str) -> Result<Option<bool>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(field_error(&self.path(name), &format!("must be true or false, got {}", other.kind()))),
        }
    }

    pub fn uint(&mut self, name: &str, max: u64) -> Result<Option<u64>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(Some(n))) if *n >= 0 && n.unsigned_abs() <= max => Ok(Some(n.unsigned_abs())),
            Some(_) => Err(field_error(&self.path(name), &format!("must be an integer between 0 and {max}"))),
        }
    }

    pub fn array(&mut self, name: &str) -> Result<&'a [Value], String> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(field_error(&self.path(name), &format!("must be an array, got {}", other.kind()))),
        }
    }

    /// One of `choices` (a string), mapped to its value.
    pub fn choice<T: Copy>(&mut self, name: &str, choices: &[(&str, T)]) -> Result<Option<T>, String> {
        let Some(s) = self.string(name)? else { return Ok(None) };
        match choices.iter().find(|(k, _)| *k == s) {
            Some((_, v)) => Ok(Some(*v)),
            None => {
                let names: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
                Err(field_error(
                    &self.path(name),
                    &format!("has unknown value `{s}`, expected one of: {}", names.join(", ")),
                ))
            }
        }
    }

    /// Rejects every field that was not read.
    pub fn finish(self) -> Result<(), String> {
        match self.fields.iter().zip(&self.used).find(|(_, used)| !**used) {
            None => Ok(()),
            Some(((k, _), _)) => {
                let where_ =
                    if self.at.is_empty() { "at the top level".to_owned() } else { format!("in `{}`", self.at) };
                Err(format!("unknown field `{k}` {where_}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(fields: &[(&str, Value)]) -> Value {
        Value::Object(fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn parses_every_kind_of_value() {
        let v =
            parse(br#" {"a": [1, -2, 3.5, 1e3, true, false, null], "b": {"c": "d\"\u00e9\ud83d\ude00\n"}, "e": {}} "#)
                .unwrap();
        let want = obj(&[
            (
                "a",
                Value::Array(vec![
                    Value::Number(Some(1)),
                    Value::Number(Some(-2)),
                    Value::Number(None),
                    Value::Number(None),
                    Value::Bool(true),
                    Value::Bool(false),
                    Value::Null,
                ]),
            ),
            ("b", obj(&[("c", Value::String("d\"é😀\n".into()))])),
            ("e", obj(&[])),
        ]);
        assert_eq!(v, want);
        assert_eq!(parse(b"[]").unwrap(), Value::Array(vec![]));
        assert_eq!(parse("\"ü\"".as_bytes()).unwrap(), Value::String("ü".into()));
    }

    #[test]
    fn rejects_malformed_json_with_position() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"[1 2]",
            b"{\"a\":1} x",
            b"tru",
            b"\"\\x\"",
            b"\"\\ud800\"",
            b"{1:2}",
            b"\"a\nb\"",
            b"\"abc",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with("invalid JSON at byte "), "{e}");
        }
        assert!(parse(br#"{"a":1,"a":2}"#).unwrap_err().contains("duplicate field `a`"));
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(deep.as_bytes()).unwrap_err().contains("nested too deeply"));
        assert_eq!(parse(b"99999999999999999999").unwrap(), Value::Number(None));
    }

    #[test]
    fn typed_access_names_the_field() {
        let v = parse(br#"{"n": 5, "s": "x", "b": true, "a": [1], "neg": -1, "f": 1.5, "z": null, "o": 3}"#).unwrap();
        let mut o = Obj::new("rules[0]", &v).unwrap();
        assert_eq!(o.uint("n", 10).unwrap(), Some(5));
        assert_eq!(o.string("s").unwrap().as_deref(), Some("x"));
        assert_eq!(o.boolean("b").unwrap(), Some(true));
        assert_eq!(o.array("a").unwrap().len(), 1);
        assert_eq!(o.uint("missing", 10).unwrap(), None);
        assert_eq!(o.string("z").unwrap(), None, "null is absent");
        assert_eq!(o.uint("neg", 10).unwrap_err(), "field `rules[0].neg` must be an integer between 0 and 10");
        assert!(o.uint("f", 10).unwrap_err().contains("rules[0].f"));
        assert!(o.string("n").unwrap_err().contains("`rules[0].n` must be a string, got a number"));
        assert!(o.choice("s", &[("y", 1)]).unwrap_err().contains("unknown value `x`, expected one of: y"));
        assert_eq!(o.finish().unwrap_err(), "unknown field `o` in `rules[0]`");
        assert!(Obj::new("", &Value::Null).err().unwrap().contains("must be an object, got null"));
    }

    #[test]
    fn finish_accepts_when_all_fields_read() {
        let v = parse(br#"{"a": 1}"#).unwrap();
        let mut o = Obj::new("", &v).unwrap();
        o.get("a");
        assert!(o.finish().is_ok());
        let mut o = Obj::new("", &v).unwrap();
        o.get("b");
        assert_eq!(o.finish().unwrap_err(), "unknown field `a` at the top level");
    }
}
