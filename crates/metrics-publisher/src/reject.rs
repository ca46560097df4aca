//! The raw layer's reject path (docs/archive.md): one JSON line per record the function
//! skips as malformed, with its reason, its coordinates and its bytes, so bad data can be
//! found and replayed. `lib.rs` writes the lines to stdout past the `LogLevel` filter (as
//! EMF lines are); with the archive on, the template's subscription filter
//! `{ $.archive = "rejected" }` sends them through Firehose to `rejected/dt=…/hr=…/`.
//! No S3 or Firehose client in the function: the zip stays within its 4 MB budget.

use base64::Engine;
use serde::Serialize;

/// The value of the line's `archive` key the subscription filter selects.
pub const ARCHIVE_KEY_VALUE: &str = "rejected";
/// Bytes of a record kept in its line. CloudWatch Logs takes events of up to 256 KB;
/// base64 makes 64 KiB about 87 KB. A longer record is cut (`data_truncated`).
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// A rejected record and where it was in the stream.
#[derive(Debug, Clone)]
pub struct Reject<'a> {
    pub reason: String,
    pub shard: String,
    pub sequence: String,
    /// Position inside a KPL aggregate; None for a plain record or a broken aggregate.
    pub sub_sequence: Option<u64>,
    pub partition_key: String,
    /// The record's arrival in the stream (RFC 3339).
    pub arrival: String,
    /// The record's bytes as the stream held them.
    pub data: &'a [u8],
}

#[derive(Serialize)]
struct Line<'a> {
    /// Lambda's log-level filtering reads this key: a reject survives any
    /// `ApplicationLogLevel` up to WARN (the template keeps TRACE).
    level: &'static str,
    archive: &'static str,
    function: &'static str,
    reason: &'a str,
    shard: &'a str,
    sequence: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_sequence: Option<u64>,
    partition_key: &'a str,
    arrival: &'a str,
    /// Base64 of the record's bytes (at most [`MAX_DATA_BYTES`] of them).
    data: String,
    data_truncated: bool,
}

/// The reject as one JSON line (no trailing newline).
pub fn line(r: &Reject<'_>) -> String {
    let kept = &r.data[..r.data.len().min(MAX_DATA_BYTES)];
    let line = Line {
        level: "WARN",
        archive: ARCHIVE_KEY_VALUE,
        function: "metrics-publisher",
        reason: &r.reason,
        shard: &r.shard,
        sequence: &r.sequence,
        sub_sequence: r.sub_sequence,
        partition_key: &r.partition_key,
        arrival: &r.arrival,
        data: base64::engine::general_purpose::STANDARD.encode(kept),
        data_truncated: kept.len() < r.data.len(),
    };
    // A struct of strings, numbers and bools always serializes.
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reject_line_carries_reason_coordinates_and_the_bytes_back() {
        let data = vec![b'x'; MAX_DATA_BYTES + 10];
        let r = Reject {
            reason: "payload is not a JSON object".into(),
            shard: "shardId-000000000001".into(),
            sequence: "4960".into(),
            sub_sequence: Some(3),
            partition_key: "A-1".into(),
            arrival: "2026-11-30T12:00:00+00:00".into(),
            data: &data,
        };
        let v: serde_json::Value = serde_json::from_str(&line(&r)).unwrap();
        assert_eq!(v["archive"], "rejected");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["reason"], "payload is not a JSON object");
        assert_eq!(v["shard"], "shardId-000000000001");
        assert_eq!(v["sub_sequence"], 3);
        assert_eq!(v["data_truncated"], true);
        let back = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(back, data[..MAX_DATA_BYTES]);

        let short = Reject {
            data: b"{\"a\":",
            sub_sequence: None,
            ..r
        };
        let v: serde_json::Value = serde_json::from_str(&line(&short)).unwrap();
        assert!(v.get("sub_sequence").is_none());
        assert_eq!(v["data_truncated"], false);
        assert_eq!(v["data"], "eyJhIjo=");
    }
}
