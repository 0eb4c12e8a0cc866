//! serde's `Deserializer` over a parsed [`Value`], so `#[derive(Deserialize)]` types read from it. Each nested object
//! member and array element adds its segment to an error's path on the way out; values of the wrong type are
//! reported in serde's words (`invalid type: string "5", expected u32`), numbers that are no integer by their text
//! (no float formatting). Enums are unit variants named by a string: data-carrying variants would cost every
//! filter their code and none has one.
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, Expected, MapAccess, SeqAccess, Unexpected, Visitor};

use super::{Error, Number, Object, Value};

/// The value of the wrong type for `expected`, as an error.
fn invalid_type(value: &Value, expected: &dyn Expected) -> Error {
    let unexpected = match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(Number::Unsigned(n)) => Unexpected::Unsigned(*n),
        Value::Number(Number::Negative(n)) => Unexpected::Signed(*n),
        Value::Number(Number::Other(text)) => {
            return de::Error::custom(format_args!("invalid type: floating point `{text}`, expected {expected}"));
        }
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    };
    de::Error::invalid_type(unexpected, expected)
}

/// A float field's value (only compiled in where a type has one).
fn float(value: &Value, expected: &dyn Expected) -> Result<f64, Error> {
    #[allow(clippy::cast_precision_loss)]
    match value {
        Value::Number(Number::Unsigned(n)) => Ok(*n as f64),
        Value::Number(Number::Negative(n)) => Ok(*n as f64),
        Value::Number(Number::Other(text)) => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err(de::Error::custom("number out of range")),
        },
        other => Err(invalid_type(other, expected)),
    }
}

impl<'de> Deserializer<'de> for &'de Value {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(Number::Unsigned(n)) => visitor.visit_u64(*n),
            Value::Number(Number::Negative(n)) => visitor.visit_i64(*n),
            Value::Number(Number::Other(_)) => visitor.visit_f64(float(self, &"a number")?),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visit_array(items, visitor),
            Value::Object(members) => visitor.visit_map(Members::new(members)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::Bool(b) => visitor.visit_bool(*b),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        integer(self, visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        integer(self, visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        integer(self, visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        integer(self, visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        integer(self, visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        integer(self, visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        integer(self, visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        integer(self, visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let f = float(self, &visitor)?;
        visitor.visit_f64(f)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::String(s) => visitor.visit_borrowed_str(s),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::Null => visitor.visit_unit(),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::Array(items) => visit_array(items, visitor),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::Object(members) => visitor.visit_map(Members::new(members)),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    /// A string names a unit variant (serde says so for a variant with data: `invalid type: unit variant, ...`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Value::String(s) => visitor.visit_enum(BorrowedStrDeserializer::<Error>::new(s)),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! { i128 u128 char bytes byte_buf }
}

fn integer<'de, V: Visitor<'de>>(value: &'de Value, visitor: V) -> Result<V::Value, Error> {
    match value {
        Value::Number(Number::Unsigned(n)) => visitor.visit_u64(*n),
        Value::Number(Number::Negative(n)) => visitor.visit_i64(*n),
        other => Err(invalid_type(other, &visitor)),
    }
}

/// Every element must be taken: a tuple shorter than the array is an error, not a silent truncation.
fn visit_array<'de, V: Visitor<'de>>(items: &'de [Value], visitor: V) -> Result<V::Value, Error> {
    let mut elements = Elements { items: items.iter().enumerate() };
    let value = visitor.visit_seq(&mut elements)?;
    match elements.items.len() {
        0 => Ok(value),
        left => Err(too_long(items.len(), left)),
    }
}

// The error paths below are shared, not repeated in every instantiation of the generic code that reaches them.

#[inline(never)]
fn too_long(len: usize, left: usize) -> Error {
    de::Error::invalid_length(len, &format!("{} elements", len - left).as_str())
}

#[inline(never)]
fn value_before_key() -> Error {
    de::Error::custom("a map value was asked for before its key")
}

struct Elements<'de> {
    items: core::iter::Enumerate<core::slice::Iter<'de, Value>>,
}

impl<'de> SeqAccess<'de> for Elements<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some((index, item)) => seed.deserialize(item).map(Some).map_err(|e| e.at_index(index)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An object's members for a map or struct visitor; an error in a key (an unknown field) or its value is placed at
/// that key.
struct Members<'de> {
    members: core::slice::Iter<'de, (String, Value)>,
    current: Option<&'de (String, Value)>,
}

impl<'de> Members<'de> {
    fn new(object: &'de Object) -> Self {
        Members { members: object.iter(), current: None }
    }
}

impl<'de> MapAccess<'de> for Members<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        self.current = self.members.next();
        match self.current {
            Some((key, _)) => seed.deserialize(BorrowedStrDeserializer::<Error>::new(key)).map(Some).map_err(|e| e.at_key(key)),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let (key, value) = self.current.ok_or_else(value_before_key)?;
        seed.deserialize(value).map_err(|e| e.at_key(key))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}
