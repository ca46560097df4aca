//! A stream's progress, shard by shard: what decides when event-time windows close and
//! which readings are late. Pure rules plus two ports: the ledger that stores each shard's
//! progress (the windows table, or embedded) and the probe that asks the stream itself
//! which shards exist and whether a shard has anything left to read (Kinesis, or embedded).
//!
//! # The time model
//!
//! * A shard's **progress** is the highest *bounded* event time it has delivered: a
//!   reading's event time, but never more than its record's own time (the change record's
//!   creation time, or the Kinesis arrival time). A device whose clock runs ahead cannot
//!   carry its shard's progress with it; its readings still count in their own windows.
//! * A shard the probe finds **caught up** (nothing after the last record the function
//!   finished) has progressed to the probe's wall-clock time minus the grace (the delay
//!   between a change and its arrival on the stream). That is the only way wall-clock time
//!   enters, and only for a shard known to have nothing pending: an iterator-age backlog
//!   of any length holds its shard's progress where the records are.
//! * A reading is **late** when its shard had already progressed past its window's end plus
//!   the allowed lateness when the reading arrived — judged record by record in shard
//!   order, so it depends only on that shard's own history, never on how shards interleave.
//! * A window **closes** when every live shard has progressed past its end plus lateness.
//!   Live: every shard the stream lists, until it is retired — closed and read to its end,
//!   or superseded by a child that has delivered (Lambda finishes a parent before its
//!   children). A shard the ledger knows but that has neither delivered nor been probed
//!   holds closing back: it may still hold anything.
//! * A child shard starts from the greatest progress of its parents, so a reshard neither
//!   re-opens what its parents closed nor holds back what they passed.

use std::future::Future;

use crate::ports::PortError;
use crate::time::Micros;

/// One shard as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardProgress {
    pub shard: String,
    /// Parent shard ids (one after a split, two after a merge).
    pub parents: Vec<String>,
    /// The highest bounded event time delivered (and inherited from parents).
    pub records: Option<Micros>,
    /// Wall clock minus grace when the probe last found the shard caught up.
    pub caught_up: Option<Micros>,
    /// The last sequence number the function finished on this shard (raw, unpadded).
    pub sequence: Option<String>,
    /// Done: closed and read to its end, or superseded by a child that delivered.
    pub retired: bool,
}

impl ShardProgress {
    /// How far the shard has progressed, whichever way it is known.
    pub fn progress(&self) -> Option<Micros> {
        self.records.max(self.caught_up)
    }
}

/// Every shard the ledger knows for a rule, and whether the stream has been listed yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ledger {
    /// True once the stream's shards were listed: until then an unknown shard may exist.
    pub listed: bool,
    pub shards: Vec<ShardProgress>,
}

impl Ledger {
    pub fn get(&self, shard: &str) -> Option<&ShardProgress> {
        self.shards.iter().find(|s| s.shard == shard)
    }

    /// The watermark windows close by: the least progress over the live shards. `None`
    /// while the stream was never listed, or while a live shard has no progress yet.
    pub fn watermark(&self) -> Option<Micros> {
        if !self.listed {
            return None;
        }
        let mut min: Option<Micros> = None;
        for s in self.shards.iter().filter(|s| !s.retired) {
            let p = s.progress()?;
            min = Some(min.map_or(p, |m| m.min(p)));
        }
        min
    }

    /// The greatest progress of a shard's ancestors (parents, their parents, …): where a
    /// child continues from. A parent that never delivered (split, then merged at once)
    /// passes on what its own parents reached.
    pub fn inherited(&self, shard: &str) -> Option<Micros> {
        let mut best = None;
        let mut todo: Vec<&str> = self.get(shard).map_or(Vec::new(), |s| {
            s.parents.iter().map(String::as_str).collect()
        });
        let mut seen = std::collections::BTreeSet::new();
        while let Some(p) = todo.pop() {
            if !seen.insert(p) {
                continue;
            }
            if let Some(ps) = self.get(p) {
                best = best.max(ps.progress());
                todo.extend(ps.parents.iter().map(String::as_str));
            }
        }
        best
    }

    /// Where a shard first seen now starts: its parents' greatest progress; with no parent
    /// the ledger knows, the current watermark (what every known shard has passed), so a
    /// shard the listing missed cannot re-open what the others closed.
    pub fn starting_progress(&self, parents: &[String]) -> Option<Micros> {
        let inherited = parents
            .iter()
            .filter_map(|p| self.get(p).and_then(ShardProgress::progress))
            .max();
        inherited.or_else(|| self.watermark())
    }
}

/// Kinesis sequence numbers compared as numbers (they are decimal strings up to 128 digits).
pub fn sequence_after(a: &str, b: &str) -> bool {
    crate::record::cmp_sequence(a, b).is_gt()
}

/// A shard as the stream lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard: String,
    pub parents: Vec<String>,
    /// Closed by a split or merge: it takes no more records.
    pub closed: bool,
}

/// What the probe found after the last finished record of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardPosition {
    /// Records are waiting: the shard is behind (a backlog, or a batch in flight).
    Behind,
    /// Nothing is waiting and the shard is at its tip.
    CaughtUp,
    /// A closed shard read to its end: it will never deliver again.
    Finished,
}

/// Where the ledger keeps every shard's progress (the windows table, or embedded). Each
/// write only ever moves a shard forward, so retries and concurrent writers are harmless.
pub trait ShardLedger: Send + Sync {
    fn ledger(&self, rule: &str) -> impl Future<Output = Result<Ledger, PortError>> + Send;

    /// Adds the shards not yet known (known ones are left as they are) and marks the stream
    /// listed.
    fn register(
        &self,
        rule: &str,
        shards: &[ShardProgress],
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Records that the function finished `shard` up to `sequence` with progress `records`
    /// (`None`: nothing with a time yet): applied only when `sequence` is after the stored
    /// one, so a replayed batch changes nothing.
    fn advance(
        &self,
        rule: &str,
        shard: &str,
        records: Option<Micros>,
        sequence: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Raises the shard's caught-up progress to `micros` (never lowers it).
    fn caught_up(
        &self,
        rule: &str,
        shard: &str,
        micros: Micros,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    fn retire(&self, rule: &str, shard: &str)
    -> impl Future<Output = Result<(), PortError>> + Send;
}

/// The stream itself: which shards it has and whether one has anything left to read.
pub trait ShardProbe: Send + Sync {
    fn list_shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>, PortError>> + Send;

    /// What follows `after` (a sequence number; `None`: the shard's start) on `shard`.
    fn position(
        &self,
        shard: &ShardInfo,
        after: Option<&str>,
    ) -> impl Future<Output = Result<ShardPosition, PortError>> + Send;
}

/// A shared probe (the local pipeline steers the one its aggregator asks).
impl<T: ShardProbe> ShardProbe for std::sync::Arc<T> {
    fn list_shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>, PortError>> + Send {
        (**self).list_shards()
    }

    fn position(
        &self,
        shard: &ShardInfo,
        after: Option<&str>,
    ) -> impl Future<Output = Result<ShardPosition, PortError>> + Send {
        (**self).position(shard, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, records: Option<Micros>, caught_up: Option<Micros>) -> ShardProgress {
        ShardProgress {
            shard: id.into(),
            records,
            caught_up,
            ..ShardProgress::default()
        }
    }

    #[test]
    fn the_watermark_waits_for_the_listing_and_every_live_shard() {
        let mut l = Ledger {
            listed: false,
            shards: vec![shard("a", Some(10), None), shard("b", Some(4), Some(7))],
        };
        assert_eq!(l.watermark(), None, "not listed: a shard may be missing");
        l.listed = true;
        assert_eq!(l.watermark(), Some(7), "b is caught up to 7");
        l.shards.push(shard("c", None, None));
        assert_eq!(
            l.watermark(),
            None,
            "c has neither delivered nor been probed"
        );
        l.shards[2].retired = true;
        assert_eq!(l.watermark(), Some(7), "a retired shard holds nothing back");
    }

    #[test]
    fn a_child_starts_where_its_parents_got_to() {
        let l = Ledger {
            listed: true,
            shards: vec![shard("a", Some(10), None), shard("b", Some(4), None)],
        };
        assert_eq!(l.starting_progress(&["a".into(), "b".into()]), Some(10));
        assert_eq!(
            l.starting_progress(&[]),
            Some(4),
            "no parent: the watermark"
        );
        assert!(sequence_after("10", "9") && !sequence_after("9", "9"));
        let mut l = l;
        l.shards.push(ShardProgress {
            shard: "c".into(),
            parents: vec!["a".into()],
            ..ShardProgress::default()
        });
        l.shards.push(ShardProgress {
            shard: "d".into(),
            parents: vec!["c".into(), "b".into()],
            ..ShardProgress::default()
        });
        assert_eq!(
            l.inherited("d"),
            Some(10),
            "through a parent that never delivered"
        );
    }
}
