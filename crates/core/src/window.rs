//! Event-time tumbling windows per key, pure: window assignment, the per-window reading
//! set that makes every Lambda delivery idempotent, close decisions, and the `WindowStore`
//! port. What decides *when* a window closes and which readings are late is the stream's
//! progress, in `crate::progress`.
//!
//! A window remembers *which* readings it holds, not just their sum: `entries` maps each
//! reading's identity (the DynamoDB item's key, or the Kinesis record's coordinates for
//! plain JSON) to its latest value, last-writer-wins by change time. That one choice makes
//! every delivery Lambda can produce harmless: a replayed batch, a suffix, a bisected half,
//! or the same change record under a new sequence number re-applies an entry that is
//! already there and changes nothing. INSERT and MODIFY upsert the entry, REMOVE leaves a
//! tombstone (so a reordered, older INSERT cannot resurrect it). Ties in change time (two
//! changes of one item in the same millisecond) are broken by content — a REMOVE beats an
//! upsert, a larger value beats a smaller — so applying is a join: commutative,
//! associative and idempotent, and the result never depends on arrival order. Count, sum,
//! min, max and avg are derived from the live entries, so a MODIFY replaces a reading
//! exactly and min and max stay right under retractions (neither is `ADD`-able).
//!
//! A reading's identity is kept as a 64-bit hash ([`reading_key`]), so an entry is 25 bytes
//! whatever the item key.
//!
//! **Storage: append-only chunks, merged at close.** A batch does not rewrite a window: it
//! appends one [`Chunk`] per window start it touched (every on-time change of that batch for
//! that start, all keys together) and does not read windows back on the common path.
//! Closing a start reads its chunks, merges them into one [`WindowState`] per key (the join
//! above makes the merge independent of chunk order, duplicates and overlaps: a retried,
//! suffixed or bisected batch writes an overlapping chunk that changes nothing), decides
//! every key from the rule's [`Head`] (the keys firing, the last start closed), writes the
//! alerts, then moves the head on with a conditional write. A window's readings are
//! written about once, not once per batch that touched it, and many keys share a write:
//! the cost per reading stays flat as keys, shards and batches grow.
//!
//! Late changes are rare: each is counted once with a conditional put of a small marker
//! ([`Mark`]) per (key, reading, change time), after checking from the chunks of the
//! reading's own shard lineage that the window did not already hold it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::alert::{AlertKind, AlertRecord, WindowSummary, window_alert_id};
use crate::ports::PortError;
use crate::rule::{Condition, Op};
use crate::time::{Micros, format_micros};

/// Window length and allowed lateness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub size_micros: Micros,
    pub lateness_micros: Micros,
}

impl WindowSpec {
    /// Start of the window holding event time `t`.
    pub fn start_of(&self, t: Micros) -> Micros {
        t.div_euclid(self.size_micros) * self.size_micros
    }

    /// When a window starting at `start` closes: its end plus the allowed lateness.
    pub fn close_at(&self, start: Micros) -> Micros {
        start + self.size_micros + self.lateness_micros
    }
}

/// Identifies one window of one key under one rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowKey {
    pub rule: String,
    pub key: String,
    pub start_micros: Micros,
}

/// One reading's latest state in its window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub value: f64,
    /// Change time (the change record's creation time): orders competing changes.
    pub changed_micros: Micros,
    pub deleted: bool,
}

impl Entry {
    /// Whether this change replaces `old`: later change time wins; on a tie (millisecond
    /// timestamps) a deletion beats an upsert and a larger value a smaller, so the winner
    /// is a function of the two changes alone, never of the order they arrived in.
    pub fn supersedes(&self, old: &Entry) -> bool {
        self.changed_micros
            .cmp(&old.changed_micros)
            .then(self.deleted.cmp(&old.deleted))
            .then(self.value.total_cmp(&old.value))
            .is_gt()
    }
}

/// A change to a window's readings.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Upsert {
        id: String,
        value: f64,
        changed_micros: Micros,
    },
    Delete {
        id: String,
        changed_micros: Micros,
    },
}

impl Change {
    /// The reading's id (item key or Kinesis coordinates).
    pub fn id(&self) -> &str {
        match self {
            Self::Upsert { id, .. } | Self::Delete { id, .. } => id,
        }
    }

    /// The entry this change leaves in its window.
    pub fn entry(&self) -> Entry {
        match self {
            Self::Upsert {
                value,
                changed_micros,
                ..
            } => Entry {
                value: *value,
                changed_micros: *changed_micros,
                deleted: false,
            },
            Self::Delete { changed_micros, .. } => Entry {
                value: 0.0,
                changed_micros: *changed_micros,
                deleted: true,
            },
        }
    }

    pub fn changed_micros(&self) -> Micros {
        match self {
            Self::Upsert { changed_micros, .. } | Self::Delete { changed_micros, .. } => {
                *changed_micros
            }
        }
    }
}

/// A reading's identity in its window: FNV-1a of its id (the item key, or the Kinesis
/// coordinates). Stable across builds and platforms, as stored state must be; a collision
/// among one window's readings has a chance of about n²/2⁶⁵ (≈ 6·10⁻¹² at 15,000).
pub fn reading_key(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Count, sum, min, max and average of a window's live readings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
}

impl Stats {
    /// The statistic a condition names (`avg`, `min`, `max`, `sum`, `count`).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "avg" => Some(self.avg),
            "min" => Some(self.min),
            "max" => Some(self.max),
            "sum" => Some(self.sum),
            "count" => Some(self.count as f64),
            _ => None,
        }
    }
}

/// One key's window, as merged from its start's chunks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WindowState {
    pub rule: String,
    pub key: String,
    pub start_micros: Micros,
    pub end_micros: Micros,
    /// Reading identity ([`reading_key`]) → its latest change.
    pub entries: BTreeMap<u64, Entry>,
    /// Its start is closed: the statistics are final and the decision is recorded.
    pub closed: bool,
    /// The same as `closed` (one step since windows close per start).
    #[serde(default)]
    pub settled: bool,
}

impl WindowState {
    pub fn new(key: &WindowKey, spec: &WindowSpec) -> Self {
        Self {
            rule: key.rule.clone(),
            key: key.key.clone(),
            start_micros: key.start_micros,
            end_micros: key.start_micros + spec.size_micros,
            ..Self::default()
        }
    }

    pub fn window_key(&self) -> WindowKey {
        WindowKey {
            rule: self.rule.clone(),
            key: self.key.clone(),
            start_micros: self.start_micros,
        }
    }

    /// Applies a change; true when it changed anything. The greater change wins (see
    /// [`Entry::supersedes`]), so re-applying, reordering and duplicating are no-ops.
    pub fn apply(&mut self, change: &Change) -> bool {
        self.apply_entry(reading_key(change.id()), change.entry())
    }

    /// Applies one stored entry (a chunk's); true when it changed anything.
    pub fn apply_entry(&mut self, id: u64, new: Entry) -> bool {
        match self.entries.get(&id) {
            Some(old) if !new.supersedes(old) => false,
            _ => {
                self.entries.insert(id, new);
                true
            }
        }
    }

    /// Whether the window holds a reading with this id (live or removed).
    pub fn holds(&self, id: &str) -> bool {
        self.entries.contains_key(&reading_key(id))
    }

    /// Statistics of the live readings; `None` when there are none.
    pub fn stats(&self) -> Option<Stats> {
        let live = self.entries.values().filter(|e| !e.deleted);
        let mut count = 0u64;
        let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
        for e in live {
            count += 1;
            sum += e.value;
            min = min.min(e.value);
            max = max.max(e.value);
        }
        (count > 0).then(|| Stats {
            count,
            sum,
            min,
            max,
            avg: sum / count as f64,
        })
    }
}

/// The window rule: what to alert on and how.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRule {
    pub name: String,
    pub condition: Condition,
    /// Resolve only when the statistic is back past the threshold by this much.
    pub hysteresis: f64,
    /// Unit for messages, e.g. `mph`.
    pub unit: String,
    /// What the value is, for messages, e.g. `Wind speed`.
    pub label: String,
}

/// What closing a window decided.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseDecision {
    pub firing_after: bool,
    pub alert: Option<AlertKind>,
}

impl WindowRule {
    fn statistic(&self) -> &str {
        self.condition.path.as_str()
    }

    /// Decides what closing a window with `stats` means for a key that was `firing`.
    /// An empty window (every reading removed) counts as clear.
    pub fn decide(&self, firing: bool, stats: Option<&Stats>) -> CloseDecision {
        let value = stats.and_then(|s| s.get(self.statistic()));
        let breach = value.is_some_and(|v| self.condition.eval_number(v));
        if breach {
            return CloseDecision {
                firing_after: true,
                alert: Some(AlertKind::Firing),
            };
        }
        let clear = match value {
            None => true,
            Some(v) => {
                let shifted = match self.condition.op {
                    Op::Gt | Op::Ge => v + self.hysteresis,
                    Op::Lt | Op::Le => v - self.hysteresis,
                    Op::Eq | Op::Ne => v,
                };
                !self.condition.eval_number(shifted)
            }
        };
        match (firing, clear) {
            (true, true) => CloseDecision {
                firing_after: false,
                alert: Some(AlertKind::Resolved),
            },
            (f, _) => CloseDecision {
                firing_after: f,
                alert: None,
            },
        }
    }

    /// The alert record for a closed window.
    pub fn alert(
        &self,
        window: &WindowState,
        stats: Option<&Stats>,
        kind: AlertKind,
    ) -> AlertRecord {
        let s = stats.copied().unwrap_or(Stats {
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            avg: 0.0,
        });
        let threshold = self.condition.threshold().unwrap_or(0.0);
        let stat = self.statistic();
        let value = s.get(stat).unwrap_or(0.0);
        let summary = match kind {
            AlertKind::Resolved => format!(
                "{} {stat} {} {} back within {} on {}",
                self.label,
                fmt_num(value),
                self.unit,
                self.condition,
                window.key
            ),
            _ => format!(
                "{} {stat} {} {} {} {} on {}",
                self.label,
                fmt_num(value),
                self.unit,
                self.condition.op.as_str(),
                fmt_num(threshold),
                window.key
            ),
        };
        AlertRecord {
            id: window_alert_id(&self.name, &window.key, window.start_micros, kind),
            rule: self.name.clone(),
            key: window.key.clone(),
            kind,
            severity: if kind == AlertKind::Firing {
                "critical"
            } else {
                "ok"
            }
            .into(),
            summary,
            event_time_micros: window.end_micros,
            window: Some(WindowSummary {
                start_micros: window.start_micros,
                end_micros: window.end_micros,
                count: s.count,
                sum: s.sum,
                min: s.min,
                max: s.max,
                avg: s.avg,
                condition: self.condition.to_string(),
                threshold,
            }),
            details: BTreeMap::from([
                (
                    "window_start".to_owned(),
                    format_micros(window.start_micros),
                ),
                ("window_end".to_owned(), format_micros(window.end_micros)),
            ]),
            source: Vec::new(),
        }
    }
}

/// A number for people: at most one decimal, no trailing `.0`.
pub fn fmt_num(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: &str, value: f64, t: Micros) -> Change {
        Change::Upsert {
            id: id.into(),
            value,
            changed_micros: t,
        }
    }

    #[test]
    fn replays_duplicates_and_reorders_change_nothing() {
        let key = WindowKey {
            rule: "r".into(),
            key: "k".into(),
            start_micros: 0,
        };
        let spec = WindowSpec {
            size_micros: 60_000_000,
            lateness_micros: 5_000_000,
        };
        let mut w = WindowState::new(&key, &spec);
        assert!(w.apply(&up("a", 50.0, 1)));
        assert!(w.apply(&up("b", 70.0, 2)));
        assert!(!w.apply(&up("a", 50.0, 1)), "the same change again");
        assert!(w.apply(&up("a", 55.0, 3)), "MODIFY replaces");
        assert!(
            !w.apply(&up("a", 50.0, 1)),
            "an older change arriving late loses"
        );
        assert_eq!(
            w.stats().unwrap(),
            Stats {
                count: 2,
                sum: 125.0,
                min: 55.0,
                max: 70.0,
                avg: 62.5
            }
        );
        assert!(w.apply(&Change::Delete {
            id: "b".into(),
            changed_micros: 4
        }));
        assert!(
            !w.apply(&up("b", 70.0, 2)),
            "a tombstone is not resurrected by a reordered INSERT"
        );
        assert_eq!(
            w.stats().unwrap().max,
            55.0,
            "min/max exact after a retraction"
        );
        assert!(w.apply(&Change::Delete {
            id: "a".into(),
            changed_micros: 5
        }));
        assert_eq!(w.stats(), None);
    }

    #[test]
    fn decides_firing_resolved_and_hysteresis() {
        let rule = WindowRule {
            name: "w".into(),
            condition: Condition::parse("avg > 60").unwrap(),
            hysteresis: 2.0,
            unit: "mph".into(),
            label: "Wind speed".into(),
        };
        let s = |avg: f64| Stats {
            count: 1,
            sum: avg,
            min: avg,
            max: avg,
            avg,
        };
        assert_eq!(
            rule.decide(false, Some(&s(61.0))).alert,
            Some(AlertKind::Firing)
        );
        assert_eq!(
            rule.decide(true, Some(&s(61.0))).alert,
            Some(AlertKind::Firing)
        );
        assert_eq!(
            rule.decide(true, Some(&s(59.0))),
            CloseDecision {
                firing_after: true,
                alert: None
            },
            "inside the hysteresis band"
        );
        assert_eq!(
            rule.decide(true, Some(&s(58.0))),
            CloseDecision {
                firing_after: false,
                alert: Some(AlertKind::Resolved)
            }
        );
        assert_eq!(
            rule.decide(false, Some(&s(40.0))),
            CloseDecision {
                firing_after: false,
                alert: None
            }
        );
        assert_eq!(rule.decide(true, None).alert, Some(AlertKind::Resolved));
        let key = WindowKey {
            rule: "w".into(),
            key: "device3".into(),
            start_micros: 1_795_262_400_000_000,
        };
        let mut w = WindowState::new(
            &key,
            &WindowSpec {
                size_micros: 60_000_000,
                lateness_micros: 0,
            },
        );
        w.apply(&up("x", 72.44, 1));
        let a = rule.alert(&w, w.stats().as_ref(), AlertKind::Firing);
        assert_eq!(a.summary, "Wind speed avg 72.4 mph > 60 on device3");
        assert_eq!(a.id, "w#device3#1795262400000000#firing");
        assert_eq!(a.event_time_micros, 1_795_262_460_000_000);
    }

    #[test]
    fn same_time_changes_converge_whatever_their_order() {
        let key = WindowKey {
            rule: "r".into(),
            key: "k".into(),
            start_micros: 0,
        };
        let spec = WindowSpec {
            size_micros: 60_000_000,
            lateness_micros: 0,
        };
        // Three changes of one item within one millisecond, in every order.
        let changes = [
            up("a", 50.0, 7),
            up("a", 55.0, 7),
            Change::Delete {
                id: "a".into(),
                changed_micros: 7,
            },
        ];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let results: Vec<WindowState> = orders
            .iter()
            .map(|o| {
                let mut w = WindowState::new(&key, &spec);
                for i in o {
                    w.apply(&changes[*i]);
                }
                w
            })
            .collect();
        assert!(results.windows(2).all(|p| p[0] == p[1]));
        assert_eq!(results[0].stats(), None, "the REMOVE wins the tie");
        let mut w = WindowState::new(&key, &spec);
        w.apply(&up("a", 55.0, 7));
        w.apply(&up("a", 50.0, 7));
        assert_eq!(w.stats().unwrap().sum, 55.0);
    }

    #[test]
    fn windows_are_tumbling_by_event_time() {
        let spec = WindowSpec {
            size_micros: 60_000_000,
            lateness_micros: 5_000_000,
        };
        assert_eq!(spec.start_of(119_999_999), 60_000_000);
        assert_eq!(spec.start_of(-1), -60_000_000);
        assert_eq!(spec.close_at(60_000_000), 125_000_000);
    }
}
