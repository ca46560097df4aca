//! A turbine stream for the scale bench and its moto test: `turbines` at 1 Hz, each reading
//! a DynamoDB item with a UUID key (so every shard carries every turbine), delivered by a
//! simulated Lambda event source mapping as the template configures it (batches of up to
//! 500, a 10 s batching window, one invocation per shard at a time) with the schedule's
//! pass every minute.

#![allow(dead_code)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use streamwatch_adapters::EmbeddedAlertOutbox;
use streamwatch_adapters::shards::EmbeddedShardProbe;
use streamwatch_core::KinesisEvent;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use streamwatch_core::progress::ShardLedger;
use streamwatch_core::time::{Micros, format_micros};
use streamwatch_core::window::WindowStore;
use window_aggregator::{Clock, Config, Deps, close_idle, process_batch};

pub const T0: Micros = 1_795_262_400_000_000;
pub const SEC: Micros = 1_000_000;
pub const BATCH_SIZE: usize = 500;
pub const BATCH_WINDOW: Micros = 10 * SEC;
pub const LATENESS: Micros = 5 * SEC;
/// The change record is stamped this long after the reading; it reaches Kinesis this late.
const STAMP_DELAY: Micros = 100_000;
const ARRIVAL_DELAY: Micros = 300_000;

pub struct SimClock(pub AtomicI64);

impl Clock for SimClock {
    fn now_micros(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}

pub type SimDeps<W> = Deps<W, EmbeddedAlertOutbox, EmbeddedShardProbe, SimClock>;

/// Reading `i` of the stream (turbine `i % n`, second `i / n`) and where it goes.
pub struct Stream {
    pub turbines: usize,
    pub shards: usize,
    pub seconds: usize,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.turbines * self.seconds
    }

    pub fn shard_of(&self, i: usize) -> usize {
        // The readings table's key is a UUID: its hash spreads a turbine over every shard.
        (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) % self.shards
    }

    pub fn created(&self, i: usize) -> Micros {
        let (s, k) = (i / self.turbines, i % self.turbines);
        T0 + s as Micros * SEC + (k as Micros * SEC) / self.turbines as Micros
    }

    pub fn arrival(&self, i: usize) -> Micros {
        self.created(i) + ARRIVAL_DELAY
    }

    /// Wind speed: each turbine blows above 60 mph one minute in ten, and calms down after.
    pub fn value(&self, i: usize) -> u32 {
        let (s, k) = (i / self.turbines, i % self.turbines);
        if (k + s / 60) % 10 == 0 { 70 } else { 40 }
    }

    pub fn record(&self, i: usize, shard: usize) -> KinesisEventRecord {
        let device = format!("device{}", i % self.turbines + 1);
        let created = self.created(i);
        let item = format!("{i:08x}-0000-4000-8000-{i:012x}");
        let data = json!({"awsRegion": "us-east-1", "eventID": format!("ev{i}"), "eventName": "INSERT",
            "recordFormat": "application/json", "tableName": "windspeed", "eventSource": "aws:dynamodb",
            "dynamodb": {"ApproximateCreationDateTime": created + STAMP_DELAY,
                "ApproximateCreationDateTimePrecision": "MICROSECOND", "Keys": {"id": {"S": item}}, "SizeBytes": 180,
                "NewImage": {"id": {"S": item}, "deviceID": {"S": device}, "value": {"N": self.value(i).to_string()},
                    "index": {"N": i.to_string()}, "createdAt": {"S": format_micros(created)}}}});
        let seq = sequence(i);
        KinesisEventRecord {
            kinesis: KinesisRecord {
                partition_key: item,
                sequence_number: seq.clone(),
                data: data.to_string().into_bytes().into(),
                approximate_arrival_timestamp: self.arrival(i) as f64 / 1e6,
                ..Default::default()
            },
            event_id: Some(format!("shardId-{shard:012}:{seq}")),
            ..Default::default()
        }
    }
}

pub fn sequence(i: usize) -> String {
    format!("4959033827149025660855969253836157109592157{i:013}")
}

#[derive(Default)]
pub struct Figures {
    pub readings: usize,
    pub batches: usize,
    pub cpu: Duration,
    /// Per alert written: wall time of the invocation that wrote it minus its window's end.
    pub latencies: Vec<Micros>,
}

pub fn deps<W>(store: W, shards: usize) -> SimDeps<W> {
    Deps {
        config: Config::from_source(&[
            ("WINDOWS_TABLE", "w"),
            ("ALERTS_TABLE", "a"),
            ("ALLOWED_LATENESS_SECONDS", "5"),
            ("CLOSE_GRACE_SECONDS", "10"),
        ])
        .unwrap(),
        store,
        outbox: EmbeddedAlertOutbox::new(),
        probe: EmbeddedShardProbe::with_shards(shards),
        clock: SimClock(AtomicI64::new(T0)),
    }
}

/// Runs the stream through the handler in simulated time, as Lambda's event source mapping
/// and the schedule would, until three minutes after its last reading.
pub async fn simulate<W: WindowStore + ShardLedger>(d: &SimDeps<W>, stream: &Stream) -> Figures {
    let minutes = stream.seconds / 60;
    let load = stream;
    // Per shard, its readings in order (indices only; records are made when delivered).
    let mut logs: Vec<Vec<usize>> = vec![Vec::new(); load.shards];
    for i in 0..stream.len() {
        logs[stream.shard_of(i)].push(i);
    }
    let mut next = vec![0usize; load.shards];
    let mut fig = Figures::default();
    let mut alerts_seen = std::collections::HashSet::new();
    let end = T0 + (minutes as Micros + 3) * 60 * SEC;
    let mut tick = T0 + 60 * SEC;
    loop {
        // The next batch of each shard: due when full, or its batching window after the
        // first waiting record arrived.
        let due = (0..load.shards)
            .filter_map(|s| {
                let log = &logs[s][next[s]..];
                let first = stream.arrival(*log.first()?);
                let full = log.get(BATCH_SIZE - 1).map(|i| stream.arrival(*i));
                Some((
                    full.map_or(first + BATCH_WINDOW, |f| f.min(first + BATCH_WINDOW)),
                    s,
                ))
            })
            .min();
        let (at, shard) = match due {
            Some((at, s)) if at < tick => (at, Some(s)),
            _ if tick <= end => (tick, None),
            _ => break,
        };
        d.clock.0.store(at, Ordering::SeqCst);
        for (s, log) in logs.iter().enumerate() {
            let arrived = log.partition_point(|i| stream.arrival(*i) <= at);
            if arrived > 0 {
                d.probe
                    .written(&format!("shardId-{s:012}"), &sequence(log[arrived - 1]));
            }
        }
        match shard {
            Some(s) => {
                let log = &logs[s][next[s]..];
                let n = log
                    .partition_point(|i| stream.arrival(*i) <= at)
                    .min(BATCH_SIZE);
                let event = KinesisEvent {
                    records: log[..n].iter().map(|i| stream.record(*i, s)).collect(),
                };
                // The handler's time only, not the making of the records.
                let started = Instant::now();
                let (response, report) = process_batch(d, &event).await;
                fig.cpu += started.elapsed();
                assert!(response.batch_item_failures.is_empty(), "{report:?}");
                assert_eq!((report.late, report.malformed), (0, 0));
                next[s] += n;
                fig.readings += n;
                fig.batches += 1;
            }
            None => {
                let started = Instant::now();
                close_idle(d).await.expect("the schedule closes");
                fig.cpu += started.elapsed();
                tick += 60 * SEC;
            }
        }
        for a in d.outbox.alerts() {
            if alerts_seen.insert(a.id.clone()) {
                fig.latencies.push(at - a.event_time_micros);
            }
        }
    }
    fig
}
