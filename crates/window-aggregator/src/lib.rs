//! `window-aggregator`: the wind-turbine pipeline's replacement for the reference Flink job.
//! Event-time tumbling windows per key (default: per turbine, 60 s, average wind speed),
//! state in DynamoDB, exactly-once under Lambda retries, alerts when a window closes
//! above the threshold and a `resolved` record when a firing key's window closes back
//! under it. One binary serves both triggers: a Kinesis batch (`Records`) and the
//! EventBridge schedule (`source: aws.events`); [`handle`] tells them apart.
//!
//! # Exactly once, by construction
//!
//! Each window item keeps the readings it holds by identity (the DynamoDB item key of the
//! reading, or the Kinesis coordinates of a plain JSON record), last-writer-wins by change
//! time, with tombstones for REMOVE (see `streamwatch_core::window`). Applying a change
//! twice is a no-op and the order of changes does not matter, so a replayed batch, a
//! suffix, a bisected half, or the same change record delivered again under a new sequence
//! number (same `eventID`, same item key and change time) leaves every window as
//! processing it once — for the window's whole lifetime, not a bounded dedupe horizon.
//! Writes are conditional on the item's version: concurrent invocations on other shards
//! touching the same window re-read and re-apply instead of overwriting each other. One
//! conditional write per (key, window) per batch, after one batched read (BatchGetItem).
//!
//! Why not `ADD` with per-shard sequence high-water marks: min and max are not `ADD`-able,
//! a MODIFY or REMOVE needs the value it replaces, and a change record duplicated under a
//! new sequence number passes any sequence check — each needs per-reading memory anyway.
//! Keeping the readings makes all three exact; the bound is the item size (≤ 400 KB, about
//! 5,000 readings per key per window; a write beyond it is rejected by DynamoDB, logged,
//! and its records dropped, never retried forever).
//!
//! No per-shard sequence bookkeeping is needed, so exactly-once does not depend on
//! `ParallelizationFactor`. The template sets it to 1 all the same: each shard's watermark
//! is its max event time *in delivery order*; with several concurrent batches per shard a
//! later batch could raise it before an earlier one is applied and make that one's
//! records late.
//!
//! INSERT adds a reading; MODIFY replaces it (and, when the old image puts it in another
//! key or window, retracts it there); REMOVE retracts it while its window is open. A REMOVE
//! without an old image cannot say which window it belongs to and is skipped as malformed;
//! a MODIFY without one replaces the reading by item key, which is exact unless it moved.
//!
//! # Closing
//!
//! Each shard's watermark (max event time seen) is kept in the table. The watermark is the
//! least of them over the shards that have delivered records — every shard has passed it —
//! but never below a stored floor (`#closed`): the highest watermark at which a window
//! was closed or a record judged late. The floor keeps the watermark from going back when a
//! shard joins with older data, so decisions stick: a key's windows close in start order,
//! and a record judged late stays late when it is replayed or duplicated.
//!
//! A window closes when the watermark passes its end plus the allowed lateness (the
//! reference's 5 s) — after each batch — or when the schedule's cut (wall clock minus
//! the grace period) does: the schedule finds due windows in the sparse `open-windows`
//! index — a Query, never a Scan — so an idle key's last window closes within the schedule
//! interval plus lateness plus grace. Closing freezes the window first (its statistics are
//! final from then on; a concurrent writer either landed before or finds it closed), then
//! writes the alert (a conditional put: one per window, ever), the key's firing state, and
//! settles the window out of the index; a crash anywhere is finished identically by the
//! next close pass. Records for a closed window, or for an unopened window the watermark
//! already passed, are late: counted on the item (per delivery) and in the `LateRecords`
//! metric, never applied. A shard whose watermark stops (closed after a reshard, or idle)
//! only delays closing until the schedule; its item expires with the state TTL.
//! `CLOSE_GRACE_SECONDS` must cover the delivery delay (batching window plus iterator
//! age), or records still in flight when the schedule closes their window count late.
//!
//! # Table (`WINDOWS_TABLE`)
//!
//! Hash key `pk` (S), range key `sk` (S); global secondary index `open-windows` with hash
//! `open_shard` (S), range `close_at` (N), projection KEYS_ONLY (sparse: only unsettled
//! windows carry those attributes); TTL on the attribute `ttl`. Item layout in
//! `streamwatch_adapters::windows`.
//!
//! # Metrics
//!
//! Every invocation prints one CloudWatch Embedded Metric Format line (namespace
//! `OPS_METRIC_NAMESPACE`): `RecordsIn`, `Readings`, `Malformed`, `LateRecords`,
//! `WindowWrites`, `WindowsClosed`, `AlertsWritten` — no API call, CloudWatch Logs
//! extracts them.

pub mod config;
pub mod handler;

pub use config::{Config, InputFormat};
pub use handler::{Clock, Deps, Report, SystemClock, close_due, close_idle, process_batch};

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use streamwatch_core::window::WindowStore;
use streamwatch_core::{AlertOutbox, KinesisEvent};

/// The Lambda entry point for both triggers: a Kinesis batch, or the scheduled event.
pub async fn handle<W: WindowStore, A: AlertOutbox, C: Clock>(
    deps: &Deps<W, A, C>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let payload = event.payload;
    let now_ms = deps.clock.now_micros() / 1000;
    if payload.get("Records").is_some() {
        let event: KinesisEvent = serde_json::from_value(payload)?;
        let (response, report) = process_batch(deps, &event).await;
        tracing::info!(?report, "batch done");
        println!("{}", report.emf(&deps.config.ops_namespace, now_ms));
        return Ok(serde_json::to_value(response)?);
    }
    if payload.get("source").and_then(Value::as_str) == Some("aws.events")
        || payload.get("detail-type").is_some()
    {
        let report = close_idle(deps).await?;
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
