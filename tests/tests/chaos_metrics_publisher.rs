//! Chaos test of the metrics-publisher: thousands of accident records (KPL-aggregated on
//! one shard, plain on the other) through the real handler with its real CloudWatch sink
//! and DynamoDB alerts outbox, every AWS call going through the fault proxy at 10–30 %
//! faults, driven by the Lambda-like event source mapping (batches, `batchItemFailures`,
//! bisection on injected function errors). Afterwards moto is compared with ground truth
//! computed from the input: every alert exactly once; every metric series at least its
//! true sum, and the surplus within what the design documents as at-least-once
//! (redelivered records, and PutMetricData requests whose response was lost after moto
//! applied them). `CHAOS_SEED`, `CHAOS_RECORDS`, `CHAOS_RATE` scale a run by hand.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Rng;
use common::accidents::{NOW, accidents, samples_in_request, series_sum};
use metrics_publisher::{Config, Deps, process};
use streamwatch_adapters::DynamoDbAlertOutbox;
use streamwatch_adapters::alerts::alert_from_item;
use streamwatch_adapters::cloudwatch::{Backoff, CloudWatchSink};
use streamwatch_core::KinesisEvent;
use streamwatch_core::kinesis::KinesisEventRecord;
use streamwatch_emulator::esm::{Invocation, MappingConfig, drain_shard};
use streamwatch_tests::MotoServer;
use streamwatch_tests::faults::{
    Chaos, FaultProxy, SdkRetries, chaos_sdk_config, env_or, seed_from_env,
};

async fn chaos_run(retries: SdkRetries, default_records: usize) {
    let seed = seed_from_env();
    let records: usize = env_or("CHAOS_RECORDS", default_records);
    let rate: f64 = env_or("CHAOS_RATE", 0.2);
    let function_errors: f64 = env_or("CHAOS_FUNCTION_ERRORS", 0.05);
    println!(
        "metrics-publisher chaos: seed {seed} (CHAOS_SEED), {records} records, fault rate {rate}, sdk retries {retries:?}"
    );
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let input = accidents(&mut rng, records);

    // GIVEN moto with the alerts table, and the function's clients going through the proxy
    let moto = MotoServer::start();
    let direct = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&direct);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let proxy = FaultProxy::start(
        &moto.endpoint(),
        Chaos::new(seed, rate).plan(),
        Duration::from_millis(1_500),
    )
    .await;
    let sdk = chaos_sdk_config(&proxy.endpoint(), retries).await;
    let vars: HashMap<String, String> = [("ALERTS_TABLE", "alerts")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let deps = Deps {
        config: Config::from_source(&vars).expect("config"),
        sink: CloudWatchSink::new(&sdk).with_retry(Backoff {
            attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        }),
        outbox: DynamoDbAlertOutbox::new(aws_sdk_dynamodb::Client::new(&sdk), "alerts"),
    };

    // WHEN every shard is drained through the handler, concurrently
    let deliveries: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    let rng = Mutex::new(Rng::new(seed.rotate_left(17)));
    let retried_batches = Mutex::new(0u64);
    let mapping = MappingConfig {
        batch_size: 100,
        maximum_retry_attempts: 100,
        bisect_on_error: true,
    };
    let drains = input.shards.iter().map(|shard| {
        let (deps, deliveries, rng, retried_batches) = (&deps, &deliveries, &rng, &retried_batches);
        drain_shard(
            shard,
            |r: &KinesisEventRecord| r.kinesis.sequence_number.as_str(),
            mapping,
            move |batch: Vec<KinesisEventRecord>| async move {
                {
                    let mut d = deliveries.lock().unwrap();
                    for r in &batch {
                        *d.entry(r.kinesis.sequence_number.clone()).or_insert(0) += 1;
                    }
                }
                let event = KinesisEvent { records: batch };
                let (response, report) = process(deps, &event, NOW).await;
                if report.retry_from.is_some() {
                    *retried_batches.lock().unwrap() += 1;
                }
                // A function error after the work was done (a crash before the response
                // reached Lambda): the whole batch is retried, bisected.
                if rng.lock().unwrap().chance(function_errors) {
                    return Invocation::Error("injected function error".into());
                }
                Invocation::from(response)
            },
        )
    });
    let stats = futures::future::join_all(drains).await;

    // THEN every operation the function made is one its role in template.yaml allows
    // (moto does not enforce IAM; a missing grant would only show on AWS)
    let actions = streamwatch_tests::assert_role_allows("MetricsPublisherRole", &proxy);
    assert!(actions.contains("dynamodb:BatchWriteItem"), "{actions:?}");

    // THEN no record was given up
    let given_up: usize = stats.iter().map(|s| s.given_up.len()).sum();
    assert_eq!(given_up, 0, "records given up: {stats:?}");

    // AND the alerts table holds every expected alert exactly once, and nothing else
    let alert_ids: Vec<String> = common::scan_all(&ddb, "alerts")
        .await
        .iter()
        .map(|item| alert_from_item(item).expect("an alert item").id)
        .collect();
    let found: BTreeSet<String> = alert_ids.iter().cloned().collect();
    assert_eq!(found.len(), alert_ids.len(), "an alert stored twice");
    assert_eq!(
        found, input.alert_ids,
        "alerts differ from the ground truth"
    );

    // AND every series holds at least its true sum: nothing lost
    let cw = aws_sdk_cloudwatch::Client::new(&direct);
    let mut surplus = 0.0;
    let mut true_total = 0.0;
    for (dims, want) in &input.truth {
        let got = series_sum(&cw, dims).await;
        assert!(got >= *want, "series {dims:?}: {got} < true {want}");
        surplus += got - want;
        true_total += want;
    }

    // AND the surplus is what the documented at-least-once allows: samples of records
    // delivered again, and samples of accepted requests whose response was lost
    let deliveries = deliveries.into_inner().unwrap();
    let redelivered: f64 = deliveries
        .iter()
        .map(|(seq, n)| (n - 1) as f64 * *input.selected.get(seq).unwrap_or(&0) as f64)
        .sum();
    let lost = proxy.lost_requests();
    let lost_samples: f64 = lost
        .iter()
        .filter(|(op, _)| op == "PutMetricData")
        .map(|(_, body)| samples_in_request(body))
        .sum::<f64>()
        + 0.0;
    assert!(
        surplus <= redelivered + lost_samples,
        "surplus {surplus} beyond the documented bound: {redelivered} redelivered + {lost_samples} in lost responses"
    );

    let invocations: u64 = stats.iter().map(|s| s.invocations).sum();
    let retries_: u64 = stats.iter().map(|s| s.retries).sum();
    let bisections: u64 = stats.iter().map(|s| s.bisections).sum();
    println!(
        "metrics-publisher chaos summary (sdk retries {retries:?}): {} user records, {} alerts, {true_total} true samples in {} series; \
         {invocations} invocations, {retries_} retries, {bisections} bisections, {} batches reported batchItemFailures; \
         proxy: {}; duplicates: alerts 0, metric samples {surplus} (bound {redelivered} redelivered + {lost_samples} in {} lost PutMetricData responses); {:.1}s",
        input.user_records,
        input.alert_ids.len(),
        input.truth.len(),
        retried_batches.into_inner().unwrap(),
        proxy.summary(),
        lost.iter().filter(|(op, _)| op == "PutMetricData").count(),
        started.elapsed().as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_alerts_and_bounded_metric_duplicates_under_faults_without_sdk_retries() {
    chaos_run(SdkRetries::Off, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_alerts_and_bounded_metric_duplicates_under_faults_with_sdk_retries() {
    chaos_run(SdkRetries::Standard, 500).await;
}
