//! The same notifications in any delivery order. A key's alert records (several episodes of
//! firing windows with gaps, reminders, resolutions) are written by the outbox in order, then
//! delivered to the real handler in a random interleaving, with duplicates and redelivered
//! batches — as the alerts table's stream shards deliver them. What is published must be
//! exactly what in-order delivery publishes, computed from the written history by a small
//! model of the rules (not by the alerter's state machine), message for message and in order.
//! Once on the embedded store and outbox, once against moto (the DynamoDB outbox and store,
//! SNS), drained one delivery at a time since moto's transactions are not isolated.

mod common;

use std::collections::HashMap;

use alerter::{Deps, SystemClock, process};
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use streamwatch_adapters::alert_state::{DynamoDbAlertStateStore, EmbeddedAlertStateStore};
use streamwatch_adapters::alerts::{item_seq, sequenced_alert_item};
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_adapters::{DynamoDbAlertOutbox, EmbeddedAlertOutbox};
use streamwatch_core::notify::NotificationKind;
use streamwatch_core::{AlertKind, AlertOutbox, AlertRecord};
use streamwatch_tests::MotoServer;

/// One episode of a key: firing windows (each preceded by `skips[i]` windows without an
/// alert: no readings, or inside the hysteresis band), then a resolution unless it is the
/// last episode and still open.
#[derive(Debug, Clone)]
struct Episode {
    skips: Vec<u8>,
    resolved: bool,
    quiet_after: u8,
}

fn episodes(max_windows: usize) -> impl Strategy<Value = Vec<Episode>> {
    let episode = (
        proptest::collection::vec(prop_oneof![6 => Just(0u8), 1 => 1u8..4], 1..max_windows),
        any::<bool>(),
        0u8..5,
    )
        .prop_map(|(skips, resolved, quiet_after)| Episode {
            skips,
            resolved,
            quiet_after,
        });
    proptest::collection::vec(episode, 1..5).prop_map(|mut eps| {
        // Only the last episode may stay open: the window-aggregator resolves one before
        // it can fire again.
        let n = eps.len();
        for e in &mut eps[..n - 1] {
            e.resolved = true;
        }
        eps
    })
}

/// The key's alert records in the order the window-aggregator writes them.
fn history(key: &str, episodes: &[Episode]) -> Vec<AlertRecord> {
    let mut window = 0i64;
    let mut out = Vec::new();
    for e in episodes {
        for &skip in &e.skips {
            window += i64::from(skip);
            out.push(window_alert(key, window, AlertKind::Firing));
            window += 1;
        }
        if e.resolved {
            out.push(window_alert(key, window, AlertKind::Resolved));
            window += 1;
        }
        window += i64::from(e.quiet_after);
    }
    out
}

/// In-order delivery, written from the rules in docs/alerts.md: a firing alert of a key that is
/// not firing is a FIRING; while firing, a REMINDER when at least the repeat interval (event
/// time) has passed since the last FIRING or REMINDER; a resolved alert of a firing key is a
/// RESOLVED. Everything else sends nothing.
fn in_order(history: &[AlertRecord], repeat: i64) -> Vec<(String, NotificationKind)> {
    let mut last_sent: Option<i64> = None; // Some while firing
    let mut out = Vec::new();
    for a in history {
        let t = a.event_time_micros;
        match (a.kind, last_sent) {
            (AlertKind::Firing, None) => {
                out.push((a.id.clone(), NotificationKind::Firing));
                last_sent = Some(t);
            }
            (AlertKind::Firing, Some(last)) if t - last >= repeat => {
                out.push((a.id.clone(), NotificationKind::Reminder));
                last_sent = Some(t);
            }
            (AlertKind::Resolved, Some(_)) => {
                out.push((a.id.clone(), NotificationKind::Resolved));
                last_sent = None;
            }
            _ => {}
        }
    }
    out
}

/// A small deterministic generator for the delivery schedule (the seed comes from proptest).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Batches of stream records as the shards deliver them: a random interleaving of the
/// records, about a quarter of them delivered a second time later on, cut into batches of
/// 1–8 records; a third of the batches delivered twice (a Lambda retry).
fn schedule(records: &[Value], seed: u64) -> Vec<Vec<Value>> {
    let mut rng = Rng(seed | 1);
    let mut order: Vec<usize> = (0..records.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut delivered = order.clone();
    for &i in &order {
        if rng.below(4) == 0 {
            let at = rng.below(delivered.len() + 1);
            delivered.insert(at, i);
        }
    }
    let mut batches = Vec::new();
    let mut start = 0;
    while start < delivered.len() {
        let size = (1 + rng.below(8)).min(delivered.len() - start);
        let batch: Vec<Value> = delivered[start..start + size]
            .iter()
            .map(|&i| records[i].clone())
            .collect();
        if rng.below(3) == 0 {
            batches.push(batch.clone());
        }
        batches.push(batch);
        start += size;
    }
    batches
}

const REPEAT: i64 = 15 * MIN;

#[test]
fn any_interleaving_sends_what_in_order_delivery_sends_embedded() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config::with_cases(256));
    runner
        .run(&(episodes(40), any::<u64>()), |(episodes, seed)| {
            runtime.block_on(async {
                let history = history("device3", &episodes);
                let outbox = std::sync::Arc::new(EmbeddedAlertOutbox::new());
                for alert in &history {
                    outbox.put_alert(alert).await.unwrap();
                }
                let records: Vec<Value> = history
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let seq = outbox.seq_of(&a.id).expect("window alerts are numbered");
                        let item = sequenced_alert_item(
                            a,
                            seq,
                            std::time::SystemTime::now(),
                            std::time::Duration::from_secs(3600),
                        )
                        .unwrap();
                        item_record(&item, i as u64)
                    })
                    .collect();
                let deps = TestDeps {
                    grouping: alerter::Grouping::off(),
                    silences: alerter::Silences::off(),
                    store: FaultyStore {
                        inner: EmbeddedAlertStateStore::with_outbox(outbox.clone()),
                        ..FaultyStore::default()
                    },
                    ..deps()
                };
                for (n, batch) in schedule(&records, seed).into_iter().enumerate() {
                    let (response, _) =
                        process(&deps, &records_event(batch), &format!("inv-{n}")).await;
                    prop_assert!(response.batch_item_failures.is_empty());
                }
                let sent: Vec<(String, NotificationKind)> = deps
                    .notifier
                    .published()
                    .into_iter()
                    .map(|m| (m.notification_id, m.kind))
                    .collect();
                prop_assert_eq!(sent, in_order(&history, REPEAT));
                Ok(())
            })
        })
        .unwrap();
}

/// The model's answer for the smallest interesting case, spelled out: the turbine
/// (a storm, its resolution, a second episode) delivered newest first.
#[tokio::test]
async fn newest_first_delivery_sends_every_episode_in_order() {
    let episodes = [
        Episode {
            skips: vec![0; 20],
            resolved: true,
            quiet_after: 3,
        },
        Episode {
            skips: vec![0; 5],
            resolved: true,
            quiet_after: 0,
        },
    ];
    let history = history("device9", &episodes);
    let outbox = std::sync::Arc::new(EmbeddedAlertOutbox::new());
    for alert in &history {
        outbox.put_alert(alert).await.unwrap();
    }
    let deps = TestDeps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: FaultyStore {
            inner: EmbeddedAlertStateStore::with_outbox(outbox.clone()),
            ..FaultyStore::default()
        },
        ..deps()
    };
    for (i, a) in history.iter().enumerate().rev() {
        let item = sequenced_alert_item(
            a,
            outbox.seq_of(&a.id).unwrap(),
            std::time::SystemTime::now(),
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let (response, _) = process(
            &deps,
            &records_event(vec![item_record(&item, i as u64)]),
            &format!("inv-{i}"),
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
    }
    use NotificationKind::*;
    let kinds: Vec<_> = deps.notifier.published().iter().map(|m| m.kind).collect();
    assert_eq!(kinds, [Firing, Reminder, Resolved, Firing, Resolved]);
}

struct MotoWorld {
    moto: MotoServer,
    ddb: aws_sdk_dynamodb::Client,
    deps: Deps<DynamoDbAlertStateStore, SnsNotifier, SystemClock>,
}

async fn moto_world() -> MotoWorld {
    let moto = MotoServer::start();
    let config = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let topic = streamwatch_tests::create_topic(&sns, "alerts").await;
    let deps = Deps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: DynamoDbAlertStateStore::new(ddb.clone(), "alerts"),
        notifier: SnsNotifier::new(sns, topic),
        clock: SystemClock,
        settings: settings(),
    };
    MotoWorld { moto, ddb, deps }
}

/// What SNS (moto) published for `key`: (alert id, state) from each message's JSON.
fn published_for(sent: &[Value], key: &str) -> Vec<(String, NotificationKind)> {
    sent.iter()
        .filter_map(|n| {
            let structured: Value = serde_json::from_str(n[1].as_str()?).ok()?;
            let machine: Value = serde_json::from_str(structured["sqs"].as_str()?).ok()?;
            (machine["key"] == key).then(|| {
                (
                    machine["alert_id"].as_str().unwrap().to_owned(),
                    NotificationKind::parse(machine["state"].as_str().unwrap()).unwrap(),
                )
            })
        })
        .collect()
}

#[test]
fn any_interleaving_sends_what_in_order_delivery_sends_on_moto() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let world = runtime.block_on(moto_world());
    let outbox = DynamoDbAlertOutbox::new(world.ddb.clone(), "alerts");
    // Each case is a few hundred calls to moto: fewer, shorter histories than embedded.
    let mut runner = TestRunner::new(Config {
        cases: 8,
        max_shrink_iters: 0,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let expected = std::sync::Mutex::new(Vec::new());
    runner
        .run(&(episodes(12), any::<u64>()), |(episodes, seed)| {
            // A fresh key per case: the table and topic are shared.
            let key = format!(
                "turbine-{}",
                case.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            );
            runtime.block_on(async {
                let history = history(&key, &episodes);
                for alert in &history {
                    outbox.put_alert(alert).await.unwrap();
                }
                // The items as the table holds them (with the outbox's numbers).
                let mut items: HashMap<String, HashMap<String, AttributeValue>> = HashMap::new();
                for a in &history {
                    let item = world
                        .ddb
                        .get_item()
                        .table_name("alerts")
                        .key("alert_id", AttributeValue::S(a.id.clone()))
                        .send()
                        .await
                        .unwrap()
                        .item
                        .expect("the outbox wrote the alert");
                    items.insert(a.id.clone(), item);
                }
                let records: Vec<Value> = history
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let item = &items[&a.id];
                        assert_eq!(
                            item_seq(item),
                            Some(i as u64 + 1),
                            "numbered in write order"
                        );
                        item_record(item, i as u64)
                    })
                    .collect();
                for (n, batch) in schedule(&records, seed).into_iter().enumerate() {
                    let (response, _) = process(
                        &world.deps,
                        &records_event(batch),
                        &format!("{key}-inv-{n}"),
                    )
                    .await;
                    prop_assert!(response.batch_item_failures.is_empty());
                }
                expected
                    .lock()
                    .unwrap()
                    .push((key, in_order(&history, REPEAT)));
                Ok(())
            })
        })
        .unwrap();
    // moto's state (the whole table included) is read once: per case it grows past what
    // the harness reads in time.
    let expected = expected.into_inner().unwrap();
    assert_eq!(expected.len(), 8);
    let sent = world.moto.sns_notifications();
    for (key, want) in expected {
        assert_eq!(published_for(&sent, &key), want, "{key}");
    }
}
