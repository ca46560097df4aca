//! One alert and one email per accident, however often it is delivered. The reference
//! accident fixtures — a KPL-aggregated batch and a plain one that share 70 accidents — go
//! through the real metrics-publisher (its DynamoDB outbox on moto), then the KPL batch once
//! more (a producer retry, a replay resumed early); the alerts table's own DynamoDB stream,
//! read back from moto, goes through the real alerter (DynamoDB store, SNS on moto). The
//! expected accidents are counted here from the reference de-aggregator's decoded output.

use std::collections::{BTreeMap, BTreeSet};

use alerter::{Backoff, Deps as AlerterDeps, Settings, SystemClock};
use aws_lambda_events::event::dynamodb::Event;
use base64::Engine as _;
use metrics_publisher::{Config, Deps, process};
use serde_json::{Value, json};
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_adapters::{DynamoDbAlertOutbox, EmbeddedMetricSink};
use streamwatch_core::KinesisEvent;
use streamwatch_tests::{MotoServer, fixture};

mod common;
use common::alerts::stream_records;

/// 2026-11-21T12:30:00Z.
const NOW: i64 = 1_795_264_200_000_000;

/// Accident `ID`s with Severity >= 4 in a fixture, from the reference de-aggregator's
/// decoded records (one JSON line per user record, `data` base64).
fn severe_ids(expected_jsonl: &str) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for line in String::from_utf8(fixture(expected_jsonl)).unwrap().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let data = base64::engine::general_purpose::STANDARD
            .decode(record["data"].as_str().unwrap())
            .unwrap();
        let row: Value = serde_json::from_slice(&data).unwrap();
        if row["Severity"].as_i64().unwrap() >= 4 {
            *ids.entry(row["ID"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    ids
}

#[tokio::test]
async fn kpl_and_plain_batches_sharing_accidents_send_one_email_per_severe_accident() {
    let kpl_ids = severe_ids("kinesis-accidents-kpl.expected.jsonl");
    let plain_ids = severe_ids("kinesis-accidents-plain.expected.jsonl");
    let shared = plain_ids
        .keys()
        .filter(|id| kpl_ids.contains_key(*id))
        .count();
    let expected: BTreeSet<String> = kpl_ids.keys().chain(plain_ids.keys()).cloned().collect();
    // The fixtures overlap: the test means something only if they do.
    assert!(shared > 0, "the fixtures share no severe accident");
    let deliveries: usize = kpl_ids.values().sum::<usize>() * 2 + plain_ids.values().sum::<usize>();
    assert!(deliveries > expected.len());

    let moto = MotoServer::start();
    let config = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let arn = common::alerts::enable_new_image_stream(&ddb, "alerts").await;

    // The metrics-publisher: KPL batch, plain batch, the KPL batch again.
    let publisher = Deps {
        config: Config::from_source(&[("ALERTS_TABLE", "alerts")]).unwrap(),
        sink: EmbeddedMetricSink::new(),
        outbox: DynamoDbAlertOutbox::new(ddb.clone(), "alerts"),
    };
    let kpl: KinesisEvent = serde_json::from_slice(&fixture("kinesis-accidents-kpl.json")).unwrap();
    let plain: KinesisEvent =
        serde_json::from_slice(&fixture("kinesis-accidents-plain.json")).unwrap();
    let mut written = 0;
    for event in [&kpl, &plain, &kpl] {
        let (response, report) = process(&publisher, event, NOW).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.alerts_without_key, 0);
        written += report.alerts_written;
    }
    assert_eq!(written, expected.len());

    // The alerts table's stream: exactly one alert INSERT per severe accident.
    let records = stream_records(&aws_sdk_dynamodbstreams::Client::new(&config), &arn).await;
    let alert_inserts: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["eventName"] == "INSERT" && r["dynamodb"]["NewImage"]["record_type"]["S"] == "alert"
        })
        .collect();
    assert_eq!(alert_inserts.len(), expected.len());

    // The alerter over the whole stream, in Lambda-sized batches.
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns
        .create_topic()
        .name("alerts")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let alerter = AlerterDeps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: DynamoDbAlertStateStore::new(ddb.clone(), "alerts"),
        notifier: SnsNotifier::new(sns, topic),
        clock: SystemClock,
        settings: Settings {
            retry: Backoff {
                attempts: 3,
                base_delay: std::time::Duration::from_millis(1),
                max_delay: std::time::Duration::from_millis(5),
            },
            ..Settings::default()
        },
    };
    for (n, batch) in records.chunks(100).enumerate() {
        let event: Event = serde_json::from_value(json!({ "Records": batch })).unwrap();
        let (response, _) = alerter::process(&alerter, &event, &format!("inv-{n}")).await;
        assert!(response.batch_item_failures.is_empty());
    }

    // SNS: one message per severe accident, naming it.
    let sent = moto.sns_notifications();
    let keys: Vec<String> = sent
        .iter()
        .map(|n| {
            let structured: Value = serde_json::from_str(n[1].as_str().unwrap()).unwrap();
            let machine: Value = serde_json::from_str(structured["sqs"].as_str().unwrap()).unwrap();
            machine["key"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(keys.len(), expected.len(), "one email per accident");
    assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), expected);
}
