//! One or more full metrics-publisher invocations on an event file with the embedded
//! sinks, for measuring CPU time and peak RSS under `/usr/bin/time -v` and the
//! PutMetricData calls the AWS sink would make.
//!
//! Usage: `invocation EVENT.json [PASSES] [NOW_RFC3339]` — prints one JSON line: the last
//! pass's report, the PutMetricData calls, the reference's calls (one per selected record)
//! and the median wall time per pass. NOW defaults to 2026-11-21T12:30:00Z, half an hour
//! after the fixtures' `Txn_Timestamp`s.
//!
//! With `CLOUDWATCH_ENDPOINT=http://…` (e.g. a moto server) the metrics go through the
//! real CloudWatch sink instead, so the process's CPU time includes building, serialising
//! and signing the PutMetricData requests — the work the Python reference does per record.

use std::time::Instant;

use metrics_publisher::{Config, Deps, process};
use streamwatch_adapters::{CloudWatchSink, EmbeddedAlertOutbox, EmbeddedMetricSink};
use streamwatch_core::KinesisEvent;
use streamwatch_core::time::parse_iso;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: invocation EVENT.json [PASSES] [NOW_RFC3339]");
        std::process::exit(64);
    };
    let passes: usize = args.next().and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let now = args
        .next()
        .as_deref()
        .and_then(parse_iso)
        .unwrap_or(1_795_264_200_000_000);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("invocation: cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let config = match Config::from_source(&[("ALERTS_TABLE", "alerts")]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invocation: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("invocation: {e}");
            std::process::exit(1);
        }
    };
    if let Ok(endpoint) = std::env::var("CLOUDWATCH_ENDPOINT") {
        let sdk = runtime.block_on(
            streamwatch_adapters::aws::defaults()
                .endpoint_url(endpoint)
                .region(aws_config::Region::new("us-east-1"))
                .test_credentials()
                .load(),
        );
        let deps = Deps {
            config,
            sink: CloudWatchSink::new(&sdk),
            outbox: EmbeddedAlertOutbox::new(),
        };
        let mut times = Vec::with_capacity(passes);
        let mut report = None;
        for _ in 0..passes {
            let start = Instant::now();
            let Ok(event) = serde_json::from_slice::<KinesisEvent>(&bytes) else {
                eprintln!("invocation: {path} is not a Kinesis event");
                std::process::exit(1);
            };
            report = Some(runtime.block_on(process(&deps, &event, now)).1);
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({
                "sink": "cloudwatch",
                "passes": passes,
                "median_ms": (times[times.len() / 2] * 1e5).round() / 100.0,
                "put_metric_data_requests": deps.sink.requests(),
                "put_metric_data_calls": deps.sink.calls(),
                "report": report,
            })
        );
        return;
    }
    let mut times = Vec::with_capacity(passes);
    let mut last = None;
    for _ in 0..passes {
        let start = Instant::now();
        let deps = Deps {
            config: config.clone(),
            sink: EmbeddedMetricSink::new(),
            outbox: EmbeddedAlertOutbox::new(),
        };
        let event: KinesisEvent = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("invocation: {path} is not a Kinesis event: {e}");
                std::process::exit(1);
            }
        };
        let (_, report) = runtime.block_on(process(&deps, &event, now));
        times.push(start.elapsed().as_secs_f64());
        last = Some((report, deps.sink.requests()));
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if let Some((report, calls)) = last {
        println!(
            "{}",
            serde_json::json!({
                "event": path,
                "passes": passes,
                "median_ms": (median * 1e5).round() / 100.0,
                "user_records_per_s": (report.user_records as f64 / median).round(),
                "put_metric_data_calls": calls,
                "reference_put_metric_data_calls": report.selected,
                "report": report,
            })
        );
    }
}
