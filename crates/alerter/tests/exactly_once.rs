//! One notification per alert under what Lambda and the world do: redelivered batches,
//! concurrent invocations, crashes between publish and mark, transient failures; and the
//! storm of a key that keeps firing.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use alerter::{Deps, ManualClock, process};
use common::*;
use proptest::prelude::*;
use streamwatch_core::AlertKind;
use streamwatch_core::notify::{KeyStatus, NotificationKind, NotificationStatus, StoredDecision};

fn kinds(deps: &TestDeps) -> Vec<NotificationKind> {
    deps.notifier.published().iter().map(|m| m.kind).collect()
}

#[tokio::test]
async fn the_same_batch_delivered_three_times_notifies_once_per_alert() {
    let deps = deps();
    let batch = batch(&[FIRING, ACCIDENT, IGNORED, REMINDER, RESOLVED]);
    let mut reports = Vec::new();
    for attempt in 0..3 {
        let (response, report) = process(&deps, &batch, &format!("inv-{attempt}")).await;
        assert!(response.batch_item_failures.is_empty());
        reports.push(report);
    }
    use NotificationKind::*;
    assert_eq!(kinds(&deps), [Firing, Event, Reminder, Resolved]);
    assert_eq!(reports[0].sent(), 4);
    for again in &reports[1..] {
        assert_eq!(
            (again.sent(), again.duplicates, again.suppressed),
            (0, 4, 0)
        );
    }
    // One record per alert, each sent once, claimed once.
    let records = deps.store.inner.notifications();
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|r| r.attempts == 1 && matches!(r.status, NotificationStatus::Sent { .. }))
    );
}

#[tokio::test]
async fn two_concurrent_invocations_over_the_same_alert_notify_once() {
    // The winner's publish takes 200 ms; the loser waits for its claim (up to 5 s) and
    // then finds the notification sent.
    let mut deps = deps();
    deps.notifier.delay = Duration::from_millis(200);
    deps.settings.claim_wait = Duration::from_secs(5);
    let event = event(FIRING);
    let ((r1, a), (r2, b)) = tokio::join!(
        process(&deps, &event, "inv-a"),
        process(&deps, &event, "inv-b")
    );

    assert!(r1.batch_item_failures.is_empty() && r2.batch_item_failures.is_empty());
    assert_eq!(deps.notifier.published().len(), 1);
    assert_eq!(deps.notifier.calls.load(Ordering::SeqCst), 1);
    assert_eq!((a.sent() + b.sent(), a.duplicates + b.duplicates), (1, 1));
    let records = deps.store.inner.notifications();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].attempts, 1);
}

#[tokio::test]
async fn a_concurrent_invocation_that_cannot_wait_reports_the_record_for_a_retry() {
    let deps = deps();
    deps.notifier.hold.store(true, Ordering::SeqCst);
    let event = batch(&[FIRING, ACCIDENT]);
    let sequences = sequence_numbers(&event);
    let ((r1, _), (r2, _)) = tokio::join!(process(&deps, &event, "inv-a"), async {
        // Start once inv-a holds the claim on the first alert (it is inside Publish), and
        // let it go on only when inv-b is done: signals, not sleeps, order the two.
        deps.notifier.entered.notified().await;
        let done = process(&deps, &event, "inv-b").await;
        deps.notifier.hold_released();
        done
    });

    assert!(r1.batch_item_failures.is_empty());
    let failed: Vec<_> = r2
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, [sequences[0].clone()]);
    // Lambda's retry finds both sent.
    let (r3, retry) = process(&deps, &event, "inv-c").await;
    assert!(r3.batch_item_failures.is_empty());
    assert_eq!(retry.duplicates, 2);
    assert_eq!(deps.notifier.published().len(), 2);
}

#[tokio::test]
async fn a_crash_between_publish_and_mark_resends_once_after_the_lease_expires() {
    let deps = deps();
    // "Crash": SNS accepted the message, but `sent` is never written (all attempts fail).
    deps.store.fail_mark.store(3, Ordering::SeqCst);
    let event = event(FIRING);
    let sequence = sequence_numbers(&event)[0].clone();

    let (r1, _) = process(&deps, &event, "inv-1").await;
    assert_eq!(
        r1.batch_item_failures[0].item_identifier.as_deref(),
        Some(sequence.as_str())
    );
    assert_eq!(deps.notifier.published().len(), 1);

    // Lambda retries at once: the claim is still leased to the dead invocation.
    let (r2, _) = process(&deps, &event, "inv-2").await;
    assert_eq!(r2.batch_item_failures.len(), 1);
    assert_eq!(
        deps.notifier.published().len(),
        1,
        "no re-send within the lease"
    );

    // After the lease (30 s), the next delivery presumes inv-1 dead and sends again:
    // at-least-once across crashes.
    deps.clock.advance(Duration::from_secs(31));
    let (r3, report) = process(&deps, &event, "inv-3").await;
    assert!(r3.batch_item_failures.is_empty());
    assert_eq!(report.firing, 1);
    assert_eq!(deps.notifier.published().len(), 2);
    let published = deps.notifier.published();
    assert_eq!(published[0], published[1], "a re-send is the same message");

    // From then on it is sent and stays sent.
    deps.clock.advance(Duration::from_secs(3600));
    let (r4, report) = process(&deps, &event, "inv-4").await;
    assert!(r4.batch_item_failures.is_empty());
    assert_eq!(report.duplicates, 1);
    assert_eq!(deps.notifier.published().len(), 2);
    let record = &deps.store.inner.notifications()[0];
    assert_eq!(record.attempts, 2);
    assert!(
        matches!(&record.status, NotificationStatus::Sent { message_id, .. } if message_id == "embedded-2")
    );
}

#[tokio::test]
async fn transient_publish_failures_are_retried_within_the_invocation() {
    let deps = deps();
    deps.notifier.fail_next.store(2, Ordering::SeqCst);
    let (response, report) = process(&deps, &event(FIRING), "inv-1").await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.firing, 1);
    assert_eq!(deps.notifier.calls.load(Ordering::SeqCst), 3);
    assert_eq!(deps.notifier.published().len(), 1);
    // Each retry renewed the claim.
    assert_eq!(deps.store.inner.notifications()[0].attempts, 3);
}

#[tokio::test]
async fn persistent_failures_report_the_first_unsent_alert_and_the_retry_sends_each_once() {
    let deps = deps();
    deps.notifier.fail_next.store(3, Ordering::SeqCst);
    let event = batch(&[ACCIDENT, FIRING, REMINDER]);
    let sequences = sequence_numbers(&event);

    let (response, report) = process(&deps, &event, "inv-1").await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, [sequences[0].clone()]);
    assert_eq!((report.failed, report.not_processed), (1, 2));
    assert!(deps.notifier.published().is_empty());
    // The failed publish released its claim: the retry need not wait for the lease.
    assert_eq!(
        deps.store.inner.notifications()[0].status,
        NotificationStatus::Pending
    );

    // Lambda redelivers from the reported record on (here: the whole batch).
    let (response, report) = process(&deps, &event, "inv-2").await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.sent(), 3);
    use NotificationKind::*;
    assert_eq!(kinds(&deps), [Event, Firing, Reminder]);
}

#[tokio::test]
async fn a_transient_failure_recording_the_decision_is_retried() {
    let deps = deps();
    deps.store.fail_record.store(2, Ordering::SeqCst);
    let (response, report) = process(&deps, &event(FIRING), "inv-1").await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.firing, 1);
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried_but_left_pending_for_recovery() {
    let mut deps = deps();
    deps.notifier.permanent = true;
    deps.notifier.fail_next.store(1, Ordering::SeqCst);
    let event = batch(&[ACCIDENT, FIRING]);
    let (response, report) = process(&deps, &event, "inv-1").await;
    // Lambda's retries cannot help (a missing topic, a disabled key): the batch goes on.
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.unsent, report.firing), (1, 1));
    assert_eq!(deps.notifier.calls.load(Ordering::SeqCst), 2);
    let accident = deps
        .store
        .inner
        .notifications()
        .into_iter()
        .find(|r| r.alert_kind == AlertKind::Event)
        .unwrap();
    assert_eq!(accident.status, NotificationStatus::Pending);
    // A redelivery of the record claims and sends it; so does recovery (tests/recovery.rs).
    deps.clock.advance(Duration::from_secs(60));
    let (_, report) = process(&deps, &event, "inv-2").await;
    assert_eq!(
        report.sent(),
        1,
        "the pending one is claimable by a redelivery too"
    );
    assert_eq!(deps.notifier.published().len(), 2);
}

#[tokio::test]
async fn concurrent_alerts_of_one_key_decide_against_each_others_state() {
    // Windows 15 and 16 are both 15 min after the first message; read concurrently, both
    // would be reminders. The conditional state write makes one of them decide again.
    let mut deps = deps();
    deps.store.yield_after_state = true;
    process(&deps, &event(FIRING), "inv-0").await;
    let w15 = stream_event(&[window_alert("device3", 15, AlertKind::Firing)], 10);
    let w16 = stream_event(&[window_alert("device3", 16, AlertKind::Firing)], 20);
    let ((r1, a), (r2, b)) =
        tokio::join!(process(&deps, &w15, "inv-a"), process(&deps, &w16, "inv-b"));

    assert!(r1.batch_item_failures.is_empty() && r2.batch_item_failures.is_empty());
    assert_eq!(
        (a.reminders + b.reminders, a.suppressed + b.suppressed),
        (1, 1)
    );
    use NotificationKind::*;
    assert_eq!(kinds(&deps), [Firing, Reminder]);
    assert_eq!(deps.store.inner.states()[0].version, 3);
}

fn storm(key: &str, windows: i64) -> Vec<streamwatch_core::AlertRecord> {
    let mut alerts: Vec<_> = (0..windows)
        .map(|i| window_alert(key, i, AlertKind::Firing))
        .collect();
    alerts.push(window_alert(key, windows, AlertKind::Resolved));
    alerts
}

#[tokio::test]
async fn a_key_firing_for_sixty_windows_sends_one_firing_three_reminders_one_resolved() {
    // 60 consecutive one-minute windows over the threshold, then one back under it, in
    // Lambda-sized batches, each batch delivered twice.
    let deps = deps();
    let alerts = storm("device3", 60);
    for (n, chunk) in alerts.chunks(7).enumerate() {
        let event = stream_event(chunk, n as u64 * 100);
        for attempt in 0..2 {
            let (response, _) = process(&deps, &event, &format!("inv-{n}-{attempt}")).await;
            assert!(response.batch_item_failures.is_empty());
        }
    }

    use NotificationKind::*;
    assert_eq!(
        kinds(&deps),
        [Firing, Reminder, Reminder, Reminder, Resolved]
    );
    // Reminders at windows 15, 30, 45: each 15 min (event time) after the previous message.
    let subjects = deps.notifier.subjects();
    assert_eq!(
        subjects[1],
        "[REMINDER] Wind speed avg 72.4 mph > 60 on device3 (firing for 15 min)"
    );
    assert_eq!(
        subjects[3],
        "[REMINDER] Wind speed avg 72.4 mph > 60 on device3 (firing for 45 min)"
    );
    assert_eq!(
        subjects[4],
        "[RESOLVED] Wind speed avg 41.5 mph back under 60 on device3"
    );
    let records = deps.store.inner.notifications();
    assert_eq!(records.len(), 61);
    let suppressed: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            StoredDecision::Suppressed(reason) => Some(reason),
            StoredDecision::Notify(_) => None,
        })
        .collect();
    assert_eq!(suppressed.len(), 56);
    assert!(
        suppressed
            .iter()
            .all(|r| r.starts_with("within repeat interval"))
    );
    let state = &deps.store.inner.states()[0];
    assert_eq!(state.status, KeyStatus::Resolved);
    assert_eq!(state.version, 61);
}

#[tokio::test]
async fn storms_of_two_keys_on_two_concurrent_shards_stay_independent() {
    let deps = Deps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        clock: ManualClock::new(0),
        ..deps()
    };
    let a = storm("device1", 60);
    let b = storm("device2", 60);
    let run = |alerts: Vec<streamwatch_core::AlertRecord>, shard: u64| {
        let deps = &deps;
        async move {
            for (n, chunk) in alerts.chunks(10).enumerate() {
                let event = stream_event(chunk, shard * 10_000 + n as u64 * 100);
                let (response, _) = process(deps, &event, &format!("shard{shard}-{n}")).await;
                assert!(response.batch_item_failures.is_empty());
                tokio::task::yield_now().await;
            }
        }
    };
    tokio::join!(run(a, 1), run(b, 2));
    let published = deps.notifier.published();
    for key in ["device1", "device2"] {
        let kinds: Vec<_> = published
            .iter()
            .filter(|m| m.attributes["key"] == key)
            .map(|m| m.kind)
            .collect();
        use NotificationKind::*;
        assert_eq!(
            kinds,
            [Firing, Reminder, Reminder, Reminder, Resolved],
            "{key}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever Lambda does with one shard's records (any batch sizes, any redeliveries
    /// of earlier batches), each alert is published at most once and the storm sends exactly
    /// 1 firing + 3 reminders + 1 resolved. (Any interleaving of a key's alerts across
    /// shards: `tests/order.rs`.)
    #[test]
    fn no_schedule_sends_an_alert_twice(
        cuts in proptest::collection::vec(1usize..12, 1..20),
        redeliver in proptest::collection::vec(any::<bool>(), 20),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let deps = deps();
            let alerts = storm("device3", 60);
            let mut start = 0;
            let mut n = 0;
            let mut previous: Option<aws_lambda_events::event::dynamodb::Event> = None;
            while start < alerts.len() {
                let size = cuts[n % cuts.len()].min(alerts.len() - start);
                let event = stream_event(&alerts[start..start + size], start as u64);
                let (response, _) = process(&deps, &event, &format!("inv-{n}")).await;
                prop_assert!(response.batch_item_failures.is_empty());
                if redeliver[n % redeliver.len()] {
                    if let Some(previous) = &previous {
                        process(&deps, previous, &format!("inv-{n}-again")).await;
                    }
                }
                previous = Some(event);
                start += size;
                n += 1;
            }
            let published = deps.notifier.published();
            let mut ids: Vec<_> = published.iter().map(|m| m.notification_id.clone()).collect();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), published.len(), "an alert was published twice");
            let count = |k| published.iter().filter(|m| m.kind == k).count();
            use NotificationKind::*;
            prop_assert_eq!((count(Firing), count(Reminder), count(Resolved)), (1, 3, 1));
            prop_assert_eq!(deps.store.inner.notifications().len(), 61);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn the_lambda_handler_answers_with_batch_item_failures_by_sequence_number() {
    let deps = deps();
    deps.notifier.fail_next.store(3, Ordering::SeqCst);
    let event = batch(&[IGNORED, FIRING, ACCIDENT]);
    let mut context = lambda_runtime::Context::default();
    context.request_id = "req-1".into();
    let response = alerter::handle_batch(&deps, lambda_runtime::LambdaEvent::new(event, context))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "4421584500000000017450439191"}]})
    );
}

#[test]
fn the_batch_report_is_an_embedded_metric_format_line() {
    let report = alerter::BatchReport {
        records: 5,
        alerts: 4,
        firing: 1,
        reminders: 1,
        suppressed: 2,
        ..Default::default()
    };
    let line: serde_json::Value =
        serde_json::from_str(&report.emf("streamwatch-alerter", 1_795_262_400_000)).unwrap();
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "streamwatch/alerter"
    );
    assert_eq!(line["_aws"]["Timestamp"], 1_795_262_400_000u64);
    assert_eq!(line["FunctionName"], "streamwatch-alerter");
    assert_eq!(
        (
            line["NotificationsSent"].as_u64(),
            line["Suppressed"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let names: Vec<_> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert!(names.iter().all(|n| line[n].is_u64()), "{names:?}");
}
