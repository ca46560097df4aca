//! Where silences live: in the alerts table ([`DynamoDbSilenceStore`]) and in memory
//! ([`EmbeddedSilenceStore`]). In the table, `#silence#<id>` (`record_type = "silence"`, so
//! the alerter's stream filter never delivers it) holds the silence as JSON, and, until it
//! ends, `pending_bucket = "silence"` / `pending_since` = its end: the keys of the sparse
//! index [`crate::alert_state::PENDING_INDEX`], so the alerter reads the silences in force
//! with one Query, never a Scan. `ttl` removes the item a day after its end.

use std::sync::Mutex;

use streamwatch_core::PortError;
use streamwatch_core::notify::silence::{Silence, SilenceStore};
use streamwatch_core::time::Micros;

use crate::aws::classify;
use crate::dynamo::{is_condition_failure, n, s};

const BUCKET: &str = "silence";
/// How long an ended silence stays readable (`silence list --all`), in seconds.
const KEEP_ENDED_SECS: i64 = 24 * 3600;

fn item_key(id: &str) -> String {
    format!("#silence#{id}")
}

/// In-memory silences.
#[derive(Debug, Default)]
pub struct EmbeddedSilenceStore {
    inner: Mutex<Vec<Silence>>,
}

impl EmbeddedSilenceStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Silence>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SilenceStore for EmbeddedSilenceStore {
    async fn current(&self, now: Micros) -> Result<Vec<Silence>, PortError> {
        Ok(self
            .lock()
            .iter()
            .filter(|s| s.ends_micros > now)
            .cloned()
            .collect())
    }

    async fn add(&self, silence: &Silence) -> Result<(), PortError> {
        let mut all = self.lock();
        if all.iter().any(|s| s.id == silence.id) {
            return Err(PortError::permanent(
                "silence add",
                format!("silence {} exists", silence.id),
            ));
        }
        all.push(silence.clone());
        Ok(())
    }

    async fn expire(&self, id: &str, now: Micros) -> Result<bool, PortError> {
        let mut all = self.lock();
        match all.iter_mut().find(|s| s.id == id && s.ends_micros > now) {
            Some(s) => {
                s.ends_micros = now.max(s.starts_micros);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Silences in the alerts table.
#[derive(Debug, Clone)]
pub struct DynamoDbSilenceStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbSilenceStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn expiry(ends_micros: Micros) -> aws_sdk_dynamodb::types::AttributeValue {
    n(ends_micros.div_euclid(1_000_000) + KEEP_ENDED_SECS)
}

impl SilenceStore for DynamoDbSilenceStore {
    async fn current(&self, now: Micros) -> Result<Vec<Silence>, PortError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(crate::alert_state::PENDING_INDEX)
                .key_condition_expression("pending_bucket = :b AND pending_since > :now")
                .expression_attribute_values(":b", s(BUCKET))
                .expression_attribute_values(":now", n(now))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("dynamodb.Query(silences)", e))?;
            for item in page.items() {
                let silence = item
                    .get("silence")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|json| serde_json::from_str::<Silence>(json).ok());
                match silence {
                    // The index may lag an expiry: the item's own end decides.
                    Some(silence) if silence.ends_micros > now => out.push(silence),
                    Some(_) => {}
                    None => {
                        tracing::warn!(item = ?item.get("alert_id"), "unreadable silence item skipped")
                    }
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn add(&self, silence: &Silence) -> Result<(), PortError> {
        let json = serde_json::to_string(silence)
            .map_err(|e| PortError::permanent("silence (encode)", e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("alert_id", s(item_key(&silence.id)))
            .item("record_type", s("silence"))
            .item("silence", s(json))
            .item("pending_bucket", s(BUCKET))
            .item("pending_since", n(silence.ends_micros))
            .item("ttl", expiry(silence.ends_micros))
            .condition_expression("attribute_not_exists(alert_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(PortError::permanent(
                "dynamodb.PutItem(silence)",
                format!("silence {} exists", silence.id),
            )),
            Err(e) => Err(classify("dynamodb.PutItem(silence)", e)),
        }
    }

    async fn expire(&self, id: &str, now: Micros) -> Result<bool, PortError> {
        let current = self.current(now).await?;
        let Some(mut silence) = current.into_iter().find(|s| s.id == id) else {
            return Ok(false);
        };
        let previous_end = silence.ends_micros;
        silence.ends_micros = now.max(silence.starts_micros);
        let json = serde_json::to_string(&silence)
            .map_err(|e| PortError::permanent("silence (encode)", e))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("alert_id", s(item_key(id)))
            .update_expression(
                "SET silence = :json, #ttl = :ttl REMOVE pending_bucket, pending_since",
            )
            .condition_expression("pending_since = :end")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":json", s(json))
            .expression_attribute_values(":ttl", expiry(silence.ends_micros))
            .expression_attribute_values(":end", n(previous_end))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(classify("dynamodb.UpdateItem(silence expire)", e)),
        }
    }
}
