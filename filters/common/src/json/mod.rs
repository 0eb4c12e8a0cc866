//! The filters' JSON reader, built for a small module: one non-generic parser from bytes to a [`Value`]
//! (`parse.rs`), and a `serde::Deserializer` over that value (`de.rs`) so configurations stay typed
//! `#[derive(Deserialize)]` structs with `#[serde(deny_unknown_fields)]`. Errors name the offending field by its
//! path (`rules[0].key[1].source`, `error.rs`), for malformed JSON and for values of the wrong shape alike.
//!
//! Semantics (RFC 8259, strict): one value and nothing after it but whitespace; escapes including surrogate pairs
//! (a lone surrogate is an error); UTF-8 only; no comments, trailing commas or leading zeros; a key twice in one
//! object is an error (`duplicate field`, as serde's derived structs say, for maps and JWT claims too — RFC 7519
//! lets a JWT parser refuse duplicate claim names); nesting deeper than [`MAX_DEPTH`] is an error, so hostile input
//! (a JWT, a remote JWKS) cannot exhaust the stack. Integers are exact (`u64`, negative `i64`); any other number
//! keeps its text and becomes an `f64` only where a field is a float (then parsed by `core`). Enums: unit variants,
//! named by a string.
mod de;
mod error;
mod parse;
mod string_map;

use core::fmt;

pub use error::Error;
pub use parse::{MAX_DEPTH, parse};
pub use string_map::StringMap;

/// A parsed JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Object),
}

/// A JSON number as read: an exact integer when it is one that fits 64 bits, else its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Number {
    /// A non-negative integer (`-0` included).
    Unsigned(u64),
    /// A negative integer down to `i64::MIN`.
    Negative(i64),
    /// A fraction, an exponent or an integer beyond 64 bits, as written (valid JSON number syntax).
    Other(Box<str>),
}

/// A JSON object's members in document order; the parser guarantees distinct keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object(Vec<(String, Value)>);

/// Parses `input` and deserializes a `T` from it; errors name the field (see [`Error`]).
pub fn from_slice<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, Error> {
    from_value(&parse(input)?)
}

/// Deserializes a `T` from a parsed value.
pub fn from_value<'de, T: serde::Deserialize<'de>>(value: &'de Value) -> Result<T, Error> {
    T::deserialize(value)
}

impl Value {
    /// An object's member; None for a missing key or a value that is no object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|object| object.get(key))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(object) => Some(object),
            _ => None,
        }
    }
}

impl Number {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Number::Unsigned(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Unsigned(n) => i64::try_from(*n).ok(),
            Number::Negative(n) => Some(*n),
            Number::Other(_) => None,
        }
    }

    /// The integer part of a non-negative number when it fits a `u64`, computed exactly from the text (no float):
    /// `1000.9` → 1000, `1.5e3` → 1500, `5e-1` → 0. None for a negative number or one too large.
    pub fn integer_part(&self) -> Option<u64> {
        let text = match self {
            Number::Unsigned(n) => return Some(*n),
            Number::Negative(_) => return None,
            Number::Other(text) if text.starts_with('-') => return None,
            Number::Other(text) => text,
        };
        let text = text.as_bytes();
        let (mantissa, exponent) = text.split_at(text.iter().position(|b| *b | 0x20 == b'e').unwrap_or(text.len()));
        // |exponent| clamped at 10^4: beyond it every value overflows a u64 or truncates to 0 either way.
        let magnitude = exponent
            .iter()
            .filter(|b| b.is_ascii_digit())
            .fold(0i64, |n, digit| (n * 10 + i64::from(digit.wrapping_sub(b'0'))).min(10_000));
        let exponent = if exponent.contains(&b'-') { -magnitude } else { magnitude };
        // How many digits stand before the decimal point once the exponent is applied (written ones, then zeros).
        let int_digits = mantissa.iter().position(|b| *b == b'.').unwrap_or(mantissa.len());
        let point = i64::try_from(int_digits).ok()? + exponent;
        let mut digits = mantissa.iter().copied().filter(u8::is_ascii_digit);
        let mut value: u64 = 0;
        for _ in 0..point {
            let digit = digits.next().unwrap_or(b'0');
            value = value.checked_mul(10)?.checked_add(u64::from(digit.wrapping_sub(b'0')))?;
        }
        Some(value)
    }
}

/// The number as written for fractions and exponents, in decimal for integers.
impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Unsigned(n) => fmt::Display::fmt(n, f),
            Number::Negative(n) => fmt::Display::fmt(n, f),
            Number::Other(text) => f.write_str(text),
        }
    }
}

impl Object {
    /// The member named `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> core::slice::Iter<'_, (String, Value)> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A key that occurs twice, if any: pairwise for small objects, sorted for large ones (a hostile object with
    /// thousands of members costs n log n, not n²).
    fn duplicate_key(&self) -> Option<&str> {
        let members = &self.0;
        if members.len() <= 16 {
            return members
                .iter()
                .enumerate()
                .find(|(i, (key, _))| members.iter().take(*i).any(|(earlier, _)| earlier == key))
                .map(|(_, (key, _))| key.as_str());
        }
        let mut keys: Vec<&str> = members.iter().map(|(key, _)| key.as_str()).collect();
        keys.sort_unstable();
        keys.windows(2).find_map(|pair| match pair {
            [a, b] if a == b => Some(*a),
            _ => None,
        })
    }
}

/// Builds an object from members the caller knows to have distinct keys (e.g. a filtered object).
impl FromIterator<(String, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(members: I) -> Self {
        Object(members.into_iter().collect())
    }
}

impl IntoIterator for Object {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Object {
    type Item = &'a (String, Value);
    type IntoIter = core::slice::Iter<'a, (String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests;
