//! Alert notifications: the state machine per (rule, key) that decides which alert becomes a
//! notification (firing, reminder, resolved, per-event) and which is suppressed and why; the
//! rendering of a notification into one SNS message (subject, email, SMS, machine JSON,
//! attributes, within SNS's 256 KB); and the two ports the alerter needs, [`Notifier`] and
//! [`AlertStateStore`] (decisions recorded once, publishes claimed with a lease).
//!
//! All decisions are by *event time* (the alerts' window end / event timestamp), never by
//! the wall clock, so replaying the same alerts in any batching gives the same notifications.
//! Only leases use the wall clock, because they are about live processes.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::alert::{AlertKind, AlertRecord};
use crate::ports::PortError;
use crate::time::{Micros, format_micros};

/// SNS's limit for a whole Publish payload (message, subject and attributes), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// SNS subjects must be ASCII and *less than* 100 characters.
pub const MAX_SUBJECT_CHARS: usize = 99;
/// Kept to one SMS segment's worth of bytes: SNS splits longer texts and bills each part.
pub const MAX_SMS_BYTES: usize = 140;
/// How often a key that keeps firing is reminded, by default.
pub const DEFAULT_REPEAT_INTERVAL_MICROS: Micros = 15 * 60 * 1_000_000;

/// What a notification tells its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// A (rule, key) started firing.
    Firing,
    /// A (rule, key) is still firing, at least one repeat interval after the last message.
    Reminder,
    /// A firing (rule, key) is back under its threshold.
    Resolved,
    /// A per-event alert (no state, no reminder, no resolved).
    Event,
}

impl NotificationKind {
    /// The `state` message attribute, for SNS filter policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Reminder => "reminder",
            Self::Resolved => "resolved",
            Self::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "firing" => Self::Firing,
            "reminder" => Self::Reminder,
            "resolved" => Self::Resolved,
            "event" => Self::Event,
            _ => return None,
        })
    }

    /// The subject tag people scan their inbox for.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Firing => "[FIRING]",
            Self::Reminder => "[REMINDER]",
            Self::Resolved => "[RESOLVED]",
            Self::Event => "[ALERT]",
        }
    }
}

/// Whether a (rule, key) is currently firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Firing,
    Resolved,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(Self::Firing),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// The alert state of one (rule, key), as stored between invocations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub rule: String,
    pub key: String,
    pub status: KeyStatus,
    /// Event time the current status began (first firing alert, or the resolution).
    pub since_micros: Micros,
    /// Event time of the last firing or reminder notification of the current episode.
    pub last_notified_micros: Option<Micros>,
    /// Latest alert event time seen for this (rule, key).
    pub last_event_micros: Micros,
    /// Firing alerts seen since the current episode began (notified or not).
    pub episode_alerts: u64,
    /// Per-key sequence number (the outbox's write order) of the last alert decided;
    /// `None` for a state written before alerts were numbered.
    pub decided_seq: Option<u64>,
    /// Bumped by every decision; stores write conditionally on it, so two invocations
    /// deciding about the same (rule, key) at once cannot both act on the same state.
    pub version: u64,
}

/// Why an alert did not become a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// The key is firing and was notified less than one repeat interval (event time) ago.
    WithinRepeatInterval {
        last_notified_micros: Micros,
        next_reminder_micros: Micros,
    },
    /// A resolved alert for a key that is not firing (never fired, or already resolved).
    NotFiring,
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WithinRepeatInterval {
                last_notified_micros,
                next_reminder_micros,
            } => write!(
                f,
                "within repeat interval: last notified for event time {}, next reminder from {}",
                format_micros(*last_notified_micros),
                format_micros(*next_reminder_micros)
            ),
            Self::NotFiring => f.write_str("not firing: nothing to resolve"),
        }
    }
}

/// What to do with one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Notify(NotificationKind),
    Suppress(Suppression),
}

/// The decision about one alert and the state it moves its (rule, key) to.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub decision: Decision,
    /// The state to write (version already bumped); `None` for per-event alerts.
    pub next: Option<AlertState>,
    /// Start of the firing episode the alert belongs to, for the message.
    pub firing_since_micros: Option<Micros>,
    /// Firing alerts of the episode so far, for the message.
    pub episode_alerts: u64,
}

/// The alert state machine. Per (rule, key), fed the key's alerts in the order the outbox
/// wrote them (the alerter restores that order whatever the delivery order, see
/// `crates/alerter/src/handler.rs`):
///
/// * a firing alert when not firing (no state, or resolved) → **firing**, the episode
///   starts at its event time;
/// * a firing alert while firing → **reminder** when its event time is at least
///   `repeat_micros` after the last notification's, otherwise suppressed. So a key firing
///   for 60 one-minute windows with a 15 min interval gets reminders at windows 16, 31, 46;
/// * a resolved alert while firing → **resolved**; otherwise suppressed (nothing to
///   resolve);
/// * a per-event alert → **event**, always, with no state.
pub fn decide(
    state: Option<&AlertState>,
    alert: &AlertRecord,
    repeat_micros: Micros,
) -> Transition {
    let t = alert.event_time_micros;
    let version = state.map_or(0, |s| s.version) + 1;
    let last_event = state.map_or(t, |s| s.last_event_micros.max(t));
    let decided_seq = state.and_then(|s| s.decided_seq);
    let fresh = |status, since, last_notified, episode_alerts| AlertState {
        rule: alert.rule.clone(),
        key: alert.key.clone(),
        status,
        since_micros: since,
        last_notified_micros: last_notified,
        last_event_micros: last_event,
        episode_alerts,
        decided_seq,
        version,
    };
    match alert.kind {
        AlertKind::Event => Transition {
            decision: Decision::Notify(NotificationKind::Event),
            next: None,
            firing_since_micros: None,
            episode_alerts: 0,
        },
        AlertKind::Firing => match state {
            Some(s) if s.status == KeyStatus::Firing => {
                let episode_alerts = s.episode_alerts + 1;
                let last = s.last_notified_micros.unwrap_or(s.since_micros);
                let next_reminder = last.saturating_add(repeat_micros);
                let (decision, last_notified) = if t >= next_reminder {
                    (Decision::Notify(NotificationKind::Reminder), t)
                } else {
                    let why = Suppression::WithinRepeatInterval {
                        last_notified_micros: last,
                        next_reminder_micros: next_reminder,
                    };
                    (Decision::Suppress(why), last)
                };
                Transition {
                    decision,
                    next: Some(fresh(
                        KeyStatus::Firing,
                        s.since_micros,
                        Some(last_notified),
                        episode_alerts,
                    )),
                    firing_since_micros: Some(s.since_micros),
                    episode_alerts,
                }
            }
            _ => Transition {
                decision: Decision::Notify(NotificationKind::Firing),
                next: Some(fresh(KeyStatus::Firing, t, Some(t), 1)),
                firing_since_micros: Some(t),
                episode_alerts: 1,
            },
        },
        AlertKind::Resolved => match state {
            Some(s) if s.status == KeyStatus::Firing => Transition {
                decision: Decision::Notify(NotificationKind::Resolved),
                next: Some(fresh(KeyStatus::Resolved, t, None, 0)),
                firing_since_micros: Some(s.since_micros),
                episode_alerts: s.episode_alerts,
            },
            Some(s) => Transition {
                decision: Decision::Suppress(Suppression::NotFiring),
                next: Some(fresh(KeyStatus::Resolved, s.since_micros.max(t), None, 0)),
                firing_since_micros: None,
                episode_alerts: 0,
            },
            None => Transition {
                decision: Decision::Suppress(Suppression::NotFiring),
                next: Some(fresh(KeyStatus::Resolved, t, None, 0)),
                firing_since_micros: None,
                episode_alerts: 0,
            },
        },
    }
}

/// What was decided for an alert, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
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
    pub outcome: Outcome,
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
            Decision::Notify(kind) => (Outcome::Notify(kind), NotificationStatus::Pending),
            Decision::Suppress(why) => (
                Outcome::Suppressed(why.to_string()),
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
            Outcome::Notify(kind) => Some(kind),
            Outcome::Suppressed(_) => None,
        }
    }
}

/// A (rule, key) state as the next decision must see it: forgotten (not firing, a fresh
/// episode next) when the alert comes more than `lifetime_micros` of event time after the
/// key's last alert — the same lifetime the window-aggregator keeps its per-key state, so
/// a turbine silent that long while firing starts over in both instead of coming back as
/// a REMINDER "firing for 3 days". The version and sequence are kept: the store's
/// conditional write still applies.
pub fn expire(
    state: Option<AlertState>,
    alert: &AlertRecord,
    lifetime_micros: Micros,
) -> Option<AlertState> {
    let s = state?;
    if alert.event_time_micros.saturating_sub(s.last_event_micros) <= lifetime_micros {
        return Some(s);
    }
    Some(AlertState {
        status: KeyStatus::Resolved,
        since_micros: s.last_event_micros,
        last_notified_micros: None,
        episode_alerts: 0,
        ..s
    })
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

/// Publishes notifications (SNS, or the embedded one for the local pipeline).
pub trait Notifier: Send + Sync {
    /// Publishes one message; returns the service's message id.
    fn publish(&self, message: &Message) -> impl Future<Output = Result<String, PortError>> + Send;
}

/// One notification, rendered for every kind of subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The alert id: unique per notification (FIFO deduplication id, log correlation).
    pub notification_id: String,
    pub kind: NotificationKind,
    /// ASCII, < 100 characters, no line breaks.
    pub subject: String,
    /// The full text for email (and the `default` for protocols not listed).
    pub email: String,
    /// A short text for SMS.
    pub sms: String,
    /// Machine-readable JSON for SQS, Lambda, HTTP(S) and email-json subscribers.
    pub json: String,
    /// `rule`, `key`, `severity`, `state` (only non-empty values: SNS rejects empty ones).
    pub attributes: BTreeMap<String, String>,
}

impl Message {
    /// The `Message` parameter for `MessageStructure: json`: one text per protocol.
    pub fn structured(&self) -> String {
        json!({
            "default": self.email,
            "email": self.email,
            "email-json": self.json,
            "sms": self.sms,
            "sqs": self.json,
            "lambda": self.json,
            "http": self.json,
            "https": self.json,
        })
        .to_string()
    }

    /// Bytes SNS counts against its 256 KB limit: message, subject and attributes.
    pub fn size_bytes(&self) -> usize {
        self.structured().len()
            + self.subject.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>()
    }
}

/// What the message needs besides the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageContext {
    pub kind: NotificationKind,
    pub firing_since_micros: Option<Micros>,
    pub episode_alerts: u64,
    pub repeat_interval_micros: Micros,
}

impl MessageContext {
    /// The context of a notification record; `None` for suppressed ones.
    pub fn of(record: &NotificationRecord, repeat_interval_micros: Micros) -> Option<Self> {
        Some(Self {
            kind: record.kind()?,
            firing_since_micros: record.firing_since_micros,
            episode_alerts: record.episode_alerts,
            repeat_interval_micros,
        })
    }
}

/// How much of an alert's free-form content a rendering keeps.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Characters of each detail value and of each free text (summary, key, rule, ...).
    value_chars: usize,
    details: usize,
    sources: usize,
}

/// Tried in order until the message fits [`MAX_MESSAGE_BYTES`]; the last one is small
/// whatever the alert holds.
const LIMITS: [Limits; 3] = [
    Limits {
        value_chars: 4_000,
        details: 100,
        sources: 20,
    },
    Limits {
        value_chars: 500,
        details: 30,
        sources: 3,
    },
    Limits {
        value_chars: 200,
        details: 0,
        sources: 0,
    },
];

/// Renders one notification. Deterministic: a re-send after a crash sends the same text.
pub fn render(alert: &AlertRecord, ctx: &MessageContext) -> Message {
    let mut message = render_with(alert, ctx, LIMITS[0], false);
    for limits in &LIMITS[1..] {
        if message.size_bytes() <= MAX_MESSAGE_BYTES {
            break;
        }
        message = render_with(alert, ctx, *limits, true);
    }
    message
}

fn render_with(
    alert: &AlertRecord,
    ctx: &MessageContext,
    limits: Limits,
    truncated: bool,
) -> Message {
    let cut = |s: &str| truncate_chars(s, limits.value_chars);
    let summary = cut(&alert.summary);
    let key = cut(&alert.key);
    let rule = cut(&alert.rule);
    let severity = cut(&alert.severity);

    let subject_text = match ctx.kind {
        NotificationKind::Reminder => match ctx.firing_since_micros {
            Some(since) => format!(
                "{summary} (firing for {})",
                // Event times come from records: saturate, a hostile one must not panic.
                human_duration(alert.event_time_micros.saturating_sub(since))
            ),
            None => summary.clone(),
        },
        _ => summary.clone(),
    };
    let subject = ascii_line(
        &format!("{} {subject_text}", ctx.kind.tag()),
        MAX_SUBJECT_CHARS,
    );
    // An SMS has no other fields: name the key unless the summary does.
    let sms_text = if summary.contains(key.as_str()) {
        format!("{} {summary}", ctx.kind.tag())
    } else {
        format!("{} {summary} ({key})", ctx.kind.tag())
    };
    let sms = ascii_line(&sms_text, MAX_SMS_BYTES);

    let details: Vec<(&String, String)> = ordered_details(alert)
        .into_iter()
        .take(limits.details)
        .map(|(k, v)| (k, cut(v)))
        .collect();
    let sources: Vec<&String> = alert.source.iter().take(limits.sources).collect();

    let email = email_text(
        alert, ctx, &summary, &key, &rule, &severity, &details, &sources, truncated,
    );

    let mut machine = json!({
        "schema": "streamwatch.notification/1",
        "state": ctx.kind.as_str(),
        "alert_id": alert.id,
        "rule": rule,
        "key": key,
        "kind": alert.kind.as_str(),
        "severity": severity,
        "summary": summary,
        "event_time": format_micros(alert.event_time_micros),
    });
    if let Some(obj) = machine.as_object_mut() {
        if let Some(since) = ctx.firing_since_micros {
            obj.insert("firing_since".into(), json!(format_micros(since)));
            obj.insert("episode_alerts".into(), json!(ctx.episode_alerts));
        }
        if matches!(
            ctx.kind,
            NotificationKind::Firing | NotificationKind::Reminder
        ) {
            obj.insert(
                "repeat_interval_seconds".into(),
                json!(ctx.repeat_interval_micros / 1_000_000),
            );
        }
        if let Some(w) = &alert.window {
            obj.insert(
                "window".into(),
                json!({
                    "start": format_micros(w.start_micros),
                    "end": format_micros(w.end_micros),
                    "count": w.count,
                    "sum": finite(w.sum),
                    "min": finite(w.min),
                    "max": finite(w.max),
                    "avg": finite(w.avg),
                    "condition": cut(&w.condition),
                    "threshold": finite(w.threshold),
                }),
            );
        }
        if !details.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> = details
                .iter()
                .map(|(k, v)| ((*k).clone(), json!(v)))
                .collect();
            obj.insert("details".into(), serde_json::Value::Object(map));
        }
        if !sources.is_empty() {
            obj.insert("source".into(), json!(sources));
        }
        if truncated {
            obj.insert("truncated".into(), json!(true));
        }
    }

    let attributes = [
        ("rule", rule.as_str()),
        ("key", key.as_str()),
        ("severity", severity.as_str()),
        ("state", ctx.kind.as_str()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.trim().is_empty())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    Message {
        notification_id: alert.id.clone(),
        kind: ctx.kind,
        subject,
        email,
        sms,
        json: machine.to_string(),
        attributes,
    }
}

/// JSON has no NaN or infinity; `null` says "not a number" without breaking parsers.
fn finite(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        serde_json::Value::Null
    }
}

/// The details people look for first (an accident's where/when/how bad), then the rest.
fn ordered_details(alert: &AlertRecord) -> Vec<(&String, &String)> {
    const FIRST: [&str; 7] = [
        "Severity",
        "Start_Time",
        "City",
        "County",
        "State",
        "Street",
        "Description",
    ];
    let mut out: Vec<(&String, &String)> = FIRST
        .iter()
        .filter_map(|name| alert.details.get_key_value(*name))
        .collect();
    out.extend(
        alert
            .details
            .iter()
            .filter(|(k, _)| !FIRST.contains(&k.as_str())),
    );
    out
}

#[allow(clippy::too_many_arguments)]
fn email_text(
    alert: &AlertRecord,
    ctx: &MessageContext,
    summary: &str,
    key: &str,
    rule: &str,
    severity: &str,
    details: &[(&String, String)],
    sources: &[&String],
    truncated: bool,
) -> String {
    let repeat = human_duration(ctx.repeat_interval_micros);
    let event_time = format_micros(alert.event_time_micros);
    let mut out = String::new();
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(out, "{} {summary}", ctx.kind.tag());
    let _ = writeln!(out);
    let headline = match ctx.kind {
        NotificationKind::Firing => format!("{key} started firing rule {rule}."),
        NotificationKind::Reminder => format!("{key} is still firing rule {rule}."),
        NotificationKind::Resolved => format!("{key} is back to normal for rule {rule}."),
        NotificationKind::Event => format!("Rule {rule} matched an event for {key}."),
    };
    let _ = writeln!(out, "{headline}");
    let _ = writeln!(out);
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{:<14}{value}", format!("{name}:"));
    };
    field("Rule", rule);
    field("Key", key);
    if !severity.is_empty() {
        field("Severity", severity);
    }
    field("State", &ctx.kind.as_str().to_uppercase());
    field("Event time", &event_time);
    if let Some(w) = &alert.window {
        field(
            "Window",
            &format!(
                "{} to {} ({})",
                format_micros(w.start_micros),
                format_micros(w.end_micros),
                human_duration(w.end_micros.saturating_sub(w.start_micros))
            ),
        );
        field(
            "Readings",
            &format!(
                "avg {}, min {}, max {}, count {}",
                number(w.avg),
                number(w.min),
                number(w.max),
                w.count
            ),
        );
        field(
            "Condition",
            &format!(
                "{} (threshold {})",
                truncate_chars(&w.condition, 200),
                number(w.threshold)
            ),
        );
    }
    // The first FIRING message is the start of the episode: nothing to add.
    if let (Some(since), true) = (
        ctx.firing_since_micros,
        ctx.kind != NotificationKind::Firing,
    ) {
        let span = alert.event_time_micros.saturating_sub(since);
        let windows = match ctx.episode_alerts {
            1 => "1 firing alert".to_owned(),
            n => format!("{n} firing alerts"),
        };
        field(
            "Firing since",
            &format!(
                "{} ({}, {windows})",
                format_micros(since),
                human_duration(span)
            ),
        );
    }
    if !details.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Details:");
        for (k, v) in details {
            let _ = writeln!(out, "  {:<14}{v}", format!("{k}:"));
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "What to do:");
    let todo = match ctx.kind {
        NotificationKind::Firing => format!(
            "  Check {key} now: the rule's condition held for the whole window. If the \
             readings are real, take it out of harm's way (for a wind turbine: brake or \
             feather it) until the value is back within the rule. While it keeps firing you \
             get a reminder at most every {repeat}, and one RESOLVED message when it clears."
        ),
        NotificationKind::Reminder => format!(
            "  {key} has kept firing since the first message. If someone already handles \
             it, nothing more to do; otherwise check it now. Next reminder no sooner than \
             {repeat} after this one (event time)."
        ),
        NotificationKind::Resolved => format!(
            "  Nothing urgent: {key} is back within the rule. Review what happened during \
             the episode and put back into service anything that was stopped for it."
        ),
        NotificationKind::Event => "  Assess the event now and follow your response procedure \
             (for a traffic accident: inform the local operations team and check closures). \
             This is a one-off alert: no reminder or resolved message follows."
            .to_owned(),
    };
    let _ = writeln!(out, "{todo}");
    let _ = writeln!(out);
    let _ = writeln!(out, "Alert id: {}", truncate_chars(&alert.id, 500));
    if !sources.is_empty() {
        let more = alert.source.len().saturating_sub(sources.len());
        let list: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let _ = writeln!(out, "Source records: {}{tail}", list.join(", "));
    }
    if truncated {
        let _ = writeln!(
            out,
            "(Some details were shortened to fit the 256 KB message limit.)"
        );
    }
    let _ = writeln!(out, "--");
    let _ = write!(out, "Sent by the streamwatch alerter.");
    out
}

/// A number for people: at most two decimals, no trailing zeros.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A duration for people: `45 s`, `15 min`, `1 h 5 min`, `2 d 3 h`.
pub fn human_duration(micros: Micros) -> String {
    let secs = micros.max(0) / 1_000_000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m, s) {
        (0, 0, 0, s) => format!("{s} s"),
        (0, 0, m, 0) => format!("{m} min"),
        (0, 0, m, s) => format!("{m} min {s} s"),
        (0, h, 0, _) => format!("{h} h"),
        (0, h, m, _) => format!("{h} h {m} min"),
        (d, 0, _, _) => format!("{d} d"),
        (d, h, _, _) => format!("{d} d {h} h"),
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) if max < 3 => s.chars().take(max).collect(),
        Some(_) => {
            let mut out: String = s.chars().take(max - 3).collect();
            out.push_str("...");
            out
        }
    }
}

/// One line of printable ASCII, at most `max` characters: what SNS accepts as a subject
/// (and what every SMS alphabet can carry). Non-ASCII characters are folded as CloudWatch
/// dimension values are ([`crate::ascii`]: `San José` → `San Jose`), runs of whitespace
/// and control characters become one space.
pub fn ascii_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(crate::ascii::fold_char(c).unwrap_or("?"));
        }
    }
    if out.len() > max {
        // Everything is ASCII now, so byte and char positions agree.
        out.truncate(max.saturating_sub(3));
        out.truncate(out.trim_end().len());
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::WindowSummary;

    const MIN: Micros = 60_000_000;
    const T0: Micros = 1_795_262_400_000_000;

    fn window_alert(kind: AlertKind, i: i64) -> AlertRecord {
        let start = T0 + i * MIN;
        AlertRecord {
            id: crate::alert::window_alert_id("windspeed-avg", "device3", start, kind),
            rule: "windspeed-avg".into(),
            key: "device3".into(),
            kind,
            severity: "critical".into(),
            summary: match kind {
                AlertKind::Resolved => "Wind speed avg 41 mph <= 60 on device3".into(),
                _ => "Wind speed avg 72.4 mph > 60 on device3".into(),
            },
            event_time_micros: start + MIN,
            window: Some(WindowSummary {
                start_micros: start,
                end_micros: start + MIN,
                count: 12,
                sum: 868.8,
                min: 65.0,
                max: 80.0,
                avg: 72.4,
                condition: "avg > 60".into(),
                threshold: 60.0,
            }),
            details: BTreeMap::new(),
            source: vec![],
        }
    }

    fn run(alerts: &[AlertRecord], repeat: Micros) -> Vec<Decision> {
        let mut state: Option<AlertState> = None;
        alerts
            .iter()
            .map(|a| {
                let t = decide(state.as_ref(), a, repeat);
                if t.next.is_some() {
                    state = t.next.clone();
                }
                t.decision
            })
            .collect()
    }

    fn notified(decisions: &[Decision]) -> Vec<NotificationKind> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Notify(k) => Some(*k),
                Decision::Suppress(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_storm_of_sixty_windows_is_one_firing_three_reminders_one_resolved() {
        let mut alerts: Vec<_> = (0..60)
            .map(|i| window_alert(AlertKind::Firing, i))
            .collect();
        alerts.push(window_alert(AlertKind::Resolved, 60));
        let decisions = run(&alerts, DEFAULT_REPEAT_INTERVAL_MICROS);
        use NotificationKind::*;
        assert_eq!(
            notified(&decisions),
            [Firing, Reminder, Reminder, Reminder, Resolved]
        );
        // Windows 0, 15, 30, 45 notify: each 15 min (event time) after the previous one.
        let at: Vec<usize> = decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d, Decision::Notify(_)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at, [0, 15, 30, 45, 60]);
        assert!(matches!(
            decisions[1],
            Decision::Suppress(Suppression::WithinRepeatInterval { next_reminder_micros, .. })
                if next_reminder_micros == T0 + 16 * MIN
        ));
    }

    #[test]
    fn events_have_no_state_and_resolutions_need_a_firing_key() {
        let mut event = window_alert(AlertKind::Event, 0);
        event.window = None;
        let t = decide(None, &event, MIN);
        assert_eq!(t.decision, Decision::Notify(NotificationKind::Event));
        assert!(t.next.is_none());

        let resolved = window_alert(AlertKind::Resolved, 5);
        let t = decide(None, &resolved, MIN);
        assert_eq!(t.decision, Decision::Suppress(Suppression::NotFiring));
        // The machine is fed in write order: a firing alert after a resolution starts an
        // episode, whatever its event time (the alerter, not the machine, restores order).
        let next = decide(t.next.as_ref(), &window_alert(AlertKind::Firing, 3), MIN);
        assert_eq!(next.decision, Decision::Notify(NotificationKind::Firing));
        assert_eq!(next.next.as_ref().map(|s| s.version), Some(2));
    }

    #[test]
    fn a_key_silent_for_longer_than_the_state_lifetime_starts_a_fresh_episode() {
        let first = decide(None, &window_alert(AlertKind::Firing, 0), MIN);
        let later = window_alert(AlertKind::Firing, 3 * 24 * 60);
        let lifetime = 48 * 60 * MIN;
        let kept = decide(first.next.clone().as_ref(), &later, 15 * MIN);
        assert_eq!(kept.decision, Decision::Notify(NotificationKind::Reminder));
        let state = expire(first.next.clone(), &later, lifetime);
        let fresh = decide(state.as_ref(), &later, 15 * MIN);
        assert_eq!(fresh.decision, Decision::Notify(NotificationKind::Firing));
        assert_eq!(fresh.next.map(|s| s.version), Some(2));
        // Within the lifetime nothing changes.
        let soon = window_alert(AlertKind::Firing, 60);
        assert_eq!(expire(first.next.clone(), &soon, lifetime), first.next);
    }

    #[test]
    fn out_of_order_firing_alerts_never_remind_early() {
        // Window 20 first, then 10: 10 is older than the last notification.
        let alerts = [
            window_alert(AlertKind::Firing, 20),
            window_alert(AlertKind::Firing, 10),
            window_alert(AlertKind::Firing, 34),
            window_alert(AlertKind::Firing, 35),
        ];
        use NotificationKind::*;
        assert_eq!(notified(&run(&alerts, 15 * MIN)), [Firing, Reminder]);
    }

    fn ctx(kind: NotificationKind) -> MessageContext {
        MessageContext {
            kind,
            firing_since_micros: Some(T0 + MIN),
            episode_alerts: 16,
            repeat_interval_micros: DEFAULT_REPEAT_INTERVAL_MICROS,
        }
    }

    #[test]
    fn messages_say_what_happened_and_what_to_do() {
        let firing = render(
            &window_alert(AlertKind::Firing, 0),
            &ctx(NotificationKind::Firing),
        );
        assert_eq!(
            firing.subject,
            "[FIRING] Wind speed avg 72.4 mph > 60 on device3"
        );
        assert!(firing.email.contains(
            "Window:       2026-11-21T12:00:00.000Z to 2026-11-21T12:01:00.000Z (1 min)"
        ));
        assert!(firing.email.contains("avg 72.4, min 65, max 80, count 12"));
        assert!(firing.email.contains("What to do:"));
        assert_eq!(firing.attributes["state"], "firing");
        assert_eq!(firing.attributes["key"], "device3");
        let machine: serde_json::Value = serde_json::from_str(&firing.json).unwrap();
        assert_eq!(machine["window"]["avg"], 72.4);
        assert_eq!(machine["state"], "firing");
        let structured: serde_json::Value = serde_json::from_str(&firing.structured()).unwrap();
        assert_eq!(structured["default"], firing.email.as_str());
        assert_eq!(structured["sqs"], firing.json.as_str());
        assert!(firing.sms.len() <= MAX_SMS_BYTES);

        let reminder = render(
            &window_alert(AlertKind::Firing, 15),
            &ctx(NotificationKind::Reminder),
        );
        assert_eq!(
            reminder.subject,
            "[REMINDER] Wind speed avg 72.4 mph > 60 on device3 (firing for 15 min)"
        );
        assert!(reminder.email.contains("(15 min, 16 firing alerts)"));
    }

    #[test]
    fn subjects_are_short_ascii_lines() {
        assert_eq!(
            ascii_line("a\n b\t\tc ≥ 5 – Zürich, San José 東", 99),
            "a b c >= 5 - Zurich, San Jose ?"
        );
        let long = ascii_line(&"x".repeat(500), MAX_SUBJECT_CHARS);
        assert_eq!(long.len(), MAX_SUBJECT_CHARS);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn huge_alerts_are_cut_to_the_sns_limit() {
        let mut alert = window_alert(AlertKind::Event, 0);
        alert.summary = "é".repeat(300_000);
        alert.details = (0..500)
            .map(|i| (format!("field{i}"), "d".repeat(10_000)))
            .collect();
        alert.source = (0..10_000).map(|i| format!("shardId-0/{i}")).collect();
        let m = render(&alert, &ctx(NotificationKind::Event));
        assert!(m.size_bytes() <= MAX_MESSAGE_BYTES, "{}", m.size_bytes());
        assert!(m.subject.len() <= MAX_SUBJECT_CHARS && m.subject.is_ascii());
        let machine: serde_json::Value = serde_json::from_str(&m.json).unwrap();
        assert_eq!(machine["truncated"], true);
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(number(72.4), "72.4");
        assert_eq!(number(65.0), "65");
        assert_eq!(number(72.456), "72.46");
        assert_eq!(human_duration(15 * MIN), "15 min");
        assert_eq!(human_duration(65 * MIN), "1 h 5 min");
        assert_eq!(human_duration(90_000_000), "1 min 30 s");
    }
}
