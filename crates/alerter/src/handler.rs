//! The handler: for each alert in a DynamoDB stream batch, decide (once, atomically with the
//! (rule, key) state), claim, publish, mark sent.
//!
//! Exactly one notification per alert, with one documented exception:
//!
//! * A decision is a conditional write of the alert's notification record together with
//!   the (rule, key) state, so duplicates, retries and concurrent invocations agree on one
//!   decision per alert, and on the state it leads to.
//! * Publishing is claimed: `pending → sending` with a lease, then `sent` with the SNS
//!   message id. Another invocation finding a live claim waits for it (up to
//!   `claim_wait`) and otherwise reports the record for a retry.
//! * **At-least-once across crashes**: if an invocation dies (or cannot write `sent`)
//!   after SNS accepted the message, the lease expires and the next delivery sends it
//!   again. A publish that failed is released at once, so its retry need not wait.
//!
//! Failures: transient ones are retried with exponential backoff; when they persist (or a
//! call fails permanently, e.g. a missing topic or table), the record and everything after
//! it are reported as `batchItemFailures`, so Lambda retries from there (and after its
//! bounded retries sends the batch to the on-failure destination instead of dropping the
//! alert). Malformed alert records are skipped, counted and logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use streamwatch_core::notify::{
    AlertState, AlertStateStore, MessageContext, NotificationKind, NotificationRecord,
    NotificationStatus, Notifier, RecordOutcome, StoredDecision, decide, expire, render,
};
use streamwatch_core::time::{Micros, format_micros};
use streamwatch_core::{AlertKind, AlertRecord, PortError};
use tracing::{debug, error, info, instrument, warn};

use streamwatch_core::notify::group::GroupStore;
use streamwatch_core::notify::silence::{SilenceStore, is_silenced, silence_record};

use crate::group::{Grouping, NoGroups, join};
use crate::send::{retry, send_claimed};
use crate::silence::{NoSilences, Silences};
use crate::stream::{StreamItem, classify};

pub use streamwatch_core::backoff::Backoff;
use streamwatch_core::clock::micros;
pub use streamwatch_core::clock::{Clock, ManualClock, SystemClock};

/// What the handler needs to know besides its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub repeat_interval: Duration,
    pub claim_lease: Duration,
    pub claim_wait: Duration,
    pub retry: Backoff,
    /// Event time after a key's last alert when its state is forgotten (see
    /// `streamwatch_core::notify::expire`); the window-aggregator's `STATE_TTL_HOURS`.
    pub state_lifetime: Duration,
    /// Claims of one notification (stream deliveries, recovery sweeps) before recovery gives
    /// it up as `failed` (counted in `NotificationsFailed`, alarmed; `alerts redrive` resets).
    pub max_attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            repeat_interval: Duration::from_secs(900),
            claim_lease: Duration::from_secs(30),
            claim_wait: Duration::from_secs(20),
            retry: Backoff::default(),
            max_attempts: 20,
            state_lifetime: Duration::from_secs(48 * 3600),
        }
    }
}

/// The handler's dependencies, built once per cold start.
pub struct Deps<S, N, C = SystemClock, G = NoGroups, Z = NoSilences> {
    pub store: S,
    pub notifier: N,
    pub clock: C,
    pub settings: Settings,
    /// The rules that group their alerts, and where groups live ([`Grouping::off`]: none).
    pub grouping: Grouping<G>,
    /// Silences ([`Silences::off`]: none), read once per invocation.
    pub silences: Silences<Z>,
}

/// What one invocation did; logged, and emitted as metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub records: usize,
    pub alerts: usize,
    pub ignored: usize,
    pub malformed: usize,
    pub firing: usize,
    pub reminders: usize,
    pub resolved: usize,
    pub events: usize,
    pub suppressed: usize,
    /// Per-event alerts of a grouped rule that joined their group (sent by the schedule).
    pub grouped: usize,
    /// Decided to notify, but an active silence matched: recorded, not sent.
    pub silenced: usize,
    /// Alerts decided or sent before (redeliveries, duplicates, another invocation).
    pub duplicates: usize,
    /// Sent, but another invocation had taken the expired claim: possibly sent twice.
    pub lease_lost: usize,
    /// Alerts that failed (0 or 1: the batch stops at the first one).
    pub failed: usize,
    /// Notifications SNS refused permanently: left pending for the recovery schedule.
    pub unsent: usize,
    /// Records not looked at because an earlier one failed (Lambda redelivers them).
    pub not_processed: usize,
}

impl BatchReport {
    fn count_sent(&mut self, kind: NotificationKind) {
        match kind {
            NotificationKind::Firing => self.firing += 1,
            NotificationKind::Reminder => self.reminders += 1,
            NotificationKind::Resolved => self.resolved += 1,
            NotificationKind::Event => self.events += 1,
        }
    }

    /// Notifications this invocation published.
    pub fn sent(&self) -> usize {
        self.firing + self.reminders + self.resolved + self.events
    }

    /// One CloudWatch Embedded Metric Format line (no API call, no permission needed).
    pub fn emf(&self, function: &str, timestamp_ms: u128) -> String {
        let counts = [
            ("Records", self.records),
            ("Alerts", self.alerts),
            ("Ignored", self.ignored),
            ("Malformed", self.malformed),
            ("NotificationsSent", self.sent()),
            ("Reminders", self.reminders),
            ("Suppressed", self.suppressed),
            ("Grouped", self.grouped),
            ("Silenced", self.silenced),
            ("Duplicates", self.duplicates),
            ("LeaseLost", self.lease_lost),
            ("Failed", self.failed),
            ("Unsent", self.unsent),
        ];
        streamwatch_core::emf::counts_line(
            NAMESPACE,
            &[("FunctionName", function)],
            &counts,
            i64::try_from(timestamp_ms).unwrap_or(i64::MAX),
        )
    }
}

/// Namespace of the alerter's operational metrics (the template's alarms and the
/// `cloudwatch:namespace` condition of its role name it).
pub const NAMESPACE: &str = "streamwatch/alerter";

/// Why an alert could not be brought to a final state in this invocation.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Port(#[from] PortError),
    /// SNS refused the message; the notification stays pending in the table.
    #[error("publish: {0}")]
    Publish(#[source] PortError),
    #[error("another invocation ({owner}) holds the claim until {}", format_micros(*until))]
    InProgress { owner: String, until: Micros },
    #[error("the alert's state kept changing during {rounds} rounds")]
    Contention { rounds: u32 },
}

/// How one alert ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Processed {
    Sent {
        kind: NotificationKind,
        lease_lost: bool,
    },
    Suppressed(String),
    /// Joined its group; the schedule's pass sends the group.
    Grouped,
    /// Recorded as silenced (the reason names the silence).
    Silenced(String),
    Duplicate,
}

/// Decisions, claims and re-reads per alert before giving up: each round means another
/// invocation changed something meanwhile, which settles within a few rounds.
const MAX_ROUNDS: u32 = 20;

/// A DynamoDB stream batch, as the entry point [`crate::handle`] hands it over.
#[instrument(skip_all, fields(request_id = %event.context.request_id, records = event.payload.records.len()))]
pub async fn handle_batch<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, lambda_runtime::Error>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let (response, report) = process(deps, &event.payload, &event.context.request_id).await;
    info!(
        records = report.records,
        alerts = report.alerts,
        sent = report.sent(),
        suppressed = report.suppressed,
        duplicates = report.duplicates,
        ignored = report.ignored,
        malformed = report.malformed,
        failed = report.failed,
        "batch done"
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    println!(
        "{}",
        report.emf(&event.context.env_config.function_name, now_ms)
    );
    Ok(response)
}

/// Processes one batch in stream order. `invocation` must be unique per invocation (the
/// Lambda request id): it owns the claims this invocation takes.
pub async fn process<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    event: &Event,
    invocation: &str,
) -> (DynamoDbEventResponse, BatchReport)
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let mut response = DynamoDbEventResponse::default();
    let mut report = BatchReport::default();
    deps.silences.refresh(deps.clock.now_micros()).await;
    for (i, record) in event.records.iter().enumerate() {
        report.records += 1;
        let Some((alert, seq, sequence)) = admit(record, &mut report) else {
            continue;
        };
        report.alerts += 1;
        let mut earlier = Vec::new();
        let result = process_alert(deps, &alert, seq, invocation, &mut earlier).await;
        count_earlier(&mut report, &alert, seq, earlier);
        let event_id = record.event_id.as_str();
        if let Err(err) = count_outcome(&mut report, &alert, result, event_id, sequence) {
            report.failed += 1;
            report.not_processed = event.records.len() - i - 1;
            response
                .batch_item_failures
                .push(retry_item(&alert, event_id, sequence, &err));
            // Lambda retries from the lowest reported record on; later records must
            // wait, so that per-key state sees them in order.
            break;
        }
    }
    (response, report)
}

/// The alert a stream record holds, with its per-key number and the record's sequence
/// number; `None` (counted and logged) for a record that is not an alert, a malformed one,
/// and one without a sequence number.
fn admit<'r>(
    record: &'r EventRecord,
    report: &mut BatchReport,
) -> Option<(Box<AlertRecord>, Option<u64>, &'r str)> {
    let sequence = record.change.sequence_number.as_deref();
    let event_id = record.event_id.as_str();
    let (alert, seq) = match classify(record) {
        StreamItem::Ignored(reason) => {
            report.ignored += 1;
            debug!(event_id, sequence, reason, "ignored stream record");
            return None;
        }
        StreamItem::Malformed(reason) => {
            report.malformed += 1;
            error!(event_id, sequence, reason, "malformed alert record skipped");
            return None;
        }
        StreamItem::Alert(alert, seq) => (alert, seq),
    };
    let Some(sequence) = sequence else {
        // Without a sequence number the record cannot be reported for a retry.
        report.malformed += 1;
        error!(
            event_id,
            alert_id = alert.id,
            "alert record without SequenceNumber skipped"
        );
        return None;
    };
    Some((alert, seq, sequence))
}

/// Counts and logs the notifications sent for earlier alerts of the key while catching up.
fn count_earlier(
    report: &mut BatchReport,
    alert: &AlertRecord,
    seq: Option<u64>,
    earlier: Vec<(String, NotificationKind)>,
) {
    for (id, kind) in earlier {
        report.count_sent(kind);
        info!(
            alert_id = id,
            rule = alert.rule,
            key = alert.key,
            state = kind.as_str(),
            seq,
            "notification sent for an earlier alert of the key (caught up)"
        );
    }
}

/// Counts and logs how one alert ended. Gives back the error that stops the batch; a
/// permanent SNS refusal does not (it is counted as unsent and the batch goes on).
fn count_outcome(
    report: &mut BatchReport,
    alert: &AlertRecord,
    result: Result<Processed, AlertError>,
    event_id: &str,
    sequence: &str,
) -> Result<(), AlertError> {
    let processed = match result {
        Ok(processed) => processed,
        // A permanent refusal (a missing topic, a disabled KMS key) outlasts Lambda's
        // retries; the notification is decided and stays pending in the table, where the
        // recovery schedule resends it once SNS accepts again. The batch goes on.
        Err(AlertError::Publish(err)) if !err.is_transient() => {
            report.unsent += 1;
            error!(alert_id = alert.id, event_id, sequence, error = %err, "SNS refused the notification; left pending for the recovery schedule");
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    match processed {
        Processed::Sent { kind, lease_lost } => {
            report.count_sent(kind);
            if lease_lost {
                report.lease_lost += 1;
                warn!(
                    alert_id = alert.id,
                    sequence,
                    "sent after our claim expired: the notification may have gone out twice"
                );
            }
            info!(
                alert_id = alert.id,
                rule = alert.rule,
                key = alert.key,
                state = kind.as_str(),
                "notification sent"
            );
        }
        Processed::Suppressed(reason) => {
            report.suppressed += 1;
            info!(
                alert_id = alert.id,
                rule = alert.rule,
                key = alert.key,
                reason,
                "notification suppressed"
            );
        }
        Processed::Silenced(reason) => {
            report.silenced += 1;
            info!(
                alert_id = alert.id,
                rule = alert.rule,
                key = alert.key,
                reason,
                "notification silenced"
            );
        }
        Processed::Grouped => {
            report.grouped += 1;
            debug!(
                alert_id = alert.id,
                rule = alert.rule,
                "alert joined its group"
            );
        }
        Processed::Duplicate => {
            report.duplicates += 1;
            debug!(alert_id = alert.id, sequence, "alert handled before");
        }
    }
    Ok(())
}

/// Logs the error that stops the batch and names its record as the batch item failure.
fn retry_item(
    alert: &AlertRecord,
    event_id: &str,
    sequence: &str,
    err: &AlertError,
) -> DynamoDbBatchItemFailure {
    let transient = match err {
        AlertError::Port(e) | AlertError::Publish(e) => e.is_transient(),
        AlertError::InProgress { .. } | AlertError::Contention { .. } => true,
    };
    if transient {
        warn!(alert_id = alert.id, event_id, sequence, error = %err, "alert not sent yet; reporting it for a retry");
    } else {
        error!(alert_id = alert.id, event_id, sequence, error = %err, "alert failed permanently; reporting it (Lambda retries, then the on-failure destination)");
    }
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = Some(sequence.to_owned());
    failure
}

/// Brings one alert to a final state. A numbered alert (see `streamwatch_adapters::alerts`)
/// is decided only after every earlier alert of its key, in the outbox's order: those the
/// stream has not delivered yet are read from the outbox, decided and sent first (their
/// ids and kinds pushed to `earlier`), so the key's notifications are the ones in-order
/// delivery sends, whatever order the stream's shards deliver in.
async fn process_alert<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    alert: &AlertRecord,
    seq: Option<u64>,
    owner: &str,
    earlier: &mut Vec<(String, NotificationKind)>,
) -> Result<Processed, AlertError>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let silenced = || deps.silences.silencing(alert, deps.clock.now_micros());
    if let Some(policy) = deps.grouping.policy(alert).filter(|_| silenced().is_none()) {
        // Joining is idempotent: a duplicate or a retry finds its member and adds nothing.
        let new = retry(&deps.settings.retry, || {
            join(&deps.grouping.store, policy, alert, deps.clock.now_micros())
        })
        .await?;
        return Ok(if new {
            Processed::Grouped
        } else {
            Processed::Duplicate
        });
    }
    if let (Some(seq), AlertKind::Firing | AlertKind::Resolved) = (seq, alert.kind) {
        let (before, decided) = catch_up(deps, alert, seq).await?;
        for previous in before {
            if let Processed::Sent { kind, .. } = deliver(deps, &previous, owner).await? {
                earlier.push((previous.id.clone(), kind));
            }
        }
        if let Some(record) = decided {
            if is_silenced(&record) {
                return Ok(Processed::Silenced(reason_of(&record)));
            }
            if let StoredDecision::Suppressed(reason) = record.outcome {
                return Ok(Processed::Suppressed(reason));
            }
        }
    }
    deliver(deps, alert, owner).await
}

/// At most this many earlier alerts of a key are read back by number for one alert: a key
/// whose state expired while its alerts stayed restarts its order this far back.
const MAX_CATCH_UP: u64 = 1_000;

/// Reads of a missing earlier alert before deciding without it (20, 40, 80 ms apart).
const MISSING_READS: u32 = 3;

/// Decides, in the key's order, every alert of `alert`'s key numbered up to `seq` that is
/// not decided yet (ending with `alert` itself). Returns the earlier ones this call
/// decided to notify about, in order, still to be sent, and `alert`'s decision if this
/// call made it.
async fn catch_up<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    alert: &AlertRecord,
    seq: u64,
) -> Result<(Vec<AlertRecord>, Option<NotificationRecord>), AlertError>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let policy = &deps.settings.retry;
    let mut to_send = Vec::new();
    let mut decided = None;
    let mut missing_reads = 0;
    // Numbers below this are settled for this call: decided by someone, or gone.
    let mut floor = seq.saturating_sub(MAX_CATCH_UP).max(1);
    let mut rounds = 0;
    loop {
        let state = retry(policy, || deps.store.state(&alert.rule, &alert.key)).await?;
        let next = match state.as_ref().map(|s| s.decided_seq) {
            // No state yet: the key's first alerts may still be on their way.
            None => floor,
            // A state from before alerts were numbered: nothing earlier can be found.
            Some(None) => seq,
            Some(Some(decided)) => (decided + 1).max(floor),
        };
        if next > seq {
            return Ok((to_send, decided));
        }
        let current = if next == seq {
            alert.clone()
        } else {
            match retry(policy, || {
                deps.store.sequenced_alert(&alert.rule, &alert.key, next)
            })
            .await?
            {
                Some(current) => current,
                // Another writer's alert may be between taking its number and writing its
                // index item (milliseconds): look again a few times before going on.
                None if missing_reads < MISSING_READS => {
                    missing_reads += 1;
                    tokio::time::sleep(Duration::from_millis(10 << missing_reads)).await;
                    continue;
                }
                None => {
                    warn!(
                        rule = alert.rule,
                        key = alert.key,
                        seq = next,
                        "an earlier alert of the key is not in the outbox (expired, or its writer died); deciding without it"
                    );
                    missing_reads = 0;
                    floor = next + 1;
                    continue;
                }
            }
        };
        let (record, outcome) = record_decision(deps, state, &current, Some(next)).await?;
        match outcome {
            RecordOutcome::Recorded => {
                if next < seq && record.kind().is_some() {
                    to_send.push(current);
                }
                if next == seq {
                    decided = Some(record);
                }
                floor = next + 1;
            }
            // Decided before numbers were kept in the state: settled, move on.
            RecordOutcome::AlreadyDecided => floor = next + 1,
            RecordOutcome::StateChanged => {
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    return Err(AlertError::Contention { rounds });
                }
            }
        }
    }
}

/// Decides (unless decided already) and sends one alert: claim, publish, mark sent.
pub(crate) async fn deliver<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    alert: &AlertRecord,
    owner: &str,
) -> Result<Processed, AlertError>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let settings = &deps.settings;
    let policy = &settings.retry;
    let repeat = micros(settings.repeat_interval);
    let mut wait = ClaimWait::default();
    let mut rounds = 0;
    loop {
        let current = retry(policy, || deps.store.notification(&alert.id)).await?;
        let record = match current {
            Some(record) => record,
            None => {
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    return Err(AlertError::Contention { rounds });
                }
                match decide_once(deps, alert).await? {
                    Some(record) => match &record.outcome {
                        _ if is_silenced(&record) => {
                            return Ok(Processed::Silenced(reason_of(&record)));
                        }
                        StoredDecision::Suppressed(reason) => {
                            return Ok(Processed::Suppressed(reason.clone()));
                        }
                        StoredDecision::Notify(_) => record,
                    },
                    // Someone else decided, or the state moved: read again.
                    None => continue,
                }
            }
        };
        let now = deps.clock.now_micros();
        match &record.status {
            // Failed: given up on after its attempts; only a redrive makes it pending again.
            NotificationStatus::Sent { .. }
            | NotificationStatus::Suppressed
            | NotificationStatus::Failed => {
                return Ok(Processed::Duplicate);
            }
            NotificationStatus::Sending {
                owner: holder,
                lease_until_micros,
            } if holder != owner && *lease_until_micros >= now => {
                wait.pause(settings.claim_wait, holder, *lease_until_micros, now)
                    .await?;
                continue;
            }
            NotificationStatus::Pending | NotificationStatus::Sending { .. } => {}
        }
        let Some(ctx) = MessageContext::of(&record, repeat) else {
            // A pending record always notifies; a suppressed one returned above.
            return Ok(Processed::Duplicate);
        };
        rounds += 1;
        if rounds > MAX_ROUNDS {
            return Err(AlertError::Contention { rounds });
        }
        let message = render(alert, &ctx);
        match send_claimed(deps, &alert.id, &message, owner).await? {
            Some(lease_lost) => {
                return Ok(Processed::Sent {
                    kind: ctx.kind,
                    lease_lost,
                });
            }
            // Not claimable (someone else moved it), or our claim was taken over: read again.
            None => continue,
        }
    }
}

/// Waiting for another invocation's live claim on a notification: looks again after 50 ms,
/// doubling up to 1 s, never sleeping past the lease's expiry nor `claim_wait` in all.
struct ClaimWait {
    waited: Duration,
    poll: Duration,
}

impl Default for ClaimWait {
    fn default() -> Self {
        Self {
            waited: Duration::ZERO,
            poll: Duration::from_millis(50),
        }
    }
}

impl ClaimWait {
    /// Sleeps until the next look at a claim `holder` holds until `until`, or gives up
    /// with [`AlertError::InProgress`] once `limit` has been waited.
    async fn pause(
        &mut self,
        limit: Duration,
        holder: &str,
        until: Micros,
        now: Micros,
    ) -> Result<(), AlertError> {
        if self.waited >= limit {
            return Err(AlertError::InProgress {
                owner: holder.to_owned(),
                until,
            });
        }
        let to_expiry = Duration::from_micros((until - now) as u64 + 1_000);
        let pause = self.poll.min(limit - self.waited).min(to_expiry);
        tokio::time::sleep(pause).await;
        self.waited += pause;
        self.poll = (self.poll * 2).min(Duration::from_secs(1));
        Ok(())
    }
}

/// The record of a fresh decision, silenced when an active silence matches the alert (the
/// state transition stays: the episode moves on as if the notification had gone out).
fn decided_record<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    alert: &AlertRecord,
    transition: &streamwatch_core::notify::Transition,
) -> NotificationRecord
where
    C: Clock,
    Z: SilenceStore,
{
    let now = deps.clock.now_micros();
    let mut record = NotificationRecord::decided(alert, transition, now);
    if let Some(silence) = deps.silences.silencing(alert, now) {
        silence_record(&mut record, &silence);
    }
    record
}

fn reason_of(record: &NotificationRecord) -> String {
    match &record.outcome {
        StoredDecision::Suppressed(reason) => reason.clone(),
        StoredDecision::Notify(kind) => kind.as_str().to_owned(),
    }
}

/// Decides about an alert and records the decision with the state it leads to. `None`
/// when another invocation got there first or the state moved meanwhile.
async fn decide_once<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    alert: &AlertRecord,
) -> Result<Option<NotificationRecord>, PortError>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let policy = &deps.settings.retry;
    let state = match alert.kind {
        AlertKind::Event => None,
        AlertKind::Firing | AlertKind::Resolved => {
            retry(policy, || deps.store.state(&alert.rule, &alert.key)).await?
        }
    };
    let (record, outcome) = record_decision(deps, state, alert, None).await?;
    Ok(match outcome {
        RecordOutcome::Recorded => Some(record),
        RecordOutcome::AlreadyDecided | RecordOutcome::StateChanged => None,
    })
}

/// Decides about `alert` given its key's stored `state` (expired first) and records the
/// decision together with the state it leads to, numbered `seq` when the alert has a
/// per-key number. The one decide-and-record step of [`catch_up`] and [`decide_once`].
async fn record_decision<S, N, C, G, Z>(
    deps: &Deps<S, N, C, G, Z>,
    state: Option<AlertState>,
    alert: &AlertRecord,
    seq: Option<u64>,
) -> Result<(NotificationRecord, RecordOutcome), PortError>
where
    S: AlertStateStore,
    N: Notifier,
    C: Clock,
    G: GroupStore,
    Z: SilenceStore,
{
    let settings = &deps.settings;
    let seen = expire(state.clone(), alert, micros(settings.state_lifetime));
    let mut transition = decide(seen.as_ref(), alert, micros(settings.repeat_interval));
    if let (Some(seq), Some(next_state)) = (seq, transition.next.as_mut()) {
        next_state.decided_seq = Some(seq);
    }
    let record = decided_record(deps, alert, &transition);
    let expected = state.as_ref().map(|s| s.version);
    let outcome = retry(&settings.retry, || {
        deps.store
            .record(&record, transition.next.as_ref(), expected)
    })
    .await?;
    Ok((record, outcome))
}
