//! The window store's types and port: chunks (what a batch appends per window start), the
//! rule's head, late markers, and [`WindowStore`]. Why the state is shaped this way: the
//! module docs of `crate::window`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use super::{Entry, WindowKey, WindowSpec, WindowState, reading_key};
use crate::ports::PortError;
use crate::time::Micros;

/// A conditional write that lost to a concurrent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Ok,
    /// The stored version was not the expected one: re-read and try again.
    Conflict,
}

/// One change as a chunk stores it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkEntry {
    /// Index into the chunk's `keys`.
    pub key: u32,
    /// The reading's identity ([`reading_key`]).
    pub id: u64,
    pub entry: Entry,
}

/// What one batch delivered on time for one window start from one shard: every key's
/// changes in one item. Identified by the shard and the sequence numbers of the first and
/// last records in it (and a part number when it had to be split), so writing the same
/// records again writes the same chunk; a different cut of them (a suffix, a bisected
/// half) writes another chunk whose entries the merge absorbs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chunk {
    pub shard: String,
    pub first_sequence: String,
    pub last_sequence: String,
    pub part: u32,
    pub keys: Vec<String>,
    pub entries: Vec<ChunkEntry>,
}

impl Chunk {
    /// Adds a change of `key`'s window.
    pub fn push(&mut self, key: &str, id: u64, entry: Entry) {
        let k = match self.keys.iter().rposition(|k| k == key) {
            Some(i) => i,
            None => {
                self.keys.push(key.to_owned());
                self.keys.len() - 1
            }
        };
        self.entries.push(ChunkEntry {
            key: k as u32,
            id,
            entry,
        });
    }

    /// A chunk with `changes` (key, reading identity, entry) in the order given.
    pub fn with_changes<'a>(
        shard: &str,
        first_sequence: &str,
        last_sequence: &str,
        changes: impl IntoIterator<Item = (&'a str, u64, Entry)>,
    ) -> Self {
        let mut c = Chunk {
            shard: shard.to_owned(),
            first_sequence: first_sequence.to_owned(),
            last_sequence: last_sequence.to_owned(),
            ..Chunk::default()
        };
        let mut index: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        for (key, id, entry) in changes {
            let k = *index.entry(key).or_insert_with(|| {
                c.keys.push(key.to_owned());
                (c.keys.len() - 1) as u32
            });
            c.entries.push(ChunkEntry { key: k, id, entry });
        }
        c
    }

    /// The entry this chunk holds for (`key`, `id`), the greatest if several.
    pub fn entry_of(&self, key: &str, id: u64) -> Option<Entry> {
        let k = self.keys.iter().position(|x| x == key)? as u32;
        self.entries
            .iter()
            .filter(|e| e.key == k && e.id == id)
            .map(|e| e.entry)
            .reduce(|a, b| if b.supersedes(&a) { b } else { a })
    }
}

/// Merges a start's chunks into one window per key (in key order).
pub fn merge_chunks<'a>(
    rule: &str,
    spec: &WindowSpec,
    start: Micros,
    chunks: impl IntoIterator<Item = &'a Chunk>,
) -> Vec<WindowState> {
    let mut windows: BTreeMap<&str, WindowState> = BTreeMap::new();
    for c in chunks {
        for e in &c.entries {
            let Some(key) = c.keys.get(e.key as usize) else {
                continue;
            };
            windows
                .entry(key)
                .or_insert_with(|| {
                    WindowState::new(
                        &WindowKey {
                            rule: rule.to_owned(),
                            key: key.clone(),
                            start_micros: start,
                        },
                        spec,
                    )
                })
                .apply_entry(e.id, e.entry);
        }
    }
    windows.into_values().collect()
}

/// Per rule: the last window start closed, and which keys were firing after it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Head {
    pub last_closed: Option<Micros>,
    pub firing: BTreeSet<String>,
    /// Bumped by every write; writes are conditional on it.
    pub version: u64,
}

/// A rare event counted once, by a conditional put of a marker under its window start.
/// (Readings stamped ahead of their record are counted when their chunk is written: a
/// device with a wrong clock sends every reading so, too many for a put each.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// A change that came too late for `key`'s window: once per (key, reading, change time).
    Late {
        key: String,
        id: u64,
        changed_micros: Micros,
    },
}

impl Mark {
    /// The marker's sort key (under its window start).
    pub fn id(&self) -> String {
        match self {
            Self::Late {
                key,
                id,
                changed_micros,
            } => format!("l#{:016x}#{id:016x}#{changed_micros}", reading_key(key)),
        }
    }
}

/// Where window state lives: DynamoDB, or embedded. Items per rule and window start: the
/// start itself (open or closed; open ones are listed in an index by close time), its
/// chunks, its markers; and the rule's [`Head`].
pub trait WindowStore: Send + Sync {
    /// Whether each start is known, and closed (frozen): `None` (never opened),
    /// `Some(closed)`.
    fn starts(
        &self,
        rule: &str,
        starts: &[Micros],
    ) -> impl Future<Output = Result<Vec<Option<bool>>, PortError>> + Send;

    /// Records an open start (ending at `end`, listed as due at `close_at`); a no-op when
    /// it exists.
    fn open_start(
        &self,
        rule: &str,
        start: Micros,
        end: Micros,
        close_at: Micros,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Writes a chunk (the same chunk again overwrites it with the same content), then
    /// reads its start: `Conflict` when the start is (now) frozen, so the chunk may have
    /// come after the closing read the chunks: its readings are to be counted late. (The
    /// time model rules that out: a start closes only when every shard passed it.)
    fn put_chunk(
        &self,
        rule: &str,
        start: Micros,
        chunk: &Chunk,
    ) -> impl Future<Output = Result<Written, PortError>> + Send;

    /// A start's chunks; with `shards`, only those written by these shards.
    fn chunks(
        &self,
        rule: &str,
        start: Micros,
        shards: Option<&[String]>,
    ) -> impl Future<Output = Result<Vec<Chunk>, PortError>> + Send;

    /// Puts the marker unless it exists; true when this call created it.
    fn mark_once(
        &self,
        rule: &str,
        start: Micros,
        mark: &Mark,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Open starts whose close time is at or before `t`, oldest first, at most `limit`.
    fn due_starts(
        &self,
        rule: &str,
        t: Micros,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Micros>, PortError>> + Send;

    fn head(&self, rule: &str) -> impl Future<Output = Result<Head, PortError>> + Send;

    /// Writes `head` (with `version` + 1) if the stored version is `head.version`.
    fn put_head(
        &self,
        rule: &str,
        head: &Head,
    ) -> impl Future<Output = Result<Written, PortError>> + Send;

    /// Freezes a start: no chunk is written to it any more. It stays due until settled.
    /// True when it was not settled yet (false: another closer finished it meanwhile).
    fn close_start(
        &self,
        rule: &str,
        start: Micros,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Takes a closed start out of the due index: its decision is recorded.
    fn settle_start(
        &self,
        rule: &str,
        start: Micros,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}
