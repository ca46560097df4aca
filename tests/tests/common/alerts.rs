//! The alert scenario of the alerter tests: turbine firing episodes and accident alerts as
//! DynamoDB stream records of the alerts table, with the notifications they must produce,
//! and the reader of what moto's SNS topic holds afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, ShardIteratorType};
use serde_json::{Value, json};
use streamwatch_adapters::alerts::alert_item;
use streamwatch_core::alert::{event_alert_id, window_alert_id};
use streamwatch_core::{AlertKind, AlertRecord, WindowSummary};
use streamwatch_emulator::stream::{
    StreamPosition, attribute, insert_record as insert_record_json,
};
use streamwatch_tests::MotoServer;

use super::Rng;

const T0: i64 = super::T0;
const MIN: i64 = super::MIN;

/// The alerter's settings in these tests: its defaults, but no wait for a claim another
/// invocation holds (the test's retry comes at once) and a millisecond retry backoff.
pub fn alerter_settings() -> alerter::Settings {
    alerter::Settings {
        claim_wait: Duration::ZERO,
        retry: alerter::Backoff {
            attempts: 3,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
        },
        ..alerter::Settings::default()
    }
}

pub fn window_alert(key: &str, window: i64, kind: AlertKind) -> AlertRecord {
    let start = T0 + window * MIN;
    let avg = if kind == AlertKind::Resolved {
        41.5
    } else {
        72.4
    };
    AlertRecord {
        id: window_alert_id("windspeed-avg", key, start, kind),
        rule: "windspeed-avg".into(),
        key: key.into(),
        kind,
        severity: "critical".into(),
        summary: format!("Wind speed avg {avg} mph on {key}"),
        event_time_micros: start + MIN,
        window: Some(WindowSummary {
            start_micros: start,
            end_micros: start + MIN,
            count: 12,
            sum: avg * 12.0,
            min: avg - 5.0,
            max: avg + 5.0,
            avg,
            condition: "avg > 60".into(),
            threshold: 60.0,
        }),
        details: BTreeMap::new(),
        source: vec![format!("shardId-000000000000/{window}")],
    }
}

pub fn accident_alert(i: usize, window: i64) -> AlertRecord {
    let seq = format!("{:056}", i);
    AlertRecord {
        id: event_alert_id("accident-severity", "shardId-000000000001", &seq, None),
        rule: "accident-severity".into(),
        key: format!("A-{i}"),
        kind: AlertKind::Event,
        severity: "4".into(),
        summary: format!("Severity 4 accident A-{i}"),
        event_time_micros: T0 + window * MIN + 1_000_000,
        window: None,
        details: BTreeMap::new(),
        source: vec![format!("shardId-000000000001/{seq}")],
    }
}

/// The stream record of the INSERT of `alert` into the alerts table, with the item exactly
/// as the outbox writes it.
pub fn insert_record(alert: &AlertRecord, sequence: u64) -> EventRecord {
    let item = alert_item(alert, SystemTime::now(), Duration::from_secs(3600)).expect("item");
    let at = StreamPosition {
        stream_arn: "arn:aws:dynamodb:us-east-1:123456789012:table/alerts/stream/2026-11-21T00:00:00.000",
        sequence: 4_421_584_500_000_000_000_000_000_000 + u128::from(sequence),
        created_secs: alert.event_time_micros / 1_000_000 + 2,
    };
    serde_json::from_value(insert_record_json(&item, "alert_id", &at)).expect("a stream record")
}

/// Alert records on two shards (turbines partitioned by key, accidents spread), in event
/// order per shard, and the ids of the alerts that must notify.
pub struct Scenario {
    pub shards: Vec<Vec<EventRecord>>,
    pub notify: BTreeSet<String>,
    pub alerts: usize,
}

/// Turbines fire in episodes of 1–8 windows (shorter than the 15-minute repeat interval,
/// so no reminders: one firing and one resolved notification per episode, the episode's
/// later firing alerts suppressed), with 1–5 calm windows between; accident alerts fall in
/// between. Episodes are made round the turbines until `n` alerts exist.
pub fn scenario(rng: &mut Rng, n: usize) -> Scenario {
    let turbines = 8;
    let mut per_shard: Vec<Vec<AlertRecord>> = vec![Vec::new(), Vec::new()];
    let mut notify = BTreeSet::new();
    let mut cursor: Vec<i64> = (0..turbines).map(|_| rng.below(4) as i64).collect();
    let (mut made, mut accidents, mut i) = (0, 0, 0);
    while made < n {
        let t = i % turbines;
        i += 1;
        let key = format!("turbine{t}");
        let w = cursor[t];
        let len = 1 + rng.below(8) as i64;
        for j in 0..len {
            let a = window_alert(&key, w + j, AlertKind::Firing);
            if j == 0 {
                notify.insert(a.id.clone());
            }
            per_shard[t % 2].push(a);
        }
        let r = window_alert(&key, w + len, AlertKind::Resolved);
        notify.insert(r.id.clone());
        per_shard[t % 2].push(r);
        made += len as usize + 1;
        cursor[t] = w + len + 2 + rng.below(5) as i64;
        for _ in 0..rng.below(3) {
            let a = accident_alert(accidents, w);
            notify.insert(a.id.clone());
            per_shard[accidents % 2].push(a);
            accidents += 1;
            made += 1;
        }
    }
    let mut sequence = 0;
    let shards = per_shard
        .into_iter()
        .map(|mut alerts| {
            alerts.sort_by_key(|a| a.event_time_micros);
            alerts
                .iter()
                .map(|a| {
                    sequence += 1;
                    insert_record(a, sequence)
                })
                .collect()
        })
        .collect();
    Scenario {
        shards,
        notify,
        alerts: made,
    }
}

/// The alert id of every message the topic holds (from the machine-readable JSON).
pub fn sent_alert_ids(moto: &MotoServer) -> Vec<String> {
    moto.sns_notifications()
        .iter()
        .map(|n| {
            let structured: Value =
                serde_json::from_str(n[1].as_str().expect("message")).expect("structured");
            let machine: Value =
                serde_json::from_str(structured["sqs"].as_str().expect("sqs")).expect("json");
            machine["alert_id"].as_str().expect("alert_id").to_owned()
        })
        .collect()
}

fn stream_image(item: &HashMap<String, StreamValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attribute(v)))
            .collect(),
    )
}

/// Every record of the table's stream, shard by shard, as Lambda's DynamoDB event records.
pub async fn stream_records(streams: &aws_sdk_dynamodbstreams::Client, arn: &str) -> Vec<Value> {
    let description = streams
        .describe_stream()
        .stream_arn(arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    let mut out = Vec::new();
    for shard in description.shards() {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(it) = iterator {
            let page = streams
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                let change = r.dynamodb().unwrap();
                out.push(json!({
                    "eventID": r.event_id().unwrap(),
                    "eventName": r.event_name().unwrap().as_str(),
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "dynamodb": {
                        "ApproximateCreationDateTime": 1_795_264_200,
                        "Keys": stream_image(change.keys().unwrap()),
                        "NewImage": change.new_image().map(stream_image).unwrap_or(json!({})),
                        "SequenceNumber": change.sequence_number().unwrap(),
                        "SizeBytes": 900,
                        "StreamViewType": "NEW_IMAGE",
                    },
                    "eventSourceARN": arn,
                }));
            }
            iterator = page.next_shard_iterator;
        }
    }
    out
}

/// Turns on `table`'s stream (NEW_IMAGE, as the template's alerts table has it) and returns
/// its ARN.
pub async fn enable_new_image_stream(ddb: &aws_sdk_dynamodb::Client, table: &str) -> String {
    use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};
    ddb.update_table()
        .table_name(table)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .expect("a stream specification"),
        )
        .send()
        .await
        .expect("UpdateTable")
        .table_description
        .and_then(|t| t.latest_stream_arn)
        .expect("the table's stream ARN")
}
