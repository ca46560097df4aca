//! The DynamoDB window store under the real handler, against moto: window items with
//! their readings, TTL and open-window index entries; closing through the index (no scan)
//! into alert records in the alerts table; concurrent invocations on two shards; and the
//! model-based property test of `exactly_once.rs`, with few cases, read back from DynamoDB.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::json;
use streamwatch_adapters::DynamoDbAlertOutbox;
use streamwatch_adapters::alerts::alert_from_item;
use streamwatch_adapters::shards::EmbeddedShardProbe;
use streamwatch_adapters::windows::DynamoDbWindowStore;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use streamwatch_core::{AlertKind, KinesisEvent};
use streamwatch_tests::MotoServer;
use window_aggregator::{Config, Deps, close_idle, process_batch};

use common::{MIN, T0, TestClock};

async fn setup(moto: &MotoServer) -> aws_sdk_dynamodb::Client {
    let ddb = client(moto).await;
    create_tables(&ddb, "windows", "alerts").await;
    ddb
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

async fn create_tables(ddb: &aws_sdk_dynamodb::Client, windows: &str, alerts: &str) {
    streamwatch_tests::create_windows_table(ddb, windows).await;
    streamwatch_tests::create_alerts_table(ddb, alerts).await;
}

use streamwatch_tests::scan_all;

/// The property test of `exactly_once.rs` against DynamoDB: a few cases, each on fresh tables.
#[test]
fn windows_and_alerts_equal_the_model_against_dynamodb() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let moto = MotoServer::start();
    let ddb = rt.block_on(client(&moto));
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 8,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(&(common::steps(60), any::<u64>()), |(steps, seed)| {
            let n = case.fetch_add(1, Ordering::SeqCst);
            let (wt, at) = (format!("windows-{n}"), format!("alerts-{n}"));
            rt.block_on(async {
                create_tables(&ddb, &wt, &at).await;
                let deps = Deps {
                    config: common::config(&wt, &at),
                    store: DynamoDbWindowStore::new(ddb.clone(), &wt, Duration::from_secs(3600)),
                    outbox: DynamoDbAlertOutbox::new(ddb.clone(), &at),
                    probe: EmbeddedShardProbe::new(),
                    clock: TestClock(AtomicI64::new(T0)),
                };
                let (model, counted) = common::run(&deps, &common::plan(&steps, seed)).await;
                let windows =
                    streamwatch_adapters::windows::windows_from_items(&scan_all(&ddb, &wt).await);
                let alerts: Vec<_> = scan_all(&ddb, &at)
                    .await
                    .iter()
                    .filter_map(alert_from_item)
                    .collect();
                let want = model.windows();
                prop_assert_eq!(common::observed_windows(&windows), want.clone());
                prop_assert_eq!(common::observed_alerts(&alerts, &want), model.alerts());
                prop_assert_eq!((counted.late, counted.future), (model.late, model.future));
                Ok(())
            })
        })
        .unwrap();
}

fn reading(shard: usize, seq: u64, device: &str, value: u32, created: i64) -> KinesisEventRecord {
    let item = format!("item-{shard}-{seq}");
    let data = json!({"eventID": format!("ev-{shard}-{seq}"), "eventName": "INSERT", "eventSource": "aws:dynamodb", "dynamodb": {
        "ApproximateCreationDateTime": created + 100, "ApproximateCreationDateTimePrecision": "MICROSECOND",
        "Keys": {"id": {"S": item}},
        "NewImage": {"id": {"S": item}, "deviceID": {"S": device}, "value": {"N": value.to_string()}, "createdAt": {"S": streamwatch_core::time::format_micros(created)}}}});
    let sequence_number = format!("4959033827149025660855969253836157109592157{seq:013}");
    KinesisEventRecord {
        kinesis: KinesisRecord {
            partition_key: item,
            sequence_number: sequence_number.clone(),
            data: data.to_string().into_bytes().into(),
            ..Default::default()
        },
        event_id: Some(format!("shardId-{shard:012}:{sequence_number}")),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_persist_close_through_the_index_and_alert_once() {
    let moto = MotoServer::start();
    let ddb = setup(&moto).await;
    let deps = Deps {
        config: Config::from_source(&[("WINDOWS_TABLE", "windows"), ("ALERTS_TABLE", "alerts")])
            .unwrap(),
        store: DynamoDbWindowStore::new(ddb.clone(), "windows", Duration::from_secs(48 * 3600)),
        outbox: DynamoDbAlertOutbox::new(ddb.clone(), "alerts"),
        probe: EmbeddedShardProbe::with_shards(2),
        clock: TestClock(AtomicI64::new(T0)),
    };
    // device1 above 60 in minute 0 on two shards at once; device2 calm.
    let shard = |s: usize, base: u32| -> KinesisEvent {
        KinesisEvent {
            records: (0..6)
                .map(|i| {
                    reading(
                        s,
                        (s * 100 + i) as u64,
                        if i % 2 == 0 { "device1" } else { "device2" },
                        if i % 2 == 0 { base + i as u32 } else { 40 },
                        T0 + i as i64 * 5_000_000,
                    )
                })
                .collect(),
        }
    };
    let (a, b) = (shard(0, 70), shard(1, 62));
    let (ra, rb) = futures::join!(process_batch(&deps, &a), process_batch(&deps, &b));
    assert!(ra.0.batch_item_failures.is_empty() && rb.0.batch_item_failures.is_empty());
    // A retry of shard 0's batch changes nothing.
    process_batch(&deps, &a).await;

    let items = ddb
        .scan()
        .table_name("windows")
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let chunks: Vec<_> = items
        .iter()
        .filter(|i| i["sk"].as_s().unwrap().starts_with("c#"))
        .collect();
    assert_eq!(
        chunks.len(),
        2,
        "one chunk per (shard, window start): the retry rewrote its own"
    );
    for c in &chunks {
        // Two keys' names, then six changes of about 16 bytes: both devices in one item.
        let d = c["d"].as_b().unwrap().as_ref();
        assert!(d.len() <= 2 + (1 + 7) * 2 + 6 * 20, "{} bytes", d.len());
        assert!(c["ttl"].as_n().unwrap().parse::<u64>().unwrap() > 1_700_000_000);
    }
    let windows = streamwatch_adapters::windows::windows_from_items(&items);
    let d1 = windows.iter().find(|w| w.key == "device1").unwrap();
    assert_eq!(
        d1.stats().unwrap().count,
        6,
        "readings from both shards aggregate into one window"
    );
    let start = items
        .iter()
        .find(|i| i["sk"].as_s().unwrap() == "s")
        .unwrap();
    assert!(
        start.contains_key("open_shard")
            && *start["close_at"].as_n().unwrap() == (T0 + MIN + 5_000_000).to_string()
    );
    let d1 = start;
    let open = ddb
        .query()
        .table_name("windows")
        .index_name("open-windows")
        .key_condition_expression("open_shard = :b AND close_at <= :t")
        .expression_attribute_values(":b", d1["open_shard"].clone())
        .expression_attribute_values(
            ":t",
            aws_sdk_dynamodb::types::AttributeValue::N((T0 + 2 * MIN).to_string()),
        )
        .send()
        .await
        .unwrap();
    assert!(open.count >= 1, "open windows are in the sparse index");

    // The schedule closes both idle windows once end + lateness + grace has passed.
    deps.clock.0.store(T0 + MIN + 15_000_000, Ordering::SeqCst);
    let report = close_idle(&deps).await.unwrap();
    assert_eq!(report.windows_closed, 2);
    assert_eq!(
        close_idle(&deps).await.unwrap().windows_closed,
        0,
        "closed windows leave the index"
    );
    let alerts: Vec<_> = ddb
        .scan()
        .table_name("alerts")
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .iter()
        .filter_map(alert_from_item)
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, AlertKind::Firing);
    assert_eq!(alerts[0].key, "device1");
    let w = alerts[0].window.as_ref().unwrap();
    assert_eq!((w.count, w.min, w.max), (6, 62.0, 74.0));
    let closed = ddb
        .scan()
        .table_name("windows")
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert!(
        closed
            .iter()
            .filter(|i| i["sk"].as_s().unwrap() == "s")
            .all(|i| i["closed"].as_bool().unwrap() == &true && !i.contains_key("open_shard"))
    );
    assert!(
        streamwatch_adapters::windows::windows_from_items(&closed)
            .iter()
            .all(|w| w.closed)
    );
}
