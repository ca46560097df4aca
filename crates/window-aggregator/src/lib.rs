//! `window-aggregator`: the wind-turbine pipeline's replacement for the reference Flink job.
//! Event-time tumbling windows per key (default: per turbine, 60 s, average wind speed),
//! state in DynamoDB, exactly-once under Lambda retries, alerts when a window closes
//! above the threshold and a `resolved` record when a firing key's window closes back
//! under it.
//!
//! # Exactly once, by construction
//!
//! Each window item keeps the readings it holds by identity (the DynamoDB item key of the
//! reading, or the Kinesis coordinates of a plain JSON record), last-writer-wins by change
//! time, with tombstones for REMOVE (see `streamwatch_core::window`). Applying a change
//! twice is a no-op, so a replayed batch, a suffix, a bisected half, or the same change
//! record delivered again under a new sequence number (same `eventID`, same item key and
//! change time) leaves every window as processing it once. Writes are conditional on the
//! item's version: concurrent invocations on other shards touching the same window re-read
//! and re-apply instead of overwriting each other. One conditional write per (key, window)
//! per batch, after one batched read. No per-shard sequence bookkeeping is needed, so the
//! design does not depend on `ParallelizationFactor` (the template sets 1 anyway, to keep
//! each shard's watermark advancing in order).
//!
//! INSERT adds a reading; MODIFY replaces it (and, when the old image puts it in another
//! key or window, retracts it there); REMOVE retracts it while its window is open. A REMOVE
//! without an old image cannot say which window it belongs to and is skipped as malformed;
//! a MODIFY without one replaces the reading by item key, which is exact unless it moved.
//!
//! # Closing
//!
//! Each shard's watermark (max event time seen) is kept in the table; a window closes when
//! the least watermark over the shards that have delivered records passes its end plus
//! the allowed lateness (the reference's 5 s), and, for keys that went quiet, when the
//! schedule finds it in the sparse `open-windows` index with its end plus lateness plus a
//! grace period in the wall-clock past — a Query, never a Scan. Closing writes the alert
//! first (a conditional put: one per window, ever), then the key's firing state, then marks
//! the window closed, so a crash anywhere re-decides identically. Records for a closed
//! window are late: counted on the item and in the `LateRecords` metric, never applied.
//! A shard that starts delivering after the others' watermark passed its first records'
//! windows sees those records counted late (only at startup of a new shard).

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
