//! What a real stream does to the time model, each scenario against DynamoDB on moto: a
//! device three hours ahead on every shard, a ten-minute iterator-age backlog with the
//! schedule firing throughout, a replay of day-old data, a split and a merge mid-stream, a
//! first start where one shard delivers minutes before the others, a key whose windows sit
//! on shards that drain at different speeds, and a window of 10,000 readings (and one
//! past the item bound). Expected windows, alerts and counters come from the `common`
//! model, which applies the specification to the plan without the production closing code;
//! each scenario also checks what it is about by counting from its own input.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use common::{Action, Counted, HOUR, MIN, Model, Plan, SEC, T0, TestClock};
use streamwatch_adapters::DynamoDbAlertOutbox;
use streamwatch_adapters::EmbeddedAlertOutbox;
use streamwatch_adapters::alerts::alert_from_item;
use streamwatch_adapters::shards::EmbeddedShardProbe;
use streamwatch_adapters::windows::{DynamoDbWindowStore, EmbeddedWindowStore, windows_from_items};
use streamwatch_core::notify::NotificationKind;
use streamwatch_core::window::WindowState;
use streamwatch_core::{AlertKind, AlertOutbox, AlertRecord, KinesisEvent};
use streamwatch_tests::{MotoServer, scan_all};
use window_aggregator::Deps;

/// A scenario's stream, built reading by reading, then delivered as Lambda would.
struct Scenario {
    plan: Plan,
    items: usize,
    cursors: Vec<usize>,
}

impl Scenario {
    fn new(shards: usize) -> Self {
        Self {
            plan: Plan::with_shards(shards),
            items: 0,
            cursors: vec![0; shards],
        }
    }

    /// A new reading (an INSERT) on `shard`: event time `t`, written to the table (and on
    /// the stream) at `changed`.
    fn reading(&mut self, shard: usize, device: &str, value: f64, t: i64, changed: i64) {
        self.items += 1;
        let item = format!("item-{}", self.items);
        let new = Some((device.to_owned(), t, value));
        let id = format!("ev{}", self.items);
        self.plan
            .push(shard, &id, &item, new, None, changed, changed);
    }

    fn reshard(&mut self, parents: &[usize], at: i64) -> usize {
        self.cursors.push(0);
        self.plan.reshard(parents, at)
    }

    /// One invocation per shard with what had arrived on it by `visible(shard)` (at most
    /// `batch` records), at wall time `wall`; a child shard only once its parents are done.
    fn deliver(&mut self, wall: i64, batch: usize, visible: impl Fn(usize) -> i64) {
        for s in 0..self.plan.shards.len() {
            let parents_done = self.plan.shards[s]
                .parents
                .iter()
                .all(|p| self.cursors[*p] == self.plan.logs[*p].len());
            if !parents_done {
                continue;
            }
            let log = &self.plan.logs[s];
            let mut end = self.cursors[s];
            while end < log.len() && end - self.cursors[s] < batch && log[end].arrival <= visible(s)
            {
                end += 1;
            }
            if end > self.cursors[s] {
                let records = log[self.cursors[s]..end].to_vec();
                self.cursors[s] = end;
                self.plan.actions.push(Action::Deliver {
                    wall,
                    batch: records,
                });
            }
        }
    }

    /// From `from` to `to`, every 10 s of wall clock: each shard delivers what had arrived
    /// by `visible(shard, wall)`; the schedule fires every minute.
    fn drive(&mut self, from: i64, to: i64, visible: impl Fn(usize, i64) -> i64) {
        let mut wall = from;
        while wall <= to {
            self.deliver(wall, 500, |s| visible(s, wall));
            if (wall - from) % MIN == 0 {
                self.plan.actions.push(Action::Schedule(wall));
            }
            wall += 10 * SEC;
        }
    }

    /// Everything left, then the schedule long after the last event.
    fn finish(&mut self, wall: i64) {
        while self
            .cursors
            .iter()
            .zip(&self.plan.logs)
            .any(|(c, l)| *c < l.len())
        {
            self.deliver(wall, 500, |_| i64::MAX);
        }
        let last = wall.max(self.plan.max_event_time()) + 10 * MIN;
        self.plan.actions.push(Action::Schedule(last));
    }
}

/// What a scenario left in DynamoDB, and the model's verdict on the same plan.
struct Outcome {
    model: Model,
    counted: Counted,
    windows: Vec<WindowState>,
    alerts: Vec<AlertRecord>,
}

/// Runs the plan against moto with the template's configuration plus `env`; asserts the
/// stored windows, the alert records and the late and future counts equal the model's.
async fn run(plan: &Plan, env: &[(&str, &str)]) -> Outcome {
    let moto = MotoServer::start();
    let ddb = aws_sdk_dynamodb::Client::new(&streamwatch_tests::sdk_config(&moto).await);
    streamwatch_tests::create_windows_table(&ddb, "windows").await;
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let deps = Deps {
        config: common::config_with("windows", "alerts", env),
        store: DynamoDbWindowStore::new(ddb.clone(), "windows", Duration::from_secs(48 * 3600)),
        outbox: DynamoDbAlertOutbox::new(ddb.clone(), "alerts"),
        probe: EmbeddedShardProbe::new(),
        clock: TestClock(AtomicI64::new(T0)),
    };
    let (model, counted) = common::run(&deps, plan).await;
    let windows: Vec<WindowState> = windows_from_items(&scan_all(&ddb, "windows").await);
    let alerts: Vec<AlertRecord> = scan_all(&ddb, "alerts")
        .await
        .iter()
        .filter_map(alert_from_item)
        .collect();
    let want = model.windows();
    assert_eq!(common::observed_windows(&windows), want, "windows");
    assert_eq!(
        common::observed_alerts(&alerts, &want),
        model.alerts(),
        "alerts"
    );
    assert_eq!(
        notifications(&alerts).await,
        expected_notifications(&model),
        "notifications"
    );
    assert_eq!(
        (counted.late, counted.future),
        (model.late, model.future),
        "late and future readings counted once each"
    );
    Outcome {
        model,
        counted,
        windows,
        alerts,
    }
}

/// The alert records read back from DynamoDB, through the real alerter (embedded state
/// and notifier, the local pipeline's alerts-table stream) in window order per key: the
/// notifications sent, as (key, kind).
async fn notifications(alerts: &[AlertRecord]) -> Vec<(String, NotificationKind)> {
    let mut sorted = alerts.to_vec();
    sorted.sort_by_key(|a| (a.key.clone(), a.window.as_ref().map(|w| w.start_micros)));
    let mut pipeline = streamwatch_local::pipeline::Pipeline::new(3600).expect("pipeline");
    for a in &sorted {
        pipeline.outbox.put_alert(a).await.expect("outbox");
    }
    pipeline
        .deliver_alerts()
        .await
        .into_iter()
        .map(|m| (m.attributes.get("key").cloned().unwrap_or_default(), m.kind))
        .collect()
}

/// What an operator should receive, from the model's alerts: per key, one FIRING when an
/// episode starts and one RESOLVED when it ends (no reminder: every scenario's episodes
/// are shorter than the hour between reminders).
fn expected_notifications(model: &Model) -> Vec<(String, NotificationKind)> {
    let mut out = Vec::new();
    let mut firing: BTreeMap<String, bool> = BTreeMap::new();
    for (key, _, kind) in model.alerts() {
        let was = firing.get(&key).copied().unwrap_or(false);
        if kind == AlertKind::Firing.as_str() && !was {
            out.push((key.clone(), NotificationKind::Firing));
        } else if kind == AlertKind::Resolved.as_str() {
            out.push((key.clone(), NotificationKind::Resolved));
        }
        firing.insert(key, kind == AlertKind::Firing.as_str());
    }
    out
}

/// Readings per (device, window start) from the scenario's own input.
fn per_window(plan: &Plan, size: i64) -> BTreeMap<(String, i64), u64> {
    let mut out = BTreeMap::new();
    for r in plan.logs.iter().flatten() {
        if let Some((device, t, _)) = &r.new {
            *out.entry((device.clone(), t.div_euclid(size) * size))
                .or_default() += 1;
        }
    }
    out
}

fn stored_counts(windows: &[WindowState]) -> BTreeMap<(String, i64), u64> {
    windows
        .iter()
        .filter_map(|w| {
            w.stats()
                .map(|s| ((w.key.clone(), w.start_micros), s.count))
        })
        .collect()
}

fn firing(alerts: &[AlertRecord]) -> usize {
    alerts
        .iter()
        .filter(|a| a.kind == AlertKind::Firing)
        .count()
}

/// Five turbines at 1 Hz from `from` for `minutes`, spread over `shards` shards by item;
/// device1 gusts above 60 in minutes 1 and 2, the others stay at 40.
fn turbines(s: &mut Scenario, shards: usize, from: i64, minutes: i64, record_delay: i64) {
    for sec in 0..minutes * 60 {
        for d in 1..=5 {
            let t = from + sec * SEC;
            let gust = d == 1 && (60..180).contains(&sec);
            let shard = (sec as usize * 5 + d) % shards;
            s.reading(
                shard,
                &format!("device{d}"),
                if gust { 70.0 } else { 40.0 },
                t,
                t + record_delay,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_three_hours_ahead_on_every_shard_makes_nothing_late() {
    let mut s = Scenario::new(3);
    turbines(&mut s, 3, T0, 5, 300_000);
    // At minute 1:30 a turbine with a clock three hours fast writes once to every shard.
    for shard in 0..3 {
        let at = T0 + 90 * SEC + shard as i64;
        s.reading(shard, "device9", 50.0, at + 3 * HOUR, at);
    }
    s.drive(T0, T0 + 6 * MIN, |_, wall| wall);
    s.finish(T0 + 6 * MIN);
    let out = run(&s.plan, &[]).await;
    assert_eq!(out.counted.late, 0, "no other reading is late");
    assert_eq!(
        out.counted.future, 3,
        "the three readings ahead are counted"
    );
    assert_eq!(stored_counts(&out.windows), per_window(&s.plan, MIN));
    assert_eq!(
        firing(&out.alerts),
        2,
        "device1's gust fires in minutes 1 and 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_minute_backlog_with_the_schedule_firing_drops_nothing() {
    let mut s = Scenario::new(3);
    turbines(&mut s, 3, T0, 12, 300_000);
    // The function runs ten minutes behind the stream (a throttled or failing function):
    // the schedule fires every minute meanwhile and finds every shard behind.
    s.drive(T0, T0 + 25 * MIN, |_, wall| wall - 10 * MIN);
    s.finish(T0 + 25 * MIN);
    let out = run(&s.plan, &[]).await;
    assert_eq!(out.counted.late, 0);
    assert_eq!(stored_counts(&out.windows), per_window(&s.plan, MIN));
    assert_eq!(out.windows.len(), 5 * 12);
    assert_eq!(firing(&out.alerts), 2);
}

/// Yesterday's stream read again (the mapping moved back to a day-old position, as after a
/// bad deploy is rolled back): record and event times a day old, delivered now while the
/// schedule fires every minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_day_old_data_closes_by_its_own_time_and_drops_nothing() {
    let mut s = Scenario::new(2);
    day_old(&mut s, |t| t + 200_000);
    s.drive(T0, T0 + 8 * MIN, |_, wall| wall - 7 * MIN);
    s.finish(T0 + 8 * MIN);
    let out = run(&s.plan, &[]).await;
    assert_eq!(out.counted.late, 0);
    assert_eq!(stored_counts(&out.windows), per_window(&s.plan, MIN));
    assert_eq!(out.windows.len(), 2 * 10);
    assert_eq!(firing(&out.alerts), 2);
    assert!(out.alerts.iter().any(|a| a.kind == AlertKind::Resolved));
}

/// Day-old readings written to the table *now* (a producer's backfill) arrive far behind a
/// shard that was caught up: they are late by the time model — counted once each and
/// alarmed, never silently dropped, never moving anyone else's windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_written_now_onto_caught_up_shards_is_counted_late_exactly() {
    let mut s = Scenario::new(2);
    day_old(&mut s, |t| t + 24 * HOUR + 5 * MIN);
    s.drive(T0, T0 + 8 * MIN, |_, wall| wall);
    s.finish(T0 + 8 * MIN);
    let out = run(&s.plan, &[]).await;
    assert!(out.counted.late > 1_000, "late {}", out.counted.late);
}

/// Two turbines' day-old readings, ten a second, on two shards; device1 above 60 in its
/// minutes 2 and 3. `changed` maps an event time to its change record's time.
fn day_old(s: &mut Scenario, changed: impl Fn(i64) -> i64) {
    for i in 0..1_200i64 {
        let t = T0 - 24 * HOUR + (i / 2) * SEC;
        let device = if i % 2 == 0 { "device1" } else { "device2" };
        let gust = device == "device1" && (120..240).contains(&(i / 2));
        s.reading(
            i as usize % 2,
            device,
            if gust { 75.0 } else { 30.0 },
            t,
            changed(t),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_and_a_merge_mid_stream_keep_every_window_exact() {
    let mut s = Scenario::new(2);
    // Shard 0 splits into two at minute 2; the two merge at minute 4.
    let (split, merge) = (T0 + 2 * MIN, T0 + 4 * MIN);
    let a = s.reshard(&[0], split);
    let b = s.reshard(&[0], split);
    let m = s.reshard(&[a, b], merge);
    for sec in 0..6 * 60 {
        for d in 1..=4 {
            let t = T0 + sec * SEC;
            let shard = match (d % 2, t) {
                (1, _) => 1,
                (_, t) if t < split => 0,
                (_, t) if t < merge => [a, b][sec as usize % 2],
                _ => m,
            };
            let value = if d == 2 && (120..300).contains(&sec) {
                80.0
            } else {
                35.0
            };
            s.reading(shard, &format!("device{d}"), value, t, t + 200_000);
        }
    }
    s.drive(T0, T0 + 8 * MIN, |_, wall| wall - 30 * SEC);
    s.finish(T0 + 8 * MIN);
    let out = run(&s.plan, &[]).await;
    assert_eq!(out.counted.late, 0);
    assert_eq!(stored_counts(&out.windows), per_window(&s.plan, MIN));
    assert_eq!(out.windows.len(), 4 * 6);
    assert_eq!(
        firing(&out.alerts),
        3,
        "device2 above 60 in minutes 2, 3 and 4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_where_one_shard_delivers_minutes_early_closes_nothing_early() {
    let mut s = Scenario::new(3);
    turbines(&mut s, 3, T0, 8, 300_000);
    // Shard 0's mapping starts at once; shards 1 and 2 deliver their first batch five
    // minutes later.
    s.drive(T0, T0 + 15 * MIN, |shard, wall| {
        if shard == 0 { wall } else { wall - 5 * MIN }
    });
    s.finish(T0 + 15 * MIN);
    let out = run(&s.plan, &[]).await;
    assert_eq!(
        out.counted.late, 0,
        "no window closed before shards 1 and 2 delivered"
    );
    assert_eq!(stored_counts(&out.windows), per_window(&s.plan, MIN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keys_windows_on_shards_draining_at_different_speeds_close_in_order() {
    let mut s = Scenario::new(2);
    // device1's gusty minute 0 sits mostly on the slow shard 1; its calm minutes 1 and 2 on
    // the fast shard 0. Minute 1 must not be decided before minute 0.
    for sec in 0..180 {
        let t = T0 + sec * SEC;
        let (shard, value) = match sec {
            0..60 => (if sec % 4 == 0 { 0 } else { 1 }, 80.0),
            _ => (0, 30.0),
        };
        s.reading(shard, "device1", value, t, t + 100_000);
    }
    s.drive(T0, T0 + 10 * MIN, |shard, wall| {
        if shard == 1 { wall - 4 * MIN } else { wall }
    });
    s.finish(T0 + 10 * MIN);
    let out = run(&s.plan, &[]).await;
    assert_eq!(out.counted.late, 0);
    let kinds: Vec<(i64, AlertKind)> = {
        let mut k: Vec<_> = out
            .alerts
            .iter()
            .map(|a| ((a.window.as_ref().unwrap().start_micros - T0) / MIN, a.kind))
            .collect();
        k.sort_by_key(|(m, _)| *m);
        k
    };
    assert_eq!(
        kinds,
        vec![(0, AlertKind::Firing), (1, AlertKind::Resolved)],
        "the episode fires at minute 0 and resolves at minute 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_readings_in_one_window_are_all_counted() {
    let mut s = Scenario::new(1);
    // One hour-long window, ~2.8 readings a second.
    for i in 0..10_000i64 {
        let t = T0 + i * 360_000;
        s.reading(0, "device1", 60.0 + (i % 3) as f64, t, t + 100_000);
    }
    s.finish(T0 + HOUR);
    let out = run(
        &s.plan,
        &[
            ("WINDOW_SECONDS", "3600"),
            ("ALLOWED_LATENESS_SECONDS", "5"),
        ],
    )
    .await;
    let w = out.windows.iter().find(|w| !w.entries.is_empty()).unwrap();
    let stats = w.stats().unwrap();
    let sum: f64 = (0..10_000).map(|i| 60.0 + (i % 3) as f64).sum();
    assert_eq!((stats.count, stats.sum), (10_000, sum));
    assert_eq!(firing(&out.alerts), 1);
    assert_eq!(out.model.late, 0);
}

/// A window of 16,000 readings (one hour at 4.4 readings a second; the old one-item layout
/// refused it at 15,000) is stored and closed exactly: chunks have no per-window bound.
#[tokio::test]
async fn a_window_of_16000_readings_is_exact() {
    let mut s = Scenario::new(1);
    for i in 0..16_000i64 {
        let t = T0 + i * 200_000;
        s.reading(
            0,
            "device1",
            if i % 2 == 0 { 50.0 } else { 52.0 },
            t,
            t + 100_000,
        );
    }
    let deps = Deps {
        config: common::config_with("w", "a", &[("WINDOW_SECONDS", "3600")]),
        store: EmbeddedWindowStore::new(),
        outbox: EmbeddedAlertOutbox::new(),
        probe: EmbeddedShardProbe::with_shards(1),
        clock: TestClock(AtomicI64::new(T0)),
    };
    for chunk in s.plan.logs[0].chunks(1_000) {
        let event = KinesisEvent {
            records: chunk.iter().map(|r| r.record.clone()).collect(),
        };
        let (response, report) = window_aggregator::process_batch(&deps, &event).await;
        assert!(response.batch_item_failures.is_empty(), "{report:?}");
        assert_eq!(report.late, 0);
    }
    let w = deps.store.windows().pop().unwrap();
    let stats = w.stats().unwrap();
    assert_eq!((stats.count, stats.sum), (16_000, 8_000.0 * 102.0));
}
