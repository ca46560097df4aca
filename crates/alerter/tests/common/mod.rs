//! Shared by the alerter's tests: the sample events, stream events built from alert records
//! in the outbox's real item layout, and ports that fail on request.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use alerter::{Backoff, Deps, ManualClock, Settings};
use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use streamwatch_adapters::alert_state::EmbeddedAlertStateStore;
use streamwatch_adapters::alerts::alert_item;
use streamwatch_adapters::sns::EmbeddedNotifier;
use streamwatch_core::notify::{
    AlertState, AlertStateStore, ClaimOutcome, MarkOutcome, Message, NotificationRecord, Notifier,
    RecordOutcome,
};
use streamwatch_core::time::Micros;
use streamwatch_core::{AlertKind, AlertRecord, PortError, WindowSummary};
use streamwatch_emulator::stream::{self, StreamPosition};

pub const FIRING: &str = include_str!("../../../../events/alerter-firing.json");
pub const REMINDER: &str = include_str!("../../../../events/alerter-reminder.json");
pub const RESOLVED: &str = include_str!("../../../../events/alerter-resolved.json");
pub const ACCIDENT: &str = include_str!("../../../../events/alerter-accident.json");
pub const IGNORED: &str = include_str!("../../../../events/alerter-ignored.json");

pub const MIN: Micros = 60_000_000;
/// 2026-11-21T12:00:00Z, the samples' first window start.
pub const T0: Micros = 1_795_262_400_000_000;

pub fn event(json: &str) -> Event {
    serde_json::from_str(json).expect("sample event parses as a DynamoDB stream event")
}

/// Concatenates the records of several events into one batch.
pub fn batch(events: &[&str]) -> Event {
    let records: Vec<Value> = events
        .iter()
        .flat_map(|e| {
            let v: Value = serde_json::from_str(e).unwrap();
            v["Records"].as_array().unwrap().clone()
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// A firing or resolved alert of turbine `key`'s window `i` (one-minute windows from T0),
/// as the window-aggregator writes it.
pub fn window_alert(key: &str, i: i64, kind: AlertKind) -> AlertRecord {
    let start = T0 + i * MIN;
    let avg = if kind == AlertKind::Resolved {
        41.5
    } else {
        72.4
    };
    AlertRecord {
        id: streamwatch_core::alert::window_alert_id("windspeed-avg", key, start, kind),
        rule: "windspeed-avg".into(),
        key: key.into(),
        kind,
        severity: "critical".into(),
        summary: if kind == AlertKind::Resolved {
            format!("Wind speed avg {avg} mph back under 60 on {key}")
        } else {
            format!("Wind speed avg {avg} mph > 60 on {key}")
        },
        event_time_micros: start + MIN,
        window: Some(WindowSummary {
            start_micros: start,
            end_micros: start + MIN,
            count: 12,
            sum: avg * 12.0,
            min: avg - 5.0,
            max: avg + 5.0,
            avg,
            condition: "avg > 60".into(),
            threshold: 60.0,
        }),
        details: BTreeMap::new(),
        source: vec![format!("shardId-000000000000/{}", 1000 + i)],
    }
}

/// A severity-4 accident alert `A-{i}` as the metrics-publisher writes it, with `details`
/// (the row's `County`, `State`, …) and its time `i` seconds after T0.
pub fn accident_alert(i: usize, details: &[(&str, &str)]) -> AlertRecord {
    let details: BTreeMap<String, String> = details
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    AlertRecord {
        id: format!("accident-severity#id#A-{i}"),
        rule: "accident-severity".into(),
        key: format!("A-{i}"),
        kind: AlertKind::Event,
        severity: "4".into(),
        summary: format!(
            "Severity 4 accident in {}",
            details.get("County").map_or("?", String::as_str)
        ),
        event_time_micros: T0 + i as i64 * 1_000_000,
        window: None,
        details,
        source: vec![],
    }
}

const STREAM_ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/alerts/stream/2026-11-21T00:00:00.000";

fn position(sequence: u64, created_secs: i64) -> StreamPosition<'static> {
    StreamPosition {
        stream_arn: STREAM_ARN,
        sequence: 4_421_584_500_000_000_000_000_000_000 + u128::from(sequence),
        created_secs,
    }
}

/// A DynamoDB stream record of the INSERT of `alert` into the alerts table, with the item
/// exactly as `DynamoDbAlertOutbox` writes it.
pub fn insert_record(alert: &AlertRecord, sequence: u64) -> Value {
    let item = alert_item(alert, SystemTime::now(), Duration::from_secs(3600)).unwrap();
    let created = alert.event_time_micros / 1_000_000 + 2;
    stream::insert_record(&item, "alert_id", &position(sequence, created))
}

/// A DynamoDB stream record of the INSERT of an item as the table holds it (read back from
/// moto, or built by the outbox's own item functions).
pub fn item_record<'a>(
    item: impl IntoIterator<Item = (&'a String, &'a AttributeValue)>,
    sequence: u64,
) -> Value {
    stream::insert_record(item, "alert_id", &position(sequence, 1_795_262_400))
}

/// A stream batch of records.
pub fn records_event(records: Vec<Value>) -> Event {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// A stream batch of alert INSERTs; sequence numbers from `first_sequence` on.
pub fn stream_event(alerts: &[AlertRecord], first_sequence: u64) -> Event {
    let records: Vec<Value> = alerts
        .iter()
        .enumerate()
        .map(|(i, a)| insert_record(a, first_sequence + i as u64))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

pub fn sequence_numbers(event: &Event) -> Vec<String> {
    event
        .records
        .iter()
        .map(|r| r.change.sequence_number.clone().unwrap())
        .collect()
}

/// Settings for tests: fast retries, no waiting for other invocations' claims.
pub fn settings() -> Settings {
    Settings {
        repeat_interval: Duration::from_secs(900),
        claim_lease: Duration::from_secs(30),
        claim_wait: Duration::ZERO,
        retry: Backoff {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        max_attempts: 20,
        state_lifetime: std::time::Duration::from_secs(48 * 3600),
    }
}

pub type TestDeps = Deps<FaultyStore, FaultyNotifier, ManualClock>;

/// Embedded ports (with fault injection) and a manual clock.
pub fn deps() -> TestDeps {
    Deps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: FaultyStore::default(),
        notifier: FaultyNotifier::default(),
        clock: ManualClock::new(1_800_000_000_000_000),
        settings: settings(),
    }
}

/// The embedded notifier, failing the next `fail_next` publishes (transiently, or
/// permanently when `permanent` is set), and taking `delay` per publish.
#[derive(Default)]
pub struct FaultyNotifier {
    pub inner: EmbeddedNotifier,
    pub fail_next: AtomicUsize,
    pub permanent: bool,
    pub delay: Duration,
    pub calls: AtomicUsize,
    /// When set, a publish signals `entered` and then waits for `release`: a test holds
    /// one invocation inside SNS by a signal, not by a sleep it hopes is long enough.
    pub hold: std::sync::atomic::AtomicBool,
    pub entered: tokio::sync::Notify,
    pub release: tokio::sync::Notify,
}

impl FaultyNotifier {
    /// Ends `hold`: the publish waiting inside goes on, later ones do not wait.
    pub fn hold_released(&self) {
        self.hold.store(false, Ordering::SeqCst);
        self.release.notify_one();
    }

    pub fn published(&self) -> Vec<Message> {
        self.inner.published()
    }

    pub fn subjects(&self) -> Vec<String> {
        self.published().into_iter().map(|m| m.subject).collect()
    }
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
pub struct Injected;

impl Notifier for FaultyNotifier {
    async fn publish(&self, message: &Message) -> Result<String, PortError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hold.load(Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if take_one(&self.fail_next) {
            return Err(if self.permanent {
                PortError::permanent("sns.Publish", Injected)
            } else {
                PortError::transient("sns.Publish", Injected)
            });
        }
        self.inner.publish(message).await
    }
}

/// The embedded store, failing the next `fail_mark` mark_sent calls and the next
/// `fail_record` record calls transiently.
#[derive(Default)]
pub struct FaultyStore {
    pub inner: EmbeddedAlertStateStore,
    pub fail_mark: AtomicUsize,
    pub fail_record: AtomicUsize,
    /// Yield to other tasks after reading a state: lets concurrent invocations read the
    /// same version before either records its decision.
    pub yield_after_state: bool,
}

impl AlertStateStore for FaultyStore {
    async fn notification(&self, alert_id: &str) -> Result<Option<NotificationRecord>, PortError> {
        self.inner.notification(alert_id).await
    }

    async fn state(&self, rule: &str, key: &str) -> Result<Option<AlertState>, PortError> {
        let state = self.inner.state(rule, key).await;
        if self.yield_after_state {
            tokio::task::yield_now().await;
        }
        state
    }

    async fn record(
        &self,
        notification: &NotificationRecord,
        state: Option<&AlertState>,
        expected_version: Option<u64>,
    ) -> Result<RecordOutcome, PortError> {
        if take_one(&self.fail_record) {
            return Err(PortError::transient(
                "dynamodb.TransactWriteItems",
                Injected,
            ));
        }
        self.inner
            .record(notification, state, expected_version)
            .await
    }

    async fn claim(
        &self,
        alert_id: &str,
        owner: &str,
        now_micros: Micros,
        lease_until_micros: Micros,
    ) -> Result<ClaimOutcome, PortError> {
        self.inner
            .claim(alert_id, owner, now_micros, lease_until_micros)
            .await
    }

    async fn mark_sent(
        &self,
        alert_id: &str,
        owner: &str,
        message_id: &str,
        now_micros: Micros,
    ) -> Result<MarkOutcome, PortError> {
        if take_one(&self.fail_mark) {
            return Err(PortError::transient(
                "dynamodb.UpdateItem(mark_sent)",
                Injected,
            ));
        }
        self.inner
            .mark_sent(alert_id, owner, message_id, now_micros)
            .await
    }

    async fn release(&self, alert_id: &str, owner: &str) -> Result<(), PortError> {
        self.inner.release(alert_id, owner).await
    }

    async fn unsent(
        &self,
        decided_before_micros: Micros,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>, PortError> {
        self.inner.unsent(decided_before_micros, limit).await
    }

    async fn mark_failed(&self, alert_id: &str, now_micros: Micros) -> Result<bool, PortError> {
        self.inner.mark_failed(alert_id, now_micros).await
    }

    async fn redrive(&self, alert_id: &str) -> Result<bool, PortError> {
        self.inner.redrive(alert_id).await
    }

    async fn alert(&self, alert_id: &str) -> Result<Option<AlertRecord>, PortError> {
        self.inner.alert(alert_id).await
    }

    async fn sequenced_alert(
        &self,
        rule: &str,
        key: &str,
        seq: u64,
    ) -> Result<Option<AlertRecord>, PortError> {
        self.inner.sequenced_alert(rule, key, seq).await
    }
}
