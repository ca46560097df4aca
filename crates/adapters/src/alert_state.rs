//! The alerter's state store: per-(rule, key) alert state and one notification record per
//! alert, in DynamoDB (conditional writes, a transaction for decision + state, leases for
//! publishing) and embedded in memory with the same semantics.
//!
//! The DynamoDB store lives in the alerts table itself, next to the alert records, under
//! hash keys that cannot collide with alert ids (alert ids start with a non-empty rule
//! name; these start with `#`):
//!
//! * `#state#<rule>#<key>` (`record_type = "state"`; `#` and `%` in the rule escaped as
//!   `%23`/`%25`): `rule`, `key`, `status` (`firing`/`resolved`), `since_micros`,
//!   `last_notified_micros`?, `last_event_micros`, `episode_alerts`, `decided_seq`? (the
//!   per-key sequence number of the last alert decided), `version`, `updated_at` (ISO),
//!   `ttl`.
//! * `#notification#<alert id>` (`record_type = "notification"`): `notified_alert_id`,
//!   `rule`, `key`, `alert_kind`, `event_time` (ISO), `event_time_micros`, `outcome`
//!   (`firing`/`reminder`/`resolved`/`event`/`suppressed`), `reason`? (why suppressed),
//!   `firing_since_micros`?, `episode_alerts`, `status` (`pending`/`sending`/`sent`/
//!   `suppressed`), `owner`?, `lease_until`? (epoch micros), `attempts`, `message_id`?,
//!   `sent_at`? (epoch micros), `decided_at` (epoch micros), `ttl`.
//!
//!   While a notification is not sent (`pending`, `sending`, `failed`) it also has
//!   `pending_bucket = "unsent"` and `pending_since` (= `decided_at`): the keys of the sparse
//!   index [`PENDING_INDEX`], which recovery queries instead of scanning the table.
//!
//! Both have `record_type` other than `alert`, so the alerter's stream filter never
//! delivers them back to it (and the handler ignores them if it did).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use streamwatch_core::notify::{
    AlertState, AlertStateStore, ClaimOutcome, KeyStatus, MarkOutcome, NotificationKind,
    NotificationRecord, NotificationStatus, RecordOutcome, StoredDecision,
};
use streamwatch_core::time::{Micros, format_micros};
use streamwatch_core::{AlertKind, AlertRecord, PortError};

use crate::alerts::{DEFAULT_ALERT_TTL, EmbeddedAlertOutbox, escape_rule, sequence_item_key};
use crate::aws::classify;

/// The sparse global secondary index of unsent notifications (hash `pending_bucket`, range
/// `pending_since`). One bucket: unsent notifications are few (a failure's backlog).
pub const PENDING_INDEX: &str = "pending-notifications";
const PENDING_BUCKET: &str = "unsent";

/// Hash key of a notification record.
pub fn notification_item_key(alert_id: &str) -> String {
    format!("#notification#{alert_id}")
}

/// Hash key of a (rule, key) state; the rule is escaped so that the split is unambiguous.
pub fn state_item_key(rule: &str, key: &str) -> String {
    format!("#state#{}#{key}", escape_rule(rule))
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn ttl_attr(now: SystemTime, ttl: Duration) -> AttributeValue {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    n((now + ttl).as_secs())
}

/// The item of a notification record.
pub fn notification_item(record: &NotificationRecord, now: SystemTime, ttl: Duration) -> Item {
    let mut item = Item::from([
        (
            "alert_id".to_owned(),
            s(notification_item_key(&record.alert_id)),
        ),
        ("record_type".to_owned(), s("notification")),
        ("notified_alert_id".to_owned(), s(&record.alert_id)),
        ("rule".to_owned(), s(&record.rule)),
        ("key".to_owned(), s(&record.key)),
        ("alert_kind".to_owned(), s(record.alert_kind.as_str())),
        (
            "event_time".to_owned(),
            s(format_micros(record.event_time_micros)),
        ),
        ("event_time_micros".to_owned(), n(record.event_time_micros)),
        ("episode_alerts".to_owned(), n(record.episode_alerts)),
        ("status".to_owned(), s(record.status.as_str())),
        ("attempts".to_owned(), n(record.attempts)),
        ("decided_at".to_owned(), n(record.decided_at_micros)),
        ("ttl".to_owned(), ttl_attr(now, ttl)),
    ]);
    match &record.outcome {
        StoredDecision::Notify(kind) => {
            item.insert("outcome".into(), s(kind.as_str()));
        }
        StoredDecision::Suppressed(reason) => {
            item.insert("outcome".into(), s("suppressed"));
            item.insert("reason".into(), s(reason));
        }
    }
    if let Some(since) = record.firing_since_micros {
        item.insert("firing_since_micros".into(), n(since));
    }
    match &record.status {
        NotificationStatus::Sending {
            owner,
            lease_until_micros,
        } => {
            item.insert("owner".into(), s(owner));
            item.insert("lease_until".into(), n(lease_until_micros));
        }
        NotificationStatus::Sent {
            message_id,
            sent_at_micros,
        } => {
            item.insert("message_id".into(), s(message_id));
            item.insert("sent_at".into(), n(sent_at_micros));
        }
        NotificationStatus::Pending
        | NotificationStatus::Suppressed
        | NotificationStatus::Failed => {}
    }
    if record.status.is_unsent() {
        item.insert("pending_bucket".into(), s(PENDING_BUCKET));
        item.insert("pending_since".into(), n(record.decided_at_micros));
    }
    item
}

/// The item of a (rule, key) state.
pub fn state_item(state: &AlertState, now: SystemTime, ttl: Duration) -> Item {
    let now_micros = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as Micros;
    let mut item = Item::from([
        (
            "alert_id".to_owned(),
            s(state_item_key(&state.rule, &state.key)),
        ),
        ("record_type".to_owned(), s("state")),
        ("rule".to_owned(), s(&state.rule)),
        ("key".to_owned(), s(&state.key)),
        ("status".to_owned(), s(state.status.as_str())),
        ("since_micros".to_owned(), n(state.since_micros)),
        ("last_event_micros".to_owned(), n(state.last_event_micros)),
        ("episode_alerts".to_owned(), n(state.episode_alerts)),
        ("version".to_owned(), n(state.version)),
        ("updated_at".to_owned(), s(format_micros(now_micros))),
        ("ttl".to_owned(), ttl_attr(now, ttl)),
    ]);
    if let Some(t) = state.last_notified_micros {
        item.insert("last_notified_micros".into(), n(t));
    }
    if let Some(seq) = state.decided_seq {
        item.insert("decided_seq".into(), n(seq));
    }
    item
}

/// A stored item that does not have the layout this module writes.
#[derive(Debug, thiserror::Error)]
#[error("item {item}: {reason}")]
pub struct DecodeError {
    item: String,
    reason: String,
}

struct Reader<'a> {
    item: &'a Item,
}

impl Reader<'_> {
    fn err(&self, reason: String) -> PortError {
        let id = self
            .item
            .get("alert_id")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        PortError::permanent("alert_state.decode", DecodeError { item: id, reason })
    }

    fn opt_s(&self, name: &str) -> Result<Option<&str>, PortError> {
        match self.item.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(self.err(format!("{name} is not a string"))),
        }
    }

    fn s(&self, name: &str) -> Result<&str, PortError> {
        self.opt_s(name)?
            .ok_or_else(|| self.err(format!("{name} is missing")))
    }

    fn opt_n<T: FromStr>(&self, name: &str) -> Result<Option<T>, PortError> {
        match self.item.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| self.err(format!("{name} is not a valid number: {v}"))),
            Some(_) => Err(self.err(format!("{name} is not a number"))),
        }
    }

    fn n<T: FromStr>(&self, name: &str) -> Result<T, PortError> {
        self.opt_n(name)?
            .ok_or_else(|| self.err(format!("{name} is missing")))
    }
}

/// Reads a notification record back from its item.
pub fn notification_from_item(item: &Item) -> Result<NotificationRecord, PortError> {
    let r = Reader { item };
    let alert_kind = match r.s("alert_kind")? {
        "firing" => AlertKind::Firing,
        "resolved" => AlertKind::Resolved,
        "event" => AlertKind::Event,
        other => return Err(r.err(format!("unknown alert_kind {other}"))),
    };
    let outcome = match r.s("outcome")? {
        "suppressed" => {
            StoredDecision::Suppressed(r.opt_s("reason")?.unwrap_or_default().to_owned())
        }
        other => StoredDecision::Notify(
            NotificationKind::parse(other)
                .ok_or_else(|| r.err(format!("unknown outcome {other}")))?,
        ),
    };
    let status = match r.s("status")? {
        "pending" => NotificationStatus::Pending,
        "sending" => NotificationStatus::Sending {
            owner: r.s("owner")?.to_owned(),
            lease_until_micros: r.n("lease_until")?,
        },
        "sent" => NotificationStatus::Sent {
            message_id: r.s("message_id")?.to_owned(),
            sent_at_micros: r.n("sent_at")?,
        },
        "suppressed" => NotificationStatus::Suppressed,
        "failed" => NotificationStatus::Failed,
        other => return Err(r.err(format!("unknown status {other}"))),
    };
    Ok(NotificationRecord {
        alert_id: r.s("notified_alert_id")?.to_owned(),
        rule: r.s("rule")?.to_owned(),
        key: r.s("key")?.to_owned(),
        alert_kind,
        event_time_micros: r.n("event_time_micros")?,
        outcome,
        firing_since_micros: r.opt_n("firing_since_micros")?,
        episode_alerts: r.n("episode_alerts")?,
        status,
        attempts: r.n("attempts")?,
        decided_at_micros: r.n("decided_at")?,
    })
}

/// Reads a (rule, key) state back from its item.
pub fn state_from_item(item: &Item) -> Result<AlertState, PortError> {
    let r = Reader { item };
    let status = r.s("status")?;
    Ok(AlertState {
        rule: r.s("rule")?.to_owned(),
        key: r.s("key")?.to_owned(),
        status: KeyStatus::parse(status)
            .ok_or_else(|| r.err(format!("unknown status {status}")))?,
        since_micros: r.n("since_micros")?,
        last_notified_micros: r.opt_n("last_notified_micros")?,
        last_event_micros: r.n("last_event_micros")?,
        episode_alerts: r.n("episode_alerts")?,
        decided_seq: r.opt_n("decided_seq")?,
        version: r.n("version")?,
    })
}

/// The DynamoDB store (the alerts table, see the module docs).
#[derive(Debug, Clone)]
pub struct DynamoDbAlertStateStore {
    client: Client,
    table: String,
    ttl: Duration,
}

impl DynamoDbAlertStateStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            ttl: DEFAULT_ALERT_TTL,
        }
    }

    /// How long state and notification records stay (refreshed by every write of a state).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    async fn get(
        &self,
        operation: &'static str,
        hash_key: String,
    ) -> Result<Option<Item>, PortError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("alert_id", s(hash_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(operation, e))?;
        Ok(output.item)
    }

    fn put(&self, item: Item, condition: &str) -> Result<Put, PortError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(|e| PortError::permanent("dynamodb.TransactWriteItems(build)", e))
    }
}

fn is_condition_failure<E>(
    err: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

impl AlertStateStore for DynamoDbAlertStateStore {
    async fn notification(&self, alert_id: &str) -> Result<Option<NotificationRecord>, PortError> {
        self.get(
            "dynamodb.GetItem(notification)",
            notification_item_key(alert_id),
        )
        .await?
        .map(|item| notification_from_item(&item))
        .transpose()
    }

    async fn state(&self, rule: &str, key: &str) -> Result<Option<AlertState>, PortError> {
        self.get("dynamodb.GetItem(state)", state_item_key(rule, key))
            .await?
            .map(|item| state_from_item(&item))
            .transpose()
    }

    async fn record(
        &self,
        notification: &NotificationRecord,
        state: Option<&AlertState>,
        expected_version: Option<u64>,
    ) -> Result<RecordOutcome, PortError> {
        let now = SystemTime::now();
        let item = notification_item(notification, now, self.ttl);
        let Some(state) = state else {
            // Per-event alerts have no state: one conditional put is the whole decision.
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(alert_id)")
                .send()
                .await;
            return match result {
                Ok(_) => Ok(RecordOutcome::Recorded),
                Err(e) if is_condition_failure(&e) => Ok(RecordOutcome::AlreadyDecided),
                Err(e) => Err(classify("dynamodb.PutItem(notification)", e)),
            };
        };
        let notification_put = self.put(item, "attribute_not_exists(alert_id)")?;
        let state_item = state_item(state, now, self.ttl);
        let state_put = match expected_version {
            None => self.put(state_item, "attribute_not_exists(alert_id)")?,
            Some(v) => Put::builder()
                .table_name(&self.table)
                .set_item(Some(state_item))
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(v))
                .build()
                .map_err(|e| PortError::permanent("dynamodb.TransactWriteItems(build)", e))?,
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(notification_put).build())
            .transact_items(TransactWriteItem::builder().put(state_put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(RecordOutcome::Recorded),
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    err.as_service_error()
                {
                    let code = |i: usize| {
                        cancelled
                            .cancellation_reasons()
                            .get(i)
                            .and_then(|r| r.code())
                            .unwrap_or("None")
                    };
                    // Reasons are positional: 0 is the notification, 1 the state.
                    if code(0) == "ConditionalCheckFailed" {
                        return Ok(RecordOutcome::AlreadyDecided);
                    }
                    if code(1) == "ConditionalCheckFailed"
                        || code(0) == "TransactionConflict"
                        || code(1) == "TransactionConflict"
                    {
                        return Ok(RecordOutcome::StateChanged);
                    }
                }
                Err(classify("dynamodb.TransactWriteItems(decision)", err))
            }
        }
    }

    async fn claim(
        &self,
        alert_id: &str,
        owner: &str,
        now_micros: Micros,
        lease_until_micros: Micros,
    ) -> Result<ClaimOutcome, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("alert_id", s(notification_item_key(alert_id)))
            .update_expression(
                "SET #status = :sending, #owner = :owner, #lease = :until, \
                 #attempts = #attempts + :one",
            )
            .condition_expression(
                "#status = :pending OR (#status = :sending AND (#lease < :now OR #owner = :owner))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_names("#attempts", "attempts")
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(lease_until_micros))
            .expression_attribute_values(":now", n(now_micros))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimOutcome::Claimed),
            Err(e) if is_condition_failure(&e) => Ok(ClaimOutcome::NotClaimable),
            Err(e) => Err(classify("dynamodb.UpdateItem(claim)", e)),
        }
    }

    async fn mark_sent(
        &self,
        alert_id: &str,
        owner: &str,
        message_id: &str,
        now_micros: Micros,
    ) -> Result<MarkOutcome, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("alert_id", s(notification_item_key(alert_id)))
            .update_expression(
                "SET #status = :sent, message_id = :mid, sent_at = :now \
                 REMOVE #lease, pending_bucket, pending_since",
            )
            // The second branch makes a retry idempotent: when the first attempt was
            // applied but its response lost, the item is already ours and sent.
            .condition_expression(
                "#owner = :owner AND (#status = :sending OR (#status = :sent AND message_id = :mid))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":sent", s("sent"))
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":mid", s(message_id))
            .expression_attribute_values(":now", n(now_micros))
            .send()
            .await;
        match result {
            Ok(_) => Ok(MarkOutcome::Marked),
            Err(e) if is_condition_failure(&e) => Ok(MarkOutcome::LeaseLost),
            Err(e) => Err(classify("dynamodb.UpdateItem(mark_sent)", e)),
        }
    }

    async fn release(&self, alert_id: &str, owner: &str) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("alert_id", s(notification_item_key(alert_id)))
            .update_expression("SET #status = :pending REMOVE #lease")
            .condition_expression("#status = :sending AND #owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            // Not ours any more: nothing to release.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(classify("dynamodb.UpdateItem(release)", e)),
            Ok(_) => Ok(()),
        }
    }

    async fn unsent(
        &self,
        decided_before_micros: Micros,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>, PortError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PENDING_INDEX)
                .key_condition_expression("pending_bucket = :b AND pending_since < :before")
                .expression_attribute_values(":b", s(PENDING_BUCKET))
                .expression_attribute_values(":before", n(decided_before_micros))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("dynamodb.Query(pending-notifications)", e))?;
            for item in page.items() {
                // The index may lag: skip what is sent already.
                let record = notification_from_item(item)?;
                if record.status.is_unsent() && out.len() < limit {
                    out.push(record);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() || out.len() >= limit {
                return Ok(out);
            }
        }
    }

    async fn mark_failed(&self, alert_id: &str, now_micros: Micros) -> Result<bool, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("alert_id", s(notification_item_key(alert_id)))
            .update_expression("SET #status = :failed REMOVE #lease")
            .condition_expression("#status = :pending OR (#status = :sending AND #lease < :now)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":now", n(now_micros))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(classify("dynamodb.UpdateItem(mark_failed)", e)),
        }
    }

    async fn redrive(&self, alert_id: &str) -> Result<bool, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("alert_id", s(notification_item_key(alert_id)))
            .update_expression("SET #status = :pending, #attempts = :zero")
            .condition_expression("#status = :failed OR #status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#attempts", "attempts")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(classify("dynamodb.UpdateItem(redrive)", e)),
        }
    }

    async fn alert(&self, alert_id: &str) -> Result<Option<AlertRecord>, PortError> {
        let item = self
            .get("dynamodb.GetItem(alert)", alert_id.to_owned())
            .await?;
        Ok(item.as_ref().and_then(crate::alerts::alert_from_item))
    }

    async fn sequenced_alert(
        &self,
        rule: &str,
        key: &str,
        seq: u64,
    ) -> Result<Option<AlertRecord>, PortError> {
        let item = self
            .get(
                "dynamodb.GetItem(sequence)",
                sequence_item_key(rule, key, seq),
            )
            .await?;
        Ok(item
            .as_ref()
            .and_then(crate::alerts::alert_from_sequence_item))
    }
}

/// In-memory store with the DynamoDB one's semantics.
#[derive(Debug, Default)]
pub struct EmbeddedAlertStateStore {
    inner: Mutex<Embedded>,
    /// The outbox whose per-key sequence the alerter follows (the same table in DynamoDB).
    outbox: Option<std::sync::Arc<EmbeddedAlertOutbox>>,
}

#[derive(Debug, Default)]
struct Embedded {
    notifications: BTreeMap<String, NotificationRecord>,
    states: BTreeMap<(String, String), AlertState>,
    /// Who marked each sent notification, as the table's `owner` attribute keeps it.
    sent_by: BTreeMap<String, String>,
}

impl EmbeddedAlertStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that reads the outbox's alerts by per-key sequence number, as the DynamoDB
    /// store reads them from the alerts table it shares with the outbox.
    pub fn with_outbox(outbox: std::sync::Arc<EmbeddedAlertOutbox>) -> Self {
        Self {
            outbox: Some(outbox),
            ..Self::default()
        }
    }

    /// Every notification record, by alert id.
    pub fn notifications(&self) -> Vec<NotificationRecord> {
        self.lock().notifications.values().cloned().collect()
    }

    /// Every (rule, key) state.
    pub fn states(&self) -> Vec<AlertState> {
        self.lock().states.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Embedded> {
        // Every update below is a single assignment: a panic cannot leave one half-done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AlertStateStore for EmbeddedAlertStateStore {
    async fn notification(&self, alert_id: &str) -> Result<Option<NotificationRecord>, PortError> {
        Ok(self.lock().notifications.get(alert_id).cloned())
    }

    async fn state(&self, rule: &str, key: &str) -> Result<Option<AlertState>, PortError> {
        Ok(self
            .lock()
            .states
            .get(&(rule.to_owned(), key.to_owned()))
            .cloned())
    }

    async fn record(
        &self,
        notification: &NotificationRecord,
        state: Option<&AlertState>,
        expected_version: Option<u64>,
    ) -> Result<RecordOutcome, PortError> {
        let mut inner = self.lock();
        if inner.notifications.contains_key(&notification.alert_id) {
            return Ok(RecordOutcome::AlreadyDecided);
        }
        if let Some(state) = state {
            let id = (state.rule.clone(), state.key.clone());
            if inner.states.get(&id).map(|s| s.version) != expected_version {
                return Ok(RecordOutcome::StateChanged);
            }
            inner.states.insert(id, state.clone());
        }
        inner
            .notifications
            .insert(notification.alert_id.clone(), notification.clone());
        Ok(RecordOutcome::Recorded)
    }

    async fn claim(
        &self,
        alert_id: &str,
        owner: &str,
        now_micros: Micros,
        lease_until_micros: Micros,
    ) -> Result<ClaimOutcome, PortError> {
        let mut inner = self.lock();
        let Some(record) = inner.notifications.get_mut(alert_id) else {
            return Ok(ClaimOutcome::NotClaimable);
        };
        let claimable = match &record.status {
            NotificationStatus::Pending => true,
            NotificationStatus::Sending {
                owner: holder,
                lease_until_micros: until,
            } => *until < now_micros || holder == owner,
            NotificationStatus::Sent { .. }
            | NotificationStatus::Suppressed
            | NotificationStatus::Failed => false,
        };
        if !claimable {
            return Ok(ClaimOutcome::NotClaimable);
        }
        record.status = NotificationStatus::Sending {
            owner: owner.to_owned(),
            lease_until_micros,
        };
        record.attempts += 1;
        Ok(ClaimOutcome::Claimed)
    }

    async fn mark_sent(
        &self,
        alert_id: &str,
        owner: &str,
        message_id: &str,
        now_micros: Micros,
    ) -> Result<MarkOutcome, PortError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        match inner.notifications.get_mut(alert_id) {
            Some(record) if matches!(&record.status, NotificationStatus::Sending { owner: o, .. } if o == owner) =>
            {
                record.status = NotificationStatus::Sent {
                    message_id: message_id.to_owned(),
                    sent_at_micros: now_micros,
                };
                inner.sent_by.insert(alert_id.to_owned(), owner.to_owned());
                Ok(MarkOutcome::Marked)
            }
            Some(record)
                if inner.sent_by.get(alert_id).map(String::as_str) == Some(owner)
                    && matches!(&record.status, NotificationStatus::Sent { message_id: m, .. } if m == message_id) =>
            {
                Ok(MarkOutcome::Marked)
            }
            _ => Ok(MarkOutcome::LeaseLost),
        }
    }

    async fn release(&self, alert_id: &str, owner: &str) -> Result<(), PortError> {
        let mut inner = self.lock();
        if let Some(record) = inner.notifications.get_mut(alert_id) {
            if matches!(&record.status, NotificationStatus::Sending { owner: o, .. } if o == owner)
            {
                record.status = NotificationStatus::Pending;
            }
        }
        Ok(())
    }

    async fn unsent(
        &self,
        decided_before_micros: Micros,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>, PortError> {
        let mut out: Vec<NotificationRecord> = self
            .lock()
            .notifications
            .values()
            .filter(|r| r.status.is_unsent() && r.decided_at_micros < decided_before_micros)
            .cloned()
            .collect();
        out.sort_by_key(|r| r.decided_at_micros);
        out.truncate(limit);
        Ok(out)
    }

    async fn mark_failed(&self, alert_id: &str, now_micros: Micros) -> Result<bool, PortError> {
        let mut inner = self.lock();
        let Some(record) = inner.notifications.get_mut(alert_id) else {
            return Ok(false);
        };
        let expired = match &record.status {
            NotificationStatus::Pending => true,
            NotificationStatus::Sending {
                lease_until_micros, ..
            } => *lease_until_micros < now_micros,
            _ => false,
        };
        if expired {
            record.status = NotificationStatus::Failed;
        }
        Ok(expired)
    }

    async fn redrive(&self, alert_id: &str) -> Result<bool, PortError> {
        let mut inner = self.lock();
        match inner.notifications.get_mut(alert_id) {
            Some(record)
                if matches!(
                    record.status,
                    NotificationStatus::Failed | NotificationStatus::Pending
                ) =>
            {
                record.status = NotificationStatus::Pending;
                record.attempts = 0;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn alert(&self, alert_id: &str) -> Result<Option<AlertRecord>, PortError> {
        Ok(self.outbox.as_ref().and_then(|o| o.get(alert_id)))
    }

    async fn sequenced_alert(
        &self,
        rule: &str,
        key: &str,
        seq: u64,
    ) -> Result<Option<AlertRecord>, PortError> {
        Ok(self
            .outbox
            .as_ref()
            .and_then(|o| o.sequenced(rule, key, seq)))
    }
}
