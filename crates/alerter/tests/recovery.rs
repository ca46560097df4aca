//! Nothing stuck after a failure, against moto: SNS answers a permanent error (the topic is
//! gone) for a while, then recovers. The stream path leaves the refused notifications
//! pending; recovery passes (the schedule) retry them and give up after `max_attempts`
//! (NotificationsFailed); once SNS is back, a pass sends the pending ones and a redrive the
//! given-up ones. Every notification is published exactly once, and nothing stays unsent —
//! read back from moto's SNS and the table's pending index.

mod common;

use std::time::Duration;

use alerter::recovery::{Selection, redrive, resume};
use alerter::{Deps, ManualClock, process};
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use serde_json::Value;
use streamwatch_adapters::DynamoDbAlertOutbox;
use streamwatch_adapters::alert_state::{DynamoDbAlertStateStore, PENDING_INDEX};
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_core::{AlertKind, AlertOutbox, AlertRecord};
use streamwatch_tests::MotoServer;

fn accident(i: i64) -> AlertRecord {
    let mut a = window_alert(&format!("A-{i}"), i, AlertKind::Event);
    a.rule = "accident-severity".into();
    a.id = streamwatch_core::alert::keyed_event_alert_id("accident-severity", &a.key);
    a.window = None;
    a.summary = format!("Severity 4 accident A-{i}");
    a
}

/// The stream records of `alerts` as the table holds them.
async fn stream_of(
    ddb: &aws_sdk_dynamodb::Client,
    alerts: &[AlertRecord],
    first: u64,
) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, a) in alerts.iter().enumerate() {
        let item = ddb
            .get_item()
            .table_name("alerts")
            .key("alert_id", AttributeValue::S(a.id.clone()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        out.push(item_record(&item, first + i as u64));
    }
    out
}

/// Alert ids with a notification in the pending index (what `alerts list --pending` shows).
async fn listed_unsent(ddb: &aws_sdk_dynamodb::Client) -> Vec<String> {
    let out = ddb
        .query()
        .table_name("alerts")
        .index_name(PENDING_INDEX)
        .key_condition_expression("pending_bucket = :b")
        .expression_attribute_values(":b", AttributeValue::S("unsent".into()))
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .map(|i| i["notified_alert_id"].as_s().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn a_permanent_sns_error_for_a_while_then_every_notification_is_sent_once() {
    let moto = MotoServer::start();
    let config = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let topic = streamwatch_tests::create_topic(&sns, "alerts").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let deps = Deps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: DynamoDbAlertStateStore::new(ddb.clone(), "alerts"),
        notifier: SnsNotifier::new(sns.clone(), &topic),
        clock: ManualClock::new(now),
        settings: alerter::Settings {
            max_attempts: 3,
            ..settings()
        },
    };
    let outbox = DynamoDbAlertOutbox::new(ddb.clone(), "alerts");

    // SNS refuses everything: the topic is gone (NotFound, permanent).
    sns.delete_topic().topic_arn(&topic).send().await.unwrap();

    // Two accidents reach the alerter; their notifications are decided and left pending.
    let first = [accident(1), accident(2)];
    for a in &first {
        outbox.put_alert(a).await.unwrap();
    }
    let (response, report) = process(
        &deps,
        &records_event(stream_of(&ddb, &first, 0).await),
        "inv-1",
    )
    .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "a permanent refusal does not block the shard"
    );
    assert_eq!(report.unsent, 2);

    // Three schedule passes while SNS still refuses: two more attempts each, then given up.
    let mut failed_metric = 0;
    for pass in 0..3 {
        deps.clock.advance(Duration::from_secs(60));
        let report = resume(&deps, &format!("schedule-{pass}")).await;
        let emf: Value = serde_json::from_str(&report.emf("alerter", 0)).unwrap();
        failed_metric += emf["NotificationsFailed"].as_u64().unwrap();
        assert_eq!(report.sent, 0);
    }
    assert_eq!(
        failed_metric, 2,
        "NotificationsFailed counts each given-up notification once"
    );

    // A turbine's episode and a third accident arrive while SNS is still down.
    let later = [
        window_alert("device5", 0, AlertKind::Firing),
        window_alert("device5", 1, AlertKind::Firing),
        window_alert("device5", 2, AlertKind::Resolved),
        accident(3),
    ];
    for a in &later {
        outbox.put_alert(a).await.unwrap();
    }
    let (response, report) = process(
        &deps,
        &records_event(stream_of(&ddb, &later, 10).await),
        "inv-2",
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.unsent, report.suppressed), (3, 1));
    let mut unsent = listed_unsent(&ddb).await;
    unsent.sort();
    assert_eq!(unsent.len(), 5, "{unsent:?}");
    assert!(moto.sns_notifications().is_empty());

    // SNS recovers (the topic is back, same ARN). The next pass sends what is pending, in
    // the order it was decided; the given-up ones wait for an operator.
    let again = streamwatch_tests::create_topic(&sns, "alerts").await;
    assert_eq!(again, topic);
    deps.clock.advance(Duration::from_secs(60));
    let report = resume(&deps, "schedule-after").await;
    assert_eq!(
        (report.sent, report.failed, report.errors),
        (3, 2, 0),
        "{report:?}"
    );

    // `streamwatch alerts redrive --since …` sends the given-up ones.
    let report = redrive(&deps, &Selection::Since(0), "operator")
        .await
        .unwrap();
    assert_eq!(report.sent, 2, "{report:?}");

    // Idempotent: another pass and another redrive send nothing.
    deps.clock.advance(Duration::from_secs(60));
    assert_eq!(resume(&deps, "schedule-last").await.sent, 0);
    assert_eq!(
        redrive(&deps, &Selection::Since(0), "operator")
            .await
            .unwrap()
            .sent,
        0
    );
    assert_eq!(
        redrive(&deps, &Selection::Id(first[0].id.clone()), "operator")
            .await
            .unwrap()
            .sent,
        0
    );

    // Every notification exactly once, FIRING before RESOLVED; nothing left unsent.
    let sent: Vec<(String, String)> = moto
        .sns_notifications()
        .iter()
        .map(|n| {
            let structured: Value = serde_json::from_str(n[1].as_str().unwrap()).unwrap();
            let machine: Value = serde_json::from_str(structured["sqs"].as_str().unwrap()).unwrap();
            (
                machine["alert_id"].as_str().unwrap().to_owned(),
                machine["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut ids: Vec<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    let mut want = vec![
        first[0].id.as_str(),
        first[1].id.as_str(),
        later[0].id.as_str(),
        later[2].id.as_str(),
        later[3].id.as_str(),
    ];
    want.sort();
    assert_eq!(ids, want);
    let position = |state: &str| sent.iter().position(|(_, s)| s == state).unwrap();
    assert!(position("firing") < position("resolved"), "{sent:?}");
    assert!(listed_unsent(&ddb).await.is_empty());
}
