//! Closing windows: every window whose end plus lateness the stream's watermark passed, per
//! key in window order, within the invocation's time budget; and the schedule, which first
//! probes the stream so that caught-up shards (and idle keys' windows) move on without
//! traffic.

use streamwatch_core::progress::{ShardLedger, ShardProbe};
use streamwatch_core::time::Micros;
use streamwatch_core::window::{KeyState, WindowKey, WindowStore, Written};
use streamwatch_core::{AlertOutbox, PortError, PutOutcome};
use tokio::time::Instant;
use tracing::info;

use crate::batch::MAX_ROUNDS;
use crate::report::BatchReport;
use crate::{Clock, Deps, shards};

/// Closes the windows whose close time is at or before `watermark`, per key in window
/// order. At least one window per call; after that it stops at `deadline` and leaves the
/// rest in the open-window index for the next pass. Concurrent closers (every shard's
/// batches and the schedule) start at different keys, so they rarely meet on a window; when
/// they do, the versioned writes make one of them redo its read.
pub async fn close_due<W: WindowStore, A: AlertOutbox, P, C>(
    deps: &Deps<W, A, P, C>,
    watermark: Micros,
    deadline: Option<Instant>,
    report: &mut BatchReport,
) -> Result<(), PortError> {
    const PAGE: usize = 100;
    let mut closed_any = false;
    loop {
        let mut due = deps
            .store
            .due_windows(&deps.config.rule.name, watermark, PAGE)
            .await?;
        if due.is_empty() {
            return Ok(());
        }
        let n = due.len();
        due.sort_by(|a, b| (&a.key, a.start_micros).cmp(&(&b.key, b.start_micros)));
        rotate_to_a_key(&mut due);
        for key in due {
            if closed_any && deadline.is_some_and(|d| Instant::now() >= d) {
                report.close_deferred = true;
                info!("time budget spent: the remaining due windows wait for the next pass");
                return Ok(());
            }
            close_window(deps, &key, report).await?;
            closed_any = true;
        }
        if n < PAGE {
            return Ok(());
        }
    }
}

/// Starts the list at a key chosen by the clock's low bits, keeping each key's windows in
/// start order.
fn rotate_to_a_key(due: &mut [WindowKey]) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    let mut at = nanos % due.len();
    while at > 0 && due[at].key == due[at - 1].key {
        at -= 1;
    }
    due.rotate_left(at);
}

/// Closes one window in two steps, so the decision is made on final statistics and a
/// crash anywhere is finished identically by the next caller:
/// 1. freeze it (`closed`, a conditional write: a concurrent writer on another shard either
///    landed before, and is in the statistics, or finds the window closed and counts late);
/// 2. decide from the frozen statistics, write the alert (conditional put: once ever), the
///    key's firing state, and mark the window settled, which takes it out of the index.
///
/// Until settled the window stays in the open-window index, so whoever queries next
/// (a batch's close pass or the schedule) completes step 2.
async fn close_window<W: WindowStore, A: AlertOutbox, P, C>(
    deps: &Deps<W, A, P, C>,
    key: &WindowKey,
    report: &mut BatchReport,
) -> Result<(), PortError> {
    let rule = &deps.config.rule;
    let close_at = deps.config.spec.close_at(key.start_micros);
    for _ in 0..MAX_ROUNDS {
        let Some(mut window) = deps
            .store
            .get_windows(std::slice::from_ref(key))
            .await?
            .pop()
            .flatten()
        else {
            return Ok(());
        };
        if window.settled {
            return Ok(());
        }
        // Only late readings ever came for it: it never opened, so there is nothing to
        // decide; settling takes it out of the index.
        if window.entries.is_empty() {
            window.closed = true;
            window.settled = true;
            match deps.store.put_window(&window, close_at).await? {
                Written::Ok => return Ok(()),
                Written::Conflict => continue,
            }
        }
        if !window.closed {
            window.closed = true;
            match deps.store.put_window(&window, close_at).await? {
                Written::Ok => {
                    window.version += 1;
                    report.windows_closed += 1;
                }
                Written::Conflict => continue,
            }
        }
        let stats = window.stats();
        let ks = deps.store.get_key_state(&key.rule, &key.key).await?;
        let mut ks = ks.unwrap_or_else(|| KeyState {
            rule: key.rule.clone(),
            key: key.key.clone(),
            ..KeyState::default()
        });
        // Recorded already (a retry of this close), or a later window of the key closed
        // first (only under a race with the schedule): keep the key state as it is.
        let already = ks.last_closed_start.is_some_and(|s| s >= key.start_micros);
        let firing_before = if ks.last_closed_start == Some(key.start_micros) {
            ks.firing_before_last
        } else {
            ks.firing
        };
        let decision = rule.decide(firing_before, stats.as_ref());
        if let Some(kind) = decision.alert {
            let alert = rule.alert(&window, stats.as_ref(), kind);
            if deps.outbox.put_alert(&alert).await? == PutOutcome::Created {
                report.alerts_written += 1;
                info!(alert = %alert.id, summary = %alert.summary, "alert written");
            }
        }
        if !already {
            ks.firing_before_last = firing_before;
            ks.firing = decision.firing_after;
            ks.last_closed_start = Some(key.start_micros);
            if deps.store.put_key_state(&ks).await? == Written::Conflict {
                continue;
            }
        }
        window.settled = true;
        match deps.store.put_window(&window, close_at).await? {
            Written::Ok => return Ok(()),
            // A late record's counter landed in between: read again, decide the same way.
            Written::Conflict => continue,
        }
    }
    Err(PortError::transient(
        "windows.close",
        "too many concurrent writers",
    ))
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
