//! The embedded window store: the DynamoDB store's very items (`items.rs`) in memory, with
//! the same conditional semantics, and a meter that counts write units as DynamoDB bills
//! them — what the benches report.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use streamwatch_core::PortError;
use streamwatch_core::progress::{Ledger, ShardLedger, ShardProgress, sequence_after};
use streamwatch_core::time::Micros;
use streamwatch_core::window::{Chunk, Head, Mark, WindowState, WindowStore, Written};

use super::items::{self, HEAD, Item, START, chunk_from_item, get_bool, get_n, start_pk};

/// Write requests and what DynamoDB would bill for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteMeter {
    /// Write requests (puts and updates, whether their condition held or not).
    pub writes: u64,
    /// Bytes of the items written (the larger of before and after, as DynamoDB bills).
    pub bytes: u64,
    /// Write request units: one per started KB of each item written.
    pub units: u64,
}

/// The embedded window store.
#[derive(Debug, Default)]
pub struct EmbeddedWindowStore {
    inner: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    items: BTreeMap<(String, String), Item>,
    shards: BTreeMap<String, Ledger>,
    meter: WriteMeter,
}

impl Tables {
    /// Bills a write of `item` over what `key` held before.
    fn bill(&mut self, key: &(String, String), item: &Item) {
        let before = self.items.get(key).map_or(0, items::item_size);
        let size = items::item_size(item).max(before);
        self.meter.writes += 1;
        self.meter.bytes += size as u64;
        self.meter.units += size.div_ceil(1024).max(1) as u64;
    }

    fn put(&mut self, item: Item) {
        let key = key_of(&item);
        self.bill(&key, &item);
        self.items.insert(key, item);
    }

    /// Shard-ledger writes: small items (a 128-digit sequence number and a few numbers),
    /// one unit each.
    fn ledger_writes(&mut self, n: u64) {
        self.meter.writes += n;
        self.meter.bytes += n * LEDGER_ITEM_BYTES;
        self.meter.units += n;
    }

    /// A write whose condition failed: billed as one unit.
    fn refused(&mut self) {
        self.meter.writes += 1;
        self.meter.units += 1;
    }
}

/// About what a shard-ledger item weighs (its sequence number is padded to 128 digits).
const LEDGER_ITEM_BYTES: u64 = 256;

fn key_of(item: &Item) -> (String, String) {
    let get = |k: &str| items::get_s(item, k).cloned().unwrap_or_default();
    (get("pk"), get("sk"))
}

/// Items live this long (the expiry attribute; the embedded store expires by [`expire`]).
///
/// [`expire`]: EmbeddedWindowStore::expire
const TTL: Duration = Duration::from_secs(48 * 3600);

impl EmbeddedWindowStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every window stored (merged from its start's chunks), in rule, key, start order;
    /// closed once its start is settled.
    pub fn windows(&self) -> Vec<WindowState> {
        items::windows_from_items(self.lock().items.values())
    }

    /// Write requests served, as DynamoDB would count them.
    pub fn writes(&self) -> u64 {
        self.lock().meter.writes
    }

    /// Write requests, bytes and write units so far.
    pub fn meter(&self) -> WriteMeter {
        self.lock().meter
    }

    /// Deletes the closed window starts that ended before `ended_before` with their chunks
    /// and markers, as the table's TTL (`STATE_TTL_HOURS`) does: a long-running embedded
    /// pipeline (the soak) would otherwise keep every window it ever wrote. Returns how
    /// many starts were deleted.
    pub fn expire(&self, ended_before: Micros) -> usize {
        let mut t = self.lock();
        let gone: Vec<String> = t
            .items
            .iter()
            .filter(|((_, sk), item)| {
                sk == START
                    && get_bool(item, "closed")
                    && get_n::<Micros>(item, "end").is_some_and(|e| e < ended_before)
            })
            .map(|((pk, _), _)| pk.clone())
            .collect();
        t.items.retain(|(pk, _), _| !gone.contains(pk));
        gone.len()
    }
}

impl WindowStore for EmbeddedWindowStore {
    async fn starts(&self, rule: &str, starts: &[Micros]) -> Result<Vec<Option<bool>>, PortError> {
        let t = self.lock();
        Ok(starts
            .iter()
            .map(|st| {
                t.items
                    .get(&(start_pk(rule, *st), START.to_owned()))
                    .map(|i| get_bool(i, "closed"))
            })
            .collect())
    }

    async fn open_start(
        &self,
        rule: &str,
        start: Micros,
        end: Micros,
        close_at: Micros,
    ) -> Result<(), PortError> {
        let mut t = self.lock();
        let item = items::start_item(rule, start, end, close_at, TTL);
        if t.items.contains_key(&key_of(&item)) {
            t.refused();
        } else {
            t.put(item);
        }
        Ok(())
    }

    async fn put_chunk(
        &self,
        rule: &str,
        start: Micros,
        chunk: &Chunk,
    ) -> Result<Written, PortError> {
        let mut t = self.lock();
        for part in items::split_chunk(chunk.clone()) {
            t.put(items::chunk_item(rule, start, &part, TTL));
        }
        let open = t
            .items
            .get(&(start_pk(rule, start), START.to_owned()))
            .is_some_and(|i| !get_bool(i, "closed"));
        Ok(if open { Written::Ok } else { Written::Conflict })
    }

    async fn chunks(
        &self,
        rule: &str,
        start: Micros,
        shards: Option<&[String]>,
    ) -> Result<Vec<Chunk>, PortError> {
        let t = self.lock();
        let pk = start_pk(rule, start);
        let prefixes: Vec<String> = match shards {
            Some(list) => list.iter().map(|sh| items::chunk_prefix(sh)).collect(),
            None => vec!["c#".to_owned()],
        };
        let mut out = Vec::new();
        for prefix in prefixes {
            for ((_, sk), item) in t.items.range((pk.clone(), prefix.clone())..) {
                if !sk.starts_with(&prefix) {
                    break;
                }
                out.push(chunk_from_item(item)?);
            }
        }
        // Stop at the partition's end: the range above runs on into the next `pk`.
        Ok(out)
    }

    async fn mark_once(&self, rule: &str, start: Micros, mark: &Mark) -> Result<bool, PortError> {
        let mut t = self.lock();
        let item = items::mark_item(rule, start, mark.id(), TTL);
        if t.items.contains_key(&key_of(&item)) {
            t.refused();
            return Ok(false);
        }
        t.put(item);
        Ok(true)
    }

    async fn due_starts(
        &self,
        rule: &str,
        at: Micros,
        limit: usize,
    ) -> Result<Vec<Micros>, PortError> {
        let t = self.lock();
        let open = items::open_shard(rule);
        let mut due: Vec<(Micros, Micros)> = t
            .items
            .values()
            .filter(|i| items::get_s(i, "open_shard") == Some(&open))
            .filter_map(|i| {
                Some((
                    get_n::<Micros>(i, "close_at")?,
                    get_n::<Micros>(i, "start")?,
                ))
            })
            .filter(|(c, _)| *c <= at)
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        Ok(due.into_iter().map(|(_, st)| st).collect())
    }

    async fn head(&self, rule: &str) -> Result<Head, PortError> {
        let t = self.lock();
        Ok(t.items
            .get(&(rule.to_owned(), HEAD.to_owned()))
            .map(items::head_from_item)
            .unwrap_or_default())
    }

    async fn put_head(&self, rule: &str, head: &Head) -> Result<Written, PortError> {
        let mut t = self.lock();
        let stored = t
            .items
            .get(&(rule.to_owned(), HEAD.to_owned()))
            .map(|i| get_n::<u64>(i, "version").unwrap_or(0));
        if stored != (head.version > 0).then_some(head.version) {
            t.refused();
            return Ok(Written::Conflict);
        }
        t.put(items::head_item(rule, head, TTL));
        Ok(Written::Ok)
    }

    async fn close_start(&self, rule: &str, start: Micros) -> Result<bool, PortError> {
        Ok(self.update_start(rule, start, false))
    }

    async fn settle_start(&self, rule: &str, start: Micros) -> Result<(), PortError> {
        self.update_start(rule, start, true);
        Ok(())
    }
}

impl EmbeddedWindowStore {
    /// Closes a start (as UpdateItem: created when missing); `settle` also takes it out
    /// of the due index. Whether it was in the index before.
    fn update_start(&self, rule: &str, start: Micros, settle: bool) -> bool {
        let mut t = self.lock();
        let key = (start_pk(rule, start), START.to_owned());
        let mut item = t.items.get(&key).cloned().unwrap_or_else(|| {
            Item::from([
                ("pk".to_owned(), AttributeValue::S(key.0.clone())),
                ("sk".to_owned(), AttributeValue::S(key.1.clone())),
            ])
        });
        let listed = item.contains_key("open_shard");
        item.insert("closed".into(), AttributeValue::Bool(true));
        if settle {
            item.remove("open_shard");
            item.remove("close_at");
        }
        t.put(item);
        listed
    }
}

impl ShardLedger for EmbeddedWindowStore {
    async fn ledger(&self, rule: &str) -> Result<Ledger, PortError> {
        Ok(self.lock().shards.get(rule).cloned().unwrap_or_default())
    }

    async fn register(&self, rule: &str, shards: &[ShardProgress]) -> Result<(), PortError> {
        let mut t = self.lock();
        t.ledger_writes(shards.len() as u64 + 1);
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
        t.ledger_writes(1);
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
