//! DynamoDB change records as Kinesis Data Streams for DynamoDB delivers them, and
//! DynamoDB JSON (`{"S": …}`, `{"N": …}`, …) with conversion to plain JSON.
//!
//! Parsed with our own types because `aws_lambda_events` reads `ApproximateCreationDateTime`
//! as seconds, while this feature sends milliseconds or microseconds.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use crate::time::{Precision, infer_precision};

/// One DynamoDB attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttributeValue {
    S(String),
    /// Numbers stay text: DynamoDB numbers have 38 digits of precision.
    N(String),
    B(#[serde(with = "b64")] Vec<u8>),
    #[serde(rename = "BOOL")]
    Bool(bool),
    #[serde(rename = "NULL")]
    Null(bool),
    M(BTreeMap<String, AttributeValue>),
    L(Vec<AttributeValue>),
    #[serde(rename = "SS")]
    Ss(Vec<String>),
    #[serde(rename = "NS")]
    Ns(Vec<String>),
    #[serde(rename = "BS")]
    Bs(#[serde(with = "b64_vec")] Vec<Vec<u8>>),
}

/// A DynamoDB item (or key, or image).
pub type Item = BTreeMap<String, AttributeValue>;

impl AttributeValue {
    /// Plain JSON: numbers become JSON numbers when they fit (else stay strings), binary
    /// becomes base64, sets become arrays.
    pub fn to_json(&self) -> Value {
        match self {
            Self::S(s) => Value::String(s.clone()),
            Self::N(n) => number_to_json(n),
            Self::B(b) => Value::String(B64.encode(b)),
            Self::Bool(b) => Value::Bool(*b),
            Self::Null(_) => Value::Null,
            Self::M(m) => item_to_json(m),
            Self::L(l) => Value::Array(l.iter().map(Self::to_json).collect()),
            Self::Ss(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
            Self::Ns(v) => Value::Array(v.iter().map(|n| number_to_json(n)).collect()),
            Self::Bs(v) => Value::Array(v.iter().map(|b| Value::String(B64.encode(b))).collect()),
        }
    }
}

/// A DynamoDB number as a JSON number: integers exactly when they fit in 64 bits, other
/// values as f64 when finite; anything else (e.g. `1E+130` beyond f64) stays a string.
pub fn number_to_json(n: &str) -> Value {
    if let Ok(i) = n.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = n.parse::<u64>() {
        return Value::from(u);
    }
    match n.parse::<f64>() {
        Ok(f) if f.is_finite() => Value::from(f),
        _ => Value::String(n.to_owned()),
    }
}

/// An item as a plain JSON object.
pub fn item_to_json(item: &Item) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

/// INSERT, MODIFY or REMOVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventName {
    Insert,
    Modify,
    Remove,
}

/// A change record from Kinesis Data Streams for DynamoDB.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ChangeRecord {
    #[serde(rename = "awsRegion", default)]
    pub aws_region: Option<String>,
    /// Unique per change: the same change delivered twice carries the same id.
    #[serde(rename = "eventID")]
    pub event_id: String,
    #[serde(rename = "eventName")]
    pub event_name: EventName,
    #[serde(rename = "userIdentity", default)]
    pub user_identity: Option<Value>,
    #[serde(rename = "recordFormat", default)]
    pub record_format: Option<String>,
    #[serde(rename = "tableName", default)]
    pub table_name: Option<String>,
    pub dynamodb: StreamRecord,
    #[serde(rename = "eventSource", default)]
    pub event_source: Option<String>,
}

/// The `dynamodb` part of a change record.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawStreamRecord", into = "RawStreamRecord")]
pub struct StreamRecord {
    /// Creation time in microseconds since the epoch, whatever unit the payload used.
    pub creation_time_micros: i64,
    /// The unit the payload used (named, or inferred from the magnitude).
    pub precision: Precision,
    pub keys: Item,
    pub new_image: Option<Item>,
    pub old_image: Option<Item>,
    pub size_bytes: Option<u64>,
}

#[derive(Deserialize, Serialize)]
struct RawStreamRecord {
    #[serde(rename = "ApproximateCreationDateTime")]
    approximate_creation_date_time: serde_json::Number,
    #[serde(
        rename = "ApproximateCreationDateTimePrecision",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    precision: Option<Precision>,
    #[serde(rename = "Keys", default)]
    keys: Item,
    #[serde(rename = "NewImage", default, skip_serializing_if = "Option::is_none")]
    new_image: Option<Item>,
    #[serde(rename = "OldImage", default, skip_serializing_if = "Option::is_none")]
    old_image: Option<Item>,
    #[serde(rename = "SizeBytes", default, skip_serializing_if = "Option::is_none")]
    size_bytes: Option<u64>,
}

impl TryFrom<RawStreamRecord> for StreamRecord {
    type Error = String;

    fn try_from(raw: RawStreamRecord) -> Result<Self, Self::Error> {
        let value = raw
            .approximate_creation_date_time
            .as_f64()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or("ApproximateCreationDateTime is not a non-negative number")?;
        let precision = raw.precision.unwrap_or_else(|| infer_precision(value));
        let micros = match precision {
            Precision::Microsecond => value,
            Precision::Millisecond => value * 1e3,
            Precision::Second => value * 1e6,
        };
        // Beyond the year 2262 chrono cannot represent it anyway; such a value is garbage.
        if micros > 9.2e18 {
            return Err("ApproximateCreationDateTime out of range".into());
        }
        Ok(Self {
            creation_time_micros: micros.round() as i64,
            precision,
            keys: raw.keys,
            new_image: raw.new_image,
            old_image: raw.old_image,
            size_bytes: raw.size_bytes,
        })
    }
}

impl From<StreamRecord> for RawStreamRecord {
    fn from(r: StreamRecord) -> Self {
        let (number, precision) = match r.precision {
            Precision::Microsecond => (
                serde_json::Number::from(r.creation_time_micros),
                Some(Precision::Microsecond),
            ),
            Precision::Millisecond => (
                serde_json::Number::from(r.creation_time_micros / 1000),
                Some(Precision::Millisecond),
            ),
            Precision::Second => (
                serde_json::Number::from(r.creation_time_micros / 1_000_000),
                None,
            ),
        };
        Self {
            approximate_creation_date_time: number,
            precision,
            keys: r.keys,
            new_image: r.new_image,
            old_image: r.old_image,
            size_bytes: r.size_bytes,
        }
    }
}

impl ChangeRecord {
    /// Parses a change record payload (the bytes of one Kinesis user record).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Creation time, in microseconds since the epoch.
    pub fn creation_time_micros(&self) -> i64 {
        self.dynamodb.creation_time_micros
    }

    /// The payload with every image unmarshalled to plain JSON, other fields as delivered.
    pub fn to_plain_json(&self) -> Value {
        let mut dynamodb = serde_json::Map::new();
        let raw = RawStreamRecord::from(self.dynamodb.clone());
        dynamodb.insert(
            "ApproximateCreationDateTime".into(),
            Value::Number(raw.approximate_creation_date_time),
        );
        if let Some(p) = raw.precision {
            dynamodb.insert(
                "ApproximateCreationDateTimePrecision".into(),
                serde_json::to_value(p).unwrap_or(Value::Null),
            );
        }
        dynamodb.insert("Keys".into(), item_to_json(&self.dynamodb.keys));
        if let Some(img) = &self.dynamodb.new_image {
            dynamodb.insert("NewImage".into(), item_to_json(img));
        }
        if let Some(img) = &self.dynamodb.old_image {
            dynamodb.insert("OldImage".into(), item_to_json(img));
        }
        if let Some(size) = self.dynamodb.size_bytes {
            dynamodb.insert("SizeBytes".into(), size.into());
        }
        let mut out = serde_json::Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                out.insert(k.to_owned(), v);
            }
        };
        put("awsRegion", self.aws_region.clone().map(Value::String));
        put("eventID", Some(Value::String(self.event_id.clone())));
        put("eventName", serde_json::to_value(self.event_name).ok());
        put(
            "userIdentity",
            Some(self.user_identity.clone().unwrap_or(Value::Null)),
        );
        put(
            "recordFormat",
            self.record_format.clone().map(Value::String),
        );
        put("tableName", self.table_name.clone().map(Value::String));
        put("dynamodb", Some(Value::Object(dynamodb)));
        put("eventSource", self.event_source.clone().map(Value::String));
        Value::Object(out)
    }
}

/// True when a JSON payload looks like a DynamoDB change record.
pub fn looks_like_change_record(value: &Value) -> bool {
    value.get("eventSource").and_then(Value::as_str) == Some("aws:dynamodb")
        && value.get("dynamodb").is_some_and(Value::is_object)
}

mod b64 {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

mod b64_vec {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| B64.encode(b)))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| B64.decode(s.as_bytes()).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(ts: Value, precision: Option<&str>) -> Value {
        let mut dynamodb = json!({
            "ApproximateCreationDateTime": ts,
            "Keys": {"id": {"S": "k"}},
            "NewImage": {
                "id": {"S": "k"}, "deviceID": {"S": "device1"}, "value": {"N": "61"},
                "ok": {"BOOL": true}, "gone": {"NULL": true}, "blob": {"B": "AAE="},
                "tags": {"SS": ["a", "b"]}, "nums": {"NS": ["1", "2.5"]}, "blobs": {"BS": ["AA=="]},
                "nested": {"M": {"list": {"L": [{"N": "1"}, {"S": "x"}]}}},
                "huge": {"N": "1E+130"}, "big": {"N": "12345678901234567890123456789012345678"}
            },
            "SizeBytes": 10
        });
        if let Some(p) = precision {
            dynamodb["ApproximateCreationDateTimePrecision"] = json!(p);
        }
        json!({"awsRegion": "us-east-1", "eventID": "e1", "eventName": "INSERT", "userIdentity": null,
               "recordFormat": "application/json", "tableName": "t", "dynamodb": dynamodb,
               "eventSource": "aws:dynamodb"})
    }

    #[test]
    fn timestamps_in_every_precision() {
        let micros = 1_795_262_400_542_892_i64;
        for (ts, p, want) in [
            (json!(micros), Some("MICROSECOND"), micros),
            (
                json!(micros / 1000),
                Some("MILLISECOND"),
                micros / 1000 * 1000,
            ),
            (json!(micros), None, micros),
            (json!(micros / 1000), None, micros / 1000 * 1000),
            (json!(1_795_262_400), None, 1_795_262_400_000_000),
            (json!(1_795_262_400.5), None, 1_795_262_400_500_000),
        ] {
            let r: ChangeRecord = serde_json::from_value(record(ts.clone(), p)).unwrap();
            assert_eq!(r.creation_time_micros(), want, "{ts} {p:?}");
        }
        assert!(serde_json::from_value::<ChangeRecord>(record(json!(-1), None)).is_err());
        assert!(serde_json::from_value::<ChangeRecord>(record(json!("soon"), None)).is_err());
    }

    #[test]
    fn unmarshals_every_type_to_plain_json() {
        let r: ChangeRecord =
            serde_json::from_value(record(json!(1_795_262_400_000_000_i64), None)).unwrap();
        let plain = r.to_plain_json();
        assert_eq!(
            plain["dynamodb"]["NewImage"],
            json!({
                "id": "k", "deviceID": "device1", "value": 61, "ok": true, "gone": null,
                "blob": "AAE=", "tags": ["a", "b"], "nums": [1, 2.5], "blobs": ["AA=="],
                "nested": {"list": [1, "x"]}, "huge": 1e130,
                "big": 1.2345678901234568e37
            })
        );
        assert_eq!(number_to_json("1E+400"), json!("1E+400"));
        assert_eq!(plain["eventName"], json!("INSERT"));
        // Round trip through our serialisation keeps the record.
        let again: ChangeRecord =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn windspeed_fixture_decodes() {
        let event = crate::record::parse_event(include_bytes!(
            "../../../tests/fixtures/kinesis-windspeed-changes.json"
        ))
        .unwrap();
        let mut names = BTreeMap::new();
        for p in crate::record::parents(&event) {
            for u in p.user_records().unwrap() {
                let r = ChangeRecord::from_slice(u.data).unwrap();
                *names.entry(format!("{:?}", r.event_name)).or_insert(0) += 1;
            }
        }
        assert_eq!(names.values().sum::<i32>(), 60);
        assert_eq!(names["Insert"], 53);
    }
}
