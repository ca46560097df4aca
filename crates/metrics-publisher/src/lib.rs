//! `metrics-publisher`: the accident pipeline's real-time layer. A Kinesis-triggered Lambda
//! function that de-aggregates KPL records, decodes JSON, publishes CloudWatch metrics for
//! the records a filter selects (default `Severity > 2`, dimensions severity / city /
//! county) and writes a per-event alert (default `Severity >= 4`) to the alerts outbox.
//!
//! # Metrics, aggregated
//!
//! Identical series of a batch (name, dimensions, timestamp bucket at the storage
//! resolution) collapse into one datum with `Values`/`Counts`; datums are packed into
//! PutMetricData requests of ≤ 1,000 datums and ≤ 1 MB, sent concurrently with a small
//! bound. The reference made one call per selected record; the 3,918-record KPL fixture
//! costs 3 calls here (two of accident datums, one of operational metrics). With
//! `METRICS_SINK=emf` the same datums are written as Embedded Metric Format log lines
//! instead, and no API call is made at all.
//!
//! # What counts as malformed
//!
//! A record is skipped, counted in `Malformed` and logged once with shard, sequence and
//! sub-sequence number when: its base64 or KPL aggregate is broken (the parent counts
//! once); its payload is not a JSON object; the filter or alert rule field is missing or
//! of the wrong type (`"Severity": "high"`); a dimension field is missing, null, empty,
//! longer than 1,024 characters, or holds control characters (CloudWatch rejects such a
//! dimension value — and with it the whole request, so it must never reach one); the
//! value field is not a number CloudWatch accepts; or the timestamp field is present but
//! not a time, or outside CloudWatch's window (two weeks back, two hours ahead). A
//! record that is malformed for metrics still gets its alert when the alert rule holds.
//! A missing or null timestamp field means the record's arrival time. Each skipped record
//! also gets a reject line (`reject.rs`) with its bytes, which the raw layer keeps under
//! `rejected/` (docs/archive.md).
//!
//! CloudWatch takes only ASCII dimension values, so non-ASCII ones are folded rather
//! than dropped: `San José` is published as `San Jose` (Latin diacritics removed, any
//! other non-ASCII character becomes `?`). Alerts keep the original text.
//!
//! # Failures and retries
//!
//! Transient failures are retried inside the invocation (the CloudWatch sink with
//! exponential backoff and jitter; the DynamoDB outbox by the SDK's standard retry). What
//! still fails is reported as `batchItemFailures` from the first parent record whose
//! effects are not all durable, and Lambda retries from there:
//!
//! * Alerts are written first. The earliest parent with an alert not written marks the
//!   retry point, and metrics are only published for the parents before it, so the retry
//!   publishes the rest once rather than twice. Alerts are idempotent (conditional put on
//!   an id derived from shard, sequence and sub-sequence number), so a retried record
//!   never makes a second alert.
//! * Metrics are aggregated across parents, so a datum belongs to several. Each datum
//!   remembers the earliest parent that contributed to it; when a request fails for good,
//!   the retry point is the earliest parent of any datum in any failed request. Parents
//!   before it contributed only to requests that succeeded, so they are checkpointed.
//! * Permanent failures (a request CloudWatch rejects as invalid, an alert DynamoDB
//!   rejects) cannot be cured by a retry: they are logged and counted, never reported, so
//!   they cannot block the shard.
//!
//! **Metrics are at-least-once.** Parents from the retry point on may have contributed to
//! requests that did succeed; the retry publishes their samples again, and CloudWatch adds
//! them up twice. Publishing alerts first and ordering requests by earliest parent keep
//! that window small (only a metric request failing after all its retries opens it), but
//! CloudWatch has no idempotent write, so it cannot be closed. The operational metrics
//! (`RecordsIn`, …) count deliveries, so a retried record is counted per delivery.

pub mod config;
pub mod handler;
pub mod reject;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{LambdaEvent, service_fn};
use streamwatch_core::{AlertOutbox, KinesisEvent, MetricSink};

pub use config::{Config, SinkKind};
pub use handler::{BatchReport, Deps, process};

/// The Lambda entry point for one event.
pub async fn handle<S: MetricSink, A: AlertOutbox>(
    deps: &Deps<S, A>,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let (response, report) = process(deps, &event.payload, now).await;
    if deps.config.archive_rejects {
        write_rejects(&report.rejects);
    }
    Ok(response)
}

/// The reject lines to stdout, each with one `write_all` on the locked handle (a log line
/// cannot cut into one), past the log-level filter: LogLevel=ERROR must not lose the raw
/// layer's rejects. A failed write loses only that copy; the warning above it stays.
fn write_rejects(lines: &[String]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = out.write_all(format!("{line}\n").as_bytes());
    }
    let _ = out.flush();
}

/// Serves invocations until the runtime stops.
pub async fn run<S: MetricSink, A: AlertOutbox>(
    deps: Deps<S, A>,
) -> Result<(), lambda_runtime::Error> {
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event| handle(deps, event))).await
}
