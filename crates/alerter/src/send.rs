//! Sending one notification: claim it (`pending → sending` with a lease), publish, mark it
//! sent — the one path every notification takes (an alert's, a group batch's, a resumed
//! one's), so a notification sent meanwhile is never sent again — and the retry of transient
//! failures around each call.

use streamwatch_core::PortError;
use streamwatch_core::clock::micros;
use streamwatch_core::notify::group::GroupStore;
use streamwatch_core::notify::silence::SilenceStore;
use streamwatch_core::notify::{AlertStateStore, ClaimOutcome, MarkOutcome, Notifier};
use tracing::warn;

use crate::handler::{AlertError, Backoff, Clock, Deps};

/// Calls `op` until it succeeds, fails permanently, or the policy's attempts are used up.
pub(crate) async fn retry<T, F, Fut>(policy: &Backoff, mut op: F) -> Result<T, PortError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PortError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && policy.retries_after(attempt) => {
                warn!(operation = e.operation, attempt, error = %e, "transient failure; retrying");
                tokio::time::sleep(policy.delay(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Claims notification `id`, publishes `message`, marks it sent: `Some(lease_lost)` when
/// published, `None` when the notification could not be claimed or the claim was lost
/// (read it again). A failed publish releases the claim, so the next attempt need not
/// wait for the lease.
pub(crate) async fn send_claimed<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    id: &str,
    message: &streamwatch_core::notify::Message,
    owner: &str,
) -> Result<Option<bool>, AlertError>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let policy = &deps.settings.retry;
    let lease = micros(deps.settings.claim_lease);
    let now = deps.clock.now_micros();
    let claimed = retry(policy, || {
        deps.store.claim(id, owner, now, now.saturating_add(lease))
    })
    .await?;
    if claimed == ClaimOutcome::NotClaimable {
        return Ok(None);
    }
    let message_id = match publish(deps, message, id, owner).await {
        Ok(Some(message_id)) => message_id,
        // Our claim expired between attempts and someone else took it over.
        Ok(None) => return Ok(None),
        Err(err) => {
            // SNS refused or did not answer: let the next delivery claim at once.
            if let Err(release) = deps.store.release(id, owner).await {
                warn!(alert_id = id, error = %release, "could not release the claim; it expires with its lease");
            }
            return Err(AlertError::Publish(err));
        }
    };
    // If this fails, the message is out but not marked: the lease expires and the
    // next delivery sends it again (the at-least-once case).
    let marked = retry(policy, || {
        deps.store
            .mark_sent(id, owner, &message_id, deps.clock.now_micros())
    })
    .await?;
    Ok(Some(marked == MarkOutcome::LeaseLost))
}

/// Publishes with retries. Before each retry the claim is renewed, so a publish never
/// starts on a lease that might run out mid-call; `None` if the claim was lost.
async fn publish<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    message: &streamwatch_core::notify::Message,
    alert_id: &str,
    owner: &str,
) -> Result<Option<String>, PortError>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let policy = &deps.settings.retry;
    let lease = micros(deps.settings.claim_lease);
    let mut attempt = 1;
    loop {
        if attempt > 1 {
            let now = deps.clock.now_micros();
            let renewed = deps
                .store
                .claim(alert_id, owner, now, now.saturating_add(lease))
                .await?;
            if renewed == ClaimOutcome::NotClaimable {
                return Ok(None);
            }
        }
        match deps.notifier.publish(message).await {
            Ok(id) => return Ok(Some(id)),
            Err(e) if e.is_transient() && policy.retries_after(attempt) => {
                warn!(alert_id, attempt, error = %e, "publish failed; retrying");
                tokio::time::sleep(policy.delay(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
