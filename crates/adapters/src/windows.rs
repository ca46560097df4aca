//! Window state stores: DynamoDB (the template's windows table) and an embedded one with
//! the same semantics (versioned conditional writes, an open-window index, monotonic
//! watermarks).
//!
//! DynamoDB layout (hash key `pk`, range key `sk`):
//! * window: `pk = "<rule>#<key>"`, `sk = "w#<start µs, 20 digits>"`; `e` (binary: per
//!   reading its 64-bit identity, value, change time and a removed flag, 25 bytes, little
//!   endian), `l` (binary: per late reading its identity and change time, 16 bytes),
//!   `version`, `closed`, `settled`, `start`, `end`, and for people and dashboards `late`
//!   (how many late readings) and the derived `count`/`sum`/`min`/`max`/`avg`; `ttl`; until
//!   settled also `open_shard = "<rule>#open#<0..3>"` and `close_at` (µs), which put it in
//!   the sparse `open-windows` index (hash `open_shard`, range `close_at`, keys only) the
//!   schedule queries instead of scanning. Settling removes both attributes.
//! * key state: `pk = "<rule>#<key>"`, `sk = "state"`; `firing`, `firing_before_last`,
//!   `last_closed_start`, `version`, `ttl`.
//! * shard progress (`streamwatch_core::progress`): `pk = "<rule>"` (no `#`, so it never
//!   meets a window), `sk = <shard id>`; `wm` (records' progress, µs), `cu` (caught-up
//!   progress, µs), `seq` (the last finished sequence number, zero-padded to 128 digits so
//!   DynamoDB's string order is numeric order), `parents` (list), `retired`, `ttl`; and
//!   `sk = "#listed"` once the stream's shards were listed. Items of other `#` sort keys
//!   (the `#closed` floor of earlier versions) are ignored.
//!
//! `ttl` (epoch seconds) is wall clock at the item's last write plus the configured state
//! lifetime; the table's TTL setting must name the `ttl` attribute.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use streamwatch_core::PortError;
use streamwatch_core::progress::{Ledger, ShardLedger, ShardProgress, sequence_after};
use streamwatch_core::time::Micros;
use streamwatch_core::window::{Entry, KeyState, WindowKey, WindowState, WindowStore, Written};

use crate::aws::classify;

/// Buckets of the open-window index, so one rule's open windows spread over partitions.
pub const OPEN_BUCKETS: u64 = 4;
pub const OPEN_INDEX: &str = "open-windows";

fn pk(rule: &str, key: &str) -> String {
    format!("{rule}#{key}")
}

fn window_sk(start: Micros) -> String {
    format!("w#{start:020}")
}

fn bucket(rule: &str, key: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    format!("{rule}#open#{}", h.finish() % OPEN_BUCKETS)
}

use crate::dynamo::{get_n, get_s, is_condition_failure, n, put_if_version, s};

fn get_bool(item: &HashMap<String, AttributeValue>, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn corrupt(what: &str) -> PortError {
    PortError::permanent(
        "windows.decode",
        format!("stored window item has no valid {what}"),
    )
}

const ENTRY_BYTES: usize = 25;
const LATE_BYTES: usize = 16;

fn encode_entries(entries: &BTreeMap<u64, Entry>) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for (id, e) in entries {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&e.value.to_bits().to_le_bytes());
        out.extend_from_slice(&e.changed_micros.to_le_bytes());
        out.push(u8::from(e.deleted));
    }
    out
}

fn encode_late(late: &BTreeSet<(u64, Micros)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(late.len() * LATE_BYTES);
    for (id, t) in late {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
    }
    out
}

fn word(b: &[u8]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    w
}

fn decode_entries(bytes: &[u8]) -> Result<BTreeMap<u64, Entry>, PortError> {
    if bytes.len() % ENTRY_BYTES != 0 {
        return Err(corrupt("entries"));
    }
    Ok(bytes
        .chunks_exact(ENTRY_BYTES)
        .map(|c| {
            (
                u64::from_le_bytes(word(c)),
                Entry {
                    value: f64::from_bits(u64::from_le_bytes(word(&c[8..]))),
                    changed_micros: i64::from_le_bytes(word(&c[16..])),
                    deleted: c[24] != 0,
                },
            )
        })
        .collect())
}

fn decode_late(bytes: &[u8]) -> Result<BTreeSet<(u64, Micros)>, PortError> {
    if bytes.len() % LATE_BYTES != 0 {
        return Err(corrupt("late readings"));
    }
    Ok(bytes
        .chunks_exact(LATE_BYTES)
        .map(|c| {
            (
                u64::from_le_bytes(word(c)),
                i64::from_le_bytes(word(&c[8..])),
            )
        })
        .collect())
}

fn binary(item: &HashMap<String, AttributeValue>, name: &str) -> Option<Vec<u8>> {
    item.get(name)?.as_b().ok().map(|b| b.as_ref().to_vec())
}

/// The item of a window.
pub fn window_item(
    w: &WindowState,
    close_at: Micros,
    ttl: Duration,
) -> HashMap<String, AttributeValue> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut item = HashMap::from([
        ("pk".to_owned(), s(pk(&w.rule, &w.key))),
        ("sk".to_owned(), s(window_sk(w.start_micros))),
        ("rule".to_owned(), s(&w.rule)),
        ("key".to_owned(), s(&w.key)),
        ("start".to_owned(), n(w.start_micros)),
        ("end".to_owned(), n(w.end_micros)),
        ("version".to_owned(), n(w.version + 1)),
        ("closed".to_owned(), AttributeValue::Bool(w.closed)),
        ("settled".to_owned(), AttributeValue::Bool(w.settled)),
        ("late".to_owned(), n(w.late.len())),
        ("ttl".to_owned(), n((now + ttl).as_secs())),
    ]);
    // DynamoDB refuses an empty binary attribute: absent means none.
    if !w.entries.is_empty() {
        item.insert(
            "e".to_owned(),
            AttributeValue::B(encode_entries(&w.entries).into()),
        );
    }
    if !w.late.is_empty() {
        item.insert(
            "l".to_owned(),
            AttributeValue::B(encode_late(&w.late).into()),
        );
    }
    if let Some(st) = w.stats() {
        for (k, v) in [
            ("count", st.count as f64),
            ("sum", st.sum),
            ("min", st.min),
            ("max", st.max),
            ("avg", st.avg),
        ] {
            item.insert(k.to_owned(), n(v));
        }
    }
    if !w.settled {
        item.insert("open_shard".to_owned(), s(bucket(&w.rule, &w.key)));
        item.insert("close_at".to_owned(), n(close_at));
    }
    item
}

/// A window read back from its item.
pub fn window_from_item(item: &HashMap<String, AttributeValue>) -> Result<WindowState, PortError> {
    Ok(WindowState {
        rule: get_s(item, "rule").ok_or_else(|| corrupt("rule"))?.clone(),
        key: get_s(item, "key").ok_or_else(|| corrupt("key"))?.clone(),
        start_micros: get_n(item, "start").ok_or_else(|| corrupt("start"))?,
        end_micros: get_n(item, "end").ok_or_else(|| corrupt("end"))?,
        entries: binary(item, "e").map_or(Ok(BTreeMap::new()), |b| decode_entries(&b))?,
        late: binary(item, "l").map_or(Ok(BTreeSet::new()), |b| decode_late(&b))?,
        version: get_n(item, "version").ok_or_else(|| corrupt("version"))?,
        closed: get_bool(item, "closed"),
        settled: get_bool(item, "settled"),
    })
}

/// The DynamoDB window store.
#[derive(Debug, Clone)]
pub struct DynamoDbWindowStore {
    client: Client,
    table: String,
    ttl: Duration,
}

impl DynamoDbWindowStore {
    /// `ttl`: how long window, key-state and watermark items live after their last write.
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            ttl,
        }
    }

    /// TTL attribute value for an item written now: epoch seconds plus the state lifetime.
    fn expiry(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (now + self.ttl).as_secs()
    }
}

impl WindowStore for DynamoDbWindowStore {
    async fn get_windows(&self, keys: &[WindowKey]) -> Result<Vec<Option<WindowState>>, PortError> {
        let mut found: HashMap<(String, String), WindowState> = HashMap::new();
        // BatchGetItem takes 100 keys; unprocessed keys come back and are asked again.
        for chunk in keys.chunks(100) {
            let mut pending: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|k| {
                    HashMap::from([
                        ("pk".to_owned(), s(pk(&k.rule, &k.key))),
                        ("sk".to_owned(), s(window_sk(k.start_micros))),
                    ])
                })
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
                    .map_err(|e| classify("dynamodb.BatchGetItem", e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let w = window_from_item(&item)?;
                    found.insert((pk(&w.rule, &w.key), window_sk(w.start_micros)), w);
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
        Ok(keys
            .iter()
            .map(|k| found.remove(&(pk(&k.rule, &k.key), window_sk(k.start_micros))))
            .collect())
    }

    async fn put_window(
        &self,
        state: &WindowState,
        close_at: Micros,
    ) -> Result<Written, PortError> {
        let item = window_item(state, close_at, self.ttl);
        let op = "dynamodb.PutItem(window)";
        match put_if_version(&self.client, &self.table, item, "pk", state.version, op).await? {
            true => Ok(Written::Ok),
            false => Ok(Written::Conflict),
        }
    }

    async fn due_windows(
        &self,
        rule: &str,
        t: Micros,
        limit: usize,
    ) -> Result<Vec<WindowKey>, PortError> {
        let mut due: Vec<(Micros, WindowKey)> = Vec::new();
        for b in 0..OPEN_BUCKETS {
            let mut start_key = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(OPEN_INDEX)
                    .key_condition_expression("open_shard = :b AND close_at <= :t")
                    .expression_attribute_values(":b", s(format!("{rule}#open#{b}")))
                    .expression_attribute_values(":t", n(t))
                    .set_exclusive_start_key(start_key)
                    .limit(limit.clamp(1, 1000) as i32)
                    .send()
                    .await
                    .map_err(|e| classify("dynamodb.Query(open-windows)", e))?;
                for item in out.items.unwrap_or_default() {
                    let (Some(p), Some(sk), Some(at)) = (
                        get_s(&item, "pk"),
                        get_s(&item, "sk"),
                        get_n::<Micros>(&item, "close_at"),
                    ) else {
                        continue;
                    };
                    let (Some((r, key)), Some(start)) = (
                        p.split_once('#'),
                        sk.strip_prefix("w#").and_then(|x| x.parse().ok()),
                    ) else {
                        continue;
                    };
                    due.push((
                        at,
                        WindowKey {
                            rule: r.to_owned(),
                            key: key.to_owned(),
                            start_micros: start,
                        },
                    ));
                }
                start_key = out.last_evaluated_key.filter(|k| !k.is_empty());
                if start_key.is_none() || due.len() >= limit {
                    break;
                }
            }
        }
        due.sort();
        due.truncate(limit);
        Ok(due.into_iter().map(|(_, k)| k).collect())
    }

    async fn get_key_state(&self, rule: &str, key: &str) -> Result<Option<KeyState>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk(rule, key)))
            .key("sk", s("state"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb.GetItem(key state)", e))?;
        Ok(out.item.map(|item| KeyState {
            rule: rule.to_owned(),
            key: key.to_owned(),
            firing: get_bool(&item, "firing"),
            last_closed_start: get_n(&item, "last_closed_start"),
            firing_before_last: get_bool(&item, "firing_before_last"),
            version: get_n(&item, "version").unwrap_or(0),
        }))
    }

    async fn put_key_state(&self, state: &KeyState) -> Result<Written, PortError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut item = HashMap::from([
            ("pk".to_owned(), s(pk(&state.rule, &state.key))),
            ("sk".to_owned(), s("state")),
            ("firing".to_owned(), AttributeValue::Bool(state.firing)),
            (
                "firing_before_last".to_owned(),
                AttributeValue::Bool(state.firing_before_last),
            ),
            ("version".to_owned(), n(state.version + 1)),
            ("ttl".to_owned(), n((now + self.ttl).as_secs())),
        ]);
        if let Some(start) = state.last_closed_start {
            item.insert("last_closed_start".to_owned(), n(start));
        }
        let op = "dynamodb.PutItem(key state)";
        match put_if_version(&self.client, &self.table, item, "pk", state.version, op).await? {
            true => Ok(Written::Ok),
            false => Ok(Written::Conflict),
        }
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
            let mut item = HashMap::from([
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
                Err(e) if is_condition_failure(&e) => {}
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
            Err(e) if is_condition_failure(&e) => Ok(()),
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
            Err(e) if is_condition_failure(&e) => Ok(()),
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

/// The embedded window store.
#[derive(Debug, Default)]
pub struct EmbeddedWindowStore {
    inner: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    windows: HashMap<WindowKey, (WindowState, Option<Micros>)>,
    keys: HashMap<(String, String), KeyState>,
    shards: BTreeMap<String, Ledger>,
    writes: u64,
}

impl EmbeddedWindowStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every window stored, in key order.
    pub fn windows(&self) -> Vec<WindowState> {
        let mut all: Vec<WindowState> = self
            .lock()
            .windows
            .values()
            .map(|(w, _)| w.clone())
            .collect();
        all.sort_by(|a, b| {
            (&a.rule, &a.key, a.start_micros).cmp(&(&b.rule, &b.key, b.start_micros))
        });
        all
    }

    /// Write requests served (window and key-state puts, watermark updates, whether their
    /// condition held or not), as DynamoDB would count them.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// Deletes the settled windows that ended before `ended_before`, as the table's TTL
    /// (`STATE_TTL_HOURS`) does: a long-running embedded pipeline (the soak) would
    /// otherwise keep every window it ever wrote. Returns how many were deleted.
    pub fn expire(&self, ended_before: Micros) -> usize {
        let mut t = self.lock();
        let before = t.windows.len();
        t.windows
            .retain(|_, (w, _)| !(w.settled && w.end_micros < ended_before));
        before - t.windows.len()
    }
}

impl WindowStore for EmbeddedWindowStore {
    async fn get_windows(&self, keys: &[WindowKey]) -> Result<Vec<Option<WindowState>>, PortError> {
        let t = self.lock();
        Ok(keys
            .iter()
            .map(|k| t.windows.get(k).map(|(w, _)| w.clone()))
            .collect())
    }

    async fn put_window(
        &self,
        state: &WindowState,
        close_at: Micros,
    ) -> Result<Written, PortError> {
        let mut t = self.lock();
        t.writes += 1;
        let key = state.window_key();
        let stored = t.windows.get(&key).map(|(w, _)| w.version);
        if stored != (state.version > 0).then_some(state.version) {
            return Ok(Written::Conflict);
        }
        let mut w = state.clone();
        w.version += 1;
        let open = (!w.settled).then_some(close_at);
        t.windows.insert(key, (w, open));
        Ok(Written::Ok)
    }

    async fn due_windows(
        &self,
        rule: &str,
        t: Micros,
        limit: usize,
    ) -> Result<Vec<WindowKey>, PortError> {
        let tables = self.lock();
        let mut due: Vec<(Micros, WindowKey)> = tables
            .windows
            .iter()
            .filter_map(|(k, (_, open))| {
                open.filter(|at| *at <= t && k.rule == rule)
                    .map(|at| (at, k.clone()))
            })
            .collect();
        due.sort();
        due.truncate(limit);
        Ok(due.into_iter().map(|(_, k)| k).collect())
    }

    async fn get_key_state(&self, rule: &str, key: &str) -> Result<Option<KeyState>, PortError> {
        Ok(self
            .lock()
            .keys
            .get(&(rule.to_owned(), key.to_owned()))
            .cloned())
    }

    async fn put_key_state(&self, state: &KeyState) -> Result<Written, PortError> {
        let mut t = self.lock();
        t.writes += 1;
        let k = (state.rule.clone(), state.key.clone());
        let stored = t.keys.get(&k).map(|s| s.version);
        if stored != (state.version > 0).then_some(state.version) {
            return Ok(Written::Conflict);
        }
        let mut s = state.clone();
        s.version += 1;
        t.keys.insert(k, s);
        Ok(Written::Ok)
    }
}

impl ShardLedger for EmbeddedWindowStore {
    async fn ledger(&self, rule: &str) -> Result<Ledger, PortError> {
        Ok(self.lock().shards.get(rule).cloned().unwrap_or_default())
    }

    async fn register(&self, rule: &str, shards: &[ShardProgress]) -> Result<(), PortError> {
        let mut t = self.lock();
        t.writes += shards.len() as u64 + 1;
        let ledger = t.shards.entry(rule.to_owned()).or_default();
        for shard in shards {
            if ledger.get(&shard.shard).is_none() {
                ledger.shards.push(shard.clone());
            }
        }
        ledger.listed = true;
        Ok(())
    }

    async fn advance(
        &self,
        rule: &str,
        shard: &str,
        records: Option<Micros>,
        sequence: &str,
    ) -> Result<(), PortError> {
        self.update(rule, shard, |s| {
            if s.sequence
                .as_deref()
                .is_none_or(|q| sequence_after(sequence, q))
            {
                s.records = s.records.max(records);
                s.sequence = Some(sequence.to_owned());
            }
        });
        Ok(())
    }

    async fn caught_up(&self, rule: &str, shard: &str, micros: Micros) -> Result<(), PortError> {
        self.update(rule, shard, |s| s.caught_up = s.caught_up.max(Some(micros)));
        Ok(())
    }

    async fn retire(&self, rule: &str, shard: &str) -> Result<(), PortError> {
        self.update(rule, shard, |s| s.retired = true);
        Ok(())
    }
}

impl EmbeddedWindowStore {
    /// One shard's progress changed in place (created when missing, as UpdateItem does).
    fn update(&self, rule: &str, shard: &str, f: impl FnOnce(&mut ShardProgress)) {
        let mut t = self.lock();
        t.writes += 1;
        let ledger = t.shards.entry(rule.to_owned()).or_default();
        if ledger.get(shard).is_none() {
            ledger.shards.push(ShardProgress {
                shard: shard.to_owned(),
                ..ShardProgress::default()
            });
        }
        if let Some(s) = ledger.shards.iter_mut().find(|s| s.shard == shard) {
            f(s);
        }
    }
}
