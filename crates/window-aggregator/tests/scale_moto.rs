//! ×100 the reference load (500 turbines at 1 Hz on 4 shards) for one simulated minute
//! against moto, through Lambda's batching as the template configures it: the windows are
//! exact, and the write units per reading — from the sizes of the items moto holds, as
//! DynamoDB bills them — stay under 0.1 (the old layout, rewriting each turbine's window
//! item per batch, cost ~3). The embedded store's meter, which the scale bench reports,
//! must agree with what moto holds.

#[path = "common/turbines.rs"]
mod turbines;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use streamwatch_adapters::windows::items::item_size;
use streamwatch_adapters::windows::{DynamoDbWindowStore, EmbeddedWindowStore, windows_from_items};
use streamwatch_tests::{MotoServer, create_windows_table, scan_all};
use turbines::{SEC, Stream, T0, deps, simulate};

const TURBINES: usize = 500;
const SHARDS: usize = 4;

fn units(item: &std::collections::HashMap<String, AttributeValue>) -> u64 {
    item_size(item).div_ceil(1024).max(1) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_turbines_for_a_minute_exact_under_a_tenth_of_a_write_unit_per_reading() {
    let stream = Stream {
        turbines: TURBINES,
        shards: SHARDS,
        seconds: 60,
    };
    let moto = MotoServer::start();
    let config = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    create_windows_table(&ddb, "w").await;
    let d = deps(
        DynamoDbWindowStore::new(ddb.clone(), "w", Duration::from_secs(3600)),
        SHARDS,
    );
    let fig = simulate(&d, &stream).await;
    assert_eq!(fig.readings, TURBINES * 60);

    // The windows, from the table: each turbine's minute, 60 readings, at the speed the
    // stream gave it (70 mph for one turbine in ten this minute, 40 for the others).
    let items = scan_all(&ddb, "w").await;
    let windows = windows_from_items(&items);
    let got: BTreeMap<String, (u64, f64, bool)> = windows
        .iter()
        .map(|w| {
            let s = w.stats().unwrap();
            (w.key.clone(), (s.count, s.avg, w.closed))
        })
        .collect();
    let want: BTreeMap<String, (u64, f64, bool)> = (0..TURBINES)
        .map(|k| {
            let speed = if k % 10 == 0 { 70.0 } else { 40.0 };
            (format!("device{}", k + 1), (60, speed, true))
        })
        .collect();
    assert_eq!(got, want);
    assert!(windows.iter().all(|w| w.start_micros == T0));
    assert_eq!(
        d.outbox.alerts().len(),
        TURBINES / 10,
        "one firing alert per turbine above 60"
    );

    // Write units from what moto holds: each chunk put once; the start item written three
    // times (opened, frozen, settled); the head once per start closed; the shard ledger
    // once per batch.
    let sk =
        |i: &std::collections::HashMap<String, AttributeValue>| i["sk"].as_s().unwrap().clone();
    let start = items
        .iter()
        .find(|i| sk(i) == "s")
        .expect("the window start");
    let head = items.iter().find(|i| sk(i) == "#head").expect("the head");
    let ledger = items
        .iter()
        .find(|i| sk(i).starts_with("shardId-"))
        .expect("a shard's progress");
    let chunks: Vec<_> = items.iter().filter(|i| sk(i).starts_with("c#")).collect();
    let wru = chunks.iter().map(|c| units(c)).sum::<u64>()
        + 3 * units(start)
        + units(head)
        + fig.batches as u64 * units(ledger);
    let per_reading = wru as f64 / fig.readings as f64;
    println!(
        "{} readings, {} batches, {} chunks, {wru} write units: {per_reading:.4} per reading",
        fig.readings,
        fig.batches,
        chunks.len()
    );
    assert!(
        per_reading <= 0.1,
        "{per_reading:.4} write units per reading"
    );

    // The bench's embedded meter bills the same run within a few percent.
    let e = deps(EmbeddedWindowStore::new(), SHARDS);
    let efig = simulate(&e, &stream).await;
    assert_eq!(efig.batches, fig.batches);
    let metered = e.store.meter().units as f64 / efig.readings as f64;
    assert!(
        (metered - per_reading).abs() <= 0.1 * per_reading,
        "embedded meter {metered:.4} vs moto's items {per_reading:.4}"
    );
    assert!(
        fig.latencies.iter().all(|l| *l <= 75 * SEC),
        "alerts within end + lateness + 70 s"
    );
}
