//! JSON text (RFC 8259) to a [`Value`]: one recursive-descent parser over bytes, not generic over its input, so it
//! is compiled once however many types are read from it. Messages follow serde_json's wording.
use super::{Error, Number, Object, Value};

/// Deepest nesting of arrays and objects accepted (serde_json's limit too): recursion stays bounded on hostile
/// input.
pub const MAX_DEPTH: usize = 128;

/// Parses one JSON value; anything but whitespace after it is an error.
pub fn parse(input: &[u8]) -> Result<Value, Error> {
    let mut parser = Parser { input, pos: 0, depth: 0 };
    let value = parser.value()?;
    parser.skip_whitespace();
    if parser.pos < input.len() {
        return Err(parser.fail("trailing characters"));
    }
    Ok(value)
}

struct Parser<'a> {
    input: &'a [u8],
    /// The next byte to read.
    pos: usize,
    /// Arrays and objects open around `pos`.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// A syntax error about the byte at `pos` (not yet consumed), or the end of input.
    fn fail(&self, message: &str) -> Error {
        Error::syntax(message, self.input, (self.pos + 1).min(self.input.len()))
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value, Error> {
        self.skip_whitespace();
        match self.peek() {
            None => Err(self.fail("EOF while parsing a value")),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                self.pos += 1;
                self.string().map(Value::String)
            }
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(_) => Err(self.fail("expected value")),
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Value, Error> {
        for expected in word {
            match self.peek() {
                Some(b) if b == *expected => self.pos += 1,
                Some(_) => return Err(self.fail("expected ident")),
                None => return Err(self.fail("EOF while parsing a value")),
            }
        }
        Ok(value)
    }

    /// Consumes the `[` or `{` at `pos`, refusing to nest deeper than [`MAX_DEPTH`].
    fn open(&mut self) -> Result<(), Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.fail("recursion limit exceeded"));
        }
        self.depth += 1;
        self.pos += 1;
        Ok(())
    }

    /// After an element or member: `,` (another follows) or the closing byte (`pos` moves past either).
    fn separator(&mut self, close: u8, what: &str, expected: &str) -> Result<bool, Error> {
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_whitespace();
                match self.peek() {
                    Some(b) if b == close => Err(self.fail("trailing comma")),
                    _ => Ok(true),
                }
            }
            Some(b) if b == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(_) => Err(self.fail(expected)),
            None => Err(self.fail(what)),
        }
    }

    fn array(&mut self) -> Result<Value, Error> {
        self.open()?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            let index = items.len();
            items.push(self.value().map_err(|e| e.at_index(index))?);
            if !self.separator(b']', "EOF while parsing a list", "expected `,` or `]`")? {
                return Ok(Value::Array(items));
            }
        }
    }

    fn object(&mut self) -> Result<Value, Error> {
        const EOF: &str = "EOF while parsing an object";
        self.open()?;
        let mut members = Vec::new();
        self.skip_whitespace();
        let mut more = if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            false
        } else {
            true
        };
        while more {
            match self.peek() {
                Some(b'"') => self.pos += 1,
                Some(_) => return Err(self.fail("key must be a string")),
                None => return Err(self.fail(EOF)),
            }
            let key = self.string()?;
            self.skip_whitespace();
            match self.peek() {
                Some(b':') => self.pos += 1,
                Some(_) => return Err(self.fail("expected `:`")),
                None => return Err(self.fail(EOF)),
            }
            let value = self.value().map_err(|e| e.at_key(&key))?;
            members.push((key, value));
            more = self.separator(b'}', EOF, "expected `,` or `}`")?;
        }
        let object = Object(members);
        if let Some(key) = object.duplicate_key() {
            return Err(serde::de::Error::custom(format_args!("duplicate field `{key}`")));
        }
        Ok(Value::Object(object))
    }

    /// The rest of a string whose opening quote was consumed; `pos` ends past the closing quote.
    fn string(&mut self) -> Result<String, Error> {
        let mut out = Vec::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            let run = self.input.get(start..self.pos).unwrap_or_default();
            match self.peek() {
                // No escape (the common case): one allocation of the exact size.
                Some(b'"') if out.is_empty() => {
                    let text = std::str::from_utf8(run).map_err(|_| self.fail("invalid unicode code point"))?;
                    self.pos += 1;
                    return Ok(text.to_owned());
                }
                _ => out.extend_from_slice(run),
            }
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => return Err(self.fail("control character (\\u0000-\\u001F) found while parsing a string")),
                None => return Err(self.fail("EOF while parsing a string")),
            }
        }
        // Escapes only ever add valid UTF-8; the raw bytes between them are checked here.
        let text = String::from_utf8(out).map_err(|_| self.fail("invalid unicode code point"))?;
        self.pos += 1;
        Ok(text)
    }

    /// One escape after its backslash, appended to `out` as UTF-8.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let byte = match self.peek() {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                self.pos += 1;
                let c = self.unicode_escape()?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                return Ok(());
            }
            Some(_) => return Err(self.fail("invalid escape")),
            None => return Err(self.fail("EOF while parsing a string")),
        };
        self.pos += 1;
        out.push(byte);
        Ok(())
    }

    /// `XXXX` after `\u`, and a second `\uXXXX` when the first is a leading surrogate; lone surrogates are errors.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        const LONE: &str = "lone surrogate in hex escape";
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.input.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.fail(LONE));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.fail(LONE));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.fail(LONE)),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.fail("invalid unicode code point"))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b) => char::from(b).to_digit(16).ok_or_else(|| self.fail("invalid escape"))?,
                None => return Err(self.fail("EOF while parsing a string")),
            };
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`: an exact integer when it is one and fits 64 bits.
    fn number(&mut self) -> Result<Number, Error> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.fail("invalid number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.fail("invalid number")),
        }
        let int_end = self.pos;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        if self.pos == int_end {
            let magnitude = self.input.get(int_start..int_end).unwrap_or_default().iter().try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d.saturating_sub(b'0')))
            });
            match (negative, magnitude) {
                (false, Some(n)) | (true, Some(n @ 0)) => return Ok(Number::Unsigned(n)),
                (true, Some(n)) => {
                    if let Some(n) = 0i64.checked_sub_unsigned(n) {
                        return Ok(Number::Negative(n));
                    }
                }
                (_, None) => {}
            }
        }
        let text = self.input.get(start..self.pos).unwrap_or_default();
        Ok(Number::Other(core::str::from_utf8(text).unwrap_or_default().into()))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), Error> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.fail("invalid number"));
        }
        self.digits();
        Ok(())
    }
}
