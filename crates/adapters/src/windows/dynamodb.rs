//! The DynamoDB window store (the template's windows table; item layout in `items.rs`)
//! and the shard ledger's items.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use streamwatch_core::PortError;
use streamwatch_core::progress::{Ledger, ShardLedger, ShardProgress};
use streamwatch_core::time::Micros;
use streamwatch_core::window::{Chunk, Head, Mark, WindowStore, Written};

use super::items::{
    self, HEAD, Item, OPEN_INDEX, START, chunk_from_item, chunk_prefix, get_bool, get_n, get_s, n,
    s, start_of_pk, start_pk,
};
use crate::aws::classify;

/// The DynamoDB window store.
#[derive(Debug, Clone)]
pub struct DynamoDbWindowStore {
    client: Client,
    table: String,
    ttl: Duration,
}

impl DynamoDbWindowStore {
    /// `ttl`: how long window and ledger items live after their last write.
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            ttl,
        }
    }

    /// TTL attribute value for an item written now: epoch seconds plus the state lifetime.
    fn expiry(&self) -> u64 {
        items::expiry(self.ttl)
    }

    fn is_condition_failure<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
        e: &E,
    ) -> bool {
        e.code() == Some("ConditionalCheckFailedException")
    }

    fn key(pk: String, sk: &str) -> Item {
        Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
    }

    /// Puts `item` if `condition` holds; `Ok(false)` when it did not.
    async fn put_if(
        &self,
        item: Item,
        condition: &str,
        what: &'static str,
    ) -> Result<bool, PortError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(Self::is_condition_failure) => Ok(false),
            Err(e) => Err(classify(what, e)),
        }
    }

    /// Every item of one partition, optionally of sort keys starting with `prefix`.
    async fn query_all(&self, pk: String, prefix: Option<String>) -> Result<Vec<Item>, PortError> {
        let mut out_items = Vec::new();
        let mut start_key = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":p", s(pk.clone()))
                .set_exclusive_start_key(start_key);
            q = match &prefix {
                Some(p) => q
                    .key_condition_expression("pk = :p AND begins_with(sk, :s)")
                    .expression_attribute_values(":s", s(p.clone())),
                None => q.key_condition_expression("pk = :p"),
            };
            let out = q
                .send()
                .await
                .map_err(|e| classify("dynamodb.Query(window start)", e))?;
            out_items.extend(out.items.unwrap_or_default());
            start_key = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start_key.is_none() {
                return Ok(out_items);
            }
        }
    }
}

impl WindowStore for DynamoDbWindowStore {
    async fn starts(&self, rule: &str, starts: &[Micros]) -> Result<Vec<Option<bool>>, PortError> {
        let mut found: std::collections::HashMap<Micros, bool> = Default::default();
        // BatchGetItem takes 100 keys; unprocessed keys come back and are asked again.
        for page in starts.chunks(100) {
            let mut pending: Vec<Item> = page
                .iter()
                .map(|st| Self::key(start_pk(rule, *st), START))
                .collect();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| PortError::permanent("dynamodb.BatchGetItem", e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| classify("dynamodb.BatchGetItem(starts)", e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let Some(st) = get_s(&item, "pk").and_then(|p| start_of_pk(p)) {
                        found.insert(st, get_bool(&item, "closed"));
                    }
                }
                if let Some(mut rest) = out.unprocessed_keys.filter(|m| !m.is_empty())
                    && let Some(k) = rest.remove(&self.table)
                {
                    attempt += 1;
                    if attempt > 8 {
                        return Err(PortError::transient(
                            "dynamodb.BatchGetItem",
                            "unprocessed keys after 8 attempts",
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                    pending = k.keys;
                }
            }
        }
        Ok(starts.iter().map(|st| found.get(st).copied()).collect())
    }

    async fn open_start(
        &self,
        rule: &str,
        start: Micros,
        end: Micros,
        close_at: Micros,
    ) -> Result<(), PortError> {
        let item = items::start_item(rule, start, end, close_at, self.ttl);
        self.put_if(
            item,
            "attribute_not_exists(pk)",
            "dynamodb.PutItem(window start)",
        )
        .await?;
        Ok(())
    }

    async fn put_chunk(
        &self,
        rule: &str,
        start: Micros,
        chunk: &Chunk,
    ) -> Result<Written, PortError> {
        for part in items::split_chunk(chunk.clone()) {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(items::chunk_item(rule, start, &part, self.ttl)))
                .send()
                .await
                .map_err(|e| classify("dynamodb.PutItem(chunk)", e))?;
        }
        // A closing freezes the start before it reads the chunks: still open now means
        // this chunk is in whatever decision comes. (A transaction with a check of the start
        // would say so too, at twice the write units of every chunk.)
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(start_pk(rule, start), START)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb.GetItem(window start)", e))?;
        Ok(match out.item {
            Some(i) if !get_bool(&i, "closed") => Written::Ok,
            _ => Written::Conflict,
        })
    }

    async fn chunks(
        &self,
        rule: &str,
        start: Micros,
        shards: Option<&[String]>,
    ) -> Result<Vec<Chunk>, PortError> {
        let prefixes: Vec<String> = match shards {
            Some(list) => list.iter().map(|sh| chunk_prefix(sh)).collect(),
            None => vec!["c#".to_owned()],
        };
        let mut chunks = Vec::new();
        for prefix in prefixes {
            for item in self.query_all(start_pk(rule, start), Some(prefix)).await? {
                chunks.push(chunk_from_item(&item)?);
            }
        }
        Ok(chunks)
    }

    async fn mark_once(&self, rule: &str, start: Micros, mark: &Mark) -> Result<bool, PortError> {
        let item = items::mark_item(rule, start, mark.id(), self.ttl);
        self.put_if(item, "attribute_not_exists(pk)", "dynamodb.PutItem(marker)")
            .await
    }

    async fn due_starts(
        &self,
        rule: &str,
        t: Micros,
        limit: usize,
    ) -> Result<Vec<Micros>, PortError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OPEN_INDEX)
            .key_condition_expression("open_shard = :b AND close_at <= :t")
            .expression_attribute_values(":b", s(items::open_shard(rule)))
            .expression_attribute_values(":t", n(t))
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| classify("dynamodb.Query(open-windows)", e))?;
        let mut due: Vec<Micros> = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| get_s(item, "pk").and_then(|p| start_of_pk(p)))
            .collect();
        due.sort_unstable();
        due.dedup();
        Ok(due)
    }

    async fn head(&self, rule: &str) -> Result<Head, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(rule.to_owned(), HEAD)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb.GetItem(head)", e))?;
        Ok(out
            .item
            .map(|i| items::head_from_item(&i))
            .unwrap_or_default())
    }

    async fn put_head(&self, rule: &str, head: &Head) -> Result<Written, PortError> {
        let item = items::head_item(rule, head, self.ttl);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(if head.version == 0 {
                "attribute_not_exists(pk)"
            } else {
                "version = :v"
            })
            .set_expression_attribute_values(
                (head.version > 0).then(|| [(":v".to_owned(), n(head.version))].into()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Ok),
            Err(e) if e.as_service_error().is_some_and(Self::is_condition_failure) => {
                Ok(Written::Conflict)
            }
            Err(e) => Err(classify("dynamodb.PutItem(head)", e)),
        }
    }

    async fn close_start(&self, rule: &str, start: Micros) -> Result<bool, PortError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(start_pk(rule, start), START)))
            .update_expression("SET closed = :t, #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":ttl", n(self.expiry()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| classify("dynamodb.UpdateItem(close window start)", e))?;
        Ok(out.attributes.is_some_and(|a| a.contains_key("open_shard")))
    }

    async fn settle_start(&self, rule: &str, start: Micros) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(start_pk(rule, start), START)))
            .update_expression("SET closed = :t, #ttl = :ttl REMOVE open_shard, close_at")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":ttl", n(self.expiry()))
            .send()
            .await
            .map_err(|e| classify("dynamodb.UpdateItem(settle window start)", e))?;
        Ok(())
    }
}

/// The sequence number as stored: zero-padded so DynamoDB's string order is numeric order.
fn padded(sequence: &str) -> String {
    format!("{sequence:0>128}")
}

fn unpadded(stored: &str) -> String {
    let t = stored.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

const LISTED: &str = "#listed";

impl ShardLedger for DynamoDbWindowStore {
    async fn ledger(&self, rule: &str) -> Result<Ledger, PortError> {
        let mut ledger = Ledger::default();
        let mut start_key = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", s(rule))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| classify("dynamodb.Query(shards)", e))?;
            for item in out.items.unwrap_or_default() {
                let Some(sk) = get_s(&item, "sk") else {
                    continue;
                };
                if sk == LISTED {
                    ledger.listed = true;
                    continue;
                }
                if sk.starts_with('#') {
                    continue;
                }
                let parents = match item.get("parents") {
                    Some(AttributeValue::L(l)) => {
                        l.iter().filter_map(|v| v.as_s().ok().cloned()).collect()
                    }
                    _ => Vec::new(),
                };
                ledger.shards.push(ShardProgress {
                    shard: sk.clone(),
                    parents,
                    records: get_n(&item, "wm"),
                    caught_up: get_n(&item, "cu"),
                    sequence: get_s(&item, "seq").map(|q| unpadded(q)),
                    retired: get_bool(&item, "retired"),
                });
            }
            start_key = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start_key.is_none() {
                return Ok(ledger);
            }
        }
    }

    async fn register(&self, rule: &str, shards: &[ShardProgress]) -> Result<(), PortError> {
        for shard in shards {
            let mut item = Item::from([
                ("pk".to_owned(), s(rule)),
                ("sk".to_owned(), s(&shard.shard)),
                (
                    "parents".to_owned(),
                    AttributeValue::L(shard.parents.iter().map(s).collect()),
                ),
                ("retired".to_owned(), AttributeValue::Bool(shard.retired)),
                ("ttl".to_owned(), n(self.expiry())),
            ]);
            if let Some(wm) = shard.records {
                item.insert("wm".to_owned(), n(wm));
            }
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(Self::is_condition_failure) => {}
                Err(e) => return Err(classify("dynamodb.PutItem(shard)", e)),
            }
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(rule))
            .item("sk", s(LISTED))
            .item("ttl", n(self.expiry()))
            .send()
            .await
            .map_err(|e| classify("dynamodb.PutItem(listed)", e))?;
        Ok(())
    }

    async fn advance(
        &self,
        rule: &str,
        shard: &str,
        records: Option<Micros>,
        sequence: &str,
    ) -> Result<(), PortError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(rule))
            .key("sk", s(shard))
            .update_expression("SET seq = :s, #ttl = :ttl")
            .condition_expression("attribute_not_exists(seq) OR seq < :s")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":s", s(padded(sequence)))
            .expression_attribute_values(":ttl", n(self.expiry()));
        if let Some(wm) = records {
            update = update
                .update_expression("SET seq = :s, wm = :w, #ttl = :ttl")
                .expression_attribute_values(":w", n(wm));
        }
        let result = update.send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(Self::is_condition_failure) => Ok(()),
            Err(e) => Err(classify("dynamodb.UpdateItem(shard progress)", e)),
        }
    }

    async fn caught_up(&self, rule: &str, shard: &str, micros: Micros) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(rule))
            .key("sk", s(shard))
            .update_expression("SET cu = :c, #ttl = :ttl")
            .condition_expression("attribute_not_exists(cu) OR cu < :c")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":c", n(micros))
            .expression_attribute_values(":ttl", n(self.expiry()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(Self::is_condition_failure) => Ok(()),
            Err(e) => Err(classify("dynamodb.UpdateItem(shard caught up)", e)),
        }
    }

    async fn retire(&self, rule: &str, shard: &str) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(rule))
            .key("sk", s(shard))
            .update_expression("SET retired = :t, #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":ttl", n(self.expiry()))
            .send()
            .await
            .map_err(|e| classify("dynamodb.UpdateItem(retire shard)", e))?;
        Ok(())
    }
}
