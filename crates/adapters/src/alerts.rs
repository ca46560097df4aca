//! The alerts outbox: DynamoDB (a conditional put per alert, so a retried batch never
//! writes an alert twice) and an embedded in-memory table with the same semantics.
//!
//! Item layout (table hash key `alert_id`): `alert_id`, `record_type = "alert"`, `rule`,
//! `key`, `kind` (`firing`/`resolved`/`event`), `severity`, `summary`, `event_time` (ISO),
//! `created_at` (ISO), `ttl` (epoch seconds), `alert` (the whole record as JSON, what the
//! alerter reads). The alerter's stream filter matches `record_type = alert` INSERTs.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use streamwatch_core::time::format_micros;
use streamwatch_core::{AlertOutbox, AlertRecord, PortError, PutOutcome};

use crate::aws::classify;

/// How long alert records stay in the table before DynamoDB's TTL removes them.
pub const DEFAULT_ALERT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The item attributes of an alert record.
pub fn alert_item(
    alert: &AlertRecord,
    now: SystemTime,
    ttl: Duration,
) -> Result<BTreeMap<String, AttributeValue>, PortError> {
    let json =
        serde_json::to_string(alert).map_err(|e| PortError::permanent("alerts.encode", e))?;
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    Ok(BTreeMap::from([
        ("alert_id".to_owned(), s(&alert.id)),
        ("record_type".to_owned(), s("alert")),
        ("rule".to_owned(), s(&alert.rule)),
        ("key".to_owned(), s(&alert.key)),
        ("kind".to_owned(), s(alert.kind.as_str())),
        ("severity".to_owned(), s(&alert.severity)),
        ("summary".to_owned(), s(&alert.summary)),
        (
            "event_time".to_owned(),
            s(&format_micros(alert.event_time_micros)),
        ),
        (
            "created_at".to_owned(),
            s(&format_micros(now_secs.as_micros() as i64)),
        ),
        (
            "ttl".to_owned(),
            AttributeValue::N((now_secs + ttl).as_secs().to_string()),
        ),
        ("alert".to_owned(), s(&json)),
    ]))
}

/// Reads an alert record back from its item (the `alert` attribute).
pub fn alert_from_item(
    item: &std::collections::HashMap<String, AttributeValue>,
) -> Option<AlertRecord> {
    let json = item.get("alert")?.as_s().ok()?;
    serde_json::from_str(json).ok()
}

/// DynamoDB alerts outbox.
#[derive(Debug, Clone)]
pub struct DynamoDbAlertOutbox {
    client: Client,
    table: String,
    ttl: Duration,
}

impl DynamoDbAlertOutbox {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            ttl: DEFAULT_ALERT_TTL,
        }
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

impl AlertOutbox for DynamoDbAlertOutbox {
    async fn put_alert(&self, alert: &AlertRecord) -> Result<PutOutcome, PortError> {
        let item = alert_item(alert, SystemTime::now(), self.ttl)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.into_iter().collect()))
            .condition_expression("attribute_not_exists(alert_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Created),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(err) => Err(classify("dynamodb.PutItem(alert)", err)),
        }
    }
}

/// In-memory alerts outbox with the DynamoDB one's semantics: first write of an id wins.
#[derive(Debug, Default)]
pub struct EmbeddedAlertOutbox {
    inner: Mutex<Written>,
}

#[derive(Debug, Default)]
struct Written {
    alerts: Vec<AlertRecord>,
    /// How many of `alerts` [`EmbeddedAlertOutbox::take_new`] has handed out.
    read: usize,
}

impl EmbeddedAlertOutbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every alert written, in write order.
    pub fn alerts(&self) -> Vec<AlertRecord> {
        self.lock().alerts.clone()
    }

    /// Alerts written since the last call: what the table's stream would deliver next.
    pub fn take_new(&self) -> Vec<AlertRecord> {
        let mut w = self.lock();
        let new = w.alerts[w.read..].to_vec();
        w.read = w.alerts.len();
        new
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        // A panic while holding the lock cannot leave `Written` half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AlertOutbox for EmbeddedAlertOutbox {
    async fn put_alert(&self, alert: &AlertRecord) -> Result<PutOutcome, PortError> {
        let mut w = self.lock();
        if w.alerts.iter().any(|a| a.id == alert.id) {
            return Ok(PutOutcome::AlreadyExists);
        }
        w.alerts.push(alert.clone());
        Ok(PutOutcome::Created)
    }
}
