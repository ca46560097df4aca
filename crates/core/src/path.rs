//! Field paths (`Severity`, `a.b`, `items[0].name`, `NewImage.deviceID`) and the values
//! they pick out of a decoded record: plain JSON, lazily parsed JSON, or a DynamoDB change
//! record (whose images are DynamoDB JSON).

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use crate::change::{AttributeValue, ChangeRecord, Item};
use crate::json::{JsonObject, scalar_from_raw};
pub use crate::value::FieldValue;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field path {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}

impl FieldPath {
    /// Parses `a.b[2].c`. Keys are split on `.`; `[n]` indexes an array.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let err = |reason| PathError {
            path: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(err("empty path"));
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if key.is_empty() && (rest.is_empty() || segments.is_empty()) {
                return Err(err("empty segment"));
            }
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_owned()));
            }
            while !rest.is_empty() {
                let close = rest.find(']').ok_or_else(|| err("unclosed '['"))?;
                let index = rest[1..close]
                    .parse::<usize>()
                    .map_err(|_| err("array index is not a non-negative integer"))?;
                segments.push(Segment::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(err("text after ']'"));
                }
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for FieldPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Anything a field path can be evaluated on.
pub trait Fields {
    fn field(&self, path: &FieldPath) -> Option<FieldValue<'_>>;
}

fn json_at<'v>(mut value: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    for seg in segments {
        value = match (seg, value) {
            (Segment::Key(k), Value::Object(m)) => m.get(k)?,
            (Segment::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

pub(crate) fn json_value(value: &Value) -> FieldValue<'_> {
    match value {
        Value::Null => FieldValue::Null,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => FieldValue::Number(Cow::Owned(n.to_string())),
        Value::String(s) => FieldValue::String(Cow::Borrowed(s)),
        other => FieldValue::Composite(other.clone()),
    }
}

impl Fields for Value {
    fn field(&self, path: &FieldPath) -> Option<FieldValue<'_>> {
        json_at(self, path.segments()).map(json_value)
    }
}

impl Fields for JsonObject<'_> {
    fn field(&self, path: &FieldPath) -> Option<FieldValue<'_>> {
        let (first, rest) = path.segments().split_first()?;
        let Segment::Key(key) = first else {
            return None;
        };
        let raw = self.get(key)?;
        if rest.is_empty() {
            return scalar_from_raw(raw);
        }
        // Nested: parse just this member fully; paths into nested values are rare.
        let value: Value = serde_json::from_str(raw.get()).ok()?;
        json_at(&value, rest).map(|v| json_value(v).into_owned())
    }
}

fn attr_at<'v>(item: &'v Item, segments: &[Segment]) -> Option<&'v AttributeValue> {
    let (Segment::Key(first), rest) = segments.split_first()? else {
        return None;
    };
    let mut value = item.get(first)?;
    for seg in rest {
        value = match (seg, value) {
            (Segment::Key(k), AttributeValue::M(m)) => m.get(k)?,
            (Segment::Index(i), AttributeValue::L(l)) => l.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

fn attr_value(value: &AttributeValue) -> FieldValue<'_> {
    match value {
        AttributeValue::S(s) => FieldValue::String(Cow::Borrowed(s)),
        AttributeValue::N(n) => FieldValue::Number(Cow::Borrowed(n)),
        AttributeValue::Bool(b) => FieldValue::Bool(*b),
        AttributeValue::Null(_) => FieldValue::Null,
        other => match other.to_json() {
            Value::String(s) => FieldValue::String(Cow::Owned(s)),
            v => FieldValue::Composite(v),
        },
    }
}

impl Fields for ChangeRecord {
    /// `NewImage.x`, `OldImage.x`, `Keys.x` (also under `dynamodb.`), and the record's own
    /// fields `eventName`, `eventID`, `tableName`, `awsRegion`, `eventSource`,
    /// `ApproximateCreationDateTime` (microseconds).
    fn field(&self, path: &FieldPath) -> Option<FieldValue<'_>> {
        let mut segs = path.segments();
        if let Some((Segment::Key(k), rest)) = segs.split_first()
            && k == "dynamodb"
        {
            segs = rest;
        }
        let (Segment::Key(first), rest) = segs.split_first()? else {
            return None;
        };
        let image = match first.as_str() {
            "NewImage" => self.dynamodb.new_image.as_ref(),
            "OldImage" => self.dynamodb.old_image.as_ref(),
            "Keys" => Some(&self.dynamodb.keys),
            _ if !rest.is_empty() => return None,
            "eventName" => {
                let name = match self.event_name {
                    crate::change::EventName::Insert => "INSERT",
                    crate::change::EventName::Modify => "MODIFY",
                    crate::change::EventName::Remove => "REMOVE",
                };
                return Some(FieldValue::String(Cow::Borrowed(name)));
            }
            "eventID" => return Some(FieldValue::String(Cow::Borrowed(&self.event_id))),
            "tableName" => {
                return self
                    .table_name
                    .as_deref()
                    .map(|s| FieldValue::String(Cow::Borrowed(s)));
            }
            "awsRegion" => {
                return self
                    .aws_region
                    .as_deref()
                    .map(|s| FieldValue::String(Cow::Borrowed(s)));
            }
            "eventSource" => {
                return self
                    .event_source
                    .as_deref()
                    .map(|s| FieldValue::String(Cow::Borrowed(s)));
            }
            "ApproximateCreationDateTime" => {
                return Some(FieldValue::Number(Cow::Owned(
                    self.dynamodb.creation_time_micros.to_string(),
                )));
            }
            _ => return None,
        }?;
        if rest.is_empty() {
            return Some(FieldValue::Composite(crate::change::item_to_json(image)));
        }
        attr_at(image, rest).map(attr_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    #[test]
    fn parses_paths() {
        assert_eq!(
            p("a.b[2][0].c").segments(),
            &[
                Segment::Key("a".into()),
                Segment::Key("b".into()),
                Segment::Index(2),
                Segment::Index(0),
                Segment::Key("c".into())
            ]
        );
        for bad in ["", "a..b", ".a", "a[", "a[x]", "a[1]b", "[0]"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_and_lazy_json_agree() {
        let text = r#"{"Severity":3,"City":"Dallas \u00e9","a":{"b":[true,{"c":null}]},"d":[1,2]}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        let lazy = JsonObject::parse(text.as_bytes()).unwrap();
        for path in [
            "Severity",
            "City",
            "a.b[0]",
            "a.b[1].c",
            "a.b[1]",
            "d",
            "missing",
            "a.x",
            "Severity.x",
        ] {
            assert_eq!(value.field(&p(path)), lazy.field(&p(path)), "{path}");
        }
        assert_eq!(lazy.field(&p("Severity")).unwrap().as_f64(), Some(3.0));
        assert_eq!(lazy.field(&p("City")).unwrap().as_str(), Some("Dallas é"));
        assert_eq!(
            value.field(&p("d")),
            Some(FieldValue::Composite(json!([1, 2])))
        );
    }

    #[test]
    fn change_record_paths() {
        let r: ChangeRecord = serde_json::from_value(json!({
            "eventID": "e", "eventName": "MODIFY", "eventSource": "aws:dynamodb",
            "dynamodb": {"ApproximateCreationDateTime": 1_700_000_000_000_i64,
                "Keys": {"id": {"S": "k1"}},
                "NewImage": {"deviceID": {"S": "device3"}, "value": {"N": "72"}, "m": {"M": {"l": {"L": [{"N": "1"}]}}}},
                "OldImage": {"value": {"N": "50"}}}
        }))
        .unwrap();
        assert_eq!(
            r.field(&p("NewImage.deviceID")).unwrap().as_str(),
            Some("device3")
        );
        assert_eq!(
            r.field(&p("dynamodb.NewImage.value")).unwrap().as_f64(),
            Some(72.0)
        );
        assert_eq!(r.field(&p("OldImage.value")).unwrap().as_f64(), Some(50.0));
        assert_eq!(r.field(&p("Keys.id")).unwrap().as_str(), Some("k1"));
        assert_eq!(r.field(&p("NewImage.m.l[0]")).unwrap().as_f64(), Some(1.0));
        assert_eq!(r.field(&p("eventName")).unwrap().as_str(), Some("MODIFY"));
        assert_eq!(
            r.field(&p("ApproximateCreationDateTime")).unwrap().as_f64(),
            Some(1.7e15)
        );
        assert_eq!(r.field(&p("NewImage.nope")), None);
        assert_eq!(r.field(&p("eventName.x")), None);
    }

    #[test]
    fn deep_json_nesting_never_overflows_the_stack() {
        // Skipping a member is iterative in serde_json; parsing one is depth-limited (128).
        let deep = format!(
            "{{\"a\":{}{},\"b\":1}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let obj = JsonObject::parse(deep.as_bytes()).unwrap();
        assert_eq!(obj.field(&FieldPath::parse("a").unwrap()), None);
        assert_eq!(obj.field(&FieldPath::parse("a[0]").unwrap()), None);
        assert_eq!(
            obj.field(&FieldPath::parse("b").unwrap()).unwrap().as_f64(),
            Some(1.0)
        );
        let deep_obj = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert!(serde_json::from_str::<serde_json::Value>(&deep_obj).is_err());
    }
}
