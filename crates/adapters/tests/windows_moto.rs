//! The window stores against the same checks: DynamoDB (moto server) and embedded. Window
//! starts (open, closed, the sparse open-window index), chunks read back whole and by shard,
//! markers put once, the versioned head, monotonic shard progress; for DynamoDB also the
//! items themselves (TTL, index attributes).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use streamwatch_adapters::windows::{DynamoDbWindowStore, EmbeddedWindowStore, OPEN_INDEX};
use streamwatch_core::progress::{Ledger, ShardLedger, ShardProgress};
use streamwatch_core::window::{
    Chunk, Entry, Head, Mark, WindowSpec, WindowStore, Written, merge_chunks, reading_key,
};
use streamwatch_tests::MotoServer;

const T0: i64 = 1_795_262_400_000_000;
const RULE: &str = "windspeed-avg";
const SPEC: WindowSpec = WindowSpec {
    size_micros: 60_000_000,
    lateness_micros: 5_000_000,
};
const SHARD0: &str = "shardId-000000000000";
const SHARD1: &str = "shardId-000000000001";

fn start(minute: i64) -> i64 {
    T0 + minute * 60_000_000
}

fn up(value: f64, t: i64) -> Entry {
    Entry {
        value,
        changed_micros: t,
        deleted: false,
    }
}

fn chunk(shard: &str, first: &str, last: &str, changes: &[(&str, &str, Entry)]) -> Chunk {
    Chunk::with_changes(
        shard,
        first,
        last,
        changes
            .iter()
            .map(|(key, id, e)| (*key, reading_key(id), *e)),
    )
}

async fn open(store: &impl WindowStore, minute: i64) {
    let st = start(minute);
    store
        .open_start(RULE, st, st + SPEC.size_micros, SPEC.close_at(st))
        .await
        .unwrap();
}

/// What every `WindowStore` must do.
async fn conforms(store: &(impl WindowStore + ShardLedger)) {
    // Window starts: unknown, then open (idempotently), listed as due by close time.
    assert_eq!(store.starts(RULE, &[start(0)]).await.unwrap(), vec![None]);
    open(store, 0).await;
    open(store, 0).await;
    open(store, 1).await;
    assert_eq!(
        store
            .starts(RULE, &[start(1), start(2), start(0)])
            .await
            .unwrap(),
        vec![Some(false), None, Some(false)],
        "in the order asked"
    );
    // Chunks: ids as the handler makes them, a unicode key, extreme values, a tombstone.
    let a = chunk(
        SHARD0,
        "49590338271490256608559692538361571095921575989136588898",
        "49590338271490256608559692538361571095921575989136588899",
        &[
            ("风机-7", r#"{"id":{"S":"a"}}"#, up(61.5, T0)),
            ("风机-7", "b", up(1e23, T0 + 1)),
            ("device2", "c", up(-40.0, T0 + 2)),
        ],
    );
    let b = chunk(
        SHARD1,
        "7",
        "9",
        &[
            (
                "device2",
                "c",
                Entry {
                    value: 0.0,
                    changed_micros: T0 + 10,
                    deleted: true,
                },
            ),
            ("device2", "d", up(30.0, T0 + 11)),
        ],
    );
    store.put_chunk(RULE, start(0), &a).await.unwrap();
    store.put_chunk(RULE, start(0), &b).await.unwrap();
    store.put_chunk(RULE, start(0), &b).await.unwrap();
    let mut all = store.chunks(RULE, start(0), None).await.unwrap();
    all.sort_by(|x, y| x.shard.cmp(&y.shard));
    assert_eq!(
        all,
        vec![a.clone(), b.clone()],
        "read back whole; the same chunk twice is one"
    );
    assert_eq!(
        store
            .chunks(RULE, start(0), Some(&[SHARD1.to_owned()]))
            .await
            .unwrap(),
        vec![b.clone()],
        "by shard"
    );
    assert!(store.chunks(RULE, start(1), None).await.unwrap().is_empty());
    let windows = merge_chunks(RULE, &SPEC, start(0), &all);
    let stats: Vec<_> = windows
        .iter()
        .map(|w| (w.key.as_str(), w.stats().map(|s| (s.count, s.max))))
        .collect();
    assert_eq!(
        stats,
        vec![("device2", Some((1, 30.0))), ("风机-7", Some((2, 1e23)))]
    );

    // A chunk bigger than one item: split into parts, every change read back.
    let big: Vec<(String, String, Entry)> = (0..14_000)
        .map(|i| {
            (
                format!("device{}", i % 700),
                format!("r{i}"),
                up(f64::from(i), T0 + i64::from(i)),
            )
        })
        .collect();
    let big = Chunk::with_changes(
        SHARD0,
        "100",
        "200",
        big.iter()
            .map(|(k, id, e)| (k.as_str(), reading_key(id), *e)),
    );
    store.put_chunk(RULE, start(1), &big).await.unwrap();
    let parts = store.chunks(RULE, start(1), None).await.unwrap();
    assert!(parts.len() > 1, "split under the item size limit");
    let merged = merge_chunks(RULE, &SPEC, start(1), &parts);
    assert_eq!(merged.len(), 700);
    assert_eq!(
        merged.iter().map(|w| w.entries.len()).sum::<usize>(),
        14_000
    );

    // Markers: put once.
    let late = Mark::Late {
        key: "风机-7".into(),
        id: 7,
        changed_micros: T0,
    };
    assert!(store.mark_once(RULE, start(0), &late).await.unwrap());
    assert!(!store.mark_once(RULE, start(0), &late).await.unwrap());
    let other = Mark::Late {
        key: "风机-7".into(),
        id: 7,
        changed_micros: T0 + 1,
    };
    assert!(
        store.mark_once(RULE, start(0), &other).await.unwrap(),
        "another change of the reading"
    );
    assert!(
        store.mark_once(RULE, start(1), &late).await.unwrap(),
        "another start"
    );

    // Due starts: by close time, oldest first, per rule; closed ones leave the index.
    assert_eq!(
        store
            .due_starts(RULE, SPEC.close_at(start(1)), 10)
            .await
            .unwrap(),
        vec![start(0), start(1)]
    );
    assert_eq!(
        store
            .due_starts(RULE, SPEC.close_at(start(0)) - 1, 10)
            .await
            .unwrap(),
        Vec::<i64>::new(),
        "not yet due"
    );
    assert_eq!(
        store.due_starts(RULE, i64::MAX, 1).await.unwrap(),
        vec![start(0)],
        "limit"
    );
    assert_eq!(
        store.due_starts("other-rule", i64::MAX, 10).await.unwrap(),
        Vec::<i64>::new()
    );
    // Frozen: closed (chunks are refused) but still due until its decision is recorded.
    assert!(store.close_start(RULE, start(0)).await.unwrap());
    assert_eq!(
        store.starts(RULE, &[start(0)]).await.unwrap(),
        vec![Some(true)]
    );
    assert_eq!(
        store.put_chunk(RULE, start(0), &b).await.unwrap(),
        Written::Conflict,
        "a frozen start refuses chunks"
    );
    assert_eq!(
        store.put_chunk(RULE, start(2), &b).await.unwrap(),
        Written::Conflict,
        "so does a start never opened"
    );
    assert_eq!(
        store.due_starts(RULE, i64::MAX, 10).await.unwrap(),
        vec![start(0), start(1)]
    );
    store.settle_start(RULE, start(0)).await.unwrap();
    assert_eq!(
        store.due_starts(RULE, i64::MAX, 10).await.unwrap(),
        vec![start(1)]
    );
    assert!(
        !store.close_start(RULE, start(0)).await.unwrap(),
        "closing a settled start again: another closer finished it"
    );
    open(store, 0).await;
    assert_eq!(
        store.starts(RULE, &[start(0)]).await.unwrap(),
        vec![Some(true)],
        "opening a closed start does nothing"
    );

    // The head: created once, then versioned.
    assert_eq!(store.head(RULE).await.unwrap(), Head::default());
    let h = Head {
        last_closed: Some(start(0)),
        firing: ["风机-7".to_owned()].into(),
        version: 0,
    };
    assert_eq!(store.put_head(RULE, &h).await.unwrap(), Written::Ok);
    assert_eq!(store.put_head(RULE, &h).await.unwrap(), Written::Conflict);
    let back = store.head(RULE).await.unwrap();
    assert_eq!(
        back,
        Head {
            version: 1,
            ..h.clone()
        }
    );
    let next = Head {
        last_closed: Some(start(1)),
        firing: Default::default(),
        ..back.clone()
    };
    assert_eq!(store.put_head(RULE, &next).await.unwrap(), Written::Ok);
    assert_eq!(
        store.put_head(RULE, &back).await.unwrap(),
        Written::Conflict,
        "a stale writer loses"
    );
    assert_eq!(store.head(RULE).await.unwrap(), Head { version: 2, ..next });

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
    let by_sk = |key: &str, sk: &str| {
        all.iter()
            .find(|i| i["pk"].as_s().unwrap() == key && i["sk"].as_s().unwrap() == sk)
            .unwrap_or_else(|| panic!("item {key} {sk}"))
    };
    // Every item expires about `ttl` from now.
    for item in &all {
        let expires: u64 = item["ttl"].as_n().unwrap().parse().unwrap();
        assert!(
            expires.abs_diff(now + ttl.as_secs()) < 300,
            "ttl on {:?}",
            item["sk"]
        );
    }
    let closed = by_sk(&format!("windspeed-avg#{:020}", start(0)), "s");
    assert!(!closed.contains_key("open_shard") && !closed.contains_key("close_at"));
    let open = by_sk(&format!("windspeed-avg#{:020}", start(1)), "s");
    assert_eq!(
        open["close_at"].as_n().unwrap(),
        &SPEC.close_at(start(1)).to_string()
    );
    assert_eq!(open["open_shard"].as_s().unwrap(), "windspeed-avg#open");
    by_sk("windspeed-avg", "#head");
    by_sk("windspeed-avg", "#listed");
    let shard = by_sk("windspeed-avg", "shardId-000000000000");
    assert_eq!(
        shard["seq"].as_s().unwrap().len(),
        128,
        "sequence numbers stored zero-padded: DynamoDB's string order is numeric order"
    );
    // The index holds the open start only (sparse).
    let in_index = ddb
        .query()
        .table_name("windows")
        .index_name(OPEN_INDEX)
        .key_condition_expression("open_shard = :b")
        .expression_attribute_values(":b", AttributeValue::S("windspeed-avg#open".into()))
        .send()
        .await
        .unwrap()
        .count;
    assert_eq!(in_index, 1);
    // Chunks cost what they hold: 27 bytes a change plus the key names, not a whole window.
    let a = all
        .iter()
        .find(|i| {
            i["sk"]
                .as_s()
                .unwrap()
                .starts_with(&format!("c#{SHARD0}#4959"))
        })
        .unwrap();
    assert!(a["d"].as_b().unwrap().as_ref().len() < 3 * 27 + 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_due_starts_pages_through_many_open_starts() {
    let moto = MotoServer::start();
    let ddb = client(&moto).await;
    create_windows_table(&ddb, "windows").await;
    let store = DynamoDbWindowStore::new(ddb, "windows", Duration::from_secs(3600));
    for m in (0..120).rev() {
        open(&store, m).await;
    }
    let due = store.due_starts(RULE, i64::MAX, 100).await.unwrap();
    assert_eq!(due, (0..100).map(start).collect::<Vec<_>>(), "oldest first");
    assert_eq!(
        store.due_starts(RULE, i64::MAX, 1000).await.unwrap().len(),
        120
    );
}
