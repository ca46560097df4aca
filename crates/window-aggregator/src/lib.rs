//! `window-aggregator`: the wind-turbine pipeline's replacement for the reference Flink job.
//! Event-time tumbling windows per key (default: per turbine, 60 s, average wind speed),
//! state in DynamoDB, exactly-once under Lambda retries, alerts when a window closes
//! above the threshold and a `resolved` record when a firing key's window closes back
//! under it. One binary serves both triggers: a Kinesis batch (`Records`) and the
//! EventBridge schedule (`source: aws.events`); [`handle`] tells them apart.
//!
//! # Exactly once, by construction; flat cost per reading
//!
//! Windows keep the readings they hold by identity (the DynamoDB item key of the reading,
//! or the Kinesis coordinates of a plain JSON record), last-writer-wins by change time,
//! with tombstones for REMOVE (see `streamwatch_core::window`). Applying a change twice is
//! a no-op and the order of changes does not matter, so a replayed batch, a suffix, a
//! bisected half, or the same change record delivered again under a new sequence number
//! (same `eventID`, same item key and change time) leaves every window as processing it
//! once — for the window's whole lifetime, not a bounded dedupe horizon.
//!
//! A batch does not rewrite windows: per window start it touched it appends one chunk item
//! per shard holding every key's on-time changes (27 bytes each), and reads nothing back
//! on the common path. Closing merges a start's chunks. So a reading is written about
//! once, in an item shared with hundreds of others: the write units per reading stay
//! near 0.03 however many keys, shards and batches there are (`docs/cost.md`), where
//! rewriting each (key, window) item per batch cost ~3 per reading at 500 turbines.
//! Readings stamped ahead of their record and late changes are rare: each is checked
//! against the chunks its own shard lineage wrote and counted once with a conditional
//! marker put.
//!
//! Why not `ADD` with per-shard sequence high-water marks: min and max are not `ADD`-able,
//! a MODIFY or REMOVE needs the value it replaces, and a change record duplicated under a
//! new sequence number passes any sequence check — each needs per-reading memory anyway.
//!
//! The template sets `ParallelizationFactor` to 1: a shard's progress is judged record by
//! record in shard order, which concurrent batches of one shard would not keep.
//!
//! INSERT adds a reading; MODIFY replaces it (and, when the old image puts it in another
//! key or window, retracts it there); REMOVE retracts it while its window is open. A REMOVE
//! without an old image cannot say which window it belongs to and is skipped as malformed;
//! a MODIFY without one replaces the reading by item key, which is exact unless it moved.
//!
//! # Time
//!
//! The time model is `streamwatch_core::progress`: each shard's progress is the highest
//! event time it delivered, bounded by each record's own time (a device clock running
//! ahead moves nothing; its readings still go to their own windows, and those more than
//! `MAX_FUTURE_SKEW_SECONDS` ahead count as `FutureRecords`); a reading is late when its
//! own shard had progressed past its window's end plus `ALLOWED_LATENESS_SECONDS` when it
//! arrived; a window closes when every live shard of the stream has. Shards are learned from
//! the stream (`ListShards`, `STREAM_ARN`): one that has not delivered holds closing back, a
//! parent retires when its child delivers or when it is read to its end, a child starts
//! where its parents got to. Wall clock enters only through the schedule's probe: a shard
//! with nothing waiting after the last record the function finished is caught up as of now
//! minus `CLOSE_GRACE_SECONDS`; a shard with a backlog stays where its records are, however
//! long the backlog. So a late reading is late by its own shard's history alone, whatever
//! the wall clock, the iterator age, the other shards or the shard layout.
//!
//! # Closing
//!
//! After each batch and on the schedule, the window starts the watermark passed are found
//! in the sparse `open-windows` index — a Query, never a Scan — and closed oldest first,
//! within the invocation's time budget (the rest waits for the next pass). Closing a start
//! merges its chunks into one window per key, decides each key from the rule's head (the
//! keys firing after the last start closed), writes the alerts (conditional puts: one per
//! window, ever), moves the head on with a conditional write and takes the start out of
//! the index; a crash anywhere is finished identically by the next close pass. Late
//! changes are never applied; each is counted once in `LateRecords`.
//!
//! # Table (`WINDOWS_TABLE`)
//!
//! Hash key `pk` (S), range key `sk` (S); global secondary index `open-windows` with hash
//! `open_shard` (S), range `close_at` (N), projection KEYS_ONLY (sparse: only open window
//! starts carry those attributes); TTL on the attribute `ttl`. Item layout in
//! `streamwatch_adapters::windows`.
//!
//! # Metrics
//!
//! Every invocation prints one CloudWatch Embedded Metric Format line (namespace
//! `OPS_METRIC_NAMESPACE`): `RecordsIn`, `Readings`, `Malformed`, `LateRecords`,
//! `WindowWrites`, `WindowsClosed`, `AlertsWritten` — no API call, CloudWatch Logs
//! extracts them.

mod batch;
mod close;
pub mod config;
mod decode;
mod report;
mod shards;

pub use batch::{process_batch, process_batch_within};
pub use close::{close_due, close_idle, close_idle_within};
pub use config::{Config, InputFormat};
pub use report::BatchReport;

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use streamwatch_core::progress::{ShardLedger, ShardProbe};
use streamwatch_core::window::WindowStore;
use streamwatch_core::{AlertOutbox, KinesisEvent};

pub use streamwatch_core::clock::{Clock, SystemClock};

/// What the function needs, built once per cold start: the window store (which also keeps
/// the shard ledger), the alerts outbox, the stream probe and the clock.
pub struct Deps<W, A, P, C = SystemClock> {
    pub config: Config,
    pub store: W,
    pub outbox: A,
    pub probe: P,
    pub clock: C,
}

/// Time kept back from the invocation's deadline when closing, so the function answers
/// (and prints its metrics line) before Lambda's timeout: 10 s, or a quarter of the time
/// left when that is less (a short timeout, or a local emulator's).
const CLOSE_RESERVE: Duration = Duration::from_secs(10);

/// What the function is invoked with: a Kinesis batch (`Records`) or the EventBridge
/// schedule (`source: aws.events`). Read straight from the request body into the records:
/// a 6 MB batch is never also held as a JSON tree (that tree took ~50 MB of a 10,000-record
/// batch's 82 MB peak).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Trigger {
    #[serde(rename = "Records")]
    pub records: Option<Vec<streamwatch_core::kinesis::KinesisEventRecord>>,
    pub source: Option<String>,
    #[serde(rename = "detail-type")]
    pub detail_type: Option<String>,
}

/// The Lambda entry point for both triggers: a Kinesis batch, or the scheduled event.
pub async fn handle<W, A, P, C>(
    deps: &Deps<W, A, P, C>,
    event: LambdaEvent<Trigger>,
) -> Result<Value, lambda_runtime::Error>
where
    W: WindowStore + ShardLedger,
    A: AlertOutbox,
    P: ShardProbe,
    C: Clock,
{
    let deadline = deadline(event.context.deadline);
    let trigger = event.payload;
    let now_ms = deps.clock.now_micros() / 1000;
    if let Some(records) = trigger.records {
        let event = KinesisEvent { records };
        let (response, report) = process_batch_within(deps, &event, deadline).await;
        tracing::info!(?report, "batch done");
        println!("{}", report.emf(&deps.config.ops_namespace, now_ms));
        return Ok(serde_json::to_value(response)?);
    }
    if trigger.source.as_deref() == Some("aws.events") || trigger.detail_type.is_some() {
        let report = close_idle_within(deps, deadline).await?;
        tracing::info!(?report, "schedule done");
        println!("{}", report.emf(&deps.config.ops_namespace, now_ms));
        return Ok(
            serde_json::json!({ "windowsClosed": report.windows_closed, "alertsWritten": report.alerts_written }),
        );
    }
    Err(
        "unrecognised event: expected a Kinesis batch (Records) or an EventBridge scheduled event"
            .into(),
    )
}

/// The instant closing must stop: the invocation's deadline (epoch milliseconds) less the
/// reserve; `None` when the context carries none (tests, local runs) or an impossible one.
fn deadline(deadline_ms: u64) -> Option<tokio::time::Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    // Less than a second left as the invocation starts is no deadline Lambda gives (its
    // shortest timeout is 1 s); `cargo lambda watch` sends such values: ignore them.
    if left < Duration::from_secs(1) {
        return None;
    }
    Some(tokio::time::Instant::now() + left.saturating_sub(CLOSE_RESERVE.min(left / 4)))
}
