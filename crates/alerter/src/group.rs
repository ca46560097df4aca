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

use streamwatch_core::AlertRecord;
use streamwatch_core::PortError;
use streamwatch_core::notify::group::{
    GroupBatch, GroupKey, GroupPolicy, GroupStore, Joined, MAX_BATCH_ALERTS, is_due, on_flush,
    on_join, worst_first,
};
use streamwatch_core::time::Micros;

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
