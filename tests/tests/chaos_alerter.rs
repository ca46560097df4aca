//! Chaos test of the alerter: hundreds of alert records (turbine firing episodes with their
//! resolutions, and accident alerts) on two stream shards drained one after the other through the
//! real handler with the DynamoDB state store and the SNS notifier, every AWS call going
//! through the fault proxy at 10–30 % faults, by the Lambda-like event source mapping.
//! Afterwards the messages moto's SNS topic holds are compared with the notifications the
//! alerts imply (computed here: the first firing of an episode, its resolution, every
//! accident): every one present, nothing else sent, and duplicates only where the design
//! documents at-least-once — SNS accepted a Publish whose response was lost, or a message
//! went out and marking it sent failed — counted against that bound.
//! `CHAOS_SEED`, `CHAOS_RECORDS`, `CHAOS_RATE` scale a run by hand.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alerter::{Deps, ManualClock, process};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use common::Rng;
use common::alerts::{alerter_settings, scenario, sent_alert_ids};
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_emulator::esm::{Invocation, MappingConfig, drain_shard};
use streamwatch_tests::MotoServer;
use streamwatch_tests::faults::{
    Chaos, Fault, FaultProxy, SdkRetries, chaos_sdk_config, env_or, seed_from_env,
};

async fn chaos_run(retries: SdkRetries, default_records: usize) {
    let seed = seed_from_env();
    let records: usize = env_or("CHAOS_RECORDS", default_records);
    let rate: f64 = env_or("CHAOS_RATE", 0.2);
    let function_errors: f64 = env_or("CHAOS_FUNCTION_ERRORS", 0.05);
    println!(
        "alerter chaos: seed {seed} (CHAOS_SEED), {records} alert records, fault rate {rate}, sdk retries {retries:?}"
    );
    let started = Instant::now();
    let scenario = scenario(&mut Rng::new(seed), records);

    // GIVEN moto with the alerts table and topic, the function's clients through the proxy
    let moto = MotoServer::start();
    let direct = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&direct);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let topic = aws_sdk_sns::Client::new(&direct)
        .create_topic()
        .name("alerts")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("topic arn");
    let proxy = FaultProxy::start(
        &moto.endpoint(),
        Chaos::new(seed, rate).plan(),
        Duration::from_millis(1_500),
    )
    .await;
    let sdk = chaos_sdk_config(&proxy.endpoint(), retries).await;
    let deps = Deps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: DynamoDbAlertStateStore::new(aws_sdk_dynamodb::Client::new(&sdk), "alerts"),
        notifier: SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), topic),
        clock: ManualClock::new(1_800_000_000_000_000),
        settings: alerter_settings(),
    };

    // WHEN both shards are drained. Lambda's retry of a batch comes after the claim lease of
    // a failed attempt has run out: the clock moves past it per invocation.
    let rng = Mutex::new(Rng::new(seed.rotate_left(29)));
    let counter = AtomicU64::new(0);
    let totals = Mutex::new((0u64, 0u64, 0u64)); // (batches failed, duplicates seen, lease lost)
    let mapping = MappingConfig {
        batch_size: 50,
        maximum_retry_attempts: 100,
        bisect_on_error: true,
    };
    let drains = scenario.shards.iter().map(|shard| {
        let (deps, rng, counter, totals) = (&deps, &rng, &counter, &totals);
        drain_shard(
            shard,
            |r: &EventRecord| r.change.sequence_number.as_deref().unwrap_or(""),
            mapping,
            move |batch: Vec<EventRecord>| async move {
                deps.clock.advance(Duration::from_secs(31));
                let invocation = format!("inv-{}", counter.fetch_add(1, Ordering::SeqCst));
                let mut event = Event::default();
                event.records = batch;
                let (response, report) = process(deps, &event, &invocation).await;
                {
                    let mut t = totals.lock().unwrap();
                    t.0 += report.failed as u64;
                    t.1 += report.duplicates as u64;
                    t.2 += report.lease_lost as u64;
                }
                if rng.lock().unwrap().chance(function_errors) {
                    return Invocation::Error("injected function error".into());
                }
                Invocation::from(response)
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

    // THEN nothing was given up
    let given_up: usize = stats.iter().map(|s| s.given_up.len()).sum();
    assert_eq!(given_up, 0, "records given up: {stats:?}");

    // AND every expected notification went out, nothing else did
    let sent = sent_alert_ids(&moto);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for id in &sent {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    let got: BTreeSet<String> = counts.keys().cloned().collect();
    let missing: Vec<_> = scenario.notify.difference(&got).collect();
    let unexpected: Vec<_> = got.difference(&scenario.notify).collect();
    assert!(missing.is_empty(), "notifications never sent: {missing:?}");
    assert!(
        unexpected.is_empty(),
        "notifications that should not be sent: {unexpected:?}"
    );

    // AND duplicates stay within the documented at-least-once cases: a Publish SNS applied
    // whose response was lost, or a mark-sent that failed for good (an UpdateItem fault
    // other than a lost response; counting every such fault is an upper bound)
    let duplicates: u64 = counts.values().map(|n| n - 1).sum();
    let lost_publish = proxy
        .lost_requests()
        .iter()
        .filter(|(op, _)| op == "Publish")
        .count() as u64;
    let update_faults: u64 = proxy
        .counts()
        .iter()
        .filter(|((op, f), _)| op == "UpdateItem" && *f != Fault::Pass && *f != Fault::LoseResponse)
        .map(|(_, n)| n)
        .sum();
    assert!(
        duplicates <= lost_publish + update_faults,
        "{duplicates} duplicate notifications beyond the documented bound: {lost_publish} lost Publish responses + {update_faults} failed UpdateItem calls"
    );

    // AND every call the function made — its stream batches and its schedule's recovery
    // pass (which queries the pending-notifications index) — is one its role in
    // template.yaml allows, and every grant is used
    let _ = alerter::resume(&deps, "chaos-recovery").await;
    let actions = streamwatch_tests::assert_role_allows("AlerterRole", &proxy);
    assert!(actions.contains("dynamodb:Query"), "{actions:?}");
    assert!(actions.contains("sns:Publish"), "{actions:?}");

    let invocations: u64 = stats.iter().map(|s| s.invocations).sum();
    let retries_: u64 = stats.iter().map(|s| s.retries).sum();
    let bisections: u64 = stats.iter().map(|s| s.bisections).sum();
    let (failed, seen_before, lease_lost) = totals.into_inner().unwrap();
    println!(
        "alerter chaos summary (sdk retries {retries:?}): {} alert records, {} notifications expected, {} sent; \
         {invocations} invocations, {retries_} retries, {bisections} bisections, {failed} alerts failed and retried, \
         {seen_before} redelivered alerts recognised, {lease_lost} lease-lost warnings; proxy: {}; \
         duplicate notifications {duplicates} (bound {lost_publish} lost Publish responses + {update_faults} failed UpdateItem); {:.1}s",
        scenario.alerts,
        scenario.notify.len(),
        sent.len(),
        proxy.summary(),
        started.elapsed().as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notification_sent_duplicates_bounded_without_sdk_retries() {
    chaos_run(SdkRetries::Off, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notification_sent_duplicates_bounded_with_sdk_retries() {
    chaos_run(SdkRetries::Standard, 150).await;
}
