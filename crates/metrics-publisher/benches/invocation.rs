//! One full metrics-publisher invocation on the 5.6 MB KPL accidents fixture with the
//! embedded sinks: event JSON parse, de-aggregation, decode, filter, alert records,
//! aggregation and request packing — everything but the network.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metrics_publisher::{Config, Deps, process};
use streamwatch_adapters::{EmbeddedAlertOutbox, EmbeddedMetricSink};
use streamwatch_core::KinesisEvent;

const EVENT: &[u8] = include_bytes!("../../../tests/fixtures/kinesis-accidents-kpl.json");
/// 2026-11-21T12:30:00Z: the fixture's timestamps are within CloudWatch's window.
const NOW: i64 = 1_795_264_200_000_000;

fn bench(c: &mut Criterion) {
    let config = Config::from_source(&[("ALERTS_TABLE", "alerts")]).expect("default config");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let invoke = || {
        let deps = Deps {
            config: config.clone(),
            sink: EmbeddedMetricSink::new(),
            outbox: EmbeddedAlertOutbox::new(),
        };
        let event: KinesisEvent = serde_json::from_slice(black_box(EVENT)).expect("fixture");
        let (_, report) = runtime.block_on(process(&deps, &event, NOW));
        (report, deps.sink.requests())
    };
    let (report, calls) = invoke();
    println!(
        "{} user records, {} selected -> {} datums in {calls} PutMetricData calls (reference: {} calls)",
        report.user_records, report.selected, report.datums, report.selected
    );
    let mut group = c.benchmark_group("metrics-publisher");
    group.throughput(Throughput::Elements(report.user_records as u64));
    group.sample_size(20);
    group.bench_function("invocation/kpl-accidents-5.6MB", |b| b.iter(&invoke));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
