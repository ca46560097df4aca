//! The DynamoDB alerts outbox against moto server: an alert is written once, whatever the
//! retries, and reads back whole.

use streamwatch_adapters::alerts::alert_from_item;
use streamwatch_adapters::{DynamoDbAlertOutbox, EmbeddedAlertOutbox};
use streamwatch_core::{AlertKind, AlertOutbox, AlertRecord, PutOutcome};
use streamwatch_tests::MotoServer;

fn alert(id: &str) -> AlertRecord {
    AlertRecord {
        id: id.into(),
        rule: "accident-severity".into(),
        key: "A-1".into(),
        kind: AlertKind::Event,
        severity: "4".into(),
        summary: "Severity 4 accident in Dallas".into(),
        event_time_micros: 1_795_262_400_000_000,
        window: None,
        details: [("City".to_owned(), "Dallas".to_owned())].into(),
        source: vec!["shardId-0/1/0".into()],
    }
}

async fn client(moto: &MotoServer) -> aws_sdk_dynamodb::Client {
    let config = streamwatch_adapters::aws::defaults()
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

#[tokio::test]
async fn conditional_put_writes_each_alert_once() {
    let moto = MotoServer::start();
    let ddb = client(&moto).await;
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let outbox = DynamoDbAlertOutbox::new(ddb.clone(), "alerts");
    let a = alert("accident-severity#shardId-0#1#0");
    assert_eq!(outbox.put_alert(&a).await.unwrap(), PutOutcome::Created);
    let mut changed = a.clone();
    changed.summary = "a retry must not overwrite".into();
    assert_eq!(
        outbox.put_alert(&changed).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        outbox.put_alert(&alert("other")).await.unwrap(),
        PutOutcome::Created
    );

    let items = ddb
        .scan()
        .table_name("alerts")
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert_eq!(items.len(), 2);
    let stored = items
        .iter()
        .find(|i| i["alert_id"].as_s().unwrap() == &a.id)
        .unwrap();
    assert_eq!(alert_from_item(stored).unwrap(), a);
    assert_eq!(stored["record_type"].as_s().unwrap(), "alert");
    assert_eq!(stored["kind"].as_s().unwrap(), "event");
    assert!(stored["ttl"].as_n().unwrap().parse::<u64>().unwrap() > 1_700_000_000);

    // A missing table is a permanent error, not something to retry forever.
    let err = DynamoDbAlertOutbox::new(ddb, "no-such-table")
        .put_alert(&a)
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
}

#[tokio::test]
async fn embedded_outbox_has_the_same_semantics() {
    let outbox = EmbeddedAlertOutbox::new();
    assert_eq!(
        outbox.put_alert(&alert("x")).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(outbox.take_new().len(), 1);
    assert_eq!(
        outbox.put_alert(&alert("x")).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert!(outbox.take_new().is_empty());
    assert_eq!(outbox.alerts().len(), 1);
}

#[tokio::test]
async fn batched_puts_write_each_alert_once_in_a_few_calls() {
    let moto = MotoServer::start();
    let ddb = client(&moto).await;
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let outbox = DynamoDbAlertOutbox::new(ddb.clone(), "alerts");
    // GIVEN one alert already written, WHEN 130 alerts come in one call (past both the
    // 100-key read and the 25-item write limits), one of them twice and one the existing
    let existing = alert("a-007");
    assert_eq!(
        outbox.put_alert(&existing).await.unwrap(),
        PutOutcome::Created
    );
    let mut batch: Vec<AlertRecord> = (0..129).map(|i| alert(&format!("a-{i:03}"))).collect();
    batch[7].summary = "a retry must not overwrite".into();
    batch.push(alert("a-042"));
    let results = outbox.put_alerts(&batch).await;

    // THEN each result says what happened to it, in order
    assert_eq!(results.len(), 130);
    let outcomes: Vec<PutOutcome> = results.into_iter().map(|r| r.unwrap()).collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        let expected = if i == 7 || i == 129 {
            PutOutcome::AlreadyExists
        } else {
            PutOutcome::Created
        };
        assert_eq!(*outcome, expected, "alert {i}");
    }
    // AND the table holds every alert once, the existing one unchanged
    let items = streamwatch_tests::scan_all(&ddb, "alerts").await;
    assert_eq!(items.len(), 129);
    let stored = items
        .iter()
        .find(|i| i["alert_id"].as_s().unwrap() == "a-007")
        .unwrap();
    assert_eq!(alert_from_item(stored).unwrap(), existing);
    let stored = items
        .iter()
        .find(|i| i["alert_id"].as_s().unwrap() == "a-128")
        .unwrap();
    assert_eq!(alert_from_item(stored).unwrap(), alert("a-128"));
    assert_eq!(stored["record_type"].as_s().unwrap(), "alert");

    // WHEN the same batch is replayed THEN nothing is written again
    let again = outbox.put_alerts(&batch).await;
    assert!(
        again
            .into_iter()
            .all(|r| r.unwrap() == PutOutcome::AlreadyExists)
    );

    // AND a missing table fails every alert permanently
    let missing = DynamoDbAlertOutbox::new(ddb, "no-such-table")
        .put_alerts(&batch[..3])
        .await;
    assert_eq!(missing.len(), 3);
    assert!(
        missing
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| !e.is_transient()))
    );
}

#[tokio::test]
async fn embedded_batched_puts_have_the_same_semantics() {
    let outbox = EmbeddedAlertOutbox::new();
    outbox.put_alert(&alert("b")).await.unwrap();
    let results = outbox
        .put_alerts(&[alert("a"), alert("b"), alert("a")])
        .await;
    let outcomes: Vec<PutOutcome> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        outcomes,
        [
            PutOutcome::Created,
            PutOutcome::AlreadyExists,
            PutOutcome::AlreadyExists
        ]
    );
    assert_eq!(outbox.alerts().len(), 2);
}
