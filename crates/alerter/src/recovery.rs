//! Recovery: notifications that were decided but not sent — SNS or KMS refused them past the
//! stream's retries, the batch went to the on-failure queue (which holds only stream
//! pointers), or the invocation died — are found again in the alerts table (the outbox and
//! its notification records are the source of truth, not the stream) and sent.
//!
//! * [`resume`] (the alerter's schedule): every unsent notification decided more than one
//!   claim lease ago (so live invocations are left alone) is claimed and sent, unless it has
//!   used up `max_attempts` claims: then it is marked `failed` and counted in
//!   `NotificationsFailed` (alarmed), and stays listed until redriven.
//! * Group notifications (`crate::group`) are notification records too: a sealed batch the
//!   schedule could not send is resumed here, its alerts read back from the batch record.
//! * [`redrive`] (`streamwatch alerts redrive`): an operator's `failed`/`pending`
//!   notifications made pending again with their attempts reset, then sent the same way.
//!
//! Both are idempotent: sending goes through the same claim → publish → mark-sent as the
//! stream path, so a notification sent meanwhile is never sent again.

use serde::Serialize;
use streamwatch_core::notify::silence::SilenceStore;
use streamwatch_core::notify::{AlertStateStore, NotificationRecord, NotificationStatus, Notifier};
use streamwatch_core::time::Micros;
use tracing::{info, warn};

use crate::group::{FlushReport, flush_and_send, send_batch};
use crate::handler::{Clock, Deps, NAMESPACE, Processed, deliver};
use streamwatch_core::notify::group::{GroupStore, is_batch_id};

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Unsent notifications looked at.
    pub examined: usize,
    /// Sent by this pass.
    pub sent: usize,
    /// Given up by this pass (`NotificationsFailed`).
    pub newly_failed: usize,
    /// Already `failed`, left for a redrive.
    pub failed: usize,
    /// Sent or claimed by someone else meanwhile, or with their alert gone.
    pub skipped: usize,
    /// Could not be sent this time (the error is logged); tried again next pass.
    pub errors: usize,
    /// The schedule's grouping pass (sealed and sent group notifications).
    pub groups: FlushReport,
}

impl RecoveryReport {
    /// One CloudWatch Embedded Metric Format line.
    pub fn emf(&self, function: &str, timestamp_ms: u128) -> String {
        let counts = [
            ("NotificationsResumed", self.sent),
            ("NotificationsFailed", self.newly_failed),
            ("NotificationsUnsent", self.failed + self.errors),
            ("GroupBatchesSealed", self.groups.sealed),
            ("GroupNotificationsSent", self.groups.sent),
            ("GroupNotificationsUnsent", self.groups.unsent),
        ];
        streamwatch_core::emf::counts_line(
            NAMESPACE,
            &[("FunctionName", function)],
            &counts,
            i64::try_from(timestamp_ms).unwrap_or(i64::MAX),
        )
    }
}

/// Notifications one pass looks at, at most: a pass must end well inside the timeout; the
/// rest wait for the next one.
pub const PASS_LIMIT: usize = 200;

/// Sends the unsent notifications decided more than one claim lease before now.
pub async fn resume<S, N, C, G, Z>(deps: &Deps<S, N, C, G, Z>, owner: &str) -> RecoveryReport
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let mut report = RecoveryReport::default();
    let lease = Micros::try_from(deps.settings.claim_lease.as_micros()).unwrap_or(Micros::MAX);
    let before = deps.clock.now_micros().saturating_sub(lease);
    let unsent = match deps.store.unsent(before, PASS_LIMIT).await {
        Ok(unsent) => unsent,
        Err(err) => {
            warn!(error = %err, "cannot list unsent notifications; next pass");
            report.errors += 1;
            return report;
        }
    };
    for record in unsent {
        send(deps, &record, owner, &mut report).await;
    }
    info!(?report, "recovery pass done");
    report
}

/// Which notifications an operator redrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Id(String),
    /// Every unsent notification decided at or after this time (epoch µs).
    Since(Micros),
}

/// Makes the selected `failed`/`pending` notifications pending again (attempts reset) and
/// sends them.
pub async fn redrive<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    selection: &Selection,
    owner: &str,
) -> Result<RecoveryReport, streamwatch_core::PortError>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let now = deps.clock.now_micros();
    let records: Vec<NotificationRecord> = match selection {
        Selection::Id(id) => deps.store.notification(id).await?.into_iter().collect(),
        Selection::Since(since) => deps
            .store
            .unsent(now.saturating_add(1), usize::MAX)
            .await?
            .into_iter()
            .filter(|r| r.decided_at_micros >= *since)
            .collect(),
    };
    let mut report = RecoveryReport::default();
    for record in records {
        if !deps.store.redrive(&record.alert_id).await? {
            report.examined += 1;
            report.skipped += 1;
            continue;
        }
        let mut fresh = record.clone();
        fresh.status = NotificationStatus::Pending;
        fresh.attempts = 0;
        send(deps, &fresh, owner, &mut report).await;
    }
    Ok(report)
}

async fn send<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    record: &NotificationRecord,
    owner: &str,
    report: &mut RecoveryReport,
) where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    report.examined += 1;
    let id = record.alert_id.as_str();
    match &record.status {
        NotificationStatus::Failed => {
            report.failed += 1;
            return;
        }
        NotificationStatus::Sending {
            lease_until_micros, ..
        } if *lease_until_micros >= deps.clock.now_micros() => {
            report.skipped += 1;
            return;
        }
        _ => {}
    }
    if record.attempts >= deps.settings.max_attempts {
        match deps.store.mark_failed(id, deps.clock.now_micros()).await {
            Ok(true) => {
                report.newly_failed += 1;
                warn!(
                    alert_id = id,
                    attempts = record.attempts,
                    "notification given up after its attempts; `streamwatch alerts redrive` resends it"
                );
            }
            Ok(false) => report.skipped += 1,
            Err(err) => {
                report.errors += 1;
                warn!(alert_id = id, error = %err, "cannot mark the notification failed");
            }
        }
        return;
    }
    if is_batch_id(id) {
        send_group(deps, id, owner, report).await;
        return;
    }
    let alert = match deps.store.alert(id).await {
        Ok(Some(alert)) => alert,
        Ok(None) => {
            report.skipped += 1;
            warn!(
                alert_id = id,
                "unsent notification whose alert is gone (expired?)"
            );
            return;
        }
        Err(err) => {
            report.errors += 1;
            warn!(alert_id = id, error = %err, "cannot read the alert");
            return;
        }
    };
    match deliver(deps, &alert, owner).await {
        Ok(Processed::Sent { kind, .. }) => {
            report.sent += 1;
            info!(
                alert_id = id,
                state = kind.as_str(),
                "notification resumed and sent"
            );
        }
        Ok(_) => report.skipped += 1,
        Err(err) => {
            report.errors += 1;
            warn!(alert_id = id, error = %err, "notification still not sent; next pass");
        }
    }
}

/// Resends a sealed group batch whose notification is still unsent.
async fn send_group<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    id: &str,
    owner: &str,
    report: &mut RecoveryReport,
) where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let batch = match deps.grouping.store.batch(id).await {
        Ok(Some(batch)) => batch,
        Ok(None) => {
            report.skipped += 1;
            warn!(
                notification_id = id,
                "unsent group notification whose batch is gone (expired?)"
            );
            return;
        }
        Err(err) => {
            report.errors += 1;
            warn!(notification_id = id, error = %err, "cannot read the group batch");
            return;
        }
    };
    match send_batch(deps, &batch, owner).await {
        Ok(Processed::Sent { .. }) => {
            report.sent += 1;
            info!(notification_id = id, "group notification resumed and sent");
        }
        Ok(_) => report.skipped += 1,
        Err(err) => {
            report.errors += 1;
            warn!(notification_id = id, error = %err, "group notification still not sent; next pass");
        }
    }
}

/// The schedule's pass (EventBridge `rate(1 minute)`): sends due alert groups, then resumes
/// unsent notifications. Groups first: a batch sealed now is sent now; one that fails is
/// resumed by a later pass.
pub async fn schedule_pass<S, N, C, G, Z>(deps: &Deps<S, N, C, G, Z>, owner: &str) -> RecoveryReport
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let groups = flush_and_send(deps, owner).await;
    let mut report = resume(deps, owner).await;
    report.groups = groups;
    report
}

/// The Lambda entry point for both triggers: a DynamoDB stream batch (`Records`) goes to
/// [`crate::handle_batch`]; anything else is the schedule, which runs a [`schedule_pass`].
pub async fn handle<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    event: lambda_runtime::LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_runtime::Error>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let (payload, context) = event.into_parts();
    if payload.get("Records").is_some() {
        let batch = serde_json::from_value(payload)?;
        let response =
            crate::handle_batch(deps, lambda_runtime::LambdaEvent::new(batch, context)).await?;
        return Ok(serde_json::to_value(response)?);
    }
    let report = schedule_pass(deps, &context.request_id).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    println!("{}", report.emf(&context.env_config.function_name, now_ms));
    Ok(serde_json::to_value(report)?)
}
