//! The alerts outbox: DynamoDB (a conditional put per alert, or for many alerts a
//! strongly consistent BatchGetItem and BatchWriteItem of the missing ones, so a retried
//! batch never writes an alert twice) and an embedded in-memory table with the same
//! semantics.
//!
//! Item layout (table hash key `alert_id`): `alert_id`, `record_type = "alert"`, `rule`,
//! `key`, `kind` (`firing`/`resolved`/`event`), `severity`, `summary`, `event_time` (ISO),
//! `created_at` (ISO), `ttl` (epoch seconds), `alert` (the whole record as JSON, what the
//! alerter reads), and for firing/resolved alerts `key_seq` (N): the alert's place in its
//! (rule, key)'s write order, 1, 2, 3, … without gaps. The alerter's stream filter matches
//! `record_type = alert` INSERTs.
//!
//! # Per-key sequence
//!
//! One key's alerts live under different hash keys, so they reach the alerter on different
//! stream shards, in any order. The outbox therefore numbers them as it writes them: an
//! atomic add on the head `#seqhead#<rule>#<key>` (`last`) takes the number `n`, then it
//! puts the index item `#seq#<rule>#<key>#<n>` (`record_type = "sequence"`, the alert's JSON
//! as `sequenced_alert`), then the alert itself (if new). The alerter decides a key's alerts in
//! that order, reading what the stream has not brought yet from the index items
//! (`crates/alerter/src/handler.rs`). Per-event alerts have no per-key state and no
//! sequence.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use streamwatch_core::time::format_micros;
use streamwatch_core::{AlertKind, AlertOutbox, AlertRecord, PortError, PutOutcome};

use crate::aws::classify;
use crate::dynamo::is_condition_failure;

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

/// Hash key of the head of a (rule, key)'s alert sequence; the rule escaped as in
/// [`crate::alert_state::state_item_key`].
pub fn sequence_head_key(rule: &str, key: &str) -> String {
    format!("#seqhead#{}#{key}", escape_rule(rule))
}

/// Hash key of the index item of a (rule, key)'s `seq`-th alert (the number last, after
/// the key, so that keys holding `#` stay unambiguous).
pub fn sequence_item_key(rule: &str, key: &str, seq: u64) -> String {
    format!("#seq#{}#{key}#{seq}", escape_rule(rule))
}

/// `#` and `%` in a rule escaped, so that `<rule>#<key>` splits one way only.
pub fn escape_rule(rule: &str) -> String {
    rule.replace('%', "%25").replace('#', "%23")
}

/// Whether alerts of this kind are numbered per (rule, key): those the alerter keeps state for.
pub fn is_sequenced(alert: &AlertRecord) -> bool {
    alert.kind != AlertKind::Event
}

/// The item of an alert with its per-key sequence number.
pub fn sequenced_alert_item(
    alert: &AlertRecord,
    seq: u64,
    now: SystemTime,
    ttl: Duration,
) -> Result<BTreeMap<String, AttributeValue>, PortError> {
    let mut item = alert_item(alert, now, ttl)?;
    item.insert("key_seq".into(), AttributeValue::N(seq.to_string()));
    Ok(item)
}

/// The per-key sequence number of an alert item, if it has one.
pub fn item_seq(item: &HashMap<String, AttributeValue>) -> Option<u64> {
    item.get("key_seq")?.as_n().ok()?.parse().ok()
}

/// Reads an alert back from its sequence index item (`#seq#…`, see the module docs).
pub fn alert_from_sequence_item(item: &HashMap<String, AttributeValue>) -> Option<AlertRecord> {
    let json = item.get("sequenced_alert")?.as_s().ok()?;
    serde_json::from_str(json).ok()
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
        if is_sequenced(alert) {
            return self.put_sequenced(alert).await;
        }
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
            Err(err) if is_condition_failure(&err) => Ok(PutOutcome::AlreadyExists),
            Err(err) => Err(classify("dynamodb.PutItem(alert)", err)),
        }
    }

    /// Reads which ids exist, then writes the others in batches. BatchWriteItem takes no
    /// condition, so an alert written by a concurrent invocation of the same record (a
    /// timed-out one still running) between the read and the write is overwritten with
    /// the same alert: a MODIFY on the stream, which the alerter ignores. The one-by-one
    /// conditional put costs a call (about 0.5 ms of CPU here) per alert.
    async fn put_alerts(&self, alerts: &[AlertRecord]) -> Vec<Result<PutOutcome, PortError>> {
        if alerts.iter().any(is_sequenced) {
            // Window alerts are few per batch and must be numbered in order: one by one.
            let mut results = Vec::with_capacity(alerts.len());
            for alert in alerts {
                results.push(self.put_alert(alert).await);
            }
            return results;
        }
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
    /// Writes a firing/resolved alert with the next number of its (rule, key): the number
    /// is taken with an atomic add on the head, then the index item and the alert are put
    /// (see the module docs). No transaction: a cancelled one makes moto swap the whole
    /// table, orphaning the open iterators of its stream (the dev stack's), and a number is
    /// never lost to a conflict this way.
    async fn put_sequenced(&self, alert: &AlertRecord) -> Result<PutOutcome, PortError> {
        // A duplicate (a retried close, a replayed batch) is the common case: a read.
        let existing = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("alert_id", AttributeValue::S(alert.id.clone()))
            .projection_expression("alert_id")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb.GetItem(alert)", e))?;
        if existing.item.is_some() {
            return Ok(PutOutcome::AlreadyExists);
        }
        let json =
            serde_json::to_string(alert).map_err(|e| PortError::permanent("alerts.encode", e))?;
        let now = SystemTime::now();
        let ttl = AttributeValue::N(
            (now.duration_since(UNIX_EPOCH).unwrap_or_default() + self.ttl)
                .as_secs()
                .to_string(),
        );
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let head = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("alert_id", s(&sequence_head_key(&alert.rule, &alert.key)))
            .update_expression("ADD #last :one SET record_type = :type, #ttl = :ttl")
            .expression_attribute_names("#last", "last")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":type", s("sequence-head"))
            .expression_attribute_values(":ttl", ttl.clone())
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| classify("dynamodb.UpdateItem(sequence head)", e))?;
        let seq: u64 = head
            .attributes
            .as_ref()
            .and_then(|a| a.get("last"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                PortError::permanent("dynamodb.UpdateItem(sequence head)", "no number returned")
            })?;
        // The number is ours alone; the index item goes first, so that whoever sees the
        // alert (the stream) finds every earlier number's index item written or in flight.
        let index = BTreeMap::from([
            (
                "alert_id".to_owned(),
                s(&sequence_item_key(&alert.rule, &alert.key, seq)),
            ),
            ("record_type".to_owned(), s("sequence")),
            ("sequenced_alert_id".to_owned(), s(&alert.id)),
            // Not `alert`: a scan for alert items must not find the alert twice.
            ("sequenced_alert".to_owned(), s(&json)),
            ("ttl".to_owned(), ttl),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(index.into_iter().collect()))
            .send()
            .await
            .map_err(|e| classify("dynamodb.PutItem(sequence)", e))?;
        let item = sequenced_alert_item(alert, seq, now, self.ttl)?;
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
            // Written meanwhile under another number: that number's index item names the
            // same alert, which the alerter finds decided already.
            Err(err) if is_condition_failure(&err) => Ok(PutOutcome::AlreadyExists),
            Err(err) => Err(classify("dynamodb.PutItem(alert)", err)),
        }
    }

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
    /// Per-key sequence number of each of `alerts` (firing/resolved ones).
    seqs: Vec<Option<u64>>,
    /// Last number given per (rule, key).
    heads: HashMap<(String, String), u64>,
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

    /// The alert with this id, if written.
    pub fn get(&self, alert_id: &str) -> Option<AlertRecord> {
        self.lock()
            .alerts
            .iter()
            .find(|a| a.id == alert_id)
            .cloned()
    }

    /// The per-key sequence number the outbox gave an alert, as its item's `key_seq`.
    pub fn seq_of(&self, alert_id: &str) -> Option<u64> {
        let w = self.lock();
        let i = w.alerts.iter().position(|a| a.id == alert_id)?;
        w.seqs.get(i).copied().flatten()
    }

    /// The `seq`-th alert of (rule, key), as the index item `#seq#…` holds it.
    pub fn sequenced(&self, rule: &str, key: &str, seq: u64) -> Option<AlertRecord> {
        let w = self.lock();
        w.alerts
            .iter()
            .zip(&w.seqs)
            .find(|(a, s)| a.rule == rule && a.key == key && **s == Some(seq))
            .map(|(a, _)| a.clone())
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
        let seq = is_sequenced(alert).then(|| {
            let head = w
                .heads
                .entry((alert.rule.clone(), alert.key.clone()))
                .or_insert(0);
            *head += 1;
            *head
        });
        w.alerts.push(alert.clone());
        w.seqs.push(seq);
        Ok(PutOutcome::Created)
    }
}
