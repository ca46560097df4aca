//! `streamwatch alerts list --pending` and `alerts redrive` against moto: a notification SNS
//! refused (the topic was gone) is listed, redriven once SNS is back, sent exactly once, and
//! no longer listed; a second redrive sends nothing.

mod common;

use alerter::{Deps, Settings, SystemClock, process};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use streamwatch_adapters::DynamoDbAlertOutbox;
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
use streamwatch_adapters::alerts::alert_item;
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_core::alert::keyed_event_alert_id;
use streamwatch_core::{AlertKind, AlertOutbox, AlertRecord};
use streamwatch_tests::MotoServer;

async fn streamwatch(endpoint: &str, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--endpoint-url", endpoint]);
    common::streamwatch(&all).await
}

fn lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_refused_notification_is_listed_then_redriven_once() {
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let config = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let topic = sns
        .create_topic()
        .name("alerts")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    sns.delete_topic().topic_arn(&topic).send().await.unwrap();

    let alert = AlertRecord {
        id: keyed_event_alert_id("accident-severity", "A-7"),
        rule: "accident-severity".into(),
        key: "A-7".into(),
        kind: AlertKind::Event,
        severity: "4".into(),
        summary: "Severity 4 accident in San José, CA".into(),
        event_time_micros: 1_795_262_400_000_000,
        window: None,
        details: Default::default(),
        source: vec![],
    };
    DynamoDbAlertOutbox::new(ddb.clone(), "alerts")
        .put_alert(&alert)
        .await
        .unwrap();
    let item = alert_item(
        &alert,
        std::time::SystemTime::now(),
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let image: serde_json::Map<String, Value> = item
        .iter()
        .map(|(k, v)| match v {
            AttributeValue::S(s) => (k.clone(), json!({ "S": s })),
            AttributeValue::N(n) => (k.clone(), json!({ "N": n })),
            _ => unreachable!(),
        })
        .collect();
    let event = serde_json::from_value(json!({"Records": [{
        "eventID": "1", "eventName": "INSERT", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {"alert_id": {"S": alert.id}}, "NewImage": image, "SequenceNumber": "100", "SizeBytes": 10, "StreamViewType": "NEW_IMAGE"},
    }]}))
    .unwrap();
    let deps = Deps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: DynamoDbAlertStateStore::new(ddb.clone(), "alerts"),
        notifier: SnsNotifier::new(sns.clone(), &topic),
        clock: SystemClock,
        settings: Settings::default(),
    };
    let (response, report) = process(&deps, &event, "inv-1").await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.unsent, 1);

    let out = streamwatch(
        &endpoint,
        &["alerts", "list", "--pending", "--table", "alerts"],
    )
    .await;
    assert!(out.status.success(), "{}", common::text(&out));
    let listed = lines(&out);
    assert_eq!(listed.len(), 1, "{}", common::text(&out));
    assert_eq!(listed[0]["alert_id"], alert.id.as_str());
    assert_eq!(listed[0]["status"], "pending");

    // SNS is back; the operator redrives everything since yesterday.
    sns.create_topic().name("alerts").send().await.unwrap();
    let redrive = [
        "alerts",
        "redrive",
        "--since",
        "2026-01-01T00:00:00Z",
        "--table",
        "alerts",
        "--topic-arn",
        topic.as_str(),
    ];
    let out = streamwatch(&endpoint, &redrive).await;
    assert!(out.status.success(), "{}", common::text(&out));
    assert_eq!(lines(&out)[0]["sent"], 1, "{}", common::text(&out));
    let out = streamwatch(&endpoint, &redrive).await;
    assert_eq!(lines(&out)[0]["sent"], 0, "{}", common::text(&out));

    let sent = moto.sns_notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][2], "[ALERT] Severity 4 accident in San Jose, CA");
    let out = streamwatch(
        &endpoint,
        &["alerts", "list", "--pending", "--table", "alerts"],
    )
    .await;
    assert!(lines(&out).is_empty(), "{}", common::text(&out));
}
