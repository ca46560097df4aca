//! De-aggregate + decode + JSON field extraction over the 5.6 MB KPL accidents fixture:
//! the work every metrics-publisher invocation does before it publishes anything.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use streamwatch_core::{FieldPath, Fields, JsonObject, record};

const EVENT: &[u8] = include_bytes!("../../../tests/fixtures/kinesis-accidents-kpl.json");

/// Returns (user records, sum of Severity) so nothing can be optimised away.
fn decode_all(bytes: &[u8], paths: &[FieldPath]) -> (usize, f64) {
    let event = record::parse_event(bytes).expect("fixture parses");
    let mut n = 0;
    let mut severity = 0.0;
    for parent in record::parents(&event) {
        for user in parent.user_records().expect("fixture de-aggregates") {
            let obj = JsonObject::parse(user.data).expect("fixture is JSON");
            severity += obj.field(&paths[0]).and_then(|v| v.as_f64()).unwrap_or(0.0);
            for p in &paths[1..] {
                black_box(obj.field(p));
            }
            n += 1;
        }
    }
    (n, severity)
}

fn bench(c: &mut Criterion) {
    let paths: Vec<FieldPath> = ["Severity", "City", "County", "Txn_Timestamp"]
        .iter()
        .map(|p| FieldPath::parse(p).unwrap())
        .collect();
    let (records, _) = decode_all(EVENT, &paths);
    let mut group = c.benchmark_group("kpl-accidents");
    group.throughput(Throughput::Elements(records as u64));
    group.sample_size(30);
    group.bench_function("envelope+deaggregate+json-fields", |b| {
        b.iter(|| decode_all(black_box(EVENT), &paths))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
