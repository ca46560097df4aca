//! De-aggregate + decode + JSON field extraction over the 5.6 MB KPL accidents fixture:
//! the work every metrics-publisher invocation does before it publishes anything; and its
//! parts on their own: the envelope (JSON + base64), the KPL digests of the batch (lanes vs
//! one message at a time), the JSON of the user records.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use md5::{Digest, Md5};
use std::hint::black_box;
use streamwatch_core::{FieldPath, Fields, JsonObject, kpl, record};

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

    let event = record::parse_event(EVENT).expect("fixture parses");
    let datas: Vec<&[u8]> = event
        .records
        .iter()
        .filter_map(|r| r.kinesis.data.0.as_deref().ok())
        .collect();
    let bytes: usize = datas.iter().map(|d| d.len()).sum();
    let mut parts = c.benchmark_group("kpl-accidents-parts");
    parts.sample_size(20);
    parts.bench_function("envelope-json+base64", |b| {
        b.iter(|| record::parse_event(black_box(EVENT)).map(|e| e.records.len()))
    });
    parts.throughput(Throughput::Bytes(bytes as u64));
    parts.bench_function("digests/lanes(check_digests)", |b| {
        b.iter(|| kpl::check_digests(black_box(&datas).iter().map(|d| Some(*d))))
    });
    parts.bench_function("digests/one-by-one(md-5)", |b| {
        b.iter(|| {
            black_box(&datas)
                .iter()
                .map(|d| {
                    let n = d.len();
                    Md5::digest(&d[4..n - 16]).as_slice() == &d[n - 16..]
                })
                .collect::<Vec<bool>>()
        })
    });
    let users: Vec<&[u8]> = record::parents(&event)
        .flat_map(|p| p.user_records().expect("fixture de-aggregates"))
        .map(|u| u.data)
        .collect();
    parts.throughput(Throughput::Elements(users.len() as u64));
    parts.bench_function("user-json+4-fields", |b| {
        b.iter(|| {
            let mut severity = 0.0;
            for data in black_box(&users) {
                let obj = JsonObject::parse(data).expect("fixture is JSON");
                severity += obj.field(&paths[0]).and_then(|v| v.as_f64()).unwrap_or(0.0);
                for p in &paths[1..] {
                    black_box(obj.field(p));
                }
            }
            severity
        })
    });
    parts.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
