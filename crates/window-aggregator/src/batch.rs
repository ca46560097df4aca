//! A Kinesis batch of readings: judge each against its shard's progress (on time, or late),
//! append the on-time ones to their window starts as one chunk each, count the late ones
//! once, move the shard's progress, and close whatever the stream's watermark passed.

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use streamwatch_core::progress::{Ledger, ShardLedger, ShardProbe, sequence_after};
use streamwatch_core::record::{self, UserRecord};
use streamwatch_core::time::Micros;
use streamwatch_core::window::{Chunk, Mark, WindowStore, Written, reading_key};
use streamwatch_core::{AlertOutbox, KinesisEvent, PortError};
use tokio::time::Instant;
use tracing::warn;

use crate::close::close_due;
use crate::decode::{Op, decode};
use crate::report::BatchReport;
use crate::{Clock, Config, Deps, shards};

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
struct ShardMark {
    parent: usize,
    shard: String,
    progress: Option<Micros>,
    sequence: String,
}

/// A window start's share of the batch, in record order.
#[derive(Default)]
struct Group {
    /// The first record that touches the start: where a retry must start.
    parent: usize,
    /// Changes judged on time, with whether each is stamped ahead of its record.
    on_time: Vec<(Op, bool)>,
    late: Vec<Op>,
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

    let (marks, ops) = judge(config, event, &ledger, &mut report);
    let groups = by_start(ops, skew);
    let starts: Vec<Micros> = groups.keys().copied().collect();
    let known = match deps.store.starts(rule, &starts).await {
        Ok(k) => k,
        Err(e) => {
            warn!(error = %e, "reading window starts failed");
            let first = groups.values().map(|g| g.parent).min();
            return finish(event, report, first, &e);
        }
    };
    let mut failed: Option<(usize, PortError)> = None;
    for ((start, group), known) in groups.into_iter().zip(known) {
        let parent = group.parent;
        let Err(e) = write_start(deps, event, &ledger, start, group, known, &mut report).await
        else {
            continue;
        };
        warn!(window_start = %streamwatch_core::time::format_micros(start), error = %e,
            "window write failed; the batch is retried from its first record");
        if failed.as_ref().is_none_or(|(p, _)| parent < *p) {
            failed = Some((parent, e));
        }
    }

    // What is finished moves its shard: everything before the first failed record.
    let done_before = failed.as_ref().map_or(usize::MAX, |(p, _)| *p);
    advance_shards(deps, &mut ledger, &marks, done_before).await;
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

/// Judges every change against its shard's progress as it stood when the change arrived, in
/// shard order: on time or late. Records the shard already finished (a replayed batch) are
/// skipped, malformed ones counted. Returns where each record left its shard, and the changes.
fn judge(
    config: &Config,
    event: &KinesisEvent,
    ledger: &Ledger,
    report: &mut BatchReport,
) -> (Vec<ShardMark>, Vec<(Op, bool)>) {
    let skew = config.max_future_skew.as_micros() as Micros;
    let mut progress: BTreeMap<String, Option<Micros>> = BTreeMap::new();
    let mut marks: Vec<ShardMark> = Vec::new();
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
            .or_insert_with(|| start_of_shard(ledger, shard));
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
                        Err(reason) => skip(report, &user, reason),
                    }
                }
            }
        }
        marks.push(ShardMark {
            parent: parent.index,
            shard: shard.to_owned(),
            progress: *p,
            sequence: parent.sequence_number.to_owned(),
        });
    }

    (marks, ops)
}

/// The batch's changes by window start, each start with the first record that touches it.
fn by_start(ops: Vec<(Op, bool)>, skew: Micros) -> BTreeMap<Micros, Group> {
    let mut groups: BTreeMap<Micros, Group> = BTreeMap::new();
    for (op, late) in ops {
        let future = op.is_future(skew);
        let g = groups
            .entry(op.window.start_micros)
            .or_insert_with(|| Group {
                parent: op.parent,
                ..Group::default()
            });
        g.parent = g.parent.min(op.parent);
        if late {
            g.late.push(op);
        } else {
            g.on_time.push((op, future));
        }
    }
    groups
}

/// Moves each shard's progress to the last record before `done_before` (the first failed
/// one), in the store and in `ledger`.
async fn advance_shards<W: WindowStore + ShardLedger, A, P, C>(
    deps: &Deps<W, A, P, C>,
    ledger: &mut Ledger,
    marks: &[ShardMark],
    done_before: usize,
) {
    let rule = &deps.config.rule.name;
    let mut last: BTreeMap<&str, &ShardMark> = BTreeMap::new();
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

/// Stores one window start's share of the batch: readings stamped ahead counted once, the
/// on-time changes appended as a chunk per shard (the start opened first, so the closing
/// finds it), then the late ones counted once. A closed start takes nothing more: whatever
/// comes for it is late.
async fn write_start<W: WindowStore, A, P, C>(
    deps: &Deps<W, A, P, C>,
    event: &KinesisEvent,
    ledger: &Ledger,
    start: Micros,
    group: Group,
    known: Option<bool>,
    report: &mut BatchReport,
) -> Result<(), PortError> {
    let rule = &deps.config.rule.name;
    let spec = &deps.config.spec;
    let Group {
        on_time, mut late, ..
    } = group;
    let on_time = if known == Some(true) {
        late.extend(on_time.into_iter().map(|(op, _)| op));
        late.sort_by_key(|op| op.parent);
        Vec::new()
    } else {
        on_time
    };
    if !on_time.is_empty() {
        let ahead = count_future(deps, event, ledger, start, &on_time).await?;
        if known.is_none() {
            let end = start + spec.size_micros;
            deps.store
                .open_start(rule, start, end, spec.close_at(start))
                .await?;
        }
        let mut refused = false;
        for chunk in chunks_of(event, &on_time) {
            match deps.store.put_chunk(rule, start, &chunk).await? {
                Written::Ok => report.windows_written += 1,
                // Closed since it was read: what did not make it in is late.
                Written::Conflict => refused = true,
            }
        }
        if refused {
            // Written, but perhaps after the closing read the chunks: counted late (without
            // the check against stored chunks, which now hold them).
            warn!(window_start = %streamwatch_core::time::format_micros(start),
                "a window start froze as readings were written to it: they are counted late");
            let ops: Vec<Op> = on_time.iter().map(|(op, _)| op.clone()).collect();
            report.late += count_late(deps, event, ledger, start, &ops, false).await?;
        } else {
            // Counted once stored: a retry finds them in the chunk (a lost response to the
            // chunk's write can leave one uncounted, never counted twice).
            report.future += ahead;
        }
    }
    if !late.is_empty() {
        report.late += count_late(deps, event, ledger, start, &late, true).await?;
    }
    Ok(())
}

/// One chunk per shard of the on-time changes, named by their first and last records.
fn chunks_of(event: &KinesisEvent, on_time: &[(Op, bool)]) -> Vec<Chunk> {
    let mut by_shard: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for (op, _) in on_time {
        by_shard.entry(shard_of(event, op)).or_default().push(op);
    }
    by_shard
        .into_iter()
        .map(|(shard, ops)| {
            let seq = |op: &Op| event.records[op.parent].kinesis.sequence_number.as_str();
            Chunk::with_changes(
                shard,
                seq(ops[0]),
                seq(ops[ops.len() - 1]),
                ops.iter().map(|op| {
                    (
                        op.window.key.as_str(),
                        reading_key(op.change.id()),
                        op.change.entry(),
                    )
                }),
            )
        })
        .collect()
}

fn shard_of<'e>(event: &'e KinesisEvent, op: &Op) -> &'e str {
    record::shard_id(&event.records[op.parent])
}

/// The shard and its ancestors: every shard an item's earlier changes can have come from.
fn lineage(ledger: &Ledger, shard: &str) -> Vec<String> {
    let mut out = vec![shard.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if let Some(s) = ledger.get(&out[i]) {
            for p in &s.parents {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        i += 1;
    }
    out
}

/// The stored chunks of `start` the ops' shard lineages wrote.
async fn lineage_chunks<W: WindowStore, A, P, C>(
    deps: &Deps<W, A, P, C>,
    event: &KinesisEvent,
    ledger: &Ledger,
    start: Micros,
    ops: impl Iterator<Item = &Op>,
) -> Result<Vec<Chunk>, PortError> {
    let mut shards: Vec<String> = Vec::new();
    for op in ops {
        for s in lineage(ledger, shard_of(event, op)) {
            if !shards.contains(&s) {
                shards.push(s);
            }
        }
    }
    deps.store
        .chunks(&deps.config.rule.name, start, Some(&shards))
        .await
}

/// Readings stamped ahead of their record that are new to their window: not in a stored
/// chunk of their shard lineage (where a retry of this batch would find them), not earlier
/// in this batch.
async fn count_future<W: WindowStore, A, P, C>(
    deps: &Deps<W, A, P, C>,
    event: &KinesisEvent,
    ledger: &Ledger,
    start: Micros,
    on_time: &[(Op, bool)],
) -> Result<usize, PortError> {
    let ahead = || {
        on_time
            .iter()
            .filter(|(op, f)| *f && !op.change.entry().deleted)
    };
    if ahead().next().is_none() {
        return Ok(0);
    }
    let stored = lineage_chunks(deps, event, ledger, start, ahead().map(|(op, _)| op)).await?;
    let mut held: BTreeSet<(&str, u64)> = BTreeSet::new();
    let mut counted = 0;
    for (op, future) in on_time {
        let (key, id) = (op.window.key.as_str(), reading_key(op.change.id()));
        let first = held.insert((key, id));
        if *future
            && first
            && !op.change.entry().deleted
            && !stored.iter().any(|c| c.entry_of(key, id).is_some())
        {
            counted += 1;
        }
    }
    Ok(counted)
}

/// Late changes, counted once per (key, reading, change) their window does not already hold
/// or supersede (the same change delivered again after its shard moved on is a duplicate,
/// not a lost reading). Without `check_stored` (a chunk just written that holds them) only
/// the marker decides.
async fn count_late<W: WindowStore, A, P, C>(
    deps: &Deps<W, A, P, C>,
    event: &KinesisEvent,
    ledger: &Ledger,
    start: Micros,
    late: &[Op],
    check_stored: bool,
) -> Result<usize, PortError> {
    let stored = if check_stored {
        lineage_chunks(deps, event, ledger, start, late.iter()).await?
    } else {
        Vec::new()
    };
    let mut counted = 0;
    for op in late {
        let (key, id) = (op.window.key.as_str(), reading_key(op.change.id()));
        let t = op.change.changed_micros();
        let held = stored
            .iter()
            .filter_map(|c| c.entry_of(key, id))
            .any(|e| e.changed_micros >= t);
        if held {
            continue;
        }
        let mark = Mark::Late {
            key: key.to_owned(),
            id,
            changed_micros: t,
        };
        if deps
            .store
            .mark_once(&deps.config.rule.name, start, &mark)
            .await?
        {
            counted += 1;
        }
    }
    Ok(counted)
}
