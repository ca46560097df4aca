//! The value found at a field path, in a leaf module: the JSON reader (`json`), the paths
//! (`path`) and event time (`time`) all name it without importing each other.

use std::borrow::Cow;

use serde_json::Value;

/// A value found at a path. Numbers keep their text so nothing is lost before the caller
/// decides how to read them.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Null,
    Bool(bool),
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    /// An object, array or set, as plain JSON.
    Composite(Value),
}

impl FieldValue<'_> {
    /// The value as a finite number (JSON and DynamoDB numbers; a string is not a number).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => n.parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// What kind of value this is, for messages that must not echo a payload (logs carry
    /// record coordinates, not data): `a string`, `a number`, ….
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::String(_) => "a string",
            Self::Composite(Value::Array(_)) => "an array",
            Self::Composite(_) => "an object",
        }
    }

    /// Text for dimensions, keys and messages: strings as they are, numbers as written,
    /// booleans and null as JSON, composites as compact JSON.
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Self::Null => Cow::Borrowed("null"),
            Self::Bool(true) => Cow::Borrowed("true"),
            Self::Bool(false) => Cow::Borrowed("false"),
            Self::Number(n) => Cow::Borrowed(n),
            Self::String(s) => Cow::Borrowed(s),
            Self::Composite(v) => Cow::Owned(v.to_string()),
        }
    }

    pub fn into_owned(self) -> FieldValue<'static> {
        match self {
            Self::Null => FieldValue::Null,
            Self::Bool(b) => FieldValue::Bool(b),
            Self::Number(n) => FieldValue::Number(Cow::Owned(n.into_owned())),
            Self::String(s) => FieldValue::String(Cow::Owned(s.into_owned())),
            Self::Composite(v) => FieldValue::Composite(v),
        }
    }
}
