//! Lazily parsed JSON objects for the hot path: one pass validates the record and finds
//! its top-level members without building a tree; a member is parsed only when a field
//! path asks for it. Strings without escapes are borrowed from the input.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::value::FieldValue;

/// A JSON object's top-level members, unparsed.
#[derive(Debug, Default)]
pub struct JsonObject<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> JsonObject<'a> {
    /// Parses and validates `bytes` as one JSON object (anything else is an error).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The raw text of a member. With duplicate keys the last wins, as in `serde_json::Value`.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for JsonObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = JsonObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key.0, value));
                }
                Ok(JsonObject { members })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A string that borrows from the input when it has no escapes.
pub struct Key<'a>(pub Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A serde_json error as text that never echoes the input: syntax errors say what was
/// expected where; a data error (`invalid type: string "jane@…", expected …`) quotes the
/// offending value, so only its position is kept — except `missing field`, which names
/// a field of our schema. These messages are logged, and logs carry coordinates, not data.
pub fn redacted_error(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => {
            let text = e.to_string();
            if text.starts_with("missing field") {
                text
            } else {
                format!(
                    "a value of the wrong type or out of range at line {} column {}",
                    e.line(),
                    e.column()
                )
            }
        }
        _ => e.to_string(),
    }
}

/// Reads a raw member as a field value, parsing only what its first byte says it is.
pub(crate) fn scalar_from_raw(raw: &RawValue) -> Option<FieldValue<'_>> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<Key<'_>>(text)
            .ok()
            .map(|k| FieldValue::String(k.0)),
        b't' => Some(FieldValue::Bool(true)),
        b'f' => Some(FieldValue::Bool(false)),
        b'n' => Some(FieldValue::Null),
        b'{' | b'[' => serde_json::from_str(text).ok().map(FieldValue::Composite),
        // Already validated as a JSON number by the parse.
        _ => Some(FieldValue::Number(Cow::Borrowed(text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_objects_and_bad_json() {
        for bad in ["[1]", "3", "\"x\"", "{\"a\":}", "{", "", "{\"a\":1} x"] {
            assert!(JsonObject::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let o = JsonObject::parse(br#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(o.get("a").unwrap().get(), "2");
    }
}
