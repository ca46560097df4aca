//! The window stores against the same checks: DynamoDB (moto server) and embedded. Versioned
//! conditional writes, readings read back whole, the sparse open-window index, monotonic
//! watermarks, key state; for DynamoDB also the items themselves (TTL, index attributes).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use streamwatch_adapters::windows::{DynamoDbWindowStore, EmbeddedWindowStore, OPEN_INDEX};
use streamwatch_core::progress::{Ledger, ShardLedger, ShardProgress};
use streamwatch_core::window::{
    Change, KeyState, WindowKey, WindowSpec, WindowState, WindowStore, Written,
};
use streamwatch_tests::MotoServer;

const T0: i64 = 1_795_262_400_000_000;
const SPEC: WindowSpec = WindowSpec {
    size_micros: 60_000_000,
    lateness_micros: 5_000_000,
};

fn wkey(key: &str, minute: i64) -> WindowKey {
    WindowKey {
        rule: "windspeed-avg".into(),
        key: key.into(),
        start_micros: T0 + minute * 60_000_000,
    }
}

fn window(key: &str, minute: i64, readings: &[(&str, f64)]) -> WindowState {
    let mut w = WindowState::new(&wkey(key, minute), &SPEC);
    for (i, (id, v)) in readings.iter().enumerate() {
        w.apply(&Change::Upsert {
            id: (*id).into(),
            value: *v,
            changed_micros: T0 + i as i64,
        });
    }
    w
}

/// What every `WindowStore` must do.
async fn conforms(store: &(impl WindowStore + ShardLedger)) {
    // Ids as the handler makes them (the item key as JSON), a unicode key, extreme values.
    let mut w = window(
        "风机-7",
        0,
        &[(r#"{"id":{"S":"a"}}"#, 61.5), ("b", 1e23), ("c", -40.0)],
    );
    w.apply(&Change::Delete {
        id: "c".into(),
        changed_micros: T0 + 10,
    });
    let close_at = SPEC.close_at(w.start_micros);
    assert_eq!(store.put_window(&w, close_at).await.unwrap(), Written::Ok);
    assert_eq!(
        store.put_window(&w, close_at).await.unwrap(),
        Written::Conflict,
        "a second create loses"
    );
    let mut back = store
        .get_windows(&[wkey("风机-7", 0), wkey("风机-7", 1)])
        .await
        .unwrap();
    assert!(back[1].is_none(), "absent windows read as None, in order");
    let mut stored = back.remove(0).expect("the window reads back");
    assert_eq!(stored.version, 1);
    assert_eq!(
        stored.entries, w.entries,
        "readings and tombstones read back whole"
    );
    assert_eq!(stored.stats().unwrap().max, 1e23);

    // Optimistic concurrency: a writer holding version 1 wins once; the stale one loses.
    stored.apply(&Change::Upsert {
        id: "d".into(),
        value: 70.0,
        changed_micros: T0 + 20,
    });
    assert_eq!(
        store.put_window(&stored, close_at).await.unwrap(),
        Written::Ok
    );
    assert_eq!(
        store.put_window(&stored, close_at).await.unwrap(),
        Written::Conflict
    );

    // The open-window index: unsettled windows by close time, settled ones gone.
    let other = window("device2", 1, &[("x", 30.0)]);
    store
        .put_window(&other, SPEC.close_at(other.start_micros))
        .await
        .unwrap();
    let due = store
        .due_windows("windspeed-avg", SPEC.close_at(T0 + 60_000_000), 10)
        .await
        .unwrap();
    assert_eq!(
        due,
        vec![wkey("风机-7", 0), wkey("device2", 1)],
        "oldest first"
    );
    assert_eq!(
        store
            .due_windows("windspeed-avg", close_at - 1, 10)
            .await
            .unwrap(),
        vec![],
        "not yet due"
    );
    assert_eq!(
        store
            .due_windows("windspeed-avg", i64::MAX, 1)
            .await
            .unwrap(),
        vec![wkey("风机-7", 0)],
        "limit"
    );
    assert_eq!(
        store.due_windows("other-rule", i64::MAX, 10).await.unwrap(),
        vec![]
    );
    let mut closing = store
        .get_windows(&[wkey("风机-7", 0)])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    closing.closed = true;
    store.put_window(&closing, close_at).await.unwrap();
    assert_eq!(
        store
            .due_windows("windspeed-avg", close_at, 10)
            .await
            .unwrap(),
        vec![wkey("风机-7", 0)],
        "closed but not settled: still listed, so a crashed close is finished"
    );
    closing.version += 1;
    closing.settled = true;
    closing.late = [(7u64, T0), (u64::MAX, -1)].into_iter().collect();
    store.put_window(&closing, close_at).await.unwrap();
    assert_eq!(
        store
            .due_windows("windspeed-avg", i64::MAX, 10)
            .await
            .unwrap(),
        vec![wkey("device2", 1)],
        "settled windows leave the index"
    );
    let settled = store
        .get_windows(&[wkey("风机-7", 0)])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(
        (
            settled.closed,
            settled.settled,
            settled.late.len(),
            settled.version
        ),
        (true, true, 2, 4)
    );

    // Key state: created once, then versioned.
    assert_eq!(
        store
            .get_key_state("windspeed-avg", "风机-7")
            .await
            .unwrap(),
        None
    );
    let ks = KeyState {
        rule: "windspeed-avg".into(),
        key: "风机-7".into(),
        firing: true,
        last_closed_start: Some(T0),
        firing_before_last: false,
        version: 0,
    };
    assert_eq!(store.put_key_state(&ks).await.unwrap(), Written::Ok);
    assert_eq!(store.put_key_state(&ks).await.unwrap(), Written::Conflict);
    let back = store
        .get_key_state("windspeed-avg", "风机-7")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, KeyState { version: 1, ..ks });

    // Shard progress: registered once, only ever moving forward.
    let rule = "windspeed-avg";
    assert_eq!(store.ledger(rule).await.unwrap(), Ledger::default());
    let child = ShardProgress {
        shard: "shardId-000000000002".into(),
        parents: vec!["shardId-000000000000".into(), "shardId-000000000001".into()],
        records: Some(T0 - 9),
        ..ShardProgress::default()
    };
    let parent = ShardProgress {
        shard: "shardId-000000000000".into(),
        ..ShardProgress::default()
    };
    store
        .register(rule, &[parent.clone(), child.clone()])
        .await
        .unwrap();
    let again = ShardProgress {
        records: Some(T0 + 99),
        ..child.clone()
    };
    store.register(rule, &[again]).await.unwrap();
    // A sequence number longer than DynamoDB's numbers, then smaller ones: only the
    // greater sequence moves the shard.
    let long = "49590338271490256608559692538361571095921575989136588898";
    store
        .advance(rule, &parent.shard, Some(T0 + 5), long)
        .await
        .unwrap();
    store
        .advance(rule, &parent.shard, Some(T0 + 1), "12345")
        .await
        .unwrap();
    store.advance(rule, &child.shard, None, "7").await.unwrap();
    store.caught_up(rule, &child.shard, T0 + 3).await.unwrap();
    store.caught_up(rule, &child.shard, T0 + 2).await.unwrap();
    store.retire(rule, "shardId-000000000001").await.unwrap();
    let mut ledger = store.ledger(rule).await.unwrap();
    ledger.shards.sort_by(|a, b| a.shard.cmp(&b.shard));
    assert_eq!(
        ledger,
        Ledger {
            listed: true,
            shards: vec![
                ShardProgress {
                    records: Some(T0 + 5),
                    sequence: Some(long.into()),
                    ..parent
                },
                ShardProgress {
                    shard: "shardId-000000000001".into(),
                    retired: true,
                    ..ShardProgress::default()
                },
                ShardProgress {
                    caught_up: Some(T0 + 3),
                    sequence: Some("7".into()),
                    ..child
                },
            ],
        }
    );
    assert_eq!(
        ledger.watermark(),
        Some(T0 - 9).max(Some(T0 + 3)).min(Some(T0 + 5))
    );
    assert_eq!(store.ledger("other-rule").await.unwrap(), Ledger::default());
}

#[tokio::test]
async fn embedded_store_conforms() {
    conforms(&EmbeddedWindowStore::new()).await;
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

use streamwatch_tests::create_windows_table;

async fn items(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<HashMap<String, AttributeValue>> {
    ddb.scan()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_conforms_and_its_items_carry_ttl_and_index_keys() {
    let moto = MotoServer::start();
    let ddb = client(&moto).await;
    create_windows_table(&ddb, "windows").await;
    let ttl = Duration::from_secs(48 * 3600);
    let store = DynamoDbWindowStore::new(ddb.clone(), "windows", ttl);
    conforms(&store).await;

    let all = items(&ddb, "windows").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Two windows, one key state, three shards and the listed marker: every one expires
    // about `ttl` from now.
    assert_eq!(all.len(), 7);
    for item in &all {
        let expires: u64 = item["ttl"].as_n().unwrap().parse().unwrap();
        assert!(
            expires.abs_diff(now + ttl.as_secs()) < 300,
            "ttl on {:?}",
            item["sk"]
        );
    }
    let by_sk = |key: &str, sk: &str| {
        all.iter()
            .find(|i| i["pk"].as_s().unwrap() == key && i["sk"].as_s().unwrap() == sk)
            .unwrap_or_else(|| panic!("item {key} {sk}"))
    };
    let settled = by_sk("windspeed-avg#风机-7", &format!("w#{T0:020}"));
    assert!(!settled.contains_key("open_shard") && !settled.contains_key("close_at"));
    assert_eq!(
        settled["count"].as_n().unwrap(),
        "3",
        "derived statistics for people"
    );
    assert_eq!(settled["late"].as_n().unwrap(), "2");
    let open = by_sk(
        "windspeed-avg#device2",
        &format!("w#{:020}", T0 + 60_000_000),
    );
    assert_eq!(
        open["close_at"].as_n().unwrap(),
        &SPEC.close_at(T0 + 60_000_000).to_string()
    );
    assert!(
        open["open_shard"]
            .as_s()
            .unwrap()
            .starts_with("windspeed-avg#open#")
    );
    by_sk("windspeed-avg#风机-7", "state");
    by_sk("windspeed-avg", "#listed");
    let shard = by_sk("windspeed-avg", "shardId-000000000000");
    assert_eq!(
        shard["seq"].as_s().unwrap().len(),
        128,
        "sequence numbers stored zero-padded: DynamoDB's string order is numeric order"
    );
    // The index holds the open window only (sparse).
    let mut in_index = 0;
    for b in 0..streamwatch_adapters::windows::OPEN_BUCKETS {
        in_index += ddb
            .query()
            .table_name("windows")
            .index_name(OPEN_INDEX)
            .key_condition_expression("open_shard = :b")
            .expression_attribute_values(":b", AttributeValue::S(format!("windspeed-avg#open#{b}")))
            .send()
            .await
            .unwrap()
            .count;
    }
    assert_eq!(in_index, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_due_windows_pages_through_many_open_windows() {
    let moto = MotoServer::start();
    let ddb = client(&moto).await;
    create_windows_table(&ddb, "windows").await;
    let store = DynamoDbWindowStore::new(ddb, "windows", Duration::from_secs(3600));
    for k in 0..120 {
        let w = window(&format!("device{k}"), k % 3, &[("r", 50.0)]);
        store
            .put_window(&w, SPEC.close_at(w.start_micros))
            .await
            .unwrap();
    }
    let due = store
        .due_windows("windspeed-avg", i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(due.len(), 100);
    assert!(
        due.windows(2)
            .all(|p| p[0].start_micros <= p[1].start_micros),
        "oldest first across the index buckets"
    );
    let all = store
        .due_windows("windspeed-avg", i64::MAX, 1000)
        .await
        .unwrap();
    assert_eq!(all.len(), 120);
}
