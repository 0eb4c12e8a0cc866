//! The JSON reader's one error type: a message, the path of the field it is about (`rules[0].key[1].source`) and,
//! for malformed JSON, the line and column. Nested readers add their segment as the error travels out, so the path
//! costs nothing until something fails.
use core::fmt::{self, Write as _};

use serde::de::{Expected, Unexpected};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(Box<Inner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    message: String,
    /// Innermost segment first (each enclosing object or array pushes its own on the way out).
    path: Vec<Segment>,
    /// Line and column (1-based, in bytes) of malformed JSON; None for a well-formed value of the wrong shape.
    position: Option<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl Error {
    /// Malformed JSON: `consumed` bytes of `input` were read, the last of them the offending one (all of them at
    /// the end of input).
    pub(crate) fn syntax(message: &str, input: &[u8], consumed: usize) -> Self {
        let read = input.get(..consumed).unwrap_or(input);
        let line_start = read.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let line = 1 + read.iter().filter(|b| **b == b'\n').count();
        let position = Some((line, read.len() - line_start));
        Error(Box::new(Inner { message: message.to_owned(), path: Vec::new(), position }))
    }

    fn data(message: String) -> Self {
        Error(Box::new(Inner { message, path: Vec::new(), position: None }))
    }

    /// The same error, inside the member `key` of an enclosing object.
    #[inline(never)]
    pub fn at_key(mut self, key: &str) -> Self {
        self.0.path.push(Segment::Key(key.to_owned()));
        self
    }

    /// The same error, inside element `index` of an enclosing array.
    #[inline(never)]
    pub fn at_index(mut self, index: usize) -> Self {
        self.0.path.push(Segment::Index(index));
        self
    }

    /// What is wrong, without the path or position.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The offending field's path (`rules[0].key[1].source`); empty at the top level.
    pub fn path(&self) -> String {
        let mut path = String::new();
        for segment in self.0.path.iter().rev() {
            match segment {
                Segment::Key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Segment::Index(index) => {
                    path.push('[');
                    path.push_str(&index.to_string());
                    path.push(']');
                }
            }
        }
        path
    }

    /// Whether the input was not JSON at all (rather than JSON of the wrong shape).
    pub fn is_syntax(&self) -> bool {
        self.0.position.is_some()
    }
}

/// One line, field first: ``field `rules[0].rate`: invalid type: string "5", expected u32``; at the top level
/// ``invalid JSON: expected `:` at line 1 column 16`` or ``missing field `rules` at the top level``.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        match (path.is_empty(), self.0.position) {
            (false, _) => write!(f, "field `{path}`: {}", self.0.message)?,
            (true, Some(_)) => write!(f, "invalid JSON: {}", self.0.message)?,
            (true, None) => write!(f, "{} at the top level", self.0.message)?,
        }
        match self.0.position {
            Some((line, column)) => write!(f, " at line {line} column {column}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

/// serde's wording, with JSON's name for the unit value (`null`), as serde_json words it. Every message about an
/// unexpected value goes through [`JsonUnexpected`], so serde's own `Unexpected` formatting (and with it the float
/// formatting machinery of `core`) is never linked.
impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error::data(message.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Error::data(format!("invalid type: {}, expected {expected}", JsonUnexpected(unexpected)))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Error::data(format!("invalid value: {}, expected {expected}", JsonUnexpected(unexpected)))
    }
}

/// `s` in double quotes, escaped as `{s:?}` escapes ASCII (`\"`, `\\`, `\t`, `\r`, `\n`, `\0`, `\u{1b}`) and
/// every other control character and line/paragraph separator as `\u{..}`; any other character is written as it
/// is. `{s:?}` also escapes the rarer invisible characters (format characters, combining marks at the start), but
/// links core's Unicode printability tables and escape code for that (~2 KB of every module).
fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\t' => "\\t",
            '\r' => "\\r",
            '\n' => "\\n",
            '\0' => "\\0",
            _ if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => "",
            _ => continue,
        };
        f.write_str(s.get(plain..i).unwrap_or_default())?;
        if escape.is_empty() {
            // `\u{85}`: lower-case hex without leading zeros, as `{:x}` (not linked for this alone) writes it.
            f.write_str("\\u{")?;
            let code = u32::from(c);
            for shift in (0..(32 - code.leading_zeros()).div_ceil(4)).rev() {
                f.write_char(char::from_digit((code >> (shift * 4)) & 0xf, 16).unwrap_or('0'))?;
            }
            f.write_str("}")?;
        } else {
            f.write_str(escape)?;
        }
        plain = i + c.len_utf8();
    }
    f.write_str(s.get(plain..).unwrap_or_default())?;
    f.write_str("\"")
}

/// serde's `Unexpected` in serde's words, except `null` for the unit value and a float without its digits (this
/// reader never reports one: a number that is no integer is reported by its text, see `de.rs`).
struct JsonUnexpected<'a>(Unexpected<'a>);

impl fmt::Display for JsonUnexpected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One `write_str` for every fixed text (a `write!` per arm costs a formatting call each).
        let text = match self.0 {
            Unexpected::Bool(true) => "boolean `true`",
            Unexpected::Bool(false) => "boolean `false`",
            Unexpected::Unsigned(n) => return write!(f, "integer `{n}`"),
            Unexpected::Signed(n) => return write!(f, "integer `{n}`"),
            Unexpected::Char(c) => return write!(f, "character `{c}`"),
            Unexpected::Str(s) => {
                f.write_str("string ")?;
                return quoted(f, s);
            }
            Unexpected::Float(_) => "floating point number",
            Unexpected::Bytes(_) => "byte array",
            Unexpected::Unit => "null",
            Unexpected::Option => "Option value",
            Unexpected::NewtypeStruct => "newtype struct",
            Unexpected::Seq => "sequence",
            Unexpected::Map => "map",
            Unexpected::Enum => "enum",
            Unexpected::UnitVariant => "unit variant",
            Unexpected::NewtypeVariant => "newtype variant",
            Unexpected::TupleVariant => "tuple variant",
            Unexpected::StructVariant => "struct variant",
            Unexpected::Other(other) => other,
        };
        f.write_str(text)
    }
}
