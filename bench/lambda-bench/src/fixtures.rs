//! Events for the warm-invocation runs that must differ from round to round: a batch the
//! window-aggregator or the alerter has already applied is (correctly) a no-op the second
//! time, so replaying one fixture would time the duplicate path, not the work.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// One shard's Kinesis batch of Kinesis-Data-Streams-for-DynamoDB change records (INSERTs
/// of the reference readings table), `records` of them, `turbines` turbines at one reading
/// per second each from `start`, on shard `shard`. Turbine ids carry `shard` and `round`,
/// so every series and round writes windows of its own; `seq` numbers the records across
/// rounds, as a shard's sequence numbers grow.
pub fn change_event(
    shard: usize,
    records: usize,
    turbines: usize,
    round: usize,
    start: DateTime<Utc>,
    seq: &mut u64,
) -> Vec<u8> {
    let turbines = turbines.max(1);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ round as u64;
    let mut out = Vec::with_capacity(records);
    for n in 0..records {
        let device = format!("s{shard}-r{round}-device{}", n % turbines + 1);
        let at = start + chrono::Duration::milliseconds((n / turbines) as i64 * 1000 + 542);
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // The reference simulator's range: integer mph in [25, 70).
        let value = 25 + (rng >> 33) % 45;
        let id = format!("{round:08x}-0000-4000-8000-{n:012x}");
        let micros = at.timestamp_micros();
        let iso = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let change = json!({
            "awsRegion": "us-east-1",
            "eventID": format!("{n:08x}-1471-1397-aa83-{round:012x}"),
            "eventName": "INSERT",
            "userIdentity": null,
            "recordFormat": "application/json",
            "tableName": "streamwatch-ReadingsTable",
            "dynamodb": {
                "ApproximateCreationDateTime": micros,
                "ApproximateCreationDateTimePrecision": "MICROSECOND",
                "Keys": {"id": {"S": id}},
                "SizeBytes": 180,
                "NewImage": {
                    "id": {"S": id},
                    "deviceID": {"S": device},
                    "value": {"N": value.to_string()},
                    "index": {"N": (n / turbines).to_string()},
                    "createdAt": {"S": iso},
                    "updatedAt": {"S": iso},
                    "__typename": {"S": "windspeed"}
                }
            },
            "eventSource": "aws:dynamodb"
        });
        *seq += 1;
        let sequence = format!("4959033827149025660855969253836157109592{:016}", *seq);
        out.push(json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": id,
                "sequenceNumber": sequence,
                "data": B64.encode(change.to_string()),
                "approximateArrivalTimestamp": micros as f64 / 1e6 + 0.4
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-{shard:012}:{sequence}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/streamwatch-window-aggregator",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/streamwatch-ReadingsStream"
        }));
    }
    json!({ "Records": out }).to_string().into_bytes()
}

/// `records` copies of the first record of `template` (an alerts-table stream event such
/// as `events/alerter-firing.json`), each a distinct alert of a distinct key in `round`, so
/// every one is a new notification.
pub fn alert_event(template: &Value, records: usize, round: usize) -> anyhow::Result<Vec<u8>> {
    let first = template
        .pointer("/Records/0")
        .ok_or_else(|| anyhow::anyhow!("the alerter template event has no Records[0]"))?;
    let alert_json = first
        .pointer("/dynamodb/NewImage/alert/S")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("the alerter template has no NewImage.alert.S"))?;
    let alert: Value = serde_json::from_str(alert_json)?;
    let mut out = Vec::with_capacity(records);
    for n in 0..records {
        let key = format!("r{round}-device{n}");
        let id = format!("windspeed-avg#{key}#1795262400000000#firing");
        let mut alert = alert.clone();
        alert["id"] = json!(id);
        alert["key"] = json!(key);
        let mut record = first.clone();
        record["eventID"] = json!(format!("{round:016x}{n:016x}"));
        record["dynamodb"]["SequenceNumber"] = json!(format!("44215845{round:08}{n:012}"));
        record["dynamodb"]["Keys"]["alert_id"]["S"] = json!(id);
        let image = &mut record["dynamodb"]["NewImage"];
        image["alert_id"]["S"] = json!(id);
        image["key"]["S"] = json!(key);
        image["alert"]["S"] = json!(alert.to_string());
        out.push(record);
    }
    Ok(json!({ "Records": out }).to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_events_are_distinct_per_round_and_decode() {
        let start = DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let mut seq = 0;
        let a: Value = serde_json::from_slice(&change_event(2, 100, 5, 0, start, &mut seq))
            .unwrap_or_default();
        let b: Value = serde_json::from_slice(&change_event(2, 100, 5, 1, start, &mut seq))
            .unwrap_or_default();
        assert_eq!(seq, 200);
        let records = a["Records"].as_array().cloned().unwrap_or_default();
        assert_eq!(records.len(), 100);
        let data = records[7]["kinesis"]["data"].as_str().unwrap_or_default();
        let change: Value =
            serde_json::from_slice(&B64.decode(data).unwrap_or_default()).unwrap_or_default();
        let image = &change["dynamodb"]["NewImage"];
        assert_eq!(image["deviceID"]["S"], "s2-r0-device3");
        assert_eq!(
            records[7]["eventID"]
                .as_str()
                .map(|s| s.starts_with("shardId-000000000002:")),
            Some(true)
        );
        assert_eq!(image["createdAt"]["S"], "2026-11-21T12:00:01.542Z");
        assert_ne!(
            a["Records"][0]["kinesis"]["sequenceNumber"],
            b["Records"][0]["kinesis"]["sequenceNumber"]
        );
    }

    #[test]
    fn alert_events_rewrite_every_id() {
        let template = json!({"Records": [{"eventID": "x", "dynamodb": {
            "SequenceNumber": "1", "Keys": {"alert_id": {"S": "a"}},
            "NewImage": {"alert_id": {"S": "a"}, "key": {"S": "device3"},
                         "alert": {"S": "{\"id\":\"a\",\"key\":\"device3\",\"kind\":\"firing\"}"}}}}]});
        let event: Value = alert_event(&template, 3, 2)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let r = &event["Records"][2]["dynamodb"];
        assert_eq!(r["Keys"]["alert_id"]["S"], r["NewImage"]["alert_id"]["S"]);
        let inner: Value = serde_json::from_str(r["NewImage"]["alert"]["S"].as_str().unwrap_or(""))
            .unwrap_or_default();
        assert_eq!(inner["id"], r["NewImage"]["alert_id"]["S"]);
        assert_eq!(inner["key"], "r2-device2");
        assert_eq!(inner["kind"], "firing");
    }
}
