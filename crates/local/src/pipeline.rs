//! The functions wired together on embedded backends: the real handlers of the
//! metrics-publisher and the alerter (and the window-aggregator), fed real Lambda event
//! envelopes through the embedded event source mapping, sharing one alerts outbox and one
//! metric sink as the deployed functions share the alerts table and CloudWatch. The alerter
//! runs as deployed: the template's grouping (severe accidents by County, State), silences,
//! and its one-minute schedule ([`Pipeline::alerter_schedule`]), all on the simulated clock.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use std::sync::atomic::{AtomicI64, Ordering};

use alerter::{Grouping, Silences};
use streamwatch_adapters::alert_state::EmbeddedAlertStateStore;
use streamwatch_adapters::groups::EmbeddedGroupStore;
use streamwatch_adapters::shards::EmbeddedShardProbe;
use streamwatch_adapters::silences::EmbeddedSilenceStore;
use streamwatch_adapters::sns::EmbeddedNotifier;
use streamwatch_adapters::windows::EmbeddedWindowStore;
use streamwatch_adapters::{EmbeddedAlertOutbox, EmbeddedMetricSink};
use streamwatch_core::KinesisEvent;
use streamwatch_core::PortError;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use streamwatch_core::kpl::{Aggregator, KINESIS_MAX_RECORD_BYTES};
use streamwatch_core::notify::silence::{Silence, SilenceStore, is_silenced};
use streamwatch_core::notify::{Message, NotificationRecord};
use streamwatch_emulator::esm::{Invocation, MappingConfig, MappingStats, drain_shard};

use crate::alert_stream::{self, AlertStream};

/// Counters of what the event source mappings did, per function.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MappingTotals {
    pub invocations: u64,
    pub retries: u64,
    pub bisections: u64,
    pub given_up: u64,
}

impl MappingTotals {
    fn add(&mut self, s: &MappingStats) {
        self.invocations += s.invocations;
        self.retries += s.retries;
        self.bisections += s.bisections;
        self.given_up += s.given_up.len() as u64;
    }
}

pub type PublisherDeps = metrics_publisher::Deps<Arc<EmbeddedMetricSink>, Arc<EmbeddedAlertOutbox>>;
pub type AlerterDeps = alerter::Deps<
    EmbeddedAlertStateStore,
    EmbeddedNotifier,
    SimClock,
    EmbeddedGroupStore,
    EmbeddedSilenceStore,
>;
pub type AggregatorDeps = window_aggregator::Deps<
    EmbeddedWindowStore,
    Arc<EmbeddedAlertOutbox>,
    EmbeddedShardProbe,
    SimClock,
>;

/// Simulated wall-clock time, shared by the window-aggregator's schedule and the alerter
/// (leases, group waits, silences): the demo runs thirty minutes of event time in seconds.
#[derive(Debug, Default, Clone)]
pub struct SimClock(pub Arc<AtomicI64>);

impl streamwatch_core::clock::Clock for SimClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl SimClock {
    pub fn set(&self, now_micros: i64) {
        self.0.store(now_micros, Ordering::SeqCst);
    }
}

/// The alerter's environment in `template.yaml` with the parameters' defaults
/// (`AccidentGroupBy`, `GroupWaitSeconds`, `GroupIntervalSeconds`; checked against the
/// template by `tests/pipeline.rs`); `REPEAT_INTERVAL_SECONDS` comes from the caller.
pub const ALERTER_ENV: [(&str, &str); 5] = [
    (
        "TOPIC_ARN",
        "arn:aws:sns:us-east-1:000000000000:streamwatch-alerts",
    ),
    ("ALERTS_TABLE", "streamwatch-alerts"),
    ("GROUP_BY", "accident-severity=County,State"),
    ("GROUP_WAIT_SECONDS", "30"),
    ("GROUP_INTERVAL_SECONDS", "300"),
];

/// What the alerter did beyond sending: alerts held for their group, silenced, and the
/// group notifications its schedule sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AlerterTotals {
    pub grouped: u64,
    pub silenced: u64,
    pub group_batches_sealed: u64,
    pub group_notifications: u64,
    pub schedule_passes: u64,
}

/// The embedded deployment.
pub struct Pipeline {
    pub outbox: Arc<EmbeddedAlertOutbox>,
    pub sink: Arc<EmbeddedMetricSink>,
    pub publisher: PublisherDeps,
    pub alerter: AlerterDeps,
    pub aggregator: AggregatorDeps,
    pub clock: SimClock,
    alert_stream: AlertStream,
    /// The last alert stream records delivered, for re-delivery (a Lambda retry).
    last_alert_records: Vec<aws_lambda_events::event::dynamodb::EventRecord>,
    pub aggregator_mapping: MappingTotals,
    pub publisher_mapping: MappingTotals,
    pub alerter_mapping: MappingTotals,
    pub alerter_totals: AlerterTotals,
    /// Accident user records sent and the aggregated Kinesis records that carried them.
    pub accident_records: u64,
    pub accident_kinesis_records: u64,
    /// PutMetricData-shaped requests the sink received (what the API sink would send).
    pub metric_requests: usize,
    /// The raw layer: what went through the streams, when the demo keeps an archive.
    pub archive: Option<crate::archive::Collector>,
    next_sequence: u64,
}

/// Settings of the template's event sources (batch sizes, retries, bisection).
pub const PUBLISHER_MAPPING: MappingConfig = MappingConfig {
    batch_size: 10_000,
    maximum_retry_attempts: 5,
    bisect_on_error: true,
};
pub const AGGREGATOR_MAPPING: MappingConfig = MappingConfig {
    batch_size: 500,
    maximum_retry_attempts: 10,
    bisect_on_error: true,
};
pub const ALERTER_MAPPING: MappingConfig = MappingConfig {
    batch_size: 100,
    maximum_retry_attempts: 10,
    bisect_on_error: true,
};

impl Pipeline {
    /// The functions with their default configuration (the template's) and `repeat`
    /// seconds between reminders.
    pub fn new(repeat_interval_secs: u64) -> Result<Self, streamwatch_core::config::ConfigError> {
        let outbox = Arc::new(EmbeddedAlertOutbox::new());
        let sink = Arc::new(EmbeddedMetricSink::new());
        let config =
            metrics_publisher::Config::from_source(&[("ALERTS_TABLE", "streamwatch-alerts")])?;
        let publisher = metrics_publisher::Deps {
            config,
            sink: sink.clone(),
            outbox: outbox.clone(),
        };
        let clock = SimClock::default();
        let repeat = repeat_interval_secs.to_string();
        let mut env: Vec<(&str, &str)> = ALERTER_ENV.to_vec();
        env.push(("REPEAT_INTERVAL_SECONDS", &repeat));
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let config = alerter::Config::from_source(&env)?;
        let alerter = alerter::Deps {
            grouping: Grouping::new(EmbeddedGroupStore::new(), config.group_policies()),
            silences: Silences::new(EmbeddedSilenceStore::new()),
            store: EmbeddedAlertStateStore::with_outbox(outbox.clone()),
            notifier: EmbeddedNotifier::new(),
            clock: clock.clone(),
            settings: config.settings(),
        };
        let aggregator = window_aggregator::Deps {
            config: window_aggregator::Config::from_source(&[
                ("WINDOWS_TABLE", "streamwatch-windows"),
                ("ALERTS_TABLE", "streamwatch-alerts"),
            ])?,
            store: EmbeddedWindowStore::new(),
            outbox: outbox.clone(),
            probe: EmbeddedShardProbe::new(),
            clock: clock.clone(),
        };
        Ok(Self {
            outbox,
            sink,
            publisher,
            alerter,
            aggregator,
            clock,
            alert_stream: AlertStream::new(),
            last_alert_records: Vec::new(),
            aggregator_mapping: MappingTotals::default(),
            publisher_mapping: MappingTotals::default(),
            alerter_mapping: MappingTotals::default(),
            alerter_totals: AlerterTotals::default(),
            accident_records: 0,
            accident_kinesis_records: 0,
            metric_requests: 0,
            archive: None,
            next_sequence: 0,
        })
    }

    /// Replays accident payloads (JSON bytes, partition key) as a KPL producer would:
    /// aggregated per shard, then fed through the metrics-publisher's event source mapping
    /// with the shards processed concurrently. `now` is CloudWatch's clock for the batch.
    pub async fn replay_accidents(
        &mut self,
        payloads: &[(String, Vec<u8>)],
        shards: usize,
        now: i64,
    ) -> MappingTotals {
        self.clock.set(now);
        let shards = shards.max(1);
        let mut per_shard: Vec<Aggregator> = (0..shards)
            .map(|_| Aggregator::new(KINESIS_MAX_RECORD_BYTES))
            .collect();
        let mut records: Vec<Vec<KinesisEventRecord>> = vec![Vec::new(); shards];
        for (pk, data) in payloads {
            let shard = shard_of(pk, shards);
            match per_shard[shard].add(pk, None, data) {
                Ok(Some(full)) => records[shard].push(self.kinesis_record(
                    shard,
                    &full.partition_key,
                    full.data,
                    now,
                )),
                Ok(None) => {}
                // A single record over 1 MB cannot be sent by any producer; skip it.
                Err(_) => continue,
            }
            self.accident_records += 1;
        }
        for (shard, agg) in per_shard.iter_mut().enumerate() {
            if let Some(full) = agg.finish() {
                records[shard].push(self.kinesis_record(
                    shard,
                    &full.partition_key,
                    full.data,
                    now,
                ));
            }
        }
        self.accident_kinesis_records += records.iter().map(|r| r.len() as u64).sum::<u64>();
        if let Some(archive) = &mut self.archive {
            archive
                .accidents
                .extend(records.iter().flatten().map(stream_record));
        }
        let before = self.sink.requests();
        let deps = &self.publisher;
        let rejects = std::sync::Mutex::new(Vec::new());
        let rejects = &rejects;
        let runs = records.iter().map(|shard| {
            drain_shard(
                shard,
                |r: &KinesisEventRecord| r.kinesis.sequence_number.as_str(),
                PUBLISHER_MAPPING,
                move |batch| async move {
                    let event = KinesisEvent { records: batch };
                    let (response, report) = metrics_publisher::process(deps, &event, now).await;
                    if let Ok(mut r) = rejects.lock() {
                        r.extend(report.rejects);
                    }
                    Invocation::from(response)
                },
            )
        });
        let mut totals = MappingTotals::default();
        for stats in futures::future::join_all(runs).await {
            totals.add(&stats);
        }
        self.metric_requests += self.sink.requests() - before;
        self.publisher_mapping.add_totals(&totals);
        if let Some(archive) = &mut self.archive {
            let at = chrono::DateTime::from_timestamp_micros(now).unwrap_or_default();
            let lines = std::mem::take(&mut *rejects.lock().unwrap_or_else(|p| p.into_inner()));
            archive
                .rejects
                .extend(lines.into_iter().map(|l| (l.into_bytes(), at)));
        }
        totals
    }

    /// Feeds each shard's new change records to the window-aggregator (shards concurrently,
    /// batches as the template's event source), then runs the schedule at simulated time `now`.
    pub async fn process_readings(
        &mut self,
        shards: Vec<(String, Vec<KinesisEventRecord>)>,
        now: i64,
    ) -> MappingTotals {
        self.clock.set(now);
        if let Some(archive) = &mut self.archive {
            archive
                .readings
                .extend(shards.iter().flat_map(|(_, r)| r).map(stream_record));
        }
        let deps = &self.aggregator;
        // The stream holds these records now: the schedule's probe finds each shard caught
        // up only once they are all processed.
        for (shard, records) in &shards {
            if let Some(last) = records.last() {
                deps.probe.written(shard, &last.kinesis.sequence_number);
            }
        }
        let runs = shards.iter().map(|(_, records)| {
            drain_shard(
                records,
                |r: &KinesisEventRecord| r.kinesis.sequence_number.as_str(),
                AGGREGATOR_MAPPING,
                move |batch| async move {
                    let event = KinesisEvent { records: batch };
                    let (response, _) = window_aggregator::process_batch(deps, &event).await;
                    Invocation::from(response)
                },
            )
        });
        let mut totals = MappingTotals::default();
        for stats in futures::future::join_all(runs).await {
            totals.add(&stats);
        }
        // The one-minute schedule: shards caught up at (simulated) wall clock, idle keys'
        // windows closed.
        if let Err(e) = window_aggregator::close_idle(deps).await {
            eprintln!("streamwatch demo: closing idle windows failed: {e}");
        }
        self.aggregator_mapping.add_totals(&totals);
        totals
    }

    fn kinesis_record(
        &mut self,
        shard: usize,
        pk: &str,
        data: Vec<u8>,
        now: i64,
    ) -> KinesisEventRecord {
        self.next_sequence += 1;
        let seq = format!(
            "4959033827149025660855969253836157109592157{:013}",
            self.next_sequence
        );
        let shard_id = format!("shardId-{shard:012}");
        KinesisEventRecord {
            kinesis: KinesisRecord {
                kinesis_schema_version: Some("1.0".into()),
                partition_key: pk.to_owned(),
                sequence_number: seq.clone(),
                data: data.into(),
                approximate_arrival_timestamp: now as f64 / 1e6,
                encryption_type: None,
            },
            event_id: Some(format!("{shard_id}:{seq}")),
            event_source: Some("aws:kinesis".into()),
            event_version: Some("1.0".into()),
            event_name: Some("aws:kinesis:record".into()),
            invoke_identity_arn: Some(
                "arn:aws:iam::000000000000:role/streamwatch-metrics-publisher".into(),
            ),
            aws_region: Some("us-east-1".into()),
            event_source_arn: Some(
                "arn:aws:kinesis:us-east-1:000000000000:stream/streamwatch-accidents".into(),
            ),
        }
    }

    /// Delivers the alerts written since the last call to the alerter, through the alerts
    /// table stream's event source mapping. Returns the messages it sent meanwhile.
    pub async fn deliver_alerts(&mut self) -> Vec<Message> {
        let before = self.alerter.notifier.published().len();
        let alerts = self.outbox.take_new();
        if alerts.is_empty() {
            return Vec::new();
        }
        let outbox = &self.outbox;
        let records = self.alert_stream.records(&alerts, |a| outbox.seq_of(&a.id));
        self.last_alert_records = records.clone();
        self.run_alerter(records, before).await
    }

    /// Delivers the last alert batch again, as Lambda does when an invocation's response
    /// is lost: the alerter must send nothing new.
    pub async fn redeliver_alerts(&mut self) -> Vec<Message> {
        let before = self.alerter.notifier.published().len();
        let records = self.last_alert_records.clone();
        self.run_alerter(records, before).await
    }

    async fn run_alerter(
        &mut self,
        records: Vec<aws_lambda_events::event::dynamodb::EventRecord>,
        before: usize,
    ) -> Vec<Message> {
        let deps = &self.alerter;
        let invocation = std::sync::atomic::AtomicU64::new(0);
        let reports = std::sync::Mutex::new(Vec::new());
        let reports = &reports;
        let stats = drain_shard(
            &records,
            |r: &aws_lambda_events::event::dynamodb::EventRecord| {
                r.change.sequence_number.as_deref().unwrap_or("")
            },
            ALERTER_MAPPING,
            |batch| {
                let n = invocation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    let event = alert_stream::event(batch);
                    let (response, report) =
                        alerter::process(deps, &event, &format!("local-{n}")).await;
                    if let Ok(mut r) = reports.lock() {
                        r.push(report);
                    }
                    Invocation::from(response)
                }
            },
        )
        .await;
        self.alerter_mapping.add(&stats);
        for r in reports.lock().map(|r| r.clone()).unwrap_or_default() {
            self.alerter_totals.grouped += r.grouped as u64;
            self.alerter_totals.silenced += r.silenced as u64;
        }
        let published = self.alerter.notifier.published();
        published[before..].to_vec()
    }
}

impl Pipeline {
    /// The alerter's schedule at simulated time `now` (deployed: `rate(1 minute)`): due alert
    /// groups sealed and sent, unsent notifications resumed. Returns the messages it sent.
    pub async fn alerter_schedule(&mut self, now: i64) -> Vec<Message> {
        self.clock.set(now);
        let before = self.alerter.notifier.published().len();
        let pass = self.alerter_totals.schedule_passes;
        let report = alerter::schedule_pass(&self.alerter, &format!("local-schedule-{pass}")).await;
        let t = &mut self.alerter_totals;
        t.schedule_passes += 1;
        t.group_batches_sealed += report.groups.sealed as u64;
        t.group_notifications += report.groups.sent as u64;
        self.alerter.notifier.published()[before..].to_vec()
    }

    /// Adds a silence, as `streamwatch silence add` writes it to the alerts table.
    pub async fn silence(&self, silence: &Silence) -> Result<(), PortError> {
        self.alerter.silences.store.add(silence).await
    }

    /// Notification records the alerter recorded as silenced, in decision order.
    pub fn silenced(&self) -> Vec<NotificationRecord> {
        let mut records: Vec<NotificationRecord> = self
            .alerter
            .store
            .notifications()
            .into_iter()
            .filter(is_silenced)
            .collect();
        records.sort_by(|a, b| {
            (a.decided_at_micros, a.event_time_micros, &a.alert_id).cmp(&(
                b.decided_at_micros,
                b.event_time_micros,
                &b.alert_id,
            ))
        });
        records
    }
}

impl MappingTotals {
    fn add_totals(&mut self, other: &MappingTotals) {
        self.invocations += other.invocations;
        self.retries += other.retries;
        self.bisections += other.bisections;
        self.given_up += other.given_up;
    }
}

/// A record as the raw layer receives it from the stream.
fn stream_record(r: &KinesisEventRecord) -> crate::archive::StreamRecord {
    crate::archive::StreamRecord {
        data: r.kinesis.data.0.clone().unwrap_or_default(),
        arrival: chrono::DateTime::from_timestamp_micros(
            (r.kinesis.approximate_arrival_timestamp * 1e6) as i64,
        )
        .unwrap_or_default(),
    }
}

fn shard_of(key: &str, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % shards as u64) as usize
}
