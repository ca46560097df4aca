//! The alerts outbox: DynamoDB (a conditional put per alert, or for many alerts a
//! strongly consistent BatchGetItem and BatchWriteItem of the missing ones, so a retried
//! batch never writes an alert twice) and an embedded in-memory table with the same
//! semantics.
//!
//! Item layout (table hash key `alert_id`): `alert_id`, `record_type = "alert"`, `rule`,
//! `key`, `kind` (`firing`/`resolved`/`event`), `severity`, `summary`, `event_time` (ISO),
//! `created_at` (ISO), `ttl` (epoch seconds), `alert` (the whole record as JSON, what the
//! alerter reads). The alerter's stream filter matches `record_type = alert` INSERTs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use streamwatch_core::time::format_micros;
use streamwatch_core::{AlertOutbox, AlertRecord, PortError, PutOutcome};

use crate::aws::classify;

/// BatchGetItem reads at most 100 keys, BatchWriteItem writes at most 25 items.
const GET_LIMIT: usize = 100;
const WRITE_LIMIT: usize = 25;
/// Rounds of re-sending what a batch call left unprocessed (throttled) before giving the
/// rest back as transient failures.
const BATCH_ROUNDS: u32 = 6;

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

    /// Reads which ids exist, then writes the others in batches. BatchWriteItem takes no
    /// condition, so an alert written by a concurrent invocation of the same record (a
    /// timed-out one still running) between the read and the write is overwritten with
    /// the same alert: a MODIFY on the stream, which the alerter ignores. The one-by-one
    /// conditional put costs a call (about 0.5 ms of CPU here) per alert.
    async fn put_alerts(&self, alerts: &[AlertRecord]) -> Vec<Result<PutOutcome, PortError>> {
        let mut results: Vec<Option<Result<PutOutcome, PortError>>> =
            alerts.iter().map(|_| None).collect();
        let mut seen = HashSet::new();
        let mut unique = Vec::new();
        for (i, alert) in alerts.iter().enumerate() {
            if seen.insert(alert.id.as_str()) {
                unique.push(i);
            } else {
                results[i] = Some(Ok(PutOutcome::AlreadyExists));
            }
        }
        let mut missing = Vec::new();
        for chunk in unique.chunks(GET_LIMIT) {
            match self.existing(chunk.iter().map(|&i| &alerts[i].id)).await {
                Ok(existing) => {
                    for &i in chunk {
                        if existing.contains(&alerts[i].id) {
                            results[i] = Some(Ok(PutOutcome::AlreadyExists));
                        } else {
                            missing.push(i);
                        }
                    }
                }
                Err(err) => {
                    for &i in chunk {
                        results[i] = Some(Err(replicate(&err)));
                    }
                }
            }
        }
        let now = SystemTime::now();
        let mut items = Vec::new();
        for i in missing {
            match alert_item(&alerts[i], now, self.ttl) {
                Ok(item) => items.push((i, item)),
                Err(err) => results[i] = Some(Err(err)),
            }
        }
        for chunk in items.chunks(WRITE_LIMIT) {
            let requests = chunk.iter().filter_map(|(_, item)| {
                let put = PutRequest::builder()
                    .set_item(Some(item.clone().into_iter().collect()))
                    .build()
                    .ok()?;
                Some(WriteRequest::builder().put_request(put).build())
            });
            let outcome = self.write(requests.collect()).await;
            for (i, _) in chunk {
                let id = alerts[*i].id.as_str();
                results[*i] = Some(match &outcome {
                    Ok(()) => Ok(PutOutcome::Created),
                    // The call failed: nothing known written.
                    Err((err, None)) => Err(replicate(err)),
                    Err((err, Some(left))) if left.contains(id) => Err(replicate(err)),
                    Err(_) => Ok(PutOutcome::Created),
                });
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(PortError::transient(
                        "dynamodb.BatchWriteItem(alerts)",
                        "alert not attempted",
                    ))
                })
            })
            .collect()
    }
}

impl DynamoDbAlertOutbox {
    /// The ids among `ids` that have an item, read strongly consistently (what a
    /// conditional put would see).
    async fn existing<'a>(
        &self,
        ids: impl Iterator<Item = &'a String>,
    ) -> Result<HashSet<String>, PortError> {
        let keys = ids
            .map(|id| HashMap::from([("alert_id".to_owned(), AttributeValue::S(id.clone()))]))
            .collect::<Vec<_>>();
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .projection_expression("alert_id")
            .build()
            .map_err(|e| PortError::permanent("dynamodb.BatchGetItem(alerts)", e))?;
        let mut found = HashSet::new();
        for round in 0..BATCH_ROUNDS {
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| classify("dynamodb.BatchGetItem(alerts)", e))?;
            let responses = output.responses.unwrap_or_default();
            for item in responses.get(&self.table).into_iter().flatten() {
                if let Some(AttributeValue::S(id)) = item.get("alert_id") {
                    found.insert(id.clone());
                }
            }
            match output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys.is_empty())
            {
                None => return Ok(found),
                Some(rest) => {
                    request = rest;
                    tokio::time::sleep(Duration::from_millis(25 << round)).await;
                }
            }
        }
        Err(PortError::transient(
            "dynamodb.BatchGetItem(alerts)",
            "keys still unprocessed (throttled) after retries",
        ))
    }

    /// Writes `requests`, re-sending what comes back unprocessed. On failure, the error and
    /// the ids not written (`None`: the call itself failed, nothing known written).
    async fn write(
        &self,
        mut requests: Vec<WriteRequest>,
    ) -> Result<(), (PortError, Option<HashSet<String>>)> {
        for round in 0..BATCH_ROUNDS {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| (classify("dynamodb.BatchWriteItem(alerts)", e), None))?;
            match output
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .filter(|r| !r.is_empty())
            {
                None => return Ok(()),
                Some(rest) => {
                    requests = rest;
                    tokio::time::sleep(Duration::from_millis(25 << round)).await;
                }
            }
        }
        let left = requests
            .iter()
            .filter_map(|r| {
                r.put_request
                    .as_ref()?
                    .item
                    .get("alert_id")?
                    .as_s()
                    .ok()
                    .cloned()
            })
            .collect();
        Err((
            PortError::transient(
                "dynamodb.BatchWriteItem(alerts)",
                "items still unprocessed (throttled) after retries",
            ),
            Some(left),
        ))
    }
}

/// The same failure for each alert of a batch call (`PortError` holds a boxed source).
fn replicate(err: &PortError) -> PortError {
    PortError {
        operation: err.operation,
        retry: err.retry,
        source: err.source.to_string().into(),
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
