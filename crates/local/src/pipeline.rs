//! The functions wired together on embedded backends: the real handlers of the
//! metrics-publisher and the alerter (and the window-aggregator), fed real Lambda event
//! envelopes through the embedded event source mapping, sharing one alerts outbox and one
//! metric sink as the deployed functions share the alerts table and CloudWatch.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use std::sync::atomic::{AtomicI64, Ordering};

use alerter::{Settings, SystemClock};
use streamwatch_adapters::alert_state::EmbeddedAlertStateStore;
use streamwatch_adapters::shards::EmbeddedShardProbe;
use streamwatch_adapters::sns::EmbeddedNotifier;
use streamwatch_adapters::windows::EmbeddedWindowStore;
use streamwatch_adapters::{EmbeddedAlertOutbox, EmbeddedMetricSink};
use streamwatch_core::KinesisEvent;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use streamwatch_core::kpl::{Aggregator, KINESIS_MAX_RECORD_BYTES};
use streamwatch_core::notify::Message;
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
pub type AlerterDeps = alerter::Deps<EmbeddedAlertStateStore, EmbeddedNotifier, SystemClock>;
pub type AggregatorDeps = window_aggregator::Deps<
    EmbeddedWindowStore,
    Arc<EmbeddedAlertOutbox>,
    EmbeddedShardProbe,
    SimClock,
>;

/// Simulated wall-clock time for the window-aggregator's schedule: the demo runs thirty
/// minutes of event time in seconds.
#[derive(Debug, Default, Clone)]
pub struct SimClock(pub Arc<AtomicI64>);

impl window_aggregator::Clock for SimClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
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
        let alerter = alerter::Deps {
            grouping: alerter::Grouping::off(),
            silences: alerter::Silences::off(),
            store: EmbeddedAlertStateStore::with_outbox(outbox.clone()),
            notifier: EmbeddedNotifier::new(),
            clock: SystemClock,
            settings: Settings {
                repeat_interval: std::time::Duration::from_secs(repeat_interval_secs),
                ..Settings::default()
            },
        };
        let clock = SimClock::default();
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
        self.clock.0.store(now, Ordering::SeqCst);
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
                    let (response, _) = alerter::process(deps, &event, &format!("local-{n}")).await;
                    Invocation::from(response)
                }
            },
        )
        .await;
        self.alerter_mapping.add(&stats);
        let published = self.alerter.notifier.published();
        published[before..].to_vec()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Accidents from the reference fixture through the real metrics-publisher and alerter:
    /// severity-4 accidents become exactly one notification each, metrics land in the sink.
    #[tokio::test]
    async fn accidents_flow_to_metrics_and_notifications() {
        let event: KinesisEvent = serde_json::from_slice(include_bytes!(
            "../../../tests/fixtures/kinesis-accidents-plain.json"
        ))
        .unwrap();
        let payloads: Vec<(String, Vec<u8>)> = event
            .records
            .iter()
            .map(|r| {
                (
                    r.kinesis.partition_key.clone(),
                    r.kinesis.data.0.clone().unwrap(),
                )
            })
            .collect();
        let severe = payloads
            .iter()
            .filter(|(_, d)| {
                serde_json::from_slice::<serde_json::Value>(d).unwrap()["Severity"].as_i64()
                    >= Some(4)
            })
            .count();
        let mut p = Pipeline::new(900).unwrap();
        // 2026-11-21T12:30Z: the fixture's Txn_Timestamps are within CloudWatch's window.
        let now = 1_795_264_200_000_000;
        let totals = p.replay_accidents(&payloads, 2, now).await;
        assert_eq!(totals.given_up, 0);
        assert_eq!(p.accident_records, payloads.len() as u64);
        let sent = p.deliver_alerts().await;
        assert_eq!(
            sent.len(),
            severe,
            "one notification per severity-4 accident"
        );
        assert!(sent.iter().all(|m| m.subject.starts_with("[ALERT]")));
        // Nothing new in the outbox: nothing more to send.
        assert!(p.deliver_alerts().await.is_empty());
        assert!(p.metric_requests >= 1);
    }
}

#[cfg(test)]
mod turbine_tests {
    use super::*;
    use crate::readings::{Imperfections, ReadingsStream};
    use crate::scenario::TurbineScenario;
    use std::collections::BTreeMap;
    use streamwatch_core::notify::NotificationKind;

    const T0: i64 = 1_795_262_400_000_000;

    /// The default story through the real window-aggregator and alerter, with duplicated and
    /// reordered change records: the notifications equal an independent computation from
    /// the generated readings (per-minute averages, the storm rule with a 15-minute repeat).
    #[tokio::test]
    async fn turbine_story_notifies_exactly_what_the_readings_say() {
        let scenario = TurbineScenario::default_story(5, 30, 25, 70, 60.0, 7, T0);
        let readings = scenario.readings();
        let mut stream = ReadingsStream::new(4, Imperfections::default(), 7);
        let mut p = Pipeline::new(900).unwrap();
        let mut sent = Vec::new();
        let tick = 10_000_000;
        let mut next = 0;
        let mut t = T0 + tick;
        while next < readings.len() {
            while next < readings.len() && readings[next].event_time_micros < t {
                stream.put(&readings[next]);
                next += 1;
            }
            let shards = stream.take();
            // Every batch delivered twice, as after a lost response: nothing may double.
            p.process_readings(shards.clone(), t + 1_000_000).await;
            p.process_readings(shards, t + 1_000_000).await;
            sent.extend(p.deliver_alerts().await);
            sent.extend(p.redeliver_alerts().await);
            t += tick;
        }
        // Time passes: every remaining window closes by the schedule.
        p.process_readings(Vec::new(), t + 10 * 60_000_000).await;
        sent.extend(p.deliver_alerts().await);
        assert!(stream.duplicates_injected > 0);

        // Independent computation.
        let mut sums: BTreeMap<(String, i64), (f64, f64)> = BTreeMap::new();
        for r in &readings {
            let e = sums
                .entry((
                    r.device.clone(),
                    (r.event_time_micros - T0).div_euclid(60_000_000),
                ))
                .or_default();
            e.0 += r.value as f64;
            e.1 += 1.0;
        }
        let mut expected = Vec::new();
        let mut state: BTreeMap<String, (bool, i64)> = BTreeMap::new();
        for ((device, minute), (sum, n)) in &sums {
            let end = T0 + (minute + 1) * 60_000_000;
            let (firing, last) = state.get(device).copied().unwrap_or((false, i64::MIN));
            if sum / n > 60.0 {
                if !firing {
                    expected.push((device.clone(), "firing"));
                    state.insert(device.clone(), (true, end));
                } else if end - last >= 900_000_000 {
                    expected.push((device.clone(), "reminder"));
                    state.insert(device.clone(), (true, end));
                }
            } else if firing {
                expected.push((device.clone(), "resolved"));
                state.insert(device.clone(), (false, last));
            }
        }
        let mut got: Vec<(String, &str)> = sent
            .iter()
            .map(|m| {
                let kind = match m.kind {
                    NotificationKind::Firing => "firing",
                    NotificationKind::Reminder => "reminder",
                    NotificationKind::Resolved => "resolved",
                    NotificationKind::Event => "event",
                };
                (m.attributes["key"].clone(), kind)
            })
            .collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
        assert!(
            expected.iter().any(|(_, k)| *k == "reminder"),
            "the story has a reminder"
        );
        assert!(expected.iter().any(|(_, k)| *k == "resolved"));
    }
}
