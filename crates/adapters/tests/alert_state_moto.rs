//! The alert-state store against moto server, and the embedded one held to the same
//! semantics by the same test: decisions recorded once and only against the state they
//! read, claims with leases, marks only by the claim's owner.

use std::collections::BTreeMap;

use streamwatch_adapters::alert_state::{
    DynamoDbAlertStateStore, EmbeddedAlertStateStore, notification_item_key, state_item_key,
};
use streamwatch_core::notify::{
    AlertStateStore, ClaimOutcome, MarkOutcome, NotificationRecord, NotificationStatus,
    RecordOutcome, decide,
};
use streamwatch_core::time::Micros;
use streamwatch_core::{AlertKind, AlertRecord};
use streamwatch_tests::MotoServer;

const NOW: Micros = 1_800_000_000_000_000;
const SEC: Micros = 1_000_000;
const REPEAT: Micros = 900 * SEC;

fn alert(i: i64, kind: AlertKind) -> AlertRecord {
    let start = 1_795_262_400_000_000 + i * 60 * SEC;
    AlertRecord {
        id: format!("wind#turbine#7#{start}#{}", kind.as_str()),
        rule: "wind#avg".into(), // a `#` in the rule must not make keys ambiguous
        key: "turbine#7".into(),
        kind,
        severity: "critical".into(),
        summary: "Wind speed avg 72.4 mph > 60 on turbine#7".into(),
        event_time_micros: start + 60 * SEC,
        window: None,
        details: BTreeMap::new(),
        source: vec![],
    }
}

async fn semantics(store: &impl AlertStateStore) {
    // A decision is recorded once, with its state.
    let first = alert(0, AlertKind::Firing);
    let t = decide(None, &first, REPEAT);
    let record = NotificationRecord::decided(&first, &t, NOW);
    assert_eq!(
        store.record(&record, t.next.as_ref(), None).await.unwrap(),
        RecordOutcome::Recorded
    );
    assert_eq!(
        store.record(&record, t.next.as_ref(), None).await.unwrap(),
        RecordOutcome::AlreadyDecided
    );
    assert_eq!(
        store.notification(&first.id).await.unwrap(),
        Some(record.clone())
    );
    let state = store.state("wind#avg", "turbine#7").await.unwrap().unwrap();
    assert_eq!(Some(&state), t.next.as_ref());

    // A decision against a state that moved is refused, and nothing of it is written.
    let second = alert(1, AlertKind::Firing);
    let stale = decide(None, &second, REPEAT);
    let stale_record = NotificationRecord::decided(&second, &stale, NOW);
    assert_eq!(
        store
            .record(&stale_record, stale.next.as_ref(), None)
            .await
            .unwrap(),
        RecordOutcome::StateChanged
    );
    assert_eq!(store.notification(&second.id).await.unwrap(), None);
    // Decided again against the current state: suppressed, with its reason kept.
    let fresh = decide(Some(&state), &second, REPEAT);
    let suppressed = NotificationRecord::decided(&second, &fresh, NOW);
    assert_eq!(
        store
            .record(&suppressed, fresh.next.as_ref(), Some(state.version))
            .await
            .unwrap(),
        RecordOutcome::Recorded
    );
    let read = store.notification(&second.id).await.unwrap().unwrap();
    assert_eq!(read.status, NotificationStatus::Suppressed);
    assert_eq!(read, suppressed);
    assert_eq!(
        store
            .state("wind#avg", "turbine#7")
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );

    // Claims: pending → sending; others wait for the lease; the owner renews.
    let id = first.id.as_str();
    assert_eq!(
        store.claim(id, "a", NOW, NOW + 30 * SEC).await.unwrap(),
        ClaimOutcome::Claimed
    );
    assert_eq!(
        store
            .claim(id, "b", NOW + SEC, NOW + 31 * SEC)
            .await
            .unwrap(),
        ClaimOutcome::NotClaimable
    );
    assert_eq!(
        store
            .claim(id, "a", NOW + 2 * SEC, NOW + 32 * SEC)
            .await
            .unwrap(),
        ClaimOutcome::Claimed
    );
    let read = store.notification(id).await.unwrap().unwrap();
    assert_eq!(
        read.status,
        NotificationStatus::Sending {
            owner: "a".into(),
            lease_until_micros: NOW + 32 * SEC
        }
    );
    assert_eq!(read.attempts, 2);
    // The lease is exclusive up to and including its end.
    assert_eq!(
        store
            .claim(id, "b", NOW + 32 * SEC, NOW + 62 * SEC)
            .await
            .unwrap(),
        ClaimOutcome::NotClaimable
    );
    // After it, a presumed-dead owner's claim is taken over...
    assert_eq!(
        store
            .claim(id, "b", NOW + 33 * SEC, NOW + 63 * SEC)
            .await
            .unwrap(),
        ClaimOutcome::Claimed
    );
    // ...and the late owner can neither mark nor release it.
    assert_eq!(
        store.mark_sent(id, "a", "m-a", NOW).await.unwrap(),
        MarkOutcome::LeaseLost
    );
    store.release(id, "a").await.unwrap();
    assert!(matches!(
        store.notification(id).await.unwrap().unwrap().status,
        NotificationStatus::Sending { ref owner, .. } if owner == "b"
    ));
    // Released by its owner, it is claimable again at once.
    store.release(id, "b").await.unwrap();
    assert_eq!(
        store.notification(id).await.unwrap().unwrap().status,
        NotificationStatus::Pending
    );
    assert_eq!(
        store
            .claim(id, "c", NOW + 34 * SEC, NOW + 64 * SEC)
            .await
            .unwrap(),
        ClaimOutcome::Claimed
    );
    assert_eq!(
        store
            .mark_sent(id, "c", "m-c", NOW + 35 * SEC)
            .await
            .unwrap(),
        MarkOutcome::Marked
    );
    let read = store.notification(id).await.unwrap().unwrap();
    assert_eq!(
        read.status,
        NotificationStatus::Sent {
            message_id: "m-c".into(),
            sent_at_micros: NOW + 35 * SEC
        }
    );
    // The same mark again (the SDK retrying a write whose response was lost) is no lost
    // lease; another owner, or another message id, still is.
    assert_eq!(
        store
            .mark_sent(id, "c", "m-c", NOW + 35 * SEC)
            .await
            .unwrap(),
        MarkOutcome::Marked
    );
    assert_eq!(
        store
            .mark_sent(id, "b", "m-c", NOW + 36 * SEC)
            .await
            .unwrap(),
        MarkOutcome::LeaseLost
    );
    assert_eq!(
        store
            .mark_sent(id, "c", "m-x", NOW + 36 * SEC)
            .await
            .unwrap(),
        MarkOutcome::LeaseLost
    );
    assert_eq!(read.attempts, 4);
    // Sent is final; suppressed and unknown notifications cannot be claimed.
    for (alert_id, at) in [
        (id, NOW + 3600 * SEC),
        (second.id.as_str(), NOW),
        ("unknown", NOW),
    ] {
        assert_eq!(
            store.claim(alert_id, "d", at, at + 30 * SEC).await.unwrap(),
            ClaimOutcome::NotClaimable
        );
    }

    // Per-event alerts: a decision without state.
    let event = AlertRecord {
        id: "accident#shard#1#0".into(),
        rule: "accident".into(),
        kind: AlertKind::Event,
        ..alert(0, AlertKind::Event)
    };
    let t = decide(None, &event, REPEAT);
    assert!(t.next.is_none());
    let record = NotificationRecord::decided(&event, &t, NOW);
    assert_eq!(
        store.record(&record, None, None).await.unwrap(),
        RecordOutcome::Recorded
    );
    assert_eq!(
        store.record(&record, None, None).await.unwrap(),
        RecordOutcome::AlreadyDecided
    );
    assert_eq!(store.state("accident", "turbine#7").await.unwrap(), None);
}

async fn dynamodb(moto: &MotoServer) -> aws_sdk_dynamodb::Client {
    let config = streamwatch_adapters::aws::defaults()
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    streamwatch_tests::create_alerts_table(&client, "alerts").await;
    client
}

#[tokio::test]
async fn dynamodb_store_keeps_decisions_claims_and_marks_exact() {
    let moto = MotoServer::start();
    let ddb = dynamodb(&moto).await;
    semantics(&DynamoDbAlertStateStore::new(ddb.clone(), "alerts")).await;

    // What the table holds: one state item, three notification items, none of them
    // looking like an alert record to the stream filter.
    let items = ddb
        .scan()
        .table_name("alerts")
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let mut keys: Vec<_> = items
        .iter()
        .map(|i| i["alert_id"].as_s().unwrap().clone())
        .collect();
    keys.sort();
    let first = alert(0, AlertKind::Firing).id;
    let second = alert(1, AlertKind::Firing).id;
    let mut expected = vec![
        notification_item_key("accident#shard#1#0"),
        notification_item_key(&first),
        notification_item_key(&second),
        state_item_key("wind#avg", "turbine#7"),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(
        state_item_key("wind#avg", "turbine#7"),
        "#state#wind%23avg#turbine#7"
    );
    for item in &items {
        let record_type = item["record_type"].as_s().unwrap();
        assert!(record_type == "state" || record_type == "notification");
        assert!(item["ttl"].as_n().unwrap().parse::<u64>().unwrap() > 1_700_000_000);
    }
    let sent = items
        .iter()
        .find(|i| i["alert_id"].as_s().unwrap() == &notification_item_key(&first))
        .unwrap();
    assert_eq!(sent["status"].as_s().unwrap(), "sent");
    assert_eq!(sent["message_id"].as_s().unwrap(), "m-c");
    assert_eq!(sent["outcome"].as_s().unwrap(), "firing");
    assert!(!sent.contains_key("lease_until"));
    let suppressed = items
        .iter()
        .find(|i| i["alert_id"].as_s().unwrap() == &notification_item_key(&second))
        .unwrap();
    assert!(
        suppressed["reason"]
            .as_s()
            .unwrap()
            .starts_with("within repeat interval")
    );

    // A missing table is permanent, not retried forever.
    let err = DynamoDbAlertStateStore::new(ddb, "no-such-table")
        .state("r", "k")
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
}

#[tokio::test]
async fn embedded_store_has_the_same_semantics() {
    let store = EmbeddedAlertStateStore::new();
    semantics(&store).await;
    assert_eq!(store.notifications().len(), 3);
    assert_eq!(store.states().len(), 1);
}
