//! `replay accidents --from-archive s3://BUCKET/PREFIX`: the backfill path of the raw layer
//! (docs/archive.md). Lists every object under the prefix (in key order: Firehose names
//! objects by delivery time, so a partition reads in the order it was delivered), reads
//! each (GZIP or plain) and hands its records, one per line, to the replay's sender as
//! rows. A record is re-sent with its own bytes, so `Txn_Timestamp` (the metrics' time) is
//! kept and a backfill reproduces the metrics it had. Lines of `rejected/` (the
//! metrics-publisher's reject lines) and `errors/` (Firehose error records) are sent as the
//! bytes they keep, so fixed-up bad data can be replayed too.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::Failure;
use crate::replay::{MAX_PARTITION_KEY_CHARS, Row};

/// `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub prefix: String,
}

impl S3Uri {
    pub fn parse(uri: &str) -> Result<Self, Failure> {
        let rest = uri.strip_prefix("s3://").ok_or_else(|| {
            Failure::usage(format!("--from-archive {uri}: expected s3://BUCKET/PREFIX"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Failure::usage(format!("--from-archive {uri}: no bucket")));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// An S3 client for the replay's AWS configuration (path-style, as emulators need; AWS
/// accepts it too).
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// The reader task: every record under the prefix as a row, paced by `rate`; returns the
/// records read. Fails when S3 cannot be listed or read.
pub async fn read(
    s3: aws_sdk_s3::Client,
    uri: S3Uri,
    key_field: String,
    start_row: u64,
    rate: Option<f64>,
    tx: mpsc::Sender<Row>,
) -> Result<u64, String> {
    let keys = list(&s3, &uri).await?;
    if keys.is_empty() {
        return Err(format!(
            "no objects under s3://{}/{}",
            uri.bucket, uri.prefix
        ));
    }
    let paced_from = Instant::now();
    let mut row: u64 = 0;
    for key in keys {
        let object = s3
            .get_object()
            .bucket(&uri.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "S3 GetObject {key}: {}",
                    crate::failure::SdkCall::read("GetObject", &e, "S3").line
                )
            })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| format!("S3 GetObject {key}: {e}"))?
            .into_bytes();
        let lines =
            streamwatch_local::archive::read_lines(&bytes).map_err(|e| format!("{key}: {e}"))?;
        for (i, line) in lines.into_iter().enumerate() {
            if row < start_row {
                row += 1;
                continue;
            }
            if let Some(rate) = rate {
                let due = paced_from + Duration::from_secs_f64((row - start_row) as f64 / rate);
                tokio::time::sleep_until(tokio::time::Instant::from(due)).await;
            }
            let out = match record(&line, &key_field) {
                Ok((partition_key, json)) => Row::Good {
                    row,
                    key: partition_key,
                    json,
                    offset: 0,
                },
                Err(reason) => Row::Bad {
                    row,
                    line: i as u64 + 1,
                    reason: format!("s3://{}/{key}: {reason}", uri.bucket),
                },
            };
            row += 1;
            if tx.send(out).await.is_err() {
                return Ok(row);
            }
        }
    }
    Ok(row)
}

/// Every object key under the prefix, in key order.
async fn list(s3: &aws_sdk_s3::Client, uri: &S3Uri) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&uri.bucket)
            .prefix(&uri.prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| {
                crate::failure::SdkCall::read(
                    &format!("S3 ListObjectsV2 s3://{}/{}", uri.bucket, uri.prefix),
                    &e,
                    "S3",
                )
                .line
            })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    Ok(keys)
}

/// One archived line → (partition key, the bytes to send).
fn record(line: &[u8], key_field: &str) -> Result<(String, Vec<u8>), String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("not a JSON record: {e}"))?;
    let b64 = |field: &str| {
        v[field]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .ok_or_else(|| format!("{field} is not base64"))
    };
    let (key, bytes) = if v["archive"] == "rejected" {
        if v["data_truncated"] == true {
            return Err("the reject line kept only part of the record (data_truncated)".into());
        }
        (
            v["partition_key"].as_str().unwrap_or("").to_owned(),
            b64("data")?,
        )
    } else if v.get("errorCode").is_some() && v.get("rawData").is_some() {
        let raw = b64("rawData")?;
        let key = serde_json::from_slice::<Value>(&raw)
            .ok()
            .and_then(|r| r[key_field].as_str().map(str::to_owned))
            .unwrap_or_else(|| "errors".to_owned());
        (key, raw)
    } else {
        let key = match &v[key_field] {
            Value::String(s) => s.clone(),
            Value::Null => return Err(format!("no {key_field} field for the partition key")),
            other => other.to_string(),
        };
        (key, line.to_vec())
    };
    if key.is_empty() || key.chars().count() > MAX_PARTITION_KEY_CHARS {
        return Err(format!(
            "partition key must hold 1 to {MAX_PARTITION_KEY_CHARS} characters"
        ));
    }
    Ok((key, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_the_three_kinds_of_archived_line() {
        let u = S3Uri::parse("s3://b/accidents/dt=2026-11-30/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("b", "accidents/dt=2026-11-30/")
        );
        assert!(S3Uri::parse("b/accidents").is_err());
        assert!(S3Uri::parse("s3:///x").is_err());

        let plain = br#"{"ID":"A-1","Severity":3}"#;
        assert_eq!(record(plain, "ID").unwrap(), ("A-1".into(), plain.to_vec()));
        assert!(record(br#"{"Severity":3}"#, "ID").is_err());
        let reject = br#"{"archive":"rejected","partition_key":"A-9","data":"bm90IGpzb24=","data_truncated":false}"#;
        assert_eq!(
            record(reject, "ID").unwrap(),
            ("A-9".into(), b"not json".to_vec())
        );
        let cut =
            br#"{"archive":"rejected","partition_key":"A-9","data":"bm90","data_truncated":true}"#;
        assert!(record(cut, "ID").is_err());
        let error = br#"{"errorCode":"DynamicPartitioning.MetadataExtractionFailed","rawData":"eyJJRCI6IkEtNSJ9"}"#;
        assert_eq!(
            record(error, "ID").unwrap(),
            ("A-5".into(), br#"{"ID":"A-5"}"#.to_vec())
        );
    }
}
