//! The model-based scenarios shared by the embedded and the moto tests.
//!
//! A [`Plan`] is a stream as Lambda reads it: shards (with their parents after a split or
//! merge, and when they open and close), each shard's log of change records with the wall
//! time each arrived, and the actions — invocations with some records of one shard
//! (batches, whole-batch replays, suffix retries, bisection; a child shard only after its
//! parents are done), and schedule passes at a wall-clock time. [`plan`] makes random ones;
//! the scenario tests build theirs by hand with [`Builder`].
//!
//! The [`Model`] sees the same plan and applies the specification directly, without the
//! production code's closing rule or ledger: a shard's progress is the highest event time
//! it delivered, each bounded by its record's own time, raised at a
//! schedule pass to wall clock minus grace when every record that had arrived on it by then
//! was delivered; a child shard starts from its ancestors' progress; a reading is late when
//! its own shard's progress before it had passed its window's end plus lateness; each
//! unique change counts once; a key's windows fire above 60 and resolve at or below 60
//! after firing, in window order.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};

use proptest::prelude::*;
use serde_json::{Value, json};
use streamwatch_adapters::shards::EmbeddedShardProbe;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use streamwatch_core::progress::{ShardInfo, ShardLedger};
use streamwatch_core::window::{WindowState, WindowStore};
use streamwatch_core::{AlertKind, AlertOutbox, AlertRecord, KinesisEvent};
use window_aggregator::{Clock, Deps, close_idle, process_batch};

pub const T0: i64 = 1_795_262_400_000_000;
pub const SEC: i64 = 1_000_000;
pub const MIN: i64 = 60 * SEC;
pub const HOUR: i64 = 60 * MIN;
pub const LATENESS: i64 = 5 * SEC;
pub const GRACE: i64 = 10 * SEC;
pub const SKEW: i64 = 60 * SEC;
pub const BASE_SHARDS: usize = 3;

/// The configuration the scenarios assume (the defaults, spelled out).
pub const ENV: &[(&str, &str)] = &[
    ("WINDOW_SECONDS", "60"),
    ("ALLOWED_LATENESS_SECONDS", "5"),
    ("CLOSE_GRACE_SECONDS", "10"),
    ("MAX_FUTURE_SKEW_SECONDS", "60"),
    ("WINDOW_CONDITION", "avg > 60"),
];

/// The function's configuration for these tables, with `ENV` and `extra` on the defaults.
pub fn config_with(
    windows_table: &str,
    alerts_table: &str,
    extra: &[(&str, &str)],
) -> window_aggregator::Config {
    let mut env: std::collections::HashMap<String, String> = ENV
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("WINDOWS_TABLE".into(), windows_table.into());
    env.insert("ALERTS_TABLE".into(), alerts_table.into());
    window_aggregator::Config::from_source(&env).expect("valid configuration")
}

pub fn config(windows_table: &str, alerts_table: &str) -> window_aggregator::Config {
    config_with(windows_table, alerts_table, &[])
}

pub struct TestClock(pub AtomicI64);
impl Clock for TestClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub type TestDeps<W, A> = Deps<W, A, EmbeddedShardProbe, TestClock>;

pub fn shard_id(shard: usize) -> String {
    format!("shardId-{shard:012}")
}

/// A reading as the model sees it: device, event time, value.
pub type Image = (String, i64, f64);

/// One change record and what the model needs to know about it.
#[derive(Debug, Clone)]
pub struct Rec {
    pub record: KinesisEventRecord,
    pub shard: usize,
    pub seq: u64,
    pub event_id: String,
    pub item: String,
    pub new: Option<Image>,
    pub old: Option<Image>,
    /// The change record's creation time (ApproximateCreationDateTime).
    pub changed: i64,
    /// When the record was on the stream (wall clock).
    pub arrival: i64,
}

/// A shard of the plan's stream.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    pub parents: Vec<usize>,
    /// Wall time the shard exists from, and (after a split or merge) is closed at.
    pub opens_at: i64,
    pub closes_at: Option<i64>,
}

/// What happens, in order.
#[derive(Debug, Clone)]
pub enum Action {
    /// One Lambda invocation with these records of one shard, at this wall time.
    Deliver { wall: i64, batch: Vec<Rec> },
    /// The EventBridge schedule fires at this wall-clock time.
    Schedule(i64),
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub shards: Vec<ShardSpec>,
    /// Each shard's records in sequence order (duplicates included, under their own
    /// sequence numbers).
    pub logs: Vec<Vec<Rec>>,
    pub actions: Vec<Action>,
}

fn image(item: &str, img: &Image) -> Value {
    json!({"id": {"S": item}, "deviceID": {"S": img.0}, "value": {"N": img.2.to_string()},
        "createdAt": {"S": streamwatch_core::time::format_micros(img.1)}})
}

fn kinesis_record(
    shard: usize,
    seq: u64,
    data: Vec<u8>,
    item: &str,
    arrival: i64,
) -> KinesisEventRecord {
    let sequence_number = format!("4959033827149025660855969253836157109592157{seq:013}");
    KinesisEventRecord {
        kinesis: KinesisRecord {
            partition_key: item.to_owned(),
            sequence_number: sequence_number.clone(),
            data: data.into(),
            approximate_arrival_timestamp: arrival as f64 / 1e6,
            ..Default::default()
        },
        event_id: Some(format!("{}:{sequence_number}", shard_id(shard))),
        ..Default::default()
    }
}

/// The change record's JSON, as Kinesis Data Streams for DynamoDB writes it.
fn change_json(
    event_id: &str,
    item: &str,
    new: Option<&Image>,
    old: Option<&Image>,
    changed: i64,
) -> Vec<u8> {
    let name = match (new, old) {
        (Some(_), None) => "INSERT",
        (Some(_), Some(_)) => "MODIFY",
        _ => "REMOVE",
    };
    let mut d = json!({"ApproximateCreationDateTime": changed, "ApproximateCreationDateTimePrecision": "MICROSECOND", "Keys": {"id": {"S": item}}, "SizeBytes": 120});
    if let Some(n) = new {
        d["NewImage"] = image(item, n);
    }
    if let Some(o) = old {
        d["OldImage"] = image(item, o);
    }
    json!({"awsRegion": "us-east-1", "eventID": event_id, "eventName": name, "recordFormat": "application/json",
        "tableName": "windspeed", "eventSource": "aws:dynamodb", "dynamodb": d})
    .to_string()
    .into_bytes()
}

impl Plan {
    /// Appends a record to a shard's log (its sequence number is the log's next).
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        shard: usize,
        event_id: &str,
        item: &str,
        new: Option<Image>,
        old: Option<Image>,
        changed: i64,
        arrival: i64,
    ) -> Rec {
        let log = &mut self.logs[shard];
        let seq = log.last().map_or(1, |r| r.seq + 1);
        let arrival = log.last().map_or(arrival, |r| r.arrival.max(arrival));
        let data = change_json(event_id, item, new.as_ref(), old.as_ref(), changed);
        let rec = Rec {
            record: kinesis_record(shard, seq, data, item, arrival),
            shard,
            seq,
            event_id: event_id.to_owned(),
            item: item.to_owned(),
            new,
            old,
            changed,
            arrival,
        };
        log.push(rec.clone());
        rec
    }

    pub fn with_shards(n: usize) -> Self {
        Self {
            shards: vec![
                ShardSpec {
                    parents: Vec::new(),
                    opens_at: i64::MIN,
                    closes_at: None
                };
                n
            ],
            logs: vec![Vec::new(); n],
            actions: Vec::new(),
        }
    }

    /// Adds a shard (a child of `parents`, which close at `at`); returns its number.
    pub fn reshard(&mut self, parents: &[usize], at: i64) -> usize {
        for p in parents {
            self.shards[*p].closes_at = Some(at);
        }
        self.shards.push(ShardSpec {
            parents: parents.to_vec(),
            opens_at: at,
            closes_at: None,
        });
        self.logs.push(Vec::new());
        self.shards.len() - 1
    }

    /// The latest event time of any reading: the last window's end follows it.
    pub fn max_event_time(&self) -> i64 {
        self.logs
            .iter()
            .flatten()
            .flat_map(|r| r.new.iter().chain(r.old.iter()).map(|i| i.1))
            .max()
            .unwrap_or(T0)
    }
}

/// One change to the turbine table.
#[derive(Debug, Clone)]
pub enum Step {
    /// PutItem: INSERT, or MODIFY (with the old image) when the item exists. `back_ms` puts
    /// `createdAt` behind the table's clock: up to 4 s is ordinary disorder (< lateness),
    /// more makes a straggler. `ahead` stamps it 3 h ahead: a device with a wrong clock.
    Put {
        item: usize,
        device: usize,
        value: u32,
        advance_ms: u32,
        back_ms: u32,
        ahead: bool,
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
    /// The stream reshards: shard 0 splits in two; the next time, the two merge.
    Reshard,
}

pub fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    let back = prop_oneof![8 => 0u32..4_000, 1 => 65_000u32..240_000];
    prop::collection::vec(
        prop_oneof![
            12 => (0usize..24, 0usize..3, 20u32..95, 0u32..6_000, back, prop::bool::weighted(0.05)).prop_map(|(item, device, value, advance_ms, back_ms, ahead)| Step::Put { item, device, value, advance_ms, back_ms, ahead }),
            4 => (0usize..24, 20u32..95, 0u32..6_000).prop_map(|(item, value, advance_ms)| Step::Update { item, value, advance_ms }),
            2 => (0usize..24, 0u32..6_000).prop_map(|(item, advance_ms)| Step::Remove { item, advance_ms }),
            1 => Just(Step::Reshard),
        ],
        1..max,
    )
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
/// them; after a reshard shard 0's items go to its children), duplicates some under new
/// sequence numbers a few records later, then delivers them as Lambda does (see
/// [`deliver_randomly`]).
pub fn plan(steps: &[Step], seed: u64) -> Plan {
    let mut rng = Rng::new(seed);
    let mut p = Plan::with_shards(BASE_SHARDS);
    let mut table: BTreeMap<usize, Image> = BTreeMap::new();
    let mut clock = T0;
    // Where shard 0's items go: 0, then the split's children, then their merge.
    let mut zero: Vec<usize> = vec![0];
    // Duplicates waiting to be re-sent: (records still to pass, record).
    let mut pending: Vec<(u64, Rec)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let (item, new, old) = match *step {
            Step::Reshard => {
                clock += 1_000;
                zero = match zero.len() {
                    1 if zero[0] == 0 => {
                        let a = p.reshard(&[0], clock);
                        let b = p.shards.len();
                        p.shards.push(p.shards[a].clone());
                        p.logs.push(Vec::new());
                        vec![a, b]
                    }
                    2 => vec![p.reshard(&zero, clock)],
                    _ => zero,
                };
                continue;
            }
            Step::Put {
                item,
                device,
                value,
                advance_ms,
                back_ms,
                ahead,
            } => {
                clock += advance_ms as i64 * 1_000;
                let t = if ahead {
                    clock + 3 * HOUR
                } else {
                    clock - back_ms as i64 * 1_000
                };
                let img = (format!("device{device}"), t, value as f64);
                let old = table.insert(item, img.clone());
                (item, Some(img), old)
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
                (item, Some(img), Some(old))
            }
            Step::Remove { item, advance_ms } => {
                clock += advance_ms as i64 * 1_000;
                let Some(old) = table.remove(&item) else {
                    continue;
                };
                (item, None, Some(old))
            }
        };
        let item_id = format!("item-{item}");
        let shard_of = |item: usize| {
            if item % BASE_SHARDS == 0 {
                zero[(item / BASE_SHARDS) % zero.len()]
            } else {
                item % BASE_SHARDS
            }
        };
        // Change time: the table's clock, strictly increasing; on the stream at once.
        let changed = clock + i as i64;
        let rec = p.push(
            shard_of(item),
            &format!("ev{i}"),
            &item_id,
            new,
            old,
            changed,
            changed,
        );
        // Earlier duplicates whose turn has come, on the shard their item maps to now.
        let mut due = Vec::new();
        pending.retain_mut(|(n, r)| {
            if *n == 0 {
                due.push(r.clone());
                false
            } else {
                *n -= 1;
                true
            }
        });
        for r in due {
            let n: usize = r.item[5..].parse().unwrap_or(0);
            p.push(
                shard_of(n),
                &r.event_id,
                &r.item,
                r.new,
                r.old,
                r.changed,
                changed,
            );
        }
        if rng.below(6) == 0 {
            pending.push((rng.below(6), rec));
        }
    }
    let end = clock + 1;
    for (_, r) in pending {
        let n: usize = r.item[5..].parse().unwrap_or(0);
        let shard = if n % BASE_SHARDS == 0 {
            zero[(n / BASE_SHARDS) % zero.len()]
        } else {
            n % BASE_SHARDS
        };
        p.push(shard, &r.event_id, &r.item, r.new, r.old, r.changed, end);
    }
    deliver_randomly(&mut p, &mut rng);
    p
}

/// Cuts each shard's log into batches and interleaves the shards' invocations (a child
/// only once its parents are done), each with a random fate: answered, timed out after
/// finishing (the whole batch again), failed part-way (the rest again), or bisected. The
/// schedule fires in between, now and then after a jump of up to 15 minutes of wall clock
/// with records still waiting (an iterator-age backlog), and once at the end.
pub fn deliver_randomly(p: &mut Plan, rng: &mut Rng) {
    let n = p.shards.len();
    let mut cursors = vec![0usize; n];
    let mut wall = T0;
    let mut max_event = T0;
    fn done(c: &[usize], p: &Plan, s: usize) -> bool {
        c[s] >= p.logs[s].len() && p.shards[s].parents.iter().all(|q| done(c, p, *q))
    }
    while (0..n).any(|s| !done(&cursors, p, s)) {
        let s = rng.below(n as u64) as usize;
        if cursors[s] >= p.logs[s].len()
            || p.shards[s].parents.iter().any(|q| !done(&cursors, p, *q))
        {
            continue;
        }
        let end = (cursors[s] + 1 + rng.below(10) as usize).min(p.logs[s].len());
        let batch: Vec<Rec> = p.logs[s][cursors[s]..end].to_vec();
        cursors[s] = end;
        for r in &batch {
            max_event = max_event.max(r.changed);
            wall = wall.max(r.arrival);
        }
        let mut deliver = |b: Vec<Rec>| p.actions.push(Action::Deliver { wall, batch: b });
        match rng.below(5) {
            0 => {
                deliver(batch.clone());
                deliver(batch);
            }
            1 => {
                let cut = rng.below(batch.len() as u64) as usize;
                deliver(batch.clone());
                deliver(batch[cut..].to_vec());
            }
            2 if batch.len() > 1 => {
                let mid = batch.len() / 2;
                deliver(batch[..mid].to_vec());
                deliver(batch[mid..].to_vec());
            }
            _ => deliver(batch),
        }
        match rng.below(8) {
            0 | 1 => {
                wall = wall.max(max_event + rng.below(30) as i64 * SEC);
                p.actions.push(Action::Schedule(wall));
            }
            2 => {
                wall += (1 + rng.below(15) as i64) * MIN;
                p.actions.push(Action::Schedule(wall));
            }
            _ => {}
        }
    }
    let last = wall.max(p.max_event_time()) + 10 * MIN;
    p.actions.push(Action::Schedule(last));
}

/// The reference model's window: item → (change time, value or removed).
#[derive(Debug, Default, Clone)]
struct MWindow {
    entries: BTreeMap<String, (i64, Option<f64>)>,
}

/// Final window statistics: (count, sum, min, max), `None` when every reading was removed.
pub type MStats = Option<(u64, f64, f64, f64)>;

#[derive(Debug, Default)]
pub struct Model {
    progress: BTreeMap<usize, Option<i64>>,
    /// Per shard, the highest sequence number delivered: a replay is not seen again.
    delivered: BTreeMap<usize, u64>,
    started: BTreeSet<usize>,
    windows: BTreeMap<(String, i64), MWindow>,
    seen: BTreeSet<String>,
    /// Unique changes that came too late for their window.
    pub late: usize,
    /// Unique readings stamped further ahead of their record than the skew allows.
    pub future: usize,
    /// Window length and lateness the model assumes.
    pub size: i64,
    pub lateness: i64,
}

impl Model {
    pub fn new() -> Self {
        Self::with_window(MIN, LATENESS)
    }

    pub fn with_window(size: i64, lateness: i64) -> Self {
        Self {
            size,
            lateness,
            ..Self::default()
        }
    }

    fn start_of(&self, t: i64) -> i64 {
        t.div_euclid(self.size) * self.size
    }

    fn close_at(&self, start: i64) -> i64 {
        start + self.size + self.lateness
    }

    pub fn deliver(&mut self, plan: &Plan, batch: &[Rec]) {
        for r in batch {
            let s = r.shard;
            if self.delivered.get(&s).is_some_and(|d| r.seq <= *d) {
                continue;
            }
            self.delivered.insert(s, r.seq);
            if self.started.insert(s) {
                // Every ancestor's progress: a parent that never delivered passes on its own.
                let mut inherited = None;
                let mut todo = plan.shards[s].parents.clone();
                while let Some(p) = todo.pop() {
                    inherited = inherited.max(self.progress.get(&p).copied().flatten());
                    todo.extend(&plan.shards[p].parents);
                }
                let own = self.progress.entry(s).or_default();
                *own = (*own).max(inherited);
            }
            let before = self.progress.get(&s).copied().flatten();
            let moved = match (&r.new, &r.old) {
                (Some(n), Some(o)) => (&n.0, self.start_of(n.1)) != (&o.0, self.start_of(o.1)),
                _ => true,
            };
            let mut ops: Vec<(String, i64, Option<f64>)> = Vec::new();
            if let Some(o) = &r.old
                && (r.new.is_none() || moved)
            {
                ops.push((o.0.clone(), o.1, None));
            }
            if let Some(n) = &r.new {
                ops.push((n.0.clone(), n.1, Some(n.2)));
            }
            let p = self.progress.entry(s).or_default();
            for (_, t, _) in &ops {
                *p = (*p).max(Some((*t).min(r.changed)));
            }
            if !self.seen.insert(r.event_id.clone()) {
                continue;
            }
            for (device, t, value) in ops {
                let start = self.start_of(t);
                if before.is_some_and(|b| b >= self.close_at(start)) {
                    // Lost, unless the window already holds a later change of the item.
                    let superseded = self.windows.get(&(device, start)).is_some_and(|w| {
                        w.entries.get(&r.item).is_some_and(|(c, _)| *c >= r.changed)
                    });
                    self.late += usize::from(!superseded);
                    continue;
                }
                let w = self.windows.entry((device, start)).or_default();
                if value.is_some() && t > r.changed + SKEW && !w.entries.contains_key(&r.item) {
                    self.future += 1;
                }
                match w.entries.get(&r.item) {
                    Some((c, _)) if *c >= r.changed => {}
                    _ => {
                        w.entries.insert(r.item.clone(), (r.changed, value));
                    }
                }
            }
        }
    }

    /// A schedule pass at wall time `wall`: a shard that exists, is open, and has every
    /// record that had arrived by then delivered, has progressed to `wall` minus grace.
    pub fn schedule(&mut self, plan: &Plan, wall: i64) {
        for (s, spec) in plan.shards.iter().enumerate() {
            if spec.opens_at > wall || spec.closes_at.is_some_and(|c| c <= wall) {
                continue;
            }
            let tip = plan.logs[s]
                .iter()
                .rev()
                .find(|r| r.arrival <= wall)
                .map(|r| r.seq);
            let delivered = self.delivered.get(&s).copied().unwrap_or(0);
            if tip.is_none_or(|t| t <= delivered) {
                let p = self.progress.entry(s).or_default();
                *p = (*p).max(Some(wall - GRACE));
            }
        }
    }

    fn stats(w: &MWindow) -> MStats {
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
            .iter()
            .map(|(k, w)| (k.clone(), Self::stats(w)))
            .collect()
    }

    /// The alerts closing every window produces: per device in window order, firing above
    /// 60, resolved at or below 60 (or empty) after a firing window.
    pub fn alerts(&self) -> BTreeSet<(String, i64, &'static str)> {
        let mut out = BTreeSet::new();
        let mut firing: BTreeMap<&str, bool> = BTreeMap::new();
        for ((device, start), w) in &self.windows {
            let breach = Self::stats(w).is_some_and(|(c, s, _, _)| s / c as f64 > 60.0);
            let was = firing.insert(device, breach).unwrap_or(false);
            if breach {
                out.insert((device.clone(), *start, AlertKind::Firing.as_str()));
            } else if was {
                out.insert((device.clone(), *start, AlertKind::Resolved.as_str()));
            }
        }
        out
    }
}

/// What the handler reported over a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counted {
    pub late: usize,
    pub future: usize,
    pub oversized: usize,
    pub failures: usize,
}

/// Runs the plan through the real handler, steering the probe as the stream would look at
/// each wall time, and through the model. Every invocation must succeed.
pub async fn run<W, A>(deps: &TestDeps<W, A>, plan: &Plan) -> (Model, Counted)
where
    W: WindowStore + ShardLedger,
    A: AlertOutbox,
{
    let mut model = Model::with_window(
        deps.config.spec.size_micros,
        deps.config.spec.lateness_micros,
    );
    let mut counted = Counted::default();
    let mut stream = StreamView::default();
    for action in &plan.actions {
        match action {
            Action::Deliver { wall, batch } => {
                stream.show(&deps.probe, plan, *wall);
                let event = KinesisEvent {
                    records: batch.iter().map(|r| r.record.clone()).collect(),
                };
                let (response, report) = process_batch(deps, &event).await;
                assert!(
                    response.batch_item_failures.is_empty(),
                    "no failure expected: {report:?}"
                );
                assert_eq!(report.malformed, 0);
                counted.late += report.late;
                counted.future += report.future;
                model.deliver(plan, batch);
            }
            Action::Schedule(wall) => {
                stream.show(&deps.probe, plan, *wall);
                deps.clock.0.store(*wall, Ordering::SeqCst);
                close_idle(deps).await.expect("the schedule closes");
                model.schedule(plan, *wall);
            }
        }
    }
    (model, counted)
}

/// What of the plan's stream the probe has been shown so far.
#[derive(Default)]
pub struct StreamView {
    shards: BTreeSet<usize>,
    closed: BTreeSet<usize>,
    written: BTreeMap<usize, usize>,
}

impl StreamView {
    /// Shows the probe the shards and records that exist at `wall`.
    pub fn show(&mut self, probe: &EmbeddedShardProbe, plan: &Plan, wall: i64) {
        for (s, spec) in plan.shards.iter().enumerate() {
            if spec.opens_at <= wall && self.shards.insert(s) {
                probe.add_shard(ShardInfo {
                    shard: shard_id(s),
                    parents: spec.parents.iter().map(|p| shard_id(*p)).collect(),
                    closed: false,
                });
            }
            if spec.closes_at.is_some_and(|c| c <= wall) && self.closed.insert(s) {
                probe.close_shard(&shard_id(s));
            }
            let w = self.written.entry(s).or_default();
            while let Some(r) = plan.logs[s].get(*w).filter(|r| r.arrival <= wall) {
                probe.written(&shard_id(s), &r.record.kinesis.sequence_number);
                *w += 1;
            }
        }
    }
}

/// Final windows as the store holds them, in the model's terms; every one must be settled.
/// A window only late readings ever came for never opened: it is not a window.
pub fn observed_windows(windows: &[WindowState]) -> BTreeMap<(String, i64), MStats> {
    windows
        .iter()
        .filter(|w| !w.entries.is_empty())
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
        .filter(|w| !w.entries.is_empty())
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
