//! Chaos test of the window-aggregator: thousands of turbine change records (with MODIFYs
//! and duplicated change records) on three shards drained concurrently through the real
//! handler with the DynamoDB window store and alerts outbox, every AWS call going through
//! the fault proxy at 10–30 % faults, by the Lambda-like event source mapping (batches,
//! `batchItemFailures`, bisection on injected function errors); then the schedule closes
//! every window, under the same faults. The windows table must hold exactly the windows the
//! readings give (count, sum, min, max), and the alerts table exactly the alerts they imply:
//! no duplicates are allowed here, the design promises exactly-once window state.
//! `CHAOS_SEED`, `CHAOS_RECORDS`, `CHAOS_RATE` scale a run by hand.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Rng, Turbines};
use streamwatch_core::KinesisEvent;
use streamwatch_core::kinesis::KinesisEventRecord;
use streamwatch_emulator::esm::{Invocation, MappingConfig, drain_shard};
use streamwatch_tests::MotoServer;
use streamwatch_tests::faults::{
    Chaos, FaultProxy, SdkRetries, chaos_sdk_config, env_or, seed_from_env,
};
use window_aggregator::process_batch;

/// Totals over every invocation's report.
#[derive(Default, Debug)]
struct Totals {
    partial: u64,
    conflicts: u64,
    late: u64,
    malformed: u64,
}

async fn chaos_run(retries: SdkRetries, default_records: usize) {
    if std::env::var("CHAOS_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_test_writer()
            .try_init();
    }
    let seed = seed_from_env();
    let records: usize = env_or("CHAOS_RECORDS", default_records);
    let rate: f64 = env_or("CHAOS_RATE", 0.2);
    let function_errors: f64 = env_or("CHAOS_FUNCTION_ERRORS", 0.05);
    println!(
        "window-aggregator chaos: seed {seed} (CHAOS_SEED), {records} readings, fault rate {rate}, sdk retries {retries:?}"
    );
    let started = Instant::now();
    let truth: Turbines = common::turbines(&mut Rng::new(seed), records, 5, 20, 3);

    // GIVEN moto with the windows and alerts tables, the function's client through the proxy
    let moto = MotoServer::start();
    let direct = aws_sdk_dynamodb::Client::new(&streamwatch_tests::sdk_config(&moto).await);
    common::create_window_tables(&direct).await;
    let proxy = FaultProxy::start(
        &moto.endpoint(),
        Chaos::new(seed, rate).plan(),
        Duration::from_millis(1_500),
    )
    .await;
    let sdk = chaos_sdk_config(&proxy.endpoint(), retries).await;
    let deps = common::deps(&aws_sdk_dynamodb::Client::new(&sdk));

    // WHEN the three shards are drained concurrently (same turbines on every shard)
    let rng = Mutex::new(Rng::new(seed.rotate_left(23)));
    let totals = Mutex::new(Totals::default());
    let mapping = MappingConfig {
        batch_size: 100,
        maximum_retry_attempts: 100,
        bisect_on_error: true,
    };
    let drains = truth.shards.iter().map(|shard| {
        let (deps, rng, totals) = (&deps, &rng, &totals);
        drain_shard(
            shard,
            |r: &KinesisEventRecord| r.kinesis.sequence_number.as_str(),
            mapping,
            move |batch: Vec<KinesisEventRecord>| async move {
                let event = KinesisEvent { records: batch };
                let (response, report) = process_batch(deps, &event).await;
                {
                    let mut t = totals.lock().unwrap();
                    t.partial += u64::from(report.retry_from.is_some());
                    t.conflicts += report.conflicts as u64;
                    t.late += report.late as u64;
                    t.malformed += report.malformed as u64;
                }
                if rng.lock().unwrap().chance(function_errors) {
                    return Invocation::Error("injected function error".into());
                }
                Invocation::from(response)
            },
        )
    });
    let stats = futures::future::join_all(drains).await;
    let drained = started.elapsed();
    // AND the schedule closes every window, under the same faults. Its client retries
    // (SDK standard mode) in both runs: one pass closes every due window with ~5 calls
    // each, and without retries a pass over 100 windows at 20 % faults almost never
    // completes (each pass still closes some; the run just takes hundreds of passes).
    let schedule = common::deps(&aws_sdk_dynamodb::Client::new(
        &chaos_sdk_config(&proxy.endpoint(), SdkRetries::Standard).await,
    ));
    let (passes, failed_passes) = common::close_everything(&schedule).await;

    // THEN nothing was given up, skipped or late, and the tables hold exactly the truth
    let given_up: usize = stats.iter().map(|s| s.given_up.len()).sum();
    assert_eq!(given_up, 0, "records given up: {stats:?}");
    let totals = totals.into_inner().unwrap();
    assert_eq!((totals.malformed, totals.late), (0, 0), "{totals:?}");
    let (windows, alerts) = common::assert_tables_hold_truth(&direct, &truth).await;

    // AND every call the function made is one its role in template.yaml allows
    let actions = streamwatch_tests::assert_role_allows("WindowAggregatorRole", &proxy);
    assert!(actions.contains("dynamodb:PutItem"), "{actions:?}");

    let records_in: usize = truth.shards.iter().map(Vec::len).sum();
    let invocations: u64 = stats.iter().map(|s| s.invocations).sum();
    let retries_: u64 = stats.iter().map(|s| s.retries).sum();
    let bisections: u64 = stats.iter().map(|s| s.bisections).sum();
    println!(
        "window-aggregator chaos summary (sdk retries {retries:?}): {records_in} change records ({} readings, {} MODIFY, {} duplicated), \
         {windows} windows and {alerts} alerts exact; {invocations} invocations, {retries_} retries, {bisections} bisections, \
         {} batches reported batchItemFailures, {} version conflicts re-applied; schedule {passes} passes ({failed_passes} failed); \
         proxy: {}; duplicates observed 0; {:.1}s ({:.1}s draining)",
        truth.readings,
        truth.modifies,
        truth.duplicates,
        totals.partial,
        totals.conflicts,
        proxy.summary(),
        started.elapsed().as_secs_f64(),
        drained.as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_alerts_exact_under_faults_without_sdk_retries() {
    chaos_run(SdkRetries::Off, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_alerts_exact_under_faults_with_sdk_retries() {
    chaos_run(SdkRetries::Standard, 500).await;
}
