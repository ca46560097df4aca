//! The alerter end to end against moto server: alerts written by the outbox into the alerts
//! table, delivered (and redelivered) as DynamoDB stream events to the real handler with the
//! DynamoDB store and the SNS notifier; what SNS published and what the table holds are read
//! back from moto.

mod common;

use std::collections::HashMap;

use alerter::{Deps, SystemClock, process};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use common::*;
use serde_json::{Value, json};
use streamwatch_adapters::DynamoDbAlertOutbox;
use streamwatch_adapters::alert_state::{DynamoDbAlertStateStore, notification_item_key};
use streamwatch_adapters::alerts::alert_from_item;
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_core::{AlertKind, AlertOutbox};
use streamwatch_tests::MotoServer;

struct World {
    moto: MotoServer,
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    deps: Deps<DynamoDbAlertStateStore, SnsNotifier, SystemClock>,
}

async fn world() -> World {
    let moto = MotoServer::start();
    let config = streamwatch_adapters::aws::defaults()
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let topic = streamwatch_tests::create_topic(&sns, "alerts").await;
    let queue = sqs
        .create_queue()
        .queue_name("subscriber")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    let deps = Deps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: DynamoDbAlertStateStore::new(ddb.clone(), "alerts"),
        notifier: SnsNotifier::new(sns, topic),
        clock: SystemClock,
        settings: settings(),
    };
    World {
        moto,
        ddb,
        sqs,
        queue,
        deps,
    }
}

fn subjects(moto: &MotoServer) -> Vec<String> {
    moto.sns_notifications()
        .iter()
        .map(|n| n[2].as_str().unwrap().to_owned())
        .collect()
}

async fn items(ddb: &aws_sdk_dynamodb::Client) -> Vec<HashMap<String, AttributeValue>> {
    streamwatch_tests::scan_all(ddb, "alerts").await
}

#[tokio::test]
async fn sample_events_publish_once_each_and_leave_the_state_in_the_table() {
    let w = world().await;
    let first = batch(&[FIRING, IGNORED, ACCIDENT]);
    for attempt in 0..3 {
        let (response, _) = process(&w.deps, &first, &format!("inv-a{attempt}")).await;
        assert!(response.batch_item_failures.is_empty());
    }
    for (i, sample) in [REMINDER, RESOLVED, REMINDER].into_iter().enumerate() {
        let (response, _) = process(&w.deps, &event(sample), &format!("inv-b{i}")).await;
        assert!(response.batch_item_failures.is_empty());
    }

    assert_eq!(
        subjects(&w.moto),
        [
            "[FIRING] Wind speed avg 72.4 mph > 60 on device3",
            "[ALERT] Severity 4 accident in Dayton, OH",
            "[REMINDER] Wind speed avg 74.1 mph > 60 on device3 (firing for 15 min)",
            "[RESOLVED] Wind speed avg 41.5 mph back under 60 on device3",
        ]
    );
    let sent = w.moto.sns_notifications();
    let accident: Value = serde_json::from_str(sent[1][1].as_str().unwrap()).unwrap();
    assert!(
        accident["email"]
            .as_str()
            .unwrap()
            .contains("  City:         Dayton\n")
    );
    assert_eq!(
        sent[1][3]["severity"],
        json!({"Type": "String", "Value": "4"})
    );

    // The subscriber got each once, as machine JSON.
    let received = w
        .sqs
        .receive_message()
        .queue_url(&w.queue)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let states: Vec<String> = received
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(m.body().unwrap()).unwrap()["state"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(states, ["firing", "event", "reminder", "resolved"]);

    // The table: each notification marked sent with the id SNS returned; the key resolved.
    let items = items(&w.ddb).await;
    let by_key: HashMap<&str, &HashMap<String, AttributeValue>> = items
        .iter()
        .map(|i| (i["alert_id"].as_s().unwrap().as_str(), i))
        .collect();
    for (n, sample) in [FIRING, ACCIDENT, REMINDER, RESOLVED]
        .into_iter()
        .enumerate()
    {
        let alert_id = event(sample).records[0].change.keys["alert_id"].clone();
        let alert_id = serde_json::to_value(&alert_id).unwrap()["S"]
            .as_str()
            .unwrap()
            .to_owned();
        let item = by_key[notification_item_key(&alert_id).as_str()];
        assert_eq!(item["status"].as_s().unwrap(), "sent");
        assert_eq!(
            item["message_id"].as_s().unwrap(),
            sent[n][0].as_str().unwrap()
        );
        assert_eq!(item["attempts"].as_n().unwrap(), "1");
    }
    let state = by_key["#state#windspeed-avg#device3"];
    assert_eq!(state["status"].as_s().unwrap(), "resolved");
    assert_eq!(state["record_type"].as_s().unwrap(), "state");
}

#[tokio::test]
async fn a_storm_written_by_the_outbox_sends_one_firing_three_reminders_one_resolved() {
    let w = world().await;
    // The window-aggregator's side: 60 firing windows and a resolved one, in the outbox.
    let outbox = DynamoDbAlertOutbox::new(w.ddb.clone(), "alerts");
    let mut alerts: Vec<_> = (0..60)
        .map(|i| window_alert("device7", i, AlertKind::Firing))
        .collect();
    alerts.push(window_alert("device7", 60, AlertKind::Resolved));
    for alert in &alerts {
        outbox.put_alert(alert).await.unwrap();
    }
    // The stream's side: the items as the table holds them, in write order, in batches
    // of 10, each delivered twice.
    let mut stored: Vec<_> = items(&w.ddb)
        .await
        .iter()
        .filter_map(alert_from_item)
        .collect();
    stored.sort_by_key(|a| (a.event_time_micros, a.kind == AlertKind::Resolved));
    assert_eq!(stored, alerts);
    for (n, chunk) in stored.chunks(10).enumerate() {
        let event = stream_event(chunk, n as u64 * 100);
        for attempt in 0..2 {
            let (response, _) = process(&w.deps, &event, &format!("inv-{n}-{attempt}")).await;
            assert!(response.batch_item_failures.is_empty());
        }
    }

    let subjects = subjects(&w.moto);
    assert_eq!(
        subjects,
        [
            "[FIRING] Wind speed avg 72.4 mph > 60 on device7",
            "[REMINDER] Wind speed avg 72.4 mph > 60 on device7 (firing for 15 min)",
            "[REMINDER] Wind speed avg 72.4 mph > 60 on device7 (firing for 30 min)",
            "[REMINDER] Wind speed avg 72.4 mph > 60 on device7 (firing for 45 min)",
            "[RESOLVED] Wind speed avg 41.5 mph back under 60 on device7",
        ]
    );
    let items = items(&w.ddb).await;
    let count = |record_type: &str, status: &str| {
        items
            .iter()
            .filter(|i| {
                i["record_type"].as_s().unwrap() == record_type
                    && i.get("status")
                        .and_then(|s| s.as_s().ok())
                        .map(|s| s.as_str())
                        == Some(status)
            })
            .count()
    };
    assert_eq!(count("notification", "sent"), 5);
    assert_eq!(count("notification", "suppressed"), 56);
    assert_eq!(count("state", "resolved"), 1);
}
