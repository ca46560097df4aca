//! Where alert groups live: in the alerts table ([`DynamoDbGroupStore`]: member writes once
//! per alert id, group writes on a version, one transaction per seal) and embedded in memory
//! with the same semantics ([`EmbeddedGroupStore`], for the property tests of
//! `alerter::group`).

mod embedded;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use streamwatch_core::notify::group::{
    GroupBatch, GroupKey, GroupState, GroupStore, Joined, worst_first,
};
use streamwatch_core::time::Micros;
use streamwatch_core::{AlertRecord, PortError};

use crate::aws::classify;

pub use embedded::EmbeddedGroupStore;

/// The DynamoDB store: the alerts table, beside the alerts (hash keys start with `#`, so
/// they never collide with alert ids; `record_type` is not `alert`, so the alerter's stream
/// filter never delivers them):
///
/// * `#group#<group id>` (`record_type = "group"`): `group_key` (JSON), `version`, `batches`,
///   `last_flush`?, `waiting` (string set of alert ids joined and not sealed) and, while
///   due, `pending_bucket = "group-due"` / `pending_since` = the due time: the keys of the
///   sparse index [`crate::alert_state::PENDING_INDEX`], which the schedule queries.
/// * `#gmember#<alert id>` (`record_type = "group_member"`): `group_id`, `alert` (JSON),
///   `sealed_in`? (the batch number) once sealed.
/// * `#gbatch#<group id>#<n>` (`record_type = "group_batch"`): `group_key` (JSON),
///   `alert_ids`, `sealed_at`.
/// * the batch's notification record (`crate::alert_state`'s layout, id `<group id>#<n>`),
///   pending, written by the seal: the alerter's claim → publish → mark-sent path and
///   recovery treat it like any notification.
///
/// Members, batches and the batch's notification expire with the alerts (`ttl`, 30 days by
/// default); the group item is refreshed by every write.
#[derive(Debug, Clone)]
pub struct DynamoDbGroupStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl: std::time::Duration,
}

const DUE_BUCKET: &str = "group-due";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn group_item_key(group: &GroupKey) -> String {
    format!("#group#{}", group.id())
}

fn member_item_key(alert_id: &str) -> String {
    format!("#gmember#{alert_id}")
}

fn num(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn is_conditional<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.as_service_error().is_some_and(|e| {
        matches!(
            e.code(),
            Some("ConditionalCheckFailedException" | "TransactionCanceledException")
        )
    })
}

impl DynamoDbGroupStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            ttl: crate::alerts::DEFAULT_ALERT_TTL,
        }
    }

    /// The expiry of items written now (epoch seconds, DynamoDB's TTL attribute).
    fn expiry(&self) -> AttributeValue {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        n((now + self.ttl).as_secs())
    }

    async fn get(&self, key: String) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("alert_id", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb.GetItem(group)", e))?;
        Ok(out.item)
    }

    /// Adds the alert's id to its group's waiting set (a set: adding twice is adding once).
    async fn add_waiting(&self, group: &GroupKey, alert_id: &str) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("alert_id", s(group_item_key(group)))
            .update_expression("ADD waiting :id SET record_type = :t")
            .expression_attribute_values(":id", AttributeValue::Ss(vec![alert_id.to_owned()]))
            .expression_attribute_values(":t", s("group"))
            .send()
            .await
            .map_err(|e| classify("dynamodb.UpdateItem(group waiting)", e))?;
        Ok(())
    }

    /// The update of the group item to `next`, conditional on version `expected`.
    fn group_update(
        &self,
        group: &GroupKey,
        expected: Option<u64>,
        next: &GroupState,
    ) -> Result<Update, PortError> {
        let mut set = vec![
            "#version = :v",
            "batches = :b",
            "group_key = :k",
            "record_type = :t",
            "#ttl = :ttl",
        ];
        let mut remove = vec![];
        let mut values = HashMap::from([
            (":v".to_owned(), n(next.version)),
            (":b".to_owned(), n(next.batches)),
            (
                ":k".to_owned(),
                s(serde_json::to_string(group).unwrap_or_default()),
            ),
            (":t".to_owned(), s("group")),
            (":ttl".to_owned(), self.expiry()),
        ]);
        match next.due_micros {
            Some(due) => {
                set.extend(["pending_bucket = :pb", "pending_since = :ps"]);
                values.insert(":pb".into(), s(DUE_BUCKET));
                values.insert(":ps".into(), n(due));
            }
            None => remove.extend(["pending_bucket", "pending_since"]),
        }
        if let Some(last) = next.last_flush_micros {
            set.push("last_flush = :lf");
            values.insert(":lf".into(), n(last));
        }
        let condition = match expected {
            Some(v) => {
                values.insert(":expected".into(), n(v));
                "#version = :expected"
            }
            None => "attribute_not_exists(#version)",
        };
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        Update::builder()
            .table_name(&self.table)
            .key("alert_id", s(group_item_key(group)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            // Named, in case a word is reserved (DynamoDB reserves hundreds).
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#ttl", "ttl")
            .build()
            .map_err(|e| PortError::permanent("dynamodb.UpdateItem(build)", e))
    }

    fn member_sealed(&self, alert_id: &str, batch: u64) -> Result<TransactWriteItem, PortError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("alert_id", s(member_item_key(alert_id)))
            .update_expression("SET sealed_in = :n")
            .condition_expression("attribute_exists(alert_id) AND attribute_not_exists(sealed_in)")
            .expression_attribute_values(":n", n(batch))
            .build()
            .map_err(|e| PortError::permanent("dynamodb.UpdateItem(build)", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn batch_record(
        &self,
        batch: &GroupBatch,
        now: Micros,
    ) -> Result<TransactWriteItem, PortError> {
        let ids: Vec<AttributeValue> = batch.alerts.iter().map(|a| s(a.id.clone())).collect();
        let put = Put::builder()
            .table_name(&self.table)
            .item(
                "alert_id",
                s(format!("#gbatch#{}", batch.notification_id())),
            )
            .item("record_type", s("group_batch"))
            .item("group_id", s(batch.group.id()))
            .item(
                "group_key",
                s(serde_json::to_string(&batch.group).unwrap_or_default()),
            )
            .item("alert_ids", AttributeValue::L(ids))
            .item("sealed_at", n(now))
            .item("ttl", self.expiry())
            .condition_expression("attribute_not_exists(alert_id)")
            .build()
            .map_err(|e| PortError::permanent("dynamodb.PutItem(build)", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

impl GroupStore for DynamoDbGroupStore {
    async fn put_member(&self, group: &GroupKey, alert: &AlertRecord) -> Result<Joined, PortError> {
        let json = serde_json::to_string(alert)
            .map_err(|e| PortError::permanent("group member (encode)", e))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("alert_id", s(member_item_key(&alert.id)))
            .item("record_type", s("group_member"))
            .item("group_id", s(group.id()))
            .item("alert", s(json))
            .item("ttl", self.expiry())
            .condition_expression("attribute_not_exists(alert_id)")
            .send()
            .await;
        let joined = match put {
            Ok(_) => Joined::New,
            Err(e) if is_conditional(&e) => Joined::Already,
            Err(e) => return Err(classify("dynamodb.PutItem(group member)", e)),
        };
        // A retry after a crash between the two writes must still add the id, unless the
        // member was sealed since (the seal removes it from the set).
        let sealed = match joined {
            Joined::New => false,
            Joined::Already => self
                .get(member_item_key(&alert.id))
                .await?
                .is_some_and(|m| m.contains_key("sealed_in")),
        };
        if !sealed {
            self.add_waiting(group, &alert.id).await?;
        }
        Ok(joined)
    }

    async fn group(&self, group: &GroupKey) -> Result<Option<GroupState>, PortError> {
        let Some(item) = self.get(group_item_key(group)).await? else {
            return Ok(None);
        };
        let Some(version) = num(&item, "version") else {
            return Ok(None); // only a waiting set so far
        };
        Ok(Some(GroupState {
            version: version as u64,
            batches: num(&item, "batches").unwrap_or(0) as u64,
            due_micros: num(&item, "pending_since"),
            last_flush_micros: num(&item, "last_flush"),
        }))
    }

    async fn put_group(
        &self,
        group: &GroupKey,
        expected: Option<u64>,
        next: &GroupState,
    ) -> Result<bool, PortError> {
        let u = self.group_update(group, expected, next)?;
        let result = self
            .client
            .update_item()
            .table_name(u.table_name())
            .set_key(Some(u.key().clone()))
            .update_expression(u.update_expression())
            .set_condition_expression(u.condition_expression().map(str::to_owned))
            .set_expression_attribute_values(u.expression_attribute_values().cloned())
            .set_expression_attribute_names(u.expression_attribute_names().cloned())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(classify("dynamodb.UpdateItem(group)", e)),
        }
    }

    async fn waiting(&self, group: &GroupKey) -> Result<Vec<AlertRecord>, PortError> {
        let ids: Vec<String> = self
            .get(group_item_key(group))
            .await?
            .and_then(|item| item.get("waiting").and_then(|w| w.as_ss().ok()).cloned())
            .unwrap_or_default();
        let mut out = Vec::new();
        // Strongly consistent reads one by one: a waiting set is small (one group interval's
        // alerts), and BatchGetItem would add unprocessed-key retries for no gain here.
        for id in ids {
            let Some(member) = self.get(member_item_key(&id)).await? else {
                continue;
            };
            if member.contains_key("sealed_in") {
                continue; // sealed; its id lingers only after a join raced the seal
            }
            if let Some(alert) = crate::alerts::alert_from_item(&member) {
                out.push(alert);
            }
        }
        Ok(out)
    }

    async fn seal(
        &self,
        expected: u64,
        next: &GroupState,
        batch: &GroupBatch,
    ) -> Result<bool, PortError> {
        let mut update = self.group_update(&batch.group, Some(expected), next)?;
        // Take the sealed ids out of the waiting set in the same write.
        let ids: Vec<String> = batch.alerts.iter().map(|a| a.id.clone()).collect();
        let mut values = update
            .expression_attribute_values()
            .cloned()
            .unwrap_or_default();
        values.insert(":sealed".into(), AttributeValue::Ss(ids));
        update = Update::builder()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(format!(
                "{} DELETE waiting :sealed",
                update.update_expression()
            ))
            .set_condition_expression(update.condition_expression().map(str::to_owned))
            .set_expression_attribute_values(Some(values))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .build()
            .map_err(|e| PortError::permanent("dynamodb.UpdateItem(build)", e))?;
        let now = next.last_flush_micros.unwrap_or_default();
        let notification = Put::builder()
            .table_name(&self.table)
            .set_item(Some(crate::alert_state::notification_item(
                &batch.notification(now),
                std::time::SystemTime::now(),
                self.ttl,
            )))
            .condition_expression("attribute_not_exists(alert_id)")
            .build()
            .map_err(|e| PortError::permanent("dynamodb.PutItem(build)", e))?;
        let mut items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.batch_record(batch, now)?,
            TransactWriteItem::builder().put(notification).build(),
        ];
        for a in &batch.alerts {
            items.push(self.member_sealed(&a.id, batch.number)?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(classify("dynamodb.TransactWriteItems(group seal)", e)),
        }
    }

    async fn batch(&self, notification_id: &str) -> Result<Option<GroupBatch>, PortError> {
        let Some(item) = self.get(format!("#gbatch#{notification_id}")).await? else {
            return Ok(None);
        };
        let group: Option<GroupKey> = item
            .get("group_key")
            .and_then(|k| k.as_s().ok())
            .and_then(|k| serde_json::from_str(k).ok());
        let number = notification_id
            .rsplit_once('#')
            .and_then(|(_, n)| n.parse().ok());
        let (Some(group), Some(number)) = (group, number) else {
            return Err(PortError::permanent(
                "group batch (decode)",
                format!("batch {notification_id}: no group_key or number"),
            ));
        };
        let ids: Vec<String> = item
            .get("alert_ids")
            .and_then(|l| l.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default();
        let mut alerts = Vec::with_capacity(ids.len());
        for id in ids {
            // A member expires with the batch; one gone early is left out of the re-send.
            if let Some(member) = self.get(member_item_key(&id)).await? {
                alerts.extend(crate::alerts::alert_from_item(&member));
            }
        }
        worst_first(&mut alerts);
        Ok(Some(GroupBatch {
            group,
            number,
            alerts,
        }))
    }

    async fn due(&self, now: Micros, limit: usize) -> Result<Vec<GroupKey>, PortError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(crate::alert_state::PENDING_INDEX)
            .key_condition_expression("pending_bucket = :b AND pending_since <= :now")
            .expression_attribute_values(":b", s(DUE_BUCKET))
            .expression_attribute_values(":now", n(now))
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| classify("dynamodb.Query(group due)", e))?;
        Ok(page
            .items()
            .iter()
            .filter_map(|i| serde_json::from_str(i.get("group_key")?.as_s().ok()?).ok())
            .collect())
    }
}
