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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alert::{AlertKind, AlertRecord, WindowSummary, window_alert_id};
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

mod store;

pub use store::*;

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
