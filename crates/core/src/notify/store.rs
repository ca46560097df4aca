//! What is stored of each decision: the notification record and its life (pending, sending
//! under a lease, sent, failed), and the [`AlertStateStore`] port that records a decision
//! once (with the key's new state, conditional on its version) and claims publishes.

use std::future::Future;

use crate::alert::{AlertKind, AlertRecord};
use crate::ports::PortError;
use crate::time::Micros;

use super::decide::{AlertState, Decision, NotificationKind, Transition};

/// What was decided for an alert, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredDecision {
    Notify(NotificationKind),
    /// Suppressed, with the reason (a [`Suppression`] rendered for people).
    Suppressed(String),
}

/// Where a notification is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationStatus {
    /// Decided, not yet claimed by a publisher.
    Pending,
    /// Claimed by `owner` until `lease_until_micros` (wall clock); after that another
    /// invocation may claim it again, because the owner is presumed dead.
    Sending {
        owner: String,
        lease_until_micros: Micros,
    },
    Sent {
        message_id: String,
        sent_at_micros: Micros,
    },
    /// Never published; the outcome says why.
    Suppressed,
    /// Given up after the configured number of attempts: stays listed (`streamwatch alerts
    /// list --pending`) until `streamwatch alerts redrive` makes it pending again.
    Failed,
}

impl NotificationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending { .. } => "sending",
            Self::Sent { .. } => "sent",
            Self::Suppressed => "suppressed",
            Self::Failed => "failed",
        }
    }

    /// Not sent and not suppressed: what recovery looks for.
    pub fn is_unsent(&self) -> bool {
        matches!(self, Self::Pending | Self::Sending { .. } | Self::Failed)
    }
}

/// The record of what the alerter decided and did about one alert. One per alert id, ever.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    pub alert_id: String,
    pub rule: String,
    pub key: String,
    pub alert_kind: AlertKind,
    pub event_time_micros: Micros,
    pub outcome: StoredDecision,
    pub firing_since_micros: Option<Micros>,
    pub episode_alerts: u64,
    pub status: NotificationStatus,
    /// How many times the notification was claimed for publishing (more than one only
    /// after a lease expired or a publish failed).
    pub attempts: u32,
    pub decided_at_micros: Micros,
}

impl NotificationRecord {
    /// The record of a fresh decision: pending when it notifies, suppressed otherwise.
    pub fn decided(alert: &AlertRecord, transition: &Transition, now_micros: Micros) -> Self {
        let (outcome, status) = match transition.decision {
            Decision::Notify(kind) => (StoredDecision::Notify(kind), NotificationStatus::Pending),
            Decision::Suppress(why) => (
                StoredDecision::Suppressed(why.to_string()),
                NotificationStatus::Suppressed,
            ),
        };
        Self {
            alert_id: alert.id.clone(),
            rule: alert.rule.clone(),
            key: alert.key.clone(),
            alert_kind: alert.kind,
            event_time_micros: alert.event_time_micros,
            outcome,
            firing_since_micros: transition.firing_since_micros,
            episode_alerts: transition.episode_alerts,
            status,
            attempts: 0,
            decided_at_micros: now_micros,
        }
    }

    /// The kind of message to send, when the outcome is to notify.
    pub fn kind(&self) -> Option<NotificationKind> {
        match self.outcome {
            StoredDecision::Notify(kind) => Some(kind),
            StoredDecision::Suppressed(_) => None,
        }
    }
}

/// What [`AlertStateStore::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded,
    /// A decision for this alert exists already (a duplicate or a concurrent invocation).
    AlreadyDecided,
    /// The (rule, key) state moved since it was read: read it again and decide again.
    StateChanged,
}

/// What [`AlertStateStore::claim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// Sent, suppressed, missing, or leased to another owner whose lease has not expired.
    NotClaimable,
}

/// What [`AlertStateStore::mark_sent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOutcome {
    Marked,
    /// The lease expired and another owner claimed the notification: it may be sent twice.
    LeaseLost,
}

/// Where the alerter keeps alert state and notification records.
pub trait AlertStateStore: Send + Sync {
    /// The notification record of an alert (strongly consistent).
    fn notification(
        &self,
        alert_id: &str,
    ) -> impl Future<Output = Result<Option<NotificationRecord>, PortError>> + Send;

    /// The state of a (rule, key) (strongly consistent).
    fn state(
        &self,
        rule: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<AlertState>, PortError>> + Send;

    /// Atomically writes `notification` (which must not exist yet) and `state` (whose stored
    /// version must still be `expected_version`, `None` meaning "no state yet").
    fn record(
        &self,
        notification: &NotificationRecord,
        state: Option<&AlertState>,
        expected_version: Option<u64>,
    ) -> impl Future<Output = Result<RecordOutcome, PortError>> + Send;

    /// `pending → sending`, or re-claims a `sending` notification whose lease expired
    /// (`lease_until < now`) or that `owner` holds already (extending the lease).
    fn claim(
        &self,
        alert_id: &str,
        owner: &str,
        now_micros: Micros,
        lease_until_micros: Micros,
    ) -> impl Future<Output = Result<ClaimOutcome, PortError>> + Send;

    /// `sending → sent` if `owner` still holds the claim. Idempotent: marking again what
    /// `owner` already marked sent with the same `message_id` is `Marked` (the SDK retries
    /// a write whose response was lost; that is not a lost lease).
    fn mark_sent(
        &self,
        alert_id: &str,
        owner: &str,
        message_id: &str,
        now_micros: Micros,
    ) -> impl Future<Output = Result<MarkOutcome, PortError>> + Send;

    /// `sending → pending` if `owner` holds the claim: a publish that failed can be retried
    /// at once by the next invocation instead of after the lease.
    fn release(
        &self,
        alert_id: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Notifications not sent yet (pending, sending, failed) decided before
    /// `decided_before_micros`, oldest first, at most `limit`. From an index, so it may
    /// lag a write by a moment; every action on what it returns is conditional anyway.
    fn unsent(
        &self,
        decided_before_micros: Micros,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<NotificationRecord>, PortError>> + Send;

    /// `pending`, or `sending` with an expired lease, → `failed`: given up on. `false` when
    /// the notification was not in such a state (sent meanwhile, claimed by someone live).
    fn mark_failed(
        &self,
        alert_id: &str,
        now_micros: Micros,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// `failed` (or `pending`) → `pending` with the attempts reset: an operator's redrive.
    /// `false` when the notification is in another state (sent, suppressed, live claim).
    fn redrive(&self, alert_id: &str) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// The alert record itself (the outbox's item), to render a notification again.
    fn alert(
        &self,
        alert_id: &str,
    ) -> impl Future<Output = Result<Option<AlertRecord>, PortError>> + Send;

    /// The `seq`-th alert the outbox wrote for (rule, key) (strongly consistent); `None`
    /// when it is gone (expired) or the store cannot see the outbox.
    fn sequenced_alert(
        &self,
        rule: &str,
        key: &str,
        seq: u64,
    ) -> impl Future<Output = Result<Option<AlertRecord>, PortError>> + Send;
}
