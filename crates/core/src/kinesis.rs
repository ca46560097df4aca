//! The Lambda Kinesis event envelope, with our own serde types.
//!
//! `aws_lambda_events`' `KinesisRecord` reads `approximateArrivalTimestamp` by splitting its
//! decimal text, so `1795262400.942892` (six decimals, as the fixtures and the
//! DynamoDB-to-Kinesis feature produce) fails the *whole event* with "invalid timestamp",
//! and `1.5` reads as 1.005 s. A bad record must never fail a batch, so the envelope here
//! takes the timestamp as a plain number and keeps a record whose base64 is broken as a
//! per-record error instead of failing deserialisation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Lambda Kinesis event: `{"Records": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct KinesisEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<KinesisEventRecord>,
}

/// One Kinesis record as Lambda delivers it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisEventRecord {
    pub kinesis: KinesisRecord,
    #[serde(rename = "eventID", default)]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke_identity_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    #[serde(
        rename = "eventSourceARN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub event_source_arn: Option<String>,
}

/// The `kinesis` member of a record.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis_schema_version: Option<String>,
    #[serde(default)]
    pub partition_key: String,
    #[serde(default)]
    pub sequence_number: String,
    pub data: Data,
    /// Seconds since the epoch, with a fraction.
    #[serde(default)]
    pub approximate_arrival_timestamp: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_type: Option<String>,
}

impl KinesisRecord {
    pub fn arrival(&self) -> DateTime<Utc> {
        let micros = (self.approximate_arrival_timestamp * 1e6).round();
        if micros.is_finite() && micros.abs() < 9.2e18 {
            DateTime::from_timestamp_micros(micros as i64).unwrap_or_default()
        } else {
            DateTime::default()
        }
    }
}

/// A record's data: its decoded bytes, or why the base64 could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data(pub Result<Vec<u8>, String>);

impl Default for Data {
    fn default() -> Self {
        Self(Ok(Vec::new()))
    }
}

impl From<Vec<u8>> for Data {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Ok(bytes))
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read as bytes: base64 is ASCII and its decoder rejects anything else, so the
        // string's UTF-8 validation (a tenth of a batch's decode time) is skipped.
        let text = d.deserialize_bytes(BytesVisitor)?;
        // SIMD first (the envelope is most of a batch's bytes); the scalar decoder only to
        // say what is wrong with data the fast one refused.
        Ok(Self(
            base64_simd::STANDARD
                .decode_to_vec(&*text)
                .or_else(|_| B64.decode(&*text))
                .map_err(|e| format!("data is not base64: {e}")),
        ))
    }
}

/// A JSON string's bytes, borrowed when it has no escapes.
struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = std::borrow::Cow<'de, [u8]>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_vec()))
    }
    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v))
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v.as_bytes()))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.as_bytes().to_vec()))
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(bytes) => s.serialize_str(&B64.encode(bytes)),
            Err(_) => s.serialize_str(""),
        }
    }
}
