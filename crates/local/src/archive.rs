//! The raw layer where Firehose is not (docs/archive.md): what a delivery stream does with a
//! batch of Kinesis records, for `streamwatch dev run` (objects into the emulator's S3) and
//! the demo (files under `target/demo-archive/`). KPL aggregates are de-aggregated (Firehose
//! does so for a stream source), each user record's partition keys come from the delivery
//! stream's query (core `archive`), records group by rendered prefix into one GZIP object
//! of JSON lines per prefix; a record without keys goes under the error prefix in Firehose's
//! error-record form.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use streamwatch_core::archive::{PartitionQuery, lines, render_prefix};
use streamwatch_core::kpl::{Payload, deaggregate};

/// Firehose's error code for a record its dynamic partitioning query could not read.
pub const EXTRACTION_FAILED: &str = "DynamicPartitioning.MetadataExtractionFailed";

/// How one delivery stream lays out what it delivers.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Dynamic partitioning query (None: the prefix uses only `!{timestamp:…}`).
    pub query: Option<PartitionQuery>,
    pub prefix: String,
    pub error_prefix: String,
}

/// One Kinesis record as read from a shard.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub data: Vec<u8>,
    pub arrival: DateTime<Utc>,
}

/// Objects to write: prefix → the record lines under it, in stream order.
pub type Objects = BTreeMap<String, Vec<Vec<u8>>>;

impl Layout {
    /// Where each user record of `records` goes; `now` stands for the delivery time (the
    /// error records' `attemptEndingTimestamp`).
    pub fn place(&self, records: &[StreamRecord], now: DateTime<Utc>) -> Objects {
        let mut out = Objects::new();
        for r in records {
            let users: Vec<&[u8]> = match deaggregate(&r.data) {
                Ok(Payload::Plain(data)) => vec![data],
                Ok(Payload::Aggregated(subs)) => subs.iter().map(|s| s.data).collect(),
                Err(e) => {
                    self.error(&mut out, &r.data, r.arrival, now, &format!("KPL: {e}"));
                    continue;
                }
            };
            for data in users {
                self.place_one(&mut out, data, r.arrival, now);
            }
        }
        out
    }

    /// A record as it arrives from outside a stream (a log line): placed by arrival time.
    pub fn place_one(
        &self,
        out: &mut Objects,
        data: &[u8],
        arrival: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let keys = match &self.query {
            None => Ok(BTreeMap::new()),
            Some(q) => serde_json::from_slice(data)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|v| q.extract(&v)),
        };
        let placed = keys.and_then(|k| render_prefix(&self.prefix, &k, arrival, None));
        match placed {
            Ok(prefix) => out.entry(prefix).or_default().push(data.to_vec()),
            Err(reason) => self.error(out, data, arrival, now, &reason),
        }
    }

    fn error(
        &self,
        out: &mut Objects,
        data: &[u8],
        arrival: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) {
        let record = serde_json::json!({
            "attemptsMade": 1,
            "arrivalTimestamp": arrival.timestamp_millis(),
            "errorCode": EXTRACTION_FAILED,
            "errorMessage": reason,
            "attemptEndingTimestamp": now.timestamp_millis(),
            "rawData": base64::engine::general_purpose::STANDARD.encode(data),
        });
        // The error prefix has no partition keys, only timestamps and the error type.
        let prefix = render_prefix(
            &self.error_prefix,
            &BTreeMap::new(),
            arrival,
            Some("processing-failed"),
        )
        .unwrap_or_else(|_| "errors/".to_owned());
        out.entry(prefix)
            .or_default()
            .push(record.to_string().into_bytes());
    }
}

/// The template's three delivery streams (name, prefix, error prefix, query), for the
/// demo, which runs without template.yaml; tests/tests/template.rs checks them against it.
pub const TEMPLATE_FEEDS: [(&str, &str, &str, Option<&str>); 3] = [
    (
        "streamwatch-accidents-archive",
        "accidents/dt=!{partitionKeyFromQuery:dt}/hr=!{partitionKeyFromQuery:hr}/",
        "errors/accidents/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/",
        Some("{dt: .Txn_Timestamp[0:10], hr: .Txn_Timestamp[11:13]}"),
    ),
    (
        "streamwatch-readings-archive",
        "readings/dt=!{partitionKeyFromQuery:dt}/hr=!{partitionKeyFromQuery:hr}/",
        "errors/readings/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/",
        Some(
            r#"{dt: (.dynamodb.ApproximateCreationDateTime / 1000000 | floor | strftime("%Y-%m-%d")), hr: (.dynamodb.ApproximateCreationDateTime / 1000000 | floor | strftime("%H"))}"#,
        ),
    ),
    (
        "streamwatch-rejects-archive",
        "rejected/dt=!{timestamp:yyyy-MM-dd}/hr=!{timestamp:HH}/",
        "errors/rejected/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/",
        None,
    ),
];

/// What the demo's embedded pipeline sends through its streams, kept for the raw layer.
#[derive(Debug, Default)]
pub struct Collector {
    pub accidents: Vec<StreamRecord>,
    pub readings: Vec<StreamRecord>,
    /// The metrics-publisher's reject lines and when they were written.
    pub rejects: Vec<(Vec<u8>, DateTime<Utc>)>,
}

impl Collector {
    /// Writes the layout Firehose would make in S3 as files under `dir` (the top prefixes
    /// of an earlier run are removed first); returns (records, objects) written.
    pub fn write(&self, dir: &std::path::Path, now: DateTime<Utc>) -> std::io::Result<(u64, u64)> {
        for top in ["accidents", "readings", "rejected", "errors"] {
            let _ = std::fs::remove_dir_all(dir.join(top));
        }
        let (mut records, mut objects) = (0, 0);
        for (i, (name, prefix, error_prefix, query)) in TEMPLATE_FEEDS.iter().enumerate() {
            let layout = Layout {
                query: query.and_then(|q| PartitionQuery::parse(q).ok()),
                prefix: (*prefix).to_owned(),
                error_prefix: (*error_prefix).to_owned(),
            };
            let placed = match i {
                0 => layout.place(&self.accidents, now),
                1 => layout.place(&self.readings, now),
                _ => {
                    let mut out = Objects::new();
                    for (line, at) in &self.rejects {
                        layout.place_one(&mut out, line, *at, now);
                    }
                    out
                }
            };
            for (n, (prefix, lines)) in placed.iter().enumerate() {
                let path = dir.join(prefix);
                std::fs::create_dir_all(&path)?;
                // Deterministic names (the demo is): a counter where Firehose has a UUID.
                let file =
                    streamwatch_core::archive::object_name(name, now, &format!("{n:04}"), true);
                std::fs::write(path.join(file), gzip_lines(lines))?;
                records += lines.len() as u64;
                objects += 1;
            }
        }
        Ok((records, objects))
    }
}

/// An object's body: the lines, GZIP-compressed (the template's `CompressionFormat`).
pub fn gzip_lines(records: &[Vec<u8>]) -> Vec<u8> {
    let body = lines(records.iter().map(Vec::as_slice));
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(&body);
    encoder.finish().unwrap_or_default()
}

/// An archived object's records: GZIP (one or more members) or plain, one per line.
pub fn read_lines(object: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let body = if object.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        MultiGzDecoder::new(object)
            .read_to_end(&mut out)
            .map_err(|e| format!("not a GZIP object: {e}"))?;
        out
    } else {
        object.to_vec()
    };
    Ok(body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamwatch_core::kpl::Aggregator;

    fn accidents() -> Layout {
        Layout {
            query: Some(
                PartitionQuery::parse("{dt: .Txn_Timestamp[0:10], hr: .Txn_Timestamp[11:13]}")
                    .unwrap(),
            ),
            prefix: "accidents/dt=!{partitionKeyFromQuery:dt}/hr=!{partitionKeyFromQuery:hr}/"
                .into(),
            error_prefix:
                "errors/accidents/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/".into(),
        }
    }

    #[test]
    fn aggregates_are_opened_and_each_record_lands_in_its_hour() {
        let at = DateTime::<Utc>::from_timestamp(1_796_081_400, 0).unwrap();
        let a = br#"{"ID":"A-1","Txn_Timestamp":"2026-11-30T07:10:00"}"#;
        let b = br#"{"ID":"A-2","Txn_Timestamp":"2026-11-30T08:10:00"}"#;
        let mut agg = Aggregator::new(1 << 20);
        assert!(agg.add("A-1", None, a).unwrap().is_none());
        assert!(agg.add("A-2", None, b).unwrap().is_none());
        let aggregated = agg.finish().unwrap().data;
        let records = vec![
            StreamRecord {
                data: aggregated,
                arrival: at,
            },
            StreamRecord {
                data: b"not json".to_vec(),
                arrival: at,
            },
        ];
        let objects = accidents().place(&records, at);
        assert_eq!(objects["accidents/dt=2026-11-30/hr=07/"], vec![a.to_vec()]);
        assert_eq!(objects["accidents/dt=2026-11-30/hr=08/"], vec![b.to_vec()]);
        let errors = &objects["errors/accidents/processing-failed/dt=2026-11-30/"];
        let e: serde_json::Value = serde_json::from_slice(&errors[0]).unwrap();
        assert_eq!(e["errorCode"], EXTRACTION_FAILED);
        assert_eq!(e["rawData"], "bm90IGpzb24=");
        let body = gzip_lines(&objects["accidents/dt=2026-11-30/hr=07/"]);
        assert_eq!(read_lines(&body).unwrap(), vec![a.to_vec()]);
    }
}
