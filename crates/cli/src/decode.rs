//! `streamwatch decode`: one JSON line per user record of a Lambda Kinesis event, in the
//! layout of the reference de-aggregator's output (see `tests/fixtures/*.expected.jsonl`).

use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use serde_json::Value;
use streamwatch_core::change::{ChangeRecord, looks_like_change_record};
use streamwatch_core::record::{self, UserRecord};

/// How to print each record's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormat {
    /// The bytes, base64-encoded (what the reference de-aggregator prints).
    Base64,
    /// The payload parsed as JSON; change records unmarshalled to plain JSON.
    Json,
}

/// What decoding an event found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub user_records: usize,
    pub malformed: usize,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "shardId")]
    shard_id: &'a str,
    #[serde(rename = "sequenceNumber")]
    sequence_number: &'a str,
    #[serde(rename = "subSequenceNumber")]
    sub_sequence_number: Option<u64>,
    #[serde(rename = "partitionKey")]
    partition_key: &'a str,
    #[serde(rename = "explicitHashKey")]
    explicit_hash_key: Option<&'a str>,
    data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// Decodes `event` (the bytes of a Lambda Kinesis event) to `out`, malformed records to `err`.
/// Returns an error only when the input is not a Kinesis event at all.
pub fn decode(
    event: &[u8],
    format: DataFormat,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Summary, DecodeError> {
    let event = record::parse_event(event).map_err(DecodeError::NotAnEvent)?;
    let mut summary = Summary::default();
    for parent in record::parents(&event) {
        match parent.user_records() {
            Ok(users) => {
                for user in users {
                    write_line(&user, format, out)?;
                    summary.user_records += 1;
                }
            }
            Err(malformed) => {
                summary.malformed += 1;
                writeln!(
                    err,
                    "malformed record: shard {} sequence {}: {}",
                    malformed.shard_id, malformed.sequence_number, malformed.error
                )?;
            }
        }
    }
    Ok(summary)
}

fn write_line(
    user: &UserRecord<'_>,
    format: DataFormat,
    out: &mut impl Write,
) -> Result<(), DecodeError> {
    let (data, note) = match format {
        DataFormat::Base64 => (Value::String(B64.encode(user.data)), None),
        DataFormat::Json => match serde_json::from_slice::<Value>(user.data) {
            Ok(value) if looks_like_change_record(&value) => {
                match ChangeRecord::from_slice(user.data) {
                    Ok(change) => (change.to_plain_json(), None),
                    Err(e) => (
                        value,
                        Some(format!(
                            "not a valid change record, shown as delivered: {e}"
                        )),
                    ),
                }
            }
            Ok(value) => (value, None),
            Err(e) => (
                Value::String(B64.encode(user.data)),
                Some(format!("not JSON ({e}); data shown as base64")),
            ),
        },
    };
    let line = Line {
        shard_id: user.shard_id,
        sequence_number: user.sequence_number,
        sub_sequence_number: user.sub_sequence_number,
        partition_key: user.partition_key,
        explicit_hash_key: user.explicit_hash_key,
        data,
        note,
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, PythonFormatter);
    line.serialize(&mut ser).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a Lambda Kinesis event: {0}")]
    NotAnEvent(#[source] serde_json::Error),
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

/// Python's `json.dumps` separators (`", "` and `": "`) on one line, so our output is
/// byte-for-byte comparable with the reference de-aggregator's.
#[derive(Default)]
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}
