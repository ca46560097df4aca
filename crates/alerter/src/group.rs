//! Alert grouping, applied exactly once over a [`GroupStore`]: an alert *joins* its group
//! (a conditional member write, then the group's due time, conditional on its version); the
//! schedule *flushes* due groups (reads the state and the waiting members, then seals them
//! into the next numbered batch in one conditional write). Whatever the interleaving of
//! joins, duplicates, retries and concurrent flushes, every alert ends in exactly one batch:
//!
//! * a member is written once (conditional on its id) and sealed once (conditional on not
//!   being sealed), and the seal is conditional on the version the flush read;
//! * every join bumps the version *after* writing its member, so a flush that read the
//!   members before a join fails its seal and reads again — or, when the seal came first,
//!   the join sees no due time and sets one: no member is left waiting without a due time.

use std::collections::BTreeMap;
use streamwatch_core::notify::silence::SilenceStore;

use serde::Serialize;
use streamwatch_core::notify::group::{
    GroupBatch, GroupKey, GroupPolicy, GroupState, GroupStore, Joined, MAX_BATCH_ALERTS, is_due,
    on_flush, on_join, worst_first,
};
use streamwatch_core::notify::group_render::render_group;
use streamwatch_core::notify::{AlertStateStore, NotificationKind, NotificationStatus, Notifier};
use streamwatch_core::time::Micros;
use streamwatch_core::{AlertKind, AlertRecord, PortError};
use tracing::{info, warn};

use crate::handler::{AlertError, Clock, Deps, Processed};
use crate::send::{retry, send_claimed};

/// Conditional writes lost to concurrent writers before giving up (each loss means another
/// writer made progress on the same group).
const MAX_CONFLICTS: usize = 50;

/// Adds `alert` to its group; true when it was new. Idempotent.
pub async fn join<G: GroupStore>(
    store: &G,
    policy: &GroupPolicy,
    alert: &AlertRecord,
    now: Micros,
) -> Result<bool, PortError> {
    let group = policy.group_of(alert);
    let joined = store.put_member(&group, alert).await?;
    for _ in 0..MAX_CONFLICTS {
        let state = store.group(&group).await?;
        let next = on_join(state.as_ref(), now, policy);
        if store
            .put_group(&group, state.map(|s| s.version), &next)
            .await?
        {
            return Ok(joined == Joined::New);
        }
    }
    Err(contended(&group))
}

/// Seals the group's waiting members into its next batch if it is due at `now`; the batch
/// sealed by this call, if any.
pub async fn flush<G: GroupStore>(
    store: &G,
    group: &GroupKey,
    now: Micros,
) -> Result<Option<GroupBatch>, PortError> {
    for _ in 0..MAX_CONFLICTS {
        let Some(state) = store.group(group).await? else {
            return Ok(None);
        };
        if !is_due(&state, now) {
            return Ok(None);
        }
        let mut alerts = store.waiting(group).await?;
        worst_first(&mut alerts);
        let more = alerts.len() > MAX_BATCH_ALERTS;
        alerts.truncate(MAX_BATCH_ALERTS);
        let mut next = on_flush(&state, now, alerts.len());
        if more {
            // The rest (the least severe) go in the next batch, at the next pass.
            next.due_micros = Some(now);
        }
        if alerts.is_empty() {
            if store.put_group(group, Some(state.version), &next).await? {
                return Ok(None);
            }
            continue;
        }
        let batch = GroupBatch {
            group: group.clone(),
            number: next.batches,
            alerts,
        };
        if store.seal(state.version, &next, &batch).await? {
            return Ok(Some(batch));
        }
    }
    Err(contended(group))
}

/// The schedule's pass: flushes every due group (at most `limit`); the batches sealed.
pub async fn flush_due<G: GroupStore>(
    store: &G,
    now: Micros,
    limit: usize,
) -> Result<Vec<GroupBatch>, PortError> {
    let mut sealed = Vec::new();
    for group in store.due(now, limit).await? {
        if let Some(batch) = flush(store, &group, now).await? {
            sealed.push(batch);
        }
    }
    Ok(sealed)
}

fn contended(group: &GroupKey) -> PortError {
    PortError::transient(
        "group write",
        format!(
            "group {}: {MAX_CONFLICTS} conditional writes lost to concurrent writers",
            group.id()
        ),
    )
}

/// The rules that group their per-event alerts, and the store their groups live in.
pub struct Grouping<G = NoGroups> {
    pub store: G,
    /// Rule name → its grouping; rules not here send one notification per alert.
    pub policies: BTreeMap<String, GroupPolicy>,
}

impl Grouping<NoGroups> {
    /// No rule groups.
    pub fn off() -> Self {
        Self {
            store: NoGroups,
            policies: BTreeMap::new(),
        }
    }
}

impl<G: GroupStore> Grouping<G> {
    pub fn new(store: G, policies: BTreeMap<String, GroupPolicy>) -> Self {
        Self { store, policies }
    }

    /// The policy `alert` is grouped by: only per-event alerts are (a stateful rule keeps
    /// its per-key episodes: FIRING, REMINDERs, RESOLVED).
    pub fn policy(&self, alert: &AlertRecord) -> Option<&GroupPolicy> {
        if alert.kind != AlertKind::Event {
            return None;
        }
        self.policies.get(&alert.rule).filter(|p| p.groups())
    }
}

/// The store of a deployment where no rule groups: holds nothing, finds nothing due.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGroups;

fn not_configured() -> PortError {
    PortError::permanent(
        "group store",
        "no rule groups its alerts (GROUP_BY is empty)",
    )
}

impl GroupStore for NoGroups {
    async fn put_member(&self, _: &GroupKey, _: &AlertRecord) -> Result<Joined, PortError> {
        Err(not_configured())
    }
    async fn group(&self, _: &GroupKey) -> Result<Option<GroupState>, PortError> {
        Ok(None)
    }
    async fn put_group(
        &self,
        _: &GroupKey,
        _: Option<u64>,
        _: &GroupState,
    ) -> Result<bool, PortError> {
        Err(not_configured())
    }
    async fn waiting(&self, _: &GroupKey) -> Result<Vec<AlertRecord>, PortError> {
        Ok(vec![])
    }
    async fn seal(&self, _: u64, _: &GroupState, _: &GroupBatch) -> Result<bool, PortError> {
        Err(not_configured())
    }
    async fn batch(&self, _: &str) -> Result<Option<GroupBatch>, PortError> {
        Ok(None)
    }
    async fn due(&self, _: Micros, _: usize) -> Result<Vec<GroupKey>, PortError> {
        Ok(vec![])
    }
}

/// Sends one sealed batch through the claim → publish → mark-sent path of its notification
/// record (written by the seal; recorded here if the store could not, as the embedded one).
/// A batch sent before, or claimed by a live sender, is left alone: once per batch.
pub(crate) async fn send_batch<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    batch: &GroupBatch,
    owner: &str,
) -> Result<Processed, AlertError>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let id = batch.notification_id();
    let policy = &deps.settings.retry;
    for _ in 0..MAX_CONFLICTS {
        let Some(record) = retry(policy, || deps.store.notification(&id)).await? else {
            let record = batch.notification(deps.clock.now_micros());
            retry(policy, || deps.store.record(&record, None, None)).await?;
            continue;
        };
        match &record.status {
            NotificationStatus::Sent { .. }
            | NotificationStatus::Suppressed
            | NotificationStatus::Failed => return Ok(Processed::Duplicate),
            NotificationStatus::Sending {
                owner: holder,
                lease_until_micros,
            } if holder != owner && *lease_until_micros >= deps.clock.now_micros() => {
                // A live sender has it; if it dies, recovery resends after the lease.
                return Ok(Processed::Duplicate);
            }
            NotificationStatus::Pending | NotificationStatus::Sending { .. } => {}
        }
        let message = render_group(batch);
        if let Some(lease_lost) = send_claimed(deps, &id, &message, owner).await? {
            return Ok(Processed::Sent {
                kind: NotificationKind::Event,
                lease_lost,
            });
        }
    }
    Err(AlertError::Port(contended(&batch.group)))
}

/// What the schedule's grouping pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    /// Batches sealed by this pass.
    pub sealed: usize,
    /// Group notifications published by this pass.
    pub sent: usize,
    /// Sealed batches not sent now (the error is logged); recovery resends them.
    pub unsent: usize,
}

/// The schedule's grouping pass: seals every due group's waiting alerts into its next batch
/// and sends each batch. A batch that cannot be sent now stays pending in the unsent index,
/// where the recovery pass finds it.
pub async fn flush_and_send<S, N, C, G, Z>(deps: &Deps<S, N, C, G, Z>, owner: &str) -> FlushReport
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let mut report = FlushReport::default();
    let now = deps.clock.now_micros();
    let sealed = match flush_due(&deps.grouping.store, now, crate::recovery::PASS_LIMIT).await {
        Ok(sealed) => sealed,
        Err(err) => {
            warn!(error = %err, "cannot flush due groups; next pass");
            return report;
        }
    };
    report.sealed = sealed.len();
    for batch in &sealed {
        let id = batch.notification_id();
        match send_batch(deps, batch, owner).await {
            Ok(Processed::Sent { .. }) => {
                report.sent += 1;
                info!(
                    notification_id = id,
                    alerts = batch.alerts.len(),
                    "group notification sent"
                );
            }
            Ok(_) => {}
            Err(err) => {
                report.unsent += 1;
                warn!(notification_id = id, error = %err, "group notification not sent; recovery resends it");
            }
        }
    }
    report
}
