//! Function timeouts: invocations stopped mid-batch — the handler's future dropped at a
//! random await point, as Lambda kills a function that runs out of time, with whatever
//! request was in flight still reaching moto — and the batch replayed by the Lambda-like
//! event source mapping (a timeout is a function error: retried, bisected). Against moto:
//! window state and alerts stay exact; metric alerts stay exact and metric samples are
//! duplicated only for redelivered records (documented at-least-once); a notification is
//! duplicated at most once per stopped alerter invocation (documented: a stop between
//! SNS accepting a message and marking it sent). `CHAOS_SEED`, `CHAOS_RECORDS` scale it.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use alerter::ManualClock;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use common::Rng;
use common::alerts::alerter_settings;
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
use streamwatch_adapters::alerts::alert_from_item;
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_adapters::{CloudWatchSink, DynamoDbAlertOutbox};
use streamwatch_core::KinesisEvent;
use streamwatch_core::kinesis::KinesisEventRecord;
use streamwatch_emulator::esm::{Invocation, MappingConfig, drain_shard};
use streamwatch_tests::MotoServer;
use streamwatch_tests::faults::{env_or, seed_from_env};

/// Runs a future until it has returned `Pending` `budget` times, then drops it where it
/// stands: `None`. What Lambda does to a function that reaches its timeout.
struct StopAfter<F> {
    inner: Option<Pin<Box<F>>>,
    budget: u64,
}

impl<F: Future> Future for StopAfter<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if this.budget == 0 => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.budget -= 1;
                Poll::Pending
            }
        }
    }
}

/// Stops a share of invocations at a random await point.
struct Stopper {
    rng: Mutex<Rng>,
    share: f64,
    max_await_points: u64,
    stopped: AtomicU64,
    invocations: AtomicU64,
}

impl Stopper {
    fn new(seed: u64, share: f64, max_await_points: u64) -> Self {
        Self {
            rng: Mutex::new(Rng::new(seed)),
            share,
            max_await_points,
            stopped: AtomicU64::new(0),
            invocations: AtomicU64::new(0),
        }
    }

    /// Runs `f`, maybe stopping it; `None` when stopped.
    async fn run<F: Future>(&self, f: F) -> Option<F::Output> {
        self.invocations.fetch_add(1, Ordering::SeqCst);
        let budget = {
            let mut rng = self.rng.lock().unwrap();
            rng.chance(self.share)
                .then(|| rng.below(self.max_await_points))
        };
        let Some(budget) = budget else {
            return Some(f.await);
        };
        let out = StopAfter {
            inner: Some(Box::pin(f)),
            budget,
        }
        .await;
        if out.is_none() {
            self.stopped.fetch_add(1, Ordering::SeqCst);
        }
        out
    }

    fn summary(&self) -> String {
        format!(
            "{} invocations, {} stopped mid-batch",
            self.invocations.load(Ordering::SeqCst),
            self.stopped.load(Ordering::SeqCst)
        )
    }
}

fn failed_ids<I: IntoIterator<Item = Option<String>>>(ids: I) -> Invocation {
    Invocation::Response {
        failed: ids.into_iter().flatten().collect(),
    }
}

const MAPPING: MappingConfig = MappingConfig {
    batch_size: 100,
    maximum_retry_attempts: 100,
    bisect_on_error: true,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_state_exact_when_invocations_stop_mid_batch() {
    let seed = seed_from_env();
    let records: usize = env_or("CHAOS_RECORDS", 1_500);
    println!("timeouts/window-aggregator: seed {seed} (CHAOS_SEED), {records} readings");
    let started = Instant::now();
    let truth = common::turbines(&mut Rng::new(seed), records, 5, 20, 3);
    let moto = MotoServer::start();
    let ddb = aws_sdk_dynamodb::Client::new(&streamwatch_tests::sdk_config(&moto).await);
    common::create_window_tables(&ddb).await;
    let deps = common::deps(&ddb);
    let stopper = Stopper::new(seed.rotate_left(7), 0.3, 40);

    // WHEN three shards are drained concurrently and 30 % of invocations are stopped
    let drains = truth.shards.iter().map(|shard| {
        let (deps, stopper) = (&deps, &stopper);
        drain_shard(
            shard,
            |r: &KinesisEventRecord| r.kinesis.sequence_number.as_str(),
            MAPPING,
            move |batch: Vec<KinesisEventRecord>| async move {
                let event = KinesisEvent { records: batch };
                match stopper
                    .run(window_aggregator::process_batch(deps, &event))
                    .await
                {
                    None => Invocation::Error("timeout".into()),
                    Some((response, _)) => failed_ids(
                        response
                            .batch_item_failures
                            .into_iter()
                            .map(|f| f.item_identifier),
                    ),
                }
            },
        )
    });
    let stats = futures::future::join_all(drains).await;
    // AND the schedule closes everything, its passes stopped as often
    deps.clock
        .0
        .store(common::T0 + 24 * 60 * common::MIN, Ordering::SeqCst);
    let mut quiet = 0;
    let mut passes = 0;
    while quiet < 2 {
        passes += 1;
        assert!(passes < 1_000, "the schedule never finished");
        match stopper.run(window_aggregator::close_idle(&deps)).await {
            Some(Ok(r)) if r.windows_closed == 0 => quiet += 1,
            Some(Ok(_)) => quiet = 0,
            Some(Err(e)) => panic!("schedule failed without faults: {e}"),
            None => quiet = 0,
        }
    }

    // THEN the tables hold exactly the truth
    assert_eq!(stats.iter().map(|s| s.given_up.len()).sum::<usize>(), 0);
    let (windows, alerts) = common::assert_tables_hold_truth(&ddb, &truth).await;
    println!(
        "timeouts/window-aggregator summary: {} change records, {windows} windows and {alerts} alerts exact; {} (schedule {passes} passes); \
         {} retries, {} bisections; duplicates observed 0; {:.1}s",
        truth.shards.iter().map(Vec::len).sum::<usize>(),
        stopper.summary(),
        stats.iter().map(|s| s.retries).sum::<u64>(),
        stats.iter().map(|s| s.bisections).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_alerts_exact_and_samples_duplicated_only_for_redelivered_records() {
    use common::accidents::{NOW, accidents, series_sum};
    let seed = seed_from_env();
    let records: usize = env_or("CHAOS_RECORDS", 1_500);
    println!("timeouts/metrics-publisher: seed {seed} (CHAOS_SEED), {records} records");
    let started = Instant::now();
    let input = accidents(&mut Rng::new(seed), records);
    let moto = MotoServer::start();
    let sdk = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let vars: HashMap<String, String> = [("ALERTS_TABLE".to_owned(), "alerts".to_owned())]
        .into_iter()
        .collect();
    let deps = metrics_publisher::Deps {
        config: metrics_publisher::Config::from_source(&vars).expect("config"),
        sink: CloudWatchSink::new(&sdk),
        outbox: DynamoDbAlertOutbox::new(ddb.clone(), "alerts"),
    };
    let stopper = Stopper::new(seed.rotate_left(11), 0.3, 30);
    let deliveries: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());

    let drains = input.shards.iter().map(|shard| {
        let (deps, stopper, deliveries) = (&deps, &stopper, &deliveries);
        drain_shard(
            shard,
            |r: &KinesisEventRecord| r.kinesis.sequence_number.as_str(),
            MAPPING,
            move |batch: Vec<KinesisEventRecord>| async move {
                {
                    let mut d = deliveries.lock().unwrap();
                    for r in &batch {
                        *d.entry(r.kinesis.sequence_number.clone()).or_insert(0) += 1;
                    }
                }
                let event = KinesisEvent { records: batch };
                match stopper
                    .run(metrics_publisher::process(deps, &event, NOW))
                    .await
                {
                    None => Invocation::Error("timeout".into()),
                    Some((response, _)) => failed_ids(
                        response
                            .batch_item_failures
                            .into_iter()
                            .map(|f| f.item_identifier),
                    ),
                }
            },
        )
    });
    let stats = futures::future::join_all(drains).await;
    assert_eq!(stats.iter().map(|s| s.given_up.len()).sum::<usize>(), 0);

    // THEN every alert exactly once
    let alerts: Vec<String> = common::scan_all(&ddb, "alerts")
        .await
        .iter()
        .filter_map(alert_from_item)
        .map(|a| a.id)
        .collect();
    let set: BTreeSet<String> = alerts.iter().cloned().collect();
    assert_eq!(set.len(), alerts.len());
    assert_eq!(set, input.alert_ids);
    // AND no sample lost, the surplus within the redelivered records' samples
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let mut surplus = 0.0;
    for (dims, want) in &input.truth {
        let got = series_sum(&cw, dims).await;
        assert!(got >= *want, "series {dims:?}: {got} < {want}");
        surplus += got - want;
    }
    let redelivered: f64 = deliveries
        .into_inner()
        .unwrap()
        .iter()
        .map(|(seq, n)| (n - 1) as f64 * *input.selected.get(seq).unwrap_or(&0) as f64)
        .sum();
    assert!(
        surplus <= redelivered,
        "surplus {surplus} > {redelivered} redelivered samples"
    );
    println!(
        "timeouts/metrics-publisher summary: {} user records, {} alerts exact; {}; {} retries, {} bisections; \
         duplicated metric samples {surplus} (bound: {redelivered} samples redelivered); {:.1}s",
        input.user_records,
        set.len(),
        stopper.summary(),
        stats.iter().map(|s| s.retries).sum::<u64>(),
        stats.iter().map(|s| s.bisections).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_sent_and_duplicated_at_most_once_per_stopped_invocation() {
    use common::alerts::{scenario, sent_alert_ids};
    let seed = seed_from_env();
    let records: usize = env_or("CHAOS_RECORDS", 200);
    println!("timeouts/alerter: seed {seed} (CHAOS_SEED), {records} alert records");
    let started = Instant::now();
    let scenario = scenario(&mut Rng::new(seed), records);
    let moto = MotoServer::start();
    let sdk = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic = sns
        .create_topic()
        .name("alerts")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    let deps = alerter::Deps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: DynamoDbAlertStateStore::new(ddb.clone(), "alerts"),
        notifier: SnsNotifier::new(sns, topic),
        clock: ManualClock::new(1_800_000_000_000_000),
        settings: alerter_settings(),
    };
    // An invocation of 10 alerts passes ~120 await points (about six calls per alert):
    // stop anywhere in the batch.
    let stopper = Stopper::new(seed.rotate_left(13), 0.4, 150);
    let counter = AtomicU64::new(0);
    let drains = scenario.shards.iter().map(|shard| {
        let (deps, stopper, counter) = (&deps, &stopper, &counter);
        drain_shard(
            shard,
            |r: &EventRecord| r.change.sequence_number.as_deref().unwrap_or(""),
            MappingConfig {
                batch_size: 10,
                ..MAPPING
            },
            move |batch: Vec<EventRecord>| async move {
                // The retry comes after the stopped invocation's claim lease ran out.
                deps.clock.advance(Duration::from_secs(31));
                let invocation = format!("inv-{}", counter.fetch_add(1, Ordering::SeqCst));
                let mut event = Event::default();
                event.records = batch;
                match stopper
                    .run(alerter::process(deps, &event, &invocation))
                    .await
                {
                    None => Invocation::Error("timeout".into()),
                    Some((response, _)) => failed_ids(
                        response
                            .batch_item_failures
                            .into_iter()
                            .map(|f| f.item_identifier),
                    ),
                }
            },
        )
    });
    // One shard after the other: a cancelled TransactWriteItems in moto restores a snapshot
    // of the whole table, erasing what a concurrent invocation wrote meanwhile (see
    // concurrency_moto.rs); real DynamoDB does not, but moto would fail this test for it.
    let mut stats = Vec::new();
    for drain in drains {
        stats.push(drain.await);
    }
    assert_eq!(stats.iter().map(|s| s.given_up.len()).sum::<usize>(), 0);

    let sent = sent_alert_ids(&moto);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for id in &sent {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    let got: BTreeSet<String> = counts.keys().cloned().collect();
    assert_eq!(got, scenario.notify, "notifications differ from the truth");
    let duplicates: u64 = counts.values().map(|n| n - 1).sum();
    let stopped = stopper.stopped.load(Ordering::SeqCst);
    assert!(
        duplicates <= stopped,
        "{duplicates} duplicate notifications > {stopped} stopped invocations"
    );
    println!(
        "timeouts/alerter summary: {} alert records, {} notifications expected and sent; {}; {} retries, {} bisections; \
         duplicate notifications {duplicates} (bound: one per stopped invocation); {:.1}s",
        scenario.alerts,
        scenario.notify.len(),
        stopper.summary(),
        stats.iter().map(|s| s.retries).sum::<u64>(),
        stats.iter().map(|s| s.bisections).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
}
