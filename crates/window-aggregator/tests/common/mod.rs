//! The model-based scenario shared by the embedded and the moto property tests: random
//! reading changes of several turbines over several windows, on three shards, delivered as
//! Lambda delivers them (batches, whole-batch replays, suffix retries, bisection,
//! duplicated change records, shards interleaved) with scheduled closes in between; and a
//! reference model that sees every *unique* change once and applies the specification:
//! last change per item wins, a window closes when the slowest shard's max event time or
//! the schedule's cut passes its end plus lateness, changes for a closed window are late,
//! a window closing above 60 fires and one closing at or below 60 after a firing resolves.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};

use proptest::prelude::*;
use serde_json::{Value, json};
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use streamwatch_core::window::WindowState;
use streamwatch_core::{AlertKind, AlertOutbox, AlertRecord, KinesisEvent};
use window_aggregator::{Clock, Deps, close_idle, process_batch};

pub const T0: i64 = 1_795_262_400_000_000;
pub const SEC: i64 = 1_000_000;
pub const MIN: i64 = 60 * SEC;
pub const LATENESS: i64 = 5 * SEC;
pub const GRACE: i64 = 10 * SEC;
pub const SHARDS: usize = 3;

/// The configuration the scenario assumes (the defaults, spelled out).
pub const ENV: &[(&str, &str)] = &[
    ("WINDOW_SECONDS", "60"),
    ("ALLOWED_LATENESS_SECONDS", "5"),
    ("CLOSE_GRACE_SECONDS", "10"),
    ("WINDOW_CONDITION", "avg > 60"),
];

/// The function's configuration for these tables, with `ENV` on top of the defaults.
pub fn config(windows_table: &str, alerts_table: &str) -> window_aggregator::Config {
    let mut env: std::collections::HashMap<String, String> = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("WINDOWS_TABLE".into(), windows_table.into());
    env.insert("ALERTS_TABLE".into(), alerts_table.into());
    window_aggregator::Config::from_source(&env).expect("valid configuration")
}

pub struct TestClock(pub AtomicI64);
impl Clock for TestClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One change to the turbine table.
#[derive(Debug, Clone)]
pub enum Step {
    /// PutItem: INSERT, or MODIFY (with the old image) when the item exists. `back_ms` puts
    /// `createdAt` behind the table's clock: up to 4 s is ordinary disorder (< lateness),
    /// more makes a straggler that is late when its window has closed.
    Put {
        item: usize,
        device: usize,
        value: u32,
        advance_ms: u32,
        back_ms: u32,
    },
    /// UpdateItem of the value only: same window.
    Update {
        item: usize,
        value: u32,
        advance_ms: u32,
    },
    Remove {
        item: usize,
        advance_ms: u32,
    },
}

pub fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    let back = prop_oneof![8 => 0u32..4_000, 1 => 65_000u32..240_000];
    prop::collection::vec(
        prop_oneof![
            6 => (0usize..24, 0usize..3, 20u32..95, 0u32..6_000, back).prop_map(|(item, device, value, advance_ms, back_ms)| Step::Put { item, device, value, advance_ms, back_ms }),
            2 => (0usize..24, 20u32..95, 0u32..6_000).prop_map(|(item, value, advance_ms)| Step::Update { item, value, advance_ms }),
            1 => (0usize..24, 0u32..6_000).prop_map(|(item, advance_ms)| Step::Remove { item, advance_ms }),
        ],
        1..max,
    )
}

/// A reading as the model sees it: device, event time, value.
type Image = (String, i64, f64);

/// One change record and what the model needs to know about it.
#[derive(Debug, Clone)]
pub struct Rec {
    pub record: KinesisEventRecord,
    pub event_id: String,
    pub item: String,
    pub new: Option<Image>,
    pub old: Option<Image>,
    pub changed: i64,
}

/// What happens between batches.
#[derive(Debug, Clone)]
pub enum Action {
    /// One Lambda invocation with these records of one shard.
    Deliver(Vec<Rec>),
    /// The EventBridge schedule fires at this wall-clock time.
    Schedule(i64),
}

fn image(item: &str, img: &Image) -> Value {
    json!({"id": {"S": item}, "deviceID": {"S": img.0}, "value": {"N": img.2.to_string()},
        "createdAt": {"S": streamwatch_core::time::format_micros(img.1)}})
}

fn record(shard: usize, seq: u64, rec_data: Vec<u8>, item: &str) -> KinesisEventRecord {
    let sequence_number = format!("4959033827149025660855969253836157109592157{seq:013}");
    KinesisEventRecord {
        kinesis: KinesisRecord {
            partition_key: item.to_owned(),
            sequence_number: sequence_number.clone(),
            data: rec_data.into(),
            approximate_arrival_timestamp: 1_795_262_400.0,
            ..Default::default()
        },
        event_id: Some(format!("shardId-{shard:012}:{sequence_number}")),
        ..Default::default()
    }
}

/// A small deterministic generator for the delivery schedule.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Turns table changes into change records on shards (by item, as the feature partitions
/// them), duplicates some under new sequence numbers a few records later, cuts each
/// shard into batches and interleaves the shards' invocations with scheduled closes.
pub fn plan(steps: &[Step], seed: u64) -> Vec<Action> {
    let mut rng = Rng::new(seed);
    let mut table: BTreeMap<usize, Image> = BTreeMap::new();
    let mut clock = T0;
    let mut shards: Vec<Vec<Rec>> = vec![Vec::new(); SHARDS];
    // Duplicates waiting to be re-sent: (records still to pass, record).
    let mut pending: Vec<Vec<(u64, Rec)>> = vec![Vec::new(); SHARDS];
    let mut seqs = [0u64; SHARDS];
    for (i, step) in steps.iter().enumerate() {
        let (item, name, new, old, advance) = match *step {
            Step::Put {
                item,
                device,
                value,
                advance_ms,
                back_ms,
            } => {
                clock += advance_ms as i64 * 1_000;
                let img = (
                    format!("device{device}"),
                    clock - back_ms as i64 * 1_000,
                    value as f64,
                );
                let old = table.insert(item, img.clone());
                let name = if old.is_some() { "MODIFY" } else { "INSERT" };
                (item, name, Some(img), old, advance_ms)
            }
            Step::Update {
                item,
                value,
                advance_ms,
            } => {
                clock += advance_ms as i64 * 1_000;
                let Some(old) = table.get(&item).cloned() else {
                    continue;
                };
                let img = (old.0.clone(), old.1, value as f64);
                table.insert(item, img.clone());
                (item, "MODIFY", Some(img), Some(old), advance_ms)
            }
            Step::Remove { item, advance_ms } => {
                clock += advance_ms as i64 * 1_000;
                let Some(old) = table.remove(&item) else {
                    continue;
                };
                (item, "REMOVE", None, Some(old), advance_ms)
            }
        };
        let _ = advance;
        let item_id = format!("item-{item}");
        // Change time: the table's clock, strictly increasing.
        let changed = clock + i as i64;
        let mut d = json!({"ApproximateCreationDateTime": changed, "ApproximateCreationDateTimePrecision": "MICROSECOND", "Keys": {"id": {"S": item_id}}, "SizeBytes": 120});
        if let Some(n) = &new {
            d["NewImage"] = image(&item_id, n);
        }
        if let Some(o) = &old {
            d["OldImage"] = image(&item_id, o);
        }
        let event_id = format!("ev{i}");
        let data = json!({"awsRegion": "us-east-1", "eventID": event_id, "eventName": name, "recordFormat": "application/json",
            "tableName": "windspeed", "eventSource": "aws:dynamodb", "dynamodb": d})
        .to_string()
        .into_bytes();
        let shard = item % SHARDS;
        let mut push = |shards: &mut Vec<Vec<Rec>>, data: Vec<u8>| {
            seqs[shard] += 1;
            shards[shard].push(Rec {
                record: record(shard, seqs[shard], data, &item_id),
                event_id: event_id.clone(),
                item: item_id.clone(),
                new: new.clone(),
                old: old.clone(),
                changed,
            });
        };
        push(&mut shards, data.clone());
        // Earlier duplicates whose turn has come.
        let mut due = Vec::new();
        pending[shard].retain_mut(|(n, r)| {
            if *n == 0 {
                due.push(r.clone());
                false
            } else {
                *n -= 1;
                true
            }
        });
        for r in due {
            push(
                &mut shards,
                r.record.kinesis.data.0.clone().unwrap_or_default(),
            );
        }
        if rng.below(6) == 0 {
            let last = shards[shard].len() - 1;
            let dup = shards[shard][last].clone();
            pending[shard].push((rng.below(6), dup));
        }
    }
    for (shard, p) in pending.into_iter().enumerate() {
        for (_, r) in p {
            seqs[shard] += 1;
            let mut r = r;
            r.record = record(
                shard,
                seqs[shard],
                r.record.kinesis.data.0.clone().unwrap_or_default(),
                &r.item,
            );
            shards[shard].push(r);
        }
    }

    // Cut into batches, interleave shards, and decide each invocation's fate.
    let mut actions = Vec::new();
    let mut cursors = [0usize; SHARDS];
    let mut wall = T0;
    let mut max_event = T0;
    while (0..SHARDS).any(|s| cursors[s] < shards[s].len()) {
        let s = rng.below(SHARDS as u64) as usize;
        if cursors[s] >= shards[s].len() {
            continue;
        }
        let end = (cursors[s] + 1 + rng.below(10) as usize).min(shards[s].len());
        let batch: Vec<Rec> = shards[s][cursors[s]..end].to_vec();
        cursors[s] = end;
        for r in &batch {
            max_event = max_event.max(r.changed);
        }
        match rng.below(5) {
            // Done, but the invocation timed out before answering: the whole batch again.
            0 => {
                actions.push(Action::Deliver(batch.clone()));
                actions.push(Action::Deliver(batch));
            }
            // A transient failure part-way: Lambda retries from the reported record.
            1 => {
                let cut = rng.below(batch.len() as u64) as usize;
                actions.push(Action::Deliver(batch.clone()));
                actions.push(Action::Deliver(batch[cut..].to_vec()));
            }
            // The function errored: BisectBatchOnFunctionError splits the batch in two.
            2 if batch.len() > 1 => {
                let mid = batch.len() / 2;
                actions.push(Action::Deliver(batch[..mid].to_vec()));
                actions.push(Action::Deliver(batch[mid..].to_vec()));
            }
            _ => actions.push(Action::Deliver(batch)),
        }
        if rng.below(4) == 0 {
            // The schedule fires: wall clock a little past the table's latest change.
            wall = wall.max(max_event + rng.below(30) as i64 * SEC);
            actions.push(Action::Schedule(wall));
        }
    }
    // Much later, the schedule closes whatever is left.
    actions.push(Action::Schedule(wall.max(max_event) + 10 * MIN));
    actions
}

/// The reference model's window.
#[derive(Debug, Default, Clone)]
struct MWindow {
    /// item → (change time, value or removed).
    entries: BTreeMap<String, (i64, Option<f64>)>,
    closed: bool,
}

/// Final window statistics: (count, sum, min, max), `None` when every reading was removed.
pub type MStats = Option<(u64, f64, f64, f64)>;

#[derive(Debug, Default)]
pub struct Model {
    shard_wm: BTreeMap<String, i64>,
    /// The highest watermark anything was closed at: the watermark never goes back.
    floor: Option<i64>,
    windows: BTreeMap<(String, i64), MWindow>,
    seen: BTreeSet<String>,
    firing: BTreeMap<String, bool>,
    pub alerts: BTreeSet<(String, i64, &'static str)>,
    /// Unique changes that came too late for their window.
    pub late: usize,
}

fn start_of(t: i64) -> i64 {
    t.div_euclid(MIN) * MIN
}

fn close_at(start: i64) -> i64 {
    start + MIN + LATENESS
}

impl Model {
    fn watermark(&self) -> Option<i64> {
        self.shard_wm.values().min().copied().max(self.floor)
    }

    pub fn deliver(&mut self, batch: &[Rec]) {
        let before = self.watermark();
        // Judging anything against the watermark pins it (the floor never goes back).
        if let Some(wm) = before {
            let touches_passed = batch.iter().any(|r| {
                r.new
                    .iter()
                    .chain(r.old.iter())
                    .any(|i| close_at(start_of(i.1)) <= wm)
            });
            if touches_passed {
                self.floor = Some(self.floor.map_or(wm, |f| f.max(wm)));
            }
        }
        let mut max: BTreeMap<String, i64> = BTreeMap::new();
        for r in batch {
            let shard = streamwatch_core::record::shard_id(&r.record).to_owned();
            let mut ops: Vec<(String, i64, Option<f64>)> = Vec::new();
            let moved = match (&r.new, &r.old) {
                (Some(n), Some(o)) => (&n.0, start_of(n.1)) != (&o.0, start_of(o.1)),
                _ => true,
            };
            if let Some(o) = &r.old
                && (r.new.is_none() || moved)
            {
                ops.push((o.0.clone(), o.1, None));
            }
            if let Some(n) = &r.new {
                ops.push((n.0.clone(), n.1, Some(n.2)));
            }
            for (_, t, _) in &ops {
                let m = max.entry(shard.clone()).or_insert(*t);
                *m = (*m).max(*t);
            }
            if !self.seen.insert(r.event_id.clone()) {
                continue;
            }
            for (device, t, value) in ops {
                let start = start_of(t);
                let key = (device, start);
                let late = match self.windows.get(&key) {
                    Some(w) => w.closed,
                    None => before.is_some_and(|wm| close_at(start) <= wm),
                };
                if late {
                    self.late += 1;
                    continue;
                }
                let w = self.windows.entry(key).or_default();
                match w.entries.get(&r.item) {
                    Some((c, _)) if *c >= r.changed => {}
                    _ => {
                        w.entries.insert(r.item.clone(), (r.changed, value));
                    }
                }
            }
        }
        for (shard, t) in max {
            let m = self.shard_wm.entry(shard).or_insert(t);
            *m = (*m).max(t);
        }
        if let Some(wm) = self.watermark() {
            self.close(wm);
        }
    }

    /// The schedule closes by wall clock minus grace, or the watermark if that is ahead.
    pub fn schedule(&mut self, wall: i64) {
        let cut = wall - GRACE;
        self.close(self.watermark().map_or(cut, |wm| wm.max(cut)));
    }

    fn close(&mut self, wm: i64) {
        let due: Vec<(String, i64)> = self
            .windows
            .iter()
            .filter(|((_, start), w)| !w.closed && close_at(*start) <= wm)
            .map(|(k, _)| k.clone())
            .collect();
        if !due.is_empty() {
            self.floor = Some(self.floor.map_or(wm, |f| f.max(wm)));
        }
        // BTreeMap order: per device, in start order.
        for key in due {
            let stats = self.stats(&key);
            let firing = self.firing.get(&key.0).copied().unwrap_or(false);
            let breach = stats.is_some_and(|(c, s, _, _)| s / c as f64 > 60.0);
            if breach {
                self.alerts
                    .insert((key.0.clone(), key.1, AlertKind::Firing.as_str()));
            } else if firing {
                self.alerts
                    .insert((key.0.clone(), key.1, AlertKind::Resolved.as_str()));
            }
            if std::env::var_os("WA_TRACE").is_some() {
                eprintln!(
                    "model close {key:?} stats {stats:?} firing_before {firing} breach {breach}"
                );
            }
            self.firing.insert(key.0.clone(), breach);
            if let Some(w) = self.windows.get_mut(&key) {
                w.closed = true;
            }
        }
    }

    fn stats(&self, key: &(String, i64)) -> MStats {
        let w = self.windows.get(key)?;
        let live: Vec<f64> = w.entries.values().filter_map(|(_, v)| *v).collect();
        (!live.is_empty()).then(|| {
            (
                live.len() as u64,
                live.iter().sum(),
                live.iter().copied().fold(f64::INFINITY, f64::min),
                live.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        })
    }

    /// Every window the model opened, with its final statistics.
    pub fn windows(&self) -> BTreeMap<(String, i64), MStats> {
        self.windows
            .keys()
            .map(|k| (k.clone(), self.stats(k)))
            .collect()
    }
}

/// Runs the plan through the real handler and the model; returns the model and the sum of
/// the handler's late counts.
pub async fn run<W, A>(deps: &Deps<W, A, TestClock>, actions: &[Action]) -> (Model, usize)
where
    W: streamwatch_core::window::WindowStore,
    A: AlertOutbox,
{
    let mut model = Model::default();
    let mut late = 0;
    let trace = std::env::var_os("WA_TRACE").is_some();
    for action in actions {
        if trace {
            match action {
                Action::Deliver(b) => eprintln!(
                    "deliver {:?}",
                    b.iter()
                        .map(|r| (
                            &r.event_id,
                            streamwatch_core::record::shard_id(&r.record).to_owned(),
                            &r.new,
                            &r.old
                        ))
                        .collect::<Vec<_>>()
                ),
                Action::Schedule(w) => eprintln!("schedule {}", (w - T0) / 1000),
            }
        }
        match action {
            Action::Deliver(batch) => {
                let event = KinesisEvent {
                    records: batch.iter().map(|r| r.record.clone()).collect(),
                };
                let (response, report) = process_batch(deps, &event).await;
                assert!(
                    response.batch_item_failures.is_empty(),
                    "no transient failure expected: {report:?}"
                );
                assert_eq!(report.malformed, 0);
                late += report.late;
                model.deliver(batch);
            }
            Action::Schedule(wall) => {
                deps.clock.0.store(*wall, Ordering::SeqCst);
                close_idle(deps).await.expect("the schedule closes");
                model.schedule(*wall);
            }
        }
    }
    (model, late)
}

/// Final windows as the store holds them, in the model's terms; every one must be settled.
pub fn observed_windows(windows: &[WindowState]) -> BTreeMap<(String, i64), MStats> {
    windows
        .iter()
        .map(|w| {
            assert!(w.closed && w.settled, "window left open: {w:?}");
            (
                (w.key.clone(), w.start_micros),
                w.stats().map(|s| (s.count, s.sum, s.min, s.max)),
            )
        })
        .collect()
}

/// Windows as the store holds them, open or not.
pub fn observed_windows_open(windows: &[WindowState]) -> BTreeMap<(String, i64), MStats> {
    windows
        .iter()
        .map(|w| {
            (
                (w.key.clone(), w.start_micros),
                w.stats().map(|s| (s.count, s.sum, s.min, s.max)),
            )
        })
        .collect()
}

/// Alerts as the outbox holds them; firing ones checked against the model's statistics.
pub fn observed_alerts(
    alerts: &[AlertRecord],
    model: &BTreeMap<(String, i64), MStats>,
) -> BTreeSet<(String, i64, &'static str)> {
    let mut out = BTreeSet::new();
    for a in alerts {
        let w = a.window.as_ref().expect("window alerts carry their window");
        if a.kind == AlertKind::Firing {
            let want = model
                .get(&(a.key.clone(), w.start_micros))
                .copied()
                .flatten();
            assert_eq!(
                Some((w.count, w.sum, w.min, w.max)),
                want,
                "alert {} carries the final statistics",
                a.id
            );
        }
        assert!(
            out.insert((a.key.clone(), w.start_micros, a.kind.as_str())),
            "one alert per window and kind: {}",
            a.id
        );
    }
    out
}
