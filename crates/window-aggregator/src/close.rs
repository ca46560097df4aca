//! Closing windows: every window start whose end plus lateness the stream's watermark
//! passed, oldest first, within the invocation's time budget; and the schedule, which first
//! probes the stream so that caught-up shards (and idle keys' windows) move on without
//! traffic.

use streamwatch_core::progress::{ShardLedger, ShardProbe};
use streamwatch_core::time::{Micros, format_micros};
use streamwatch_core::window::{Chunk, Head, Mark, WindowStore, Written, merge_chunks};
use streamwatch_core::{AlertOutbox, PortError, PutOutcome};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::batch::MAX_ROUNDS;
use crate::report::BatchReport;
use crate::{Clock, Deps, shards};

/// Closes the window starts whose close time is at or before `watermark`, oldest first.
/// At least one start per call; after that it stops at `deadline` and leaves the rest in
/// the open-window index for the next pass.
pub async fn close_due<W: WindowStore, A: AlertOutbox, P, C>(
    deps: &Deps<W, A, P, C>,
    watermark: Micros,
    deadline: Option<Instant>,
    report: &mut BatchReport,
) -> Result<(), PortError> {
    const PAGE: usize = 20;
    let rule = &deps.config.rule.name;
    let mut closed_any = false;
    loop {
        let due = deps.store.due_starts(rule, watermark, PAGE).await?;
        for start in &due {
            if closed_any && deadline.is_some_and(|d| Instant::now() >= d) {
                report.close_deferred = true;
                info!("time budget spent: the remaining due windows wait for the next pass");
                return Ok(());
            }
            close_start(deps, *start, report).await?;
            closed_any = true;
        }
        if due.len() < PAGE {
            return Ok(());
        }
    }
}

/// Closes one window start: freezes it (a chunk written after that is refused, its
/// readings late), merges its chunks into one window per key, decides each key from the
/// rule's head (firing or not after the last start closed), writes the alerts (conditional
/// puts: once ever), then moves the head on (a conditional write) and takes the start out
/// of the index. A crash anywhere is finished identically by the next closer: the chunks
/// are final once frozen, so it decides the same way, and the alerts it writes again exist
/// already.
async fn close_start<W: WindowStore, A: AlertOutbox, P, C>(
    deps: &Deps<W, A, P, C>,
    start: Micros,
    report: &mut BatchReport,
) -> Result<(), PortError> {
    let rule = &deps.config.rule;
    let name = &rule.name;
    // Freeze first: from here on a chunk is either in what is read below or refused.
    if !deps.store.close_start(name, start).await? {
        // Settled by another closer since the due list was read.
        return Ok(());
    }
    for _ in 0..MAX_ROUNDS {
        let head = deps.store.head(name).await?;
        let chunks = deps.store.chunks(name, start, None).await?;
        if let Some(last) = head.last_closed.filter(|l| *l >= start) {
            // Decided already: by a closer that stopped before taking the start out of the
            // index, or by one that overtook this one since it froze the start (a closer
            // settles a start before it moves the head past it, so the start reads settled).
            // Past it and never settled: opened after its turn, which the watermark rules
            // out; should it happen, its readings are counted late, not dropped unseen.
            if last > start {
                if !deps.store.close_start(name, start).await? {
                    return Ok(());
                }
                count_passed(deps, start, &chunks, report).await?;
            }
            return deps.store.settle_start(name, start).await;
        }
        let windows = merge_chunks(name, &deps.config.spec, start, &chunks);
        let mut next = Head {
            last_closed: Some(start),
            ..head.clone()
        };
        for w in &windows {
            let stats = w.stats();
            let decision = rule.decide(head.firing.contains(&w.key), stats.as_ref());
            if let Some(kind) = decision.alert {
                let alert = rule.alert(w, stats.as_ref(), kind);
                if deps.outbox.put_alert(&alert).await? == PutOutcome::Created {
                    report.alerts_written += 1;
                    info!(alert = %alert.id, summary = %alert.summary, "alert written");
                }
            }
            if decision.firing_after {
                next.firing.insert(w.key.clone());
            } else {
                next.firing.remove(&w.key);
            }
        }
        match deps.store.put_head(name, &next).await? {
            Written::Ok => {
                report.windows_closed += windows.len();
                return deps.store.settle_start(name, start).await;
            }
            Written::Conflict => report.conflicts += 1,
        }
    }
    Err(PortError::transient(
        "windows.close",
        "too many concurrent closers",
    ))
}

/// The changes of a start found open after the head passed it: each counted late once.
async fn count_passed<W: WindowStore, A, P, C>(
    deps: &Deps<W, A, P, C>,
    start: Micros,
    chunks: &[Chunk],
    report: &mut BatchReport,
) -> Result<(), PortError> {
    warn!(window_start = %format_micros(start), "a window start was opened after its turn to close: its readings are counted late");
    let mut seen = std::collections::BTreeSet::new();
    for c in chunks {
        for e in &c.entries {
            let key = &c.keys[e.key as usize];
            if !seen.insert((key, e.id, e.entry.changed_micros)) {
                continue;
            }
            let mark = Mark::Late {
                key: key.clone(),
                id: e.id,
                changed_micros: e.entry.changed_micros,
            };
            if deps
                .store
                .mark_once(&deps.config.rule.name, start, &mark)
                .await?
            {
                report.late += 1;
            }
        }
    }
    Ok(())
}

/// The schedule: probes the stream (caught-up shards move to wall clock minus grace, a
/// shard with a backlog stays where its records are), then closes what the watermark
/// passed — idle keys' windows included — within the time budget.
pub async fn close_idle<W, A, P, C>(deps: &Deps<W, A, P, C>) -> Result<BatchReport, PortError>
where
    W: WindowStore + ShardLedger,
    A: AlertOutbox,
    P: ShardProbe,
    C: Clock,
{
    close_idle_within(deps, None).await
}

/// [`close_idle`] with a deadline for closing.
pub async fn close_idle_within<W, A, P, C>(
    deps: &Deps<W, A, P, C>,
    deadline: Option<Instant>,
) -> Result<BatchReport, PortError>
where
    W: WindowStore + ShardLedger,
    A: AlertOutbox,
    P: ShardProbe,
    C: Clock,
{
    let mut report = BatchReport::default();
    let ledger = shards::probe(deps, deps.clock.now_micros(), &mut report).await?;
    if let Some(wm) = ledger.watermark() {
        close_due(deps, wm, deadline, &mut report).await?;
    }
    Ok(report)
}
