//! Shared by the chaos, timeout and concurrency tests: a seeded turbine scenario (change
//! records of the readings table on several shards, with MODIFYs and duplicated change
//! records) with its ground truth computed here from the readings, the window-aggregator's
//! tables in moto, and the comparison of what DynamoDB holds afterwards with that truth.

#![allow(dead_code)] // each test binary uses a different part

pub mod accidents;
pub mod alerts;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::json;
use streamwatch_adapters::DynamoDbAlertOutbox;
use streamwatch_adapters::alerts::alert_from_item;
use streamwatch_adapters::windows::{DynamoDbWindowStore, windows_from_items};
use streamwatch_core::AlertKind;
use streamwatch_core::alert::window_alert_id;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use streamwatch_core::time::format_micros;
use window_aggregator::{Clock, Deps};

/// 2026-11-21T12:00:00Z, a window start.
pub const T0: i64 = 1_795_262_400_000_000;
pub const MIN: i64 = 60_000_000;
pub const RULE: &str = "windspeed-avg";

/// A deterministic generator (xorshift).
pub struct Rng(pub u64);
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
    pub fn chance(&mut self, p: f64) -> bool {
        (self.below(1 << 30) as f64) < p * (1u64 << 30) as f64
    }
}

pub struct TestClock(pub AtomicI64);
impl Clock for TestClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Statistics of one window: count, sum, min, max.
pub type Truth = (u64, f64, f64, f64);

/// Change records per shard, and what they must leave in the tables.
pub struct Turbines {
    pub shards: Vec<Vec<KinesisEventRecord>>,
    /// (device, window start) -> statistics of its readings' final values.
    pub windows: BTreeMap<(String, i64), Truth>,
    /// Ids of the alerts closing those windows must write.
    pub alerts: BTreeSet<String>,
    pub readings: usize,
    pub modifies: usize,
    pub duplicates: usize,
}

/// `n` readings of `devices` turbines over `minutes` one-minute windows, on `shards` shards
/// (by item, as Kinesis Data Streams for DynamoDB partitions them). About 5 % are followed
/// by a MODIFY of their value, 3 % of change records are delivered again a few records later
/// under a new sequence number. Some turbines gust above 60 mph for a few windows.
pub fn turbines(rng: &mut Rng, n: usize, devices: usize, minutes: i64, shards: usize) -> Turbines {
    let mut out = Turbines {
        shards: vec![Vec::new(); shards],
        windows: BTreeMap::new(),
        alerts: BTreeSet::new(),
        readings: n,
        modifies: 0,
        duplicates: 0,
    };
    let mut seqs = vec![0u64; shards];
    // Final value per item: (device, window start, value).
    let mut items: BTreeMap<usize, (String, i64, f64)> = BTreeMap::new();
    let mut pending: Vec<Vec<(u64, Vec<u8>, String)>> = vec![Vec::new(); shards];
    let mut changed = T0;
    let gusty = |device: usize, window: i64| -> bool {
        (device % 2 == 1) && ((window + device as i64) % 7 < 3)
    };
    let span = minutes * MIN;
    let mut push = |out: &mut Turbines, shard: usize, data: Vec<u8>, key: &str| {
        seqs[shard] += 1;
        out.shards[shard].push(record(shard, seqs[shard], data, key));
    };
    for i in 0..n {
        let device = rng.below(devices as u64) as usize;
        let created = T0 + (i as i64 * span / n as i64) + rng.below(2_000_000) as i64;
        let window = (created - T0) / MIN;
        let base = if gusty(device, window) { 55 } else { 30 };
        let value = (base + rng.below(30)) as f64;
        let item = format!("r-{i:06}");
        let shard = i % shards;
        changed += 1_000;
        let name = format!("device{device}");
        let data = change(&item, "INSERT", &name, created, value, None, changed, i);
        push(&mut out, shard, data.clone(), &item);
        items.insert(i, (name.clone(), T0 + window * MIN, value));
        if rng.chance(0.03) {
            out.duplicates += 1;
            pending[shard].push((1 + rng.below(8), data, item.clone()));
        }
        if rng.chance(0.05) {
            // The turbine's reading corrected: same item, same window, a new value.
            out.modifies += 1;
            changed += 1_000;
            let new_value = (base + rng.below(30)) as f64;
            let data = change(
                &item,
                "MODIFY",
                &name,
                created,
                new_value,
                Some(value),
                changed,
                n + i,
            );
            push(&mut out, shard, data, &item);
            items.insert(i, (name, T0 + window * MIN, new_value));
        }
        // Duplicates whose turn has come (Kinesis Data Streams for DynamoDB may deliver a
        // change record twice).
        let mut due = Vec::new();
        pending[shard].retain_mut(|(k, data, item)| {
            *k -= 1;
            if *k == 0 {
                due.push((data.clone(), item.clone()));
            }
            *k > 0
        });
        for (data, item) in due {
            push(&mut out, shard, data, &item);
        }
    }
    for (shard, rest) in pending.into_iter().enumerate() {
        for (_, data, item) in rest {
            push(&mut out, shard, data, &item);
        }
    }
    for (device, start, value) in items.into_values() {
        let w = out.windows.entry((device, start)).or_insert((
            0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ));
        w.0 += 1;
        w.1 += value;
        w.2 = w.2.min(value);
        w.3 = w.3.max(value);
    }
    // The rule: a window closing with avg > 60 fires; the next one not above 60 resolves.
    let mut firing: HashMap<String, bool> = HashMap::new();
    for ((device, start), (count, sum, _, _)) in &out.windows {
        let breach = sum / *count as f64 > 60.0;
        let was = firing.get(device).copied().unwrap_or(false);
        if breach {
            out.alerts
                .insert(window_alert_id(RULE, device, *start, AlertKind::Firing));
        } else if was {
            out.alerts
                .insert(window_alert_id(RULE, device, *start, AlertKind::Resolved));
        }
        firing.insert(device.clone(), breach);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn change(
    item: &str,
    name: &str,
    device: &str,
    created: i64,
    value: f64,
    old: Option<f64>,
    changed: i64,
    event: usize,
) -> Vec<u8> {
    let image = |v: f64| {
        json!({"id": {"S": item}, "deviceID": {"S": device}, "value": {"N": v.to_string()},
            "createdAt": {"S": format_micros(created)}})
    };
    let mut d = json!({"ApproximateCreationDateTime": changed, "ApproximateCreationDateTimePrecision": "MICROSECOND",
        "Keys": {"id": {"S": item}}, "NewImage": image(value), "SizeBytes": 120});
    if let Some(old) = old {
        d["OldImage"] = image(old);
    }
    json!({"awsRegion": "us-east-1", "eventID": format!("ev-{event}"), "eventName": name,
        "recordFormat": "application/json", "tableName": "windspeed", "eventSource": "aws:dynamodb", "dynamodb": d})
    .to_string()
    .into_bytes()
}

fn record(shard: usize, seq: u64, data: Vec<u8>, key: &str) -> KinesisEventRecord {
    let sequence_number = format!("4959033827149025660855969253836157109592157{seq:013}");
    KinesisEventRecord {
        kinesis: KinesisRecord {
            partition_key: key.to_owned(),
            sequence_number: sequence_number.clone(),
            data: data.into(),
            approximate_arrival_timestamp: (T0 / 1_000_000) as f64,
            ..Default::default()
        },
        event_id: Some(format!("shardId-{shard:012}:{sequence_number}")),
        ..Default::default()
    }
}

/// The function's configuration for the tables. Lateness is the maximum (an hour), longer
/// than the scenario: every reading counts whatever the shards' relative progress, so the
/// truth does not depend on scheduling; windows close through the schedule at the end.
pub fn config(windows: &str, alerts: &str) -> window_aggregator::Config {
    let env: HashMap<String, String> = [
        ("WINDOWS_TABLE", windows),
        ("ALERTS_TABLE", alerts),
        ("ALLOWED_LATENESS_SECONDS", "3600"),
        ("CLOSE_GRACE_SECONDS", "10"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    window_aggregator::Config::from_source(&env).expect("valid configuration")
}

pub type WindowDeps = Deps<
    DynamoDbWindowStore,
    DynamoDbAlertOutbox,
    streamwatch_adapters::shards::EmbeddedShardProbe,
    TestClock,
>;

/// The function's dependencies on `client`.
pub fn deps(client: &aws_sdk_dynamodb::Client) -> WindowDeps {
    Deps {
        config: config("windows", "alerts"),
        store: DynamoDbWindowStore::new(client.clone(), "windows", Duration::from_secs(48 * 3600)),
        outbox: DynamoDbAlertOutbox::new(client.clone(), "alerts"),
        probe: streamwatch_adapters::shards::EmbeddedShardProbe::with_shards(8),
        clock: TestClock(AtomicI64::new(T0)),
    }
}

/// The template's windows table (with its sparse open-windows index) and alerts table.
pub async fn create_window_tables(ddb: &aws_sdk_dynamodb::Client) {
    streamwatch_tests::create_windows_table(ddb, "windows").await;
    streamwatch_tests::create_alerts_table(ddb, "alerts").await;
}

pub use streamwatch_tests::scan_all;

/// Runs the schedule until it succeeds twice in a row with nothing left to close (an
/// injected fault fails a pass; the next minute's schedule carries on).
pub async fn close_everything(deps: &WindowDeps) -> (u64, u64) {
    deps.clock.0.store(T0 + 24 * 60 * MIN, Ordering::SeqCst);
    let (mut passes, mut failed, mut quiet) = (0u64, 0u64, 0);
    while quiet < 2 {
        passes += 1;
        assert!(passes < 1_000, "the schedule never finished closing");
        match window_aggregator::close_idle(deps).await {
            Ok(r) if r.windows_closed == 0 => quiet += 1,
            Ok(_) => quiet = 0,
            Err(_) => {
                failed += 1;
                quiet = 0;
            }
        }
    }
    (passes, failed)
}

/// Asserts that the windows table holds exactly the true windows, each closed and settled,
/// none with a late record, and the alerts table exactly the true alerts. Returns the number
/// of windows and alerts checked.
pub async fn assert_tables_hold_truth(
    ddb: &aws_sdk_dynamodb::Client,
    truth: &Turbines,
) -> (usize, usize) {
    let mut got: BTreeMap<(String, i64), Truth> = BTreeMap::new();
    let items = scan_all(ddb, "windows").await;
    let late: Vec<_> = items
        .iter()
        .filter_map(|i| i.get("sk")?.as_s().ok())
        .filter(|sk| sk.starts_with("l#"))
        .collect();
    assert!(late.is_empty(), "late records counted: {late:?}");
    for w in windows_from_items(&items) {
        assert!(
            w.closed && w.settled,
            "window {} {} open",
            w.key,
            w.start_micros
        );
        let s = w.stats().expect("a window with readings");
        let previous = got.insert(
            (w.key.clone(), w.start_micros),
            (s.count, s.sum, s.min, s.max),
        );
        assert!(previous.is_none(), "window stored twice");
    }
    assert_eq!(got.len(), truth.windows.len(), "number of windows");
    for (k, want) in &truth.windows {
        assert_eq!(got.get(k), Some(want), "window {k:?}");
    }
    let alerts: Vec<String> = scan_all(ddb, "alerts")
        .await
        .iter()
        .filter_map(alert_from_item)
        .map(|a| a.id)
        .collect();
    let set: BTreeSet<String> = alerts.iter().cloned().collect();
    assert_eq!(set.len(), alerts.len(), "an alert stored twice");
    assert_eq!(set, truth.alerts, "alerts differ from the ground truth");
    (got.len(), set.len())
}
