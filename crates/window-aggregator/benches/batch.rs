//! Handler cost per batch of change records with the embedded store, and the DynamoDB
//! write requests a batch needs (one per distinct (key, window), never one per record).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use streamwatch_adapters::EmbeddedAlertOutbox;
use streamwatch_adapters::windows::EmbeddedWindowStore;
use streamwatch_core::KinesisEvent;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use window_aggregator::{Config, Deps, SystemClock, process_batch};

const T0: i64 = 1_795_262_400_000_000;

/// `n` readings of `turbines` turbines at 1 Hz each, as change records on one shard.
fn readings(turbines: usize, n: usize) -> Vec<KinesisEventRecord> {
    (0..n)
        .map(|i| {
            let device = format!("device{}", i % turbines + 1);
            let created = T0 + (i / turbines) as i64 * 1_000_000;
            let item = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
            let data = json!({"awsRegion": "us-east-1", "eventID": format!("ev{i}"), "eventName": "INSERT", "recordFormat": "application/json",
                "tableName": "windspeed", "eventSource": "aws:dynamodb", "dynamodb": {
                "ApproximateCreationDateTime": created + 200, "ApproximateCreationDateTimePrecision": "MICROSECOND",
                "Keys": {"id": {"S": item}}, "SizeBytes": 180,
                "NewImage": {"id": {"S": item}, "deviceID": {"S": device}, "value": {"N": (25 + i % 45).to_string()}, "index": {"N": i.to_string()},
                    "createdAt": {"S": streamwatch_core::time::format_micros(created)}, "updatedAt": {"S": streamwatch_core::time::format_micros(created)}}}});
            let seq = format!("4959033827149025660855969253836157109592157{i:013}");
            KinesisEventRecord {
                kinesis: KinesisRecord { partition_key: item, sequence_number: seq.clone(), data: data.to_string().into_bytes().into(), ..Default::default() },
                event_id: Some(format!("shardId-000000000000:{seq}")),
                ..Default::default()
            }
        })
        .collect()
}

fn deps()
-> Deps<EmbeddedWindowStore, EmbeddedAlertOutbox, streamwatch_adapters::shards::EmbeddedShardProbe>
{
    Deps {
        config: Config::from_source(&[("WINDOWS_TABLE", "w"), ("ALERTS_TABLE", "a")]).unwrap(),
        store: EmbeddedWindowStore::new(),
        outbox: EmbeddedAlertOutbox::new(),
        probe: streamwatch_adapters::shards::EmbeddedShardProbe::with_shards(1),
        clock: SystemClock,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (turbines, batch) in [(5, 100), (1000, 100), (1000, 500)] {
        let records = readings(turbines, 20 * batch);
        let d = deps();
        let mut batches = 0;
        let mut pairs = 0;
        for (n, chunk) in records.chunks(batch).enumerate() {
            // Distinct (turbine, minute) pairs in this batch: the floor for window writes.
            let distinct: std::collections::BTreeSet<(usize, i64)> = (n * batch
                ..n * batch + chunk.len())
                .map(|i| (i % turbines, (i / turbines) as i64 / 60))
                .collect();
            pairs += distinct.len();
            rt.block_on(process_batch(
                &d,
                &KinesisEvent {
                    records: chunk.to_vec(),
                },
            ));
            batches += 1;
        }
        println!(
            "{turbines} turbines at 1 Hz, batches of {batch}: {:.1} DynamoDB write requests per batch \
             (window writes, watermark, closes) for {:.1} distinct (turbine, window) pairs; \
             one write per record would be {batch}",
            d.store.writes() as f64 / batches as f64,
            pairs as f64 / batches as f64,
        );
    }
    let records = readings(5, 1000);
    let mut group = c.benchmark_group("window-aggregator");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(30);
    group.bench_function("1000-change-records/5-turbines", |b| {
        b.iter(|| {
            let d = deps();
            for chunk in records.chunks(100) {
                rt.block_on(process_batch(
                    &d,
                    black_box(&KinesisEvent {
                        records: chunk.to_vec(),
                    }),
                ));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
