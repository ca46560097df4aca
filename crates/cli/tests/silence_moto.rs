//! `streamwatch silence` against moto, with the real alerter (DynamoDB stores, SNS): accidents
//! in three counties arrive in three batches; after the first, an operator silences Harris
//! County with the CLI; after the second, expires the silence. Exactly the second batch's
//! Harris accidents are held back (recorded as silenced in the table), everything else is
//! sent — worked out here from the batches. Bad arguments are one line and exit 64.

mod common;

use std::collections::BTreeSet;

use alerter::{Deps, Grouping, Settings, Silences, SystemClock, process};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
use streamwatch_adapters::alerts::alert_item;
use streamwatch_adapters::silences::DynamoDbSilenceStore;
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_core::alert::keyed_event_alert_id;
use streamwatch_core::{AlertKind, AlertRecord};
use streamwatch_tests::MotoServer;

async fn streamwatch(endpoint: &str, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--endpoint-url", endpoint]);
    common::streamwatch(&all).await
}

fn accident(i: usize, county: &str) -> AlertRecord {
    let key = format!("A-{i}");
    AlertRecord {
        id: keyed_event_alert_id("accident-severity", &key),
        rule: "accident-severity".into(),
        key,
        kind: AlertKind::Event,
        severity: "4".into(),
        summary: format!("Severity 4 accident in {county} County, TX"),
        event_time_micros: 1_795_262_400_000_000 + i as i64 * 1_000_000,
        window: None,
        details: [("County".to_owned(), county.to_owned())].into(),
        source: vec![],
    }
}

/// The alerts table's stream records of these alerts' INSERTs.
fn event(alerts: &[AlertRecord], first: usize) -> aws_lambda_events::event::dynamodb::Event {
    let records: Vec<Value> = alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| {
            let item = alert_item(
                alert,
                std::time::SystemTime::now(),
                std::time::Duration::from_secs(3600),
            )
            .unwrap();
            let image: serde_json::Map<String, Value> = item
                .iter()
                .map(|(k, v)| match v {
                    AttributeValue::S(s) => (k.clone(), json!({ "S": s })),
                    AttributeValue::N(n) => (k.clone(), json!({ "N": n })),
                    other => panic!("{other:?}"),
                })
                .collect();
            json!({
                "eventID": format!("{}", first + i), "eventName": "INSERT",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {"Keys": {"alert_id": {"S": alert.id}}, "NewImage": image,
                    "SequenceNumber": format!("{}", 100 + first + i), "SizeBytes": 10,
                    "StreamViewType": "NEW_IMAGE"},
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn sent_keys(moto: &MotoServer) -> BTreeSet<String> {
    moto.sns_notifications()
        .iter()
        .map(|n| {
            let structured: Value = serde_json::from_str(n[1].as_str().unwrap()).unwrap();
            let machine: Value = serde_json::from_str(structured["sqs"].as_str().unwrap()).unwrap();
            machine["key"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_silence_added_mid_run_holds_back_exactly_the_matching_alerts() {
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let config = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let topic = streamwatch_tests::create_topic(&sns, "alerts").await;
    let deps = Deps {
        store: DynamoDbAlertStateStore::new(ddb.clone(), "alerts"),
        notifier: SnsNotifier::new(sns.clone(), &topic),
        clock: SystemClock,
        settings: Settings::default(),
        grouping: Grouping::off(),
        silences: Silences::new(DynamoDbSilenceStore::new(ddb.clone(), "alerts")),
    };
    let counties = ["Harris", "Dallas", "Travis"];
    let batches: Vec<Vec<AlertRecord>> = (0..3)
        .map(|b| {
            (0..9)
                .map(|i| accident(b * 9 + i, counties[i % 3]))
                .collect()
        })
        .collect();

    let (_, report) = process(&deps, &event(&batches[0], 0), "inv-0").await;
    assert_eq!((report.events, report.silenced), (9, 0));

    let add = [
        "silence",
        "add",
        "--rule",
        "accident-severity",
        "--match",
        "County=Harris",
        "--for",
        "2h",
        "--comment",
        "pile-up on I-10, handled",
        "--table",
        "alerts",
    ];
    let out = streamwatch(&endpoint, &add).await;
    assert!(out.status.success(), "{}", common::text(&out));
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["matchers"], json!(["County=Harris"]));
    let out = streamwatch(&endpoint, &["silence", "list", "--table", "alerts"]).await;
    let listed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{}", common::text(&out));
    assert_eq!(listed[0]["id"], id.as_str());

    let (_, report) = process(&deps, &event(&batches[1], 9), "inv-1").await;
    assert_eq!((report.events, report.silenced), (6, 3));
    // The same batch again (a Lambda retry): nothing more sent or silenced.
    let (_, report) = process(&deps, &event(&batches[1], 9), "inv-1b").await;
    assert_eq!(
        (report.events, report.silenced, report.duplicates),
        (0, 0, 9)
    );

    let out = streamwatch(&endpoint, &["silence", "expire", &id, "--table", "alerts"]).await;
    assert!(out.status.success(), "{}", common::text(&out));
    let out = streamwatch(&endpoint, &["silence", "list", "--table", "alerts"]).await;
    assert!(out.stdout.is_empty(), "{}", common::text(&out));
    let out = streamwatch(&endpoint, &["silence", "expire", &id, "--table", "alerts"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));

    let (_, report) = process(&deps, &event(&batches[2], 18), "inv-2").await;
    assert_eq!((report.events, report.silenced), (9, 0));

    // Sent: every accident but the second batch's Harris ones (from the input).
    let held: BTreeSet<String> = batches[1]
        .iter()
        .filter(|a| a.details["County"] == "Harris")
        .map(|a| a.key.clone())
        .collect();
    let expected: BTreeSet<String> = batches
        .iter()
        .flatten()
        .map(|a| a.key.clone())
        .filter(|k| !held.contains(k))
        .collect();
    assert_eq!(sent_keys(&moto), expected);
    assert_eq!(moto.sns_notifications().len(), expected.len());
    // The held-back ones are recorded in the table as silenced by that silence.
    for a in batches[1].iter().filter(|a| held.contains(&a.key)) {
        let item = ddb
            .get_item()
            .table_name("alerts")
            .key(
                "alert_id",
                AttributeValue::S(format!("#notification#{}", a.id)),
            )
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        assert_eq!(item["status"].as_s().unwrap(), "suppressed");
        assert_eq!(item["reason"].as_s().unwrap(), &format!("silenced by {id}"));
    }
}

#[tokio::test]
async fn bad_silence_arguments_are_one_line_and_exit_64() {
    for args in [
        vec![
            "silence", "add", "--rule", "r", "--match", "device3", "--for", "2h",
        ],
        vec!["silence", "add", "--rule", "r", "--for", "2 hours"],
    ] {
        let mut all = args.clone();
        all.extend(["--table", "alerts"]);
        let out = streamwatch("http://127.0.0.1:9", &all).await;
        assert_eq!(out.status.code(), Some(64), "{}", common::text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}
