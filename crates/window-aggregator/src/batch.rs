//! A Kinesis batch of readings: judge each against its shard's progress (on time, or late),
//! apply the on-time ones to their windows and remember the late ones, move the shard's
//! progress, and close whatever the stream's watermark passed.

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use streamwatch_core::progress::{Ledger, ShardLedger, ShardProbe, sequence_after};
use streamwatch_core::record::{self, UserRecord};
use streamwatch_core::time::Micros;
use streamwatch_core::window::{Change, WindowKey, WindowState, WindowStore, Written};
use streamwatch_core::{AlertOutbox, KinesisEvent, PortError};
use tokio::time::Instant;
use tracing::warn;

use crate::close::close_due;
use crate::decode::{Op, decode};
use crate::report::BatchReport;
use crate::{Clock, Deps, shards};

/// Conflicting writers settle within a few rounds; beyond that something is wrong.
pub(crate) const MAX_ROUNDS: usize = 20;

fn skip(report: &mut BatchReport, user: &UserRecord<'_>, reason: &str) {
    report.malformed += 1;
    warn!(
        shard = user.shard_id,
        sequence = user.sequence_number,
        sub_sequence = user.sub_sequence_number,
        reason,
        "skipping malformed record"
    );
}

/// Where a shard got to after one Kinesis record of the batch.
struct Mark {
    parent: usize,
    shard: String,
    progress: Option<Micros>,
    sequence: String,
}

/// A window's share of the batch.
#[derive(Default)]
struct Group {
    /// The first record that touches the window: where a retry must start.
    parent: usize,
    on_time: Vec<(Change, bool)>,
    late: Vec<Change>,
}

/// Why a window's changes could not be stored.
enum GroupError {
    Store(PortError),
    /// More readings than one item holds.
    Oversized(usize),
}

/// Processes a Kinesis batch with no deadline for closing.
pub async fn process_batch<W, A, P, C>(
    deps: &Deps<W, A, P, C>,
    event: &KinesisEvent,
) -> (KinesisEventResponse, BatchReport)
where
    W: WindowStore + ShardLedger,
    A: AlertOutbox,
    P: ShardProbe,
    C: Clock,
{
    process_batch_within(deps, event, None).await
}

/// Processes a Kinesis batch; closing stops at `deadline` (leaving the rest due).
#[tracing::instrument(skip_all, fields(records = event.records.len()))]
pub async fn process_batch_within<W, A, P, C>(
    deps: &Deps<W, A, P, C>,
    event: &KinesisEvent,
    deadline: Option<Instant>,
) -> (KinesisEventResponse, BatchReport)
where
    W: WindowStore + ShardLedger,
    A: AlertOutbox,
    P: ShardProbe,
    C: Clock,
{
    let config = &deps.config;
    let rule = &config.rule.name;
    let skew = config.max_future_skew.as_micros() as Micros;
    let mut report = BatchReport {
        records_in: event.records.len(),
        ..BatchReport::default()
    };
    let batch_shards: BTreeSet<&str> = event.records.iter().map(record::shard_id).collect();
    let mut ledger = match deps.store.ledger(rule).await {
        Ok(l) => l,
        Err(e) => return finish(event, report, Some(0), &e),
    };
    if let Err(e) = shards::know(deps, &mut ledger, &batch_shards).await {
        return finish(event, report, Some(0), &e);
    }

    // Judge every change against its shard's progress as it stood when the change arrived,
    // in shard order. Records the shard already finished (a replayed batch) are skipped.
    let mut progress: BTreeMap<String, Option<Micros>> = BTreeMap::new();
    let mut marks: Vec<Mark> = Vec::new();
    let mut ops: Vec<(Op, bool)> = Vec::new();
    for parent in record::parents(event) {
        let shard = parent.shard_id;
        let known = ledger.get(shard);
        if let Some(done) = known.and_then(|s| s.sequence.as_deref())
            && !sequence_after(parent.sequence_number, done)
        {
            report.replayed += 1;
            continue;
        }
        let p = progress
            .entry(shard.to_owned())
            .or_insert_with(|| start_of_shard(&ledger, shard));
        match parent.user_records() {
            Err(e) => {
                report.malformed += 1;
                warn!(shard, sequence = parent.sequence_number, reason = %e.error, "skipping malformed record");
            }
            Ok(users) => {
                for user in users {
                    match decode(config, &user, parent.index) {
                        Ok(decoded) => {
                            report.readings += 1;
                            let before = *p;
                            for op in decoded {
                                *p = (*p).max(Some(op.bounded_time()));
                                if op.is_future(skew) {
                                    warn!(shard, sequence = user.sequence_number, key = %op.window.key,
                                        ahead_s = (op.event_time - op.record_time) / 1_000_000,
                                        "reading stamped ahead of its record: kept in its window, progress not moved");
                                }
                                let late = before.is_some_and(|b| {
                                    config.spec.close_at(op.window.start_micros) <= b
                                });
                                ops.push((op, late));
                            }
                        }
                        Err(reason) => skip(&mut report, &user, reason),
                    }
                }
            }
        }
        marks.push(Mark {
            parent: parent.index,
            shard: shard.to_owned(),
            progress: *p,
            sequence: parent.sequence_number.to_owned(),
        });
    }

    let mut groups: BTreeMap<WindowKey, Group> = BTreeMap::new();
    for (op, late) in ops {
        let future = op.is_future(skew);
        let g = groups.entry(op.window).or_insert_with(|| Group {
            parent: op.parent,
            ..Group::default()
        });
        g.parent = g.parent.min(op.parent);
        if late {
            g.late.push(op.change);
        } else {
            g.on_time.push((op.change, future));
        }
    }
    let keys: Vec<WindowKey> = groups.keys().cloned().collect();
    let stored = match deps.store.get_windows(&keys).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "reading windows failed");
            let first = groups.values().map(|g| g.parent).min();
            return finish(event, report, first, &e);
        }
    };
    let mut failed: Option<(usize, PortError)> = None;
    for ((key, group), current) in groups.into_iter().zip(stored) {
        let error = match apply_group(deps, &key, &group, current, &mut report).await {
            Ok(()) => continue,
            Err(GroupError::Oversized(readings)) => {
                report.oversized += 1;
                warn!(rule = %key.rule, key = %key.key, window_start = %streamwatch_core::time::format_micros(key.start_micros),
                    readings, limit = streamwatch_core::window::MAX_WINDOW_READINGS,
                    "window outgrows one item: its records are reported for retry, then the on-failure queue");
                PortError::permanent("windows.apply", "window outgrows one item")
            }
            Err(GroupError::Store(e)) => {
                warn!(window = ?key, error = %e, "window write failed; the batch is retried from its first record");
                e
            }
        };
        if failed.as_ref().is_none_or(|(p, _)| group.parent < *p) {
            failed = Some((group.parent, error));
        }
    }

    // What is finished moves its shard: everything before the first failed record.
    let done_before = failed.as_ref().map_or(usize::MAX, |(p, _)| *p);
    let mut last: BTreeMap<&str, &Mark> = BTreeMap::new();
    for m in marks.iter().filter(|m| m.parent < done_before) {
        last.insert(&m.shard, m);
    }
    for m in last.values() {
        if let Err(e) = deps
            .store
            .advance(rule, &m.shard, m.progress, &m.sequence)
            .await
        {
            // Not advancing is safe: the records are judged the same way when replayed.
            warn!(shard = %m.shard, error = %e, "recording shard progress failed");
        } else if let Some(s) = ledger.shards.iter_mut().find(|s| s.shard == m.shard) {
            s.records = s.records.max(m.progress);
            s.sequence = Some(m.sequence.clone());
        }
    }
    if let Some((parent, e)) = failed {
        return finish(event, report, Some(parent), &e);
    }
    // Closing is not an effect of particular records: a failure here is logged and left
    // to the next batch or the schedule, never a reason to retry records.
    if let Some(wm) = ledger.watermark()
        && let Err(e) = close_due(deps, wm, deadline, &mut report).await
    {
        warn!(error = %e, "closing windows failed; the next pass retries");
    }
    (KinesisEventResponse::default(), report)
}

/// A shard's progress before this batch: its own or — the first batches of a child shard —
/// its ancestors', whichever is further.
fn start_of_shard(ledger: &Ledger, shard: &str) -> Option<Micros> {
    let own = ledger.get(shard)?;
    own.progress().max(ledger.inherited(shard))
}

fn finish(
    event: &KinesisEvent,
    mut report: BatchReport,
    parent: Option<usize>,
    error: &PortError,
) -> (KinesisEventResponse, BatchReport) {
    let mut response = KinesisEventResponse::default();
    if let Some(p) = parent.and_then(|p| event.records.get(p)) {
        let mut failure = KinesisBatchItemFailure::default();
        failure.item_identifier = Some(p.kinesis.sequence_number.clone());
        report.retry_from = failure.item_identifier.clone();
        response.batch_item_failures.push(failure);
        warn!(retry_from = ?report.retry_from, error = %error, "reporting batch item failure");
    }
    (response, report)
}

/// Applies a window's changes with optimistic concurrency: read, apply, conditional write,
/// and on a conflict (another shard's invocation wrote meanwhile) read again. Counters are
/// taken from the round that was written, so each late or future reading counts once.
async fn apply_group<W: WindowStore, A, P, C>(
    deps: &Deps<W, A, P, C>,
    key: &WindowKey,
    group: &Group,
    mut current: Option<WindowState>,
    report: &mut BatchReport,
) -> Result<(), GroupError> {
    let spec = &deps.config.spec;
    let close_at = spec.close_at(key.start_micros);
    for _ in 0..MAX_ROUNDS {
        let mut state = current
            .take()
            .unwrap_or_else(|| WindowState::new(key, spec));
        let (mut late, mut future, mut changed) = (0, 0, false);
        // A closed window takes nothing more: whatever comes for it is late.
        let late_changes = group.late.iter().chain(
            group
                .on_time
                .iter()
                .filter(|_| state.closed)
                .map(|(c, _)| c),
        );
        let late_changes: Vec<&Change> = late_changes.collect();
        if !state.closed {
            for (c, is_future) in &group.on_time {
                let new_reading = !state.holds(c.id());
                if state.apply(c) {
                    changed = true;
                    future += usize::from(*is_future && new_reading);
                }
            }
        }
        for c in late_changes {
            if state.record_late(c) {
                changed = true;
                late += 1;
            }
        }
        if !changed {
            return Ok(());
        }
        if state.is_oversized() {
            return Err(GroupError::Oversized(
                state.entries.len() + state.late.len(),
            ));
        }
        match deps.store.put_window(&state, close_at).await {
            Ok(Written::Ok) => {
                report.windows_written += 1;
                report.late += late;
                report.future += future;
                return Ok(());
            }
            Ok(Written::Conflict) => {
                report.conflicts += 1;
                current = deps
                    .store
                    .get_windows(std::slice::from_ref(key))
                    .await
                    .map_err(GroupError::Store)?
                    .pop()
                    .flatten();
            }
            Err(e) => return Err(GroupError::Store(e)),
        }
    }
    Err(GroupError::Store(PortError::transient(
        "windows.apply",
        "too many concurrent writers",
    )))
}
