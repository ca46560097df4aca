//! The real handler over the sample events and generated batches, with the embedded store:
//! windows equal an independent computation from the unique readings, whatever Lambda's
//! retries, bisections and duplicates do; windows close into alerts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use proptest::prelude::*;
use serde_json::{Value, json};
use streamwatch_adapters::EmbeddedAlertOutbox;
use streamwatch_adapters::shards::EmbeddedShardProbe;
use streamwatch_adapters::windows::EmbeddedWindowStore;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use streamwatch_core::{AlertKind, KinesisEvent};
use window_aggregator::{Clock, Config, Deps, close_idle, process_batch};

const MICRO: &str = include_str!("../../../events/window-aggregator-changes-micro.json");
const MILLI: &str = include_str!("../../../events/window-aggregator-changes-milli.json");
const PLAIN: &str = include_str!("../../../events/window-aggregator-json.json");

struct TestClock(AtomicI64);
impl Clock for TestClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

type TestDeps = Deps<EmbeddedWindowStore, EmbeddedAlertOutbox, EmbeddedShardProbe, TestClock>;

fn deps(extra: &[(&str, &str)]) -> TestDeps {
    let mut env: std::collections::HashMap<String, String> =
        [("WINDOWS_TABLE", "w"), ("ALERTS_TABLE", "a")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Deps {
        config: Config::from_source(&env).unwrap(),
        store: EmbeddedWindowStore::new(),
        outbox: EmbeddedAlertOutbox::new(),
        probe: EmbeddedShardProbe::with_shards(1),
        clock: TestClock(AtomicI64::new(0)),
    }
}

/// An item's latest change time and (device, window start, value), `None` once removed.
type Latest = (i64, Option<(String, i64, f64)>);

/// Independent model: decode every change record with serde_json only, keep the latest
/// change per item id (REMOVE as a tombstone), group by (device, minute of createdAt).
fn model(events: &[&KinesisEvent]) -> BTreeMap<(String, i64), (u64, f64)> {
    let mut latest: BTreeMap<String, Latest> = BTreeMap::new();
    for e in events {
        for r in &e.records {
            let data = r.kinesis.data.0.clone().unwrap();
            let c: Value = serde_json::from_slice(&data).unwrap();
            let d = &c["dynamodb"];
            let ts = d["ApproximateCreationDateTime"].as_i64().unwrap();
            let t = if d["ApproximateCreationDateTimePrecision"] == "MICROSECOND"
                || ts > 100_000_000_000_000
            {
                ts
            } else {
                ts * 1000
            };
            let id = d["Keys"].to_string();
            let entry = if c["eventName"] == "REMOVE" {
                None
            } else {
                let img = &d["NewImage"];
                let created =
                    chrono::DateTime::parse_from_rfc3339(img["createdAt"]["S"].as_str().unwrap())
                        .unwrap()
                        .timestamp_micros();
                Some((
                    img["deviceID"]["S"].as_str().unwrap().to_owned(),
                    created.div_euclid(60_000_000) * 60_000_000,
                    img["value"]["N"].as_str().unwrap().parse::<f64>().unwrap(),
                ))
            };
            match latest.get(&id) {
                Some((old, _)) if *old >= t => {}
                _ => {
                    latest.insert(id, (t, entry));
                }
            }
        }
    }
    let mut out: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
    for (_, (_, e)) in latest {
        if let Some((device, start, v)) = e {
            let s = out.entry((device, start)).or_default();
            s.0 += 1;
            s.1 += v;
        }
    }
    out
}

fn windows(d: &TestDeps) -> BTreeMap<(String, i64), (u64, f64)> {
    d.store
        .windows()
        .into_iter()
        .filter_map(|w| {
            w.stats()
                .map(|s| ((w.key.clone(), w.start_micros), (s.count, s.sum)))
        })
        .collect()
}

#[tokio::test]
async fn sample_changes_aggregate_exactly_and_replays_change_nothing() {
    let d = deps(&[]);
    let event: KinesisEvent = serde_json::from_str(MICRO).unwrap();
    let (response, report) = process_batch(&d, &event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.malformed, 0);
    let once = windows(&d);
    assert_eq!(once, model(&[&event]));
    assert!(!once.is_empty());
    // Lambda's retries: the whole batch again, a suffix, each bisected half.
    process_batch(&d, &event).await;
    let suffix = KinesisEvent {
        records: event.records[event.records.len() / 3..].to_vec(),
    };
    process_batch(&d, &suffix).await;
    let (a, b) = event.records.split_at(event.records.len() / 2);
    process_batch(
        &d,
        &KinesisEvent {
            records: b.to_vec(),
        },
    )
    .await;
    process_batch(
        &d,
        &KinesisEvent {
            records: a.to_vec(),
        },
    )
    .await;
    assert_eq!(windows(&d), once);
}

#[tokio::test]
async fn millisecond_and_plain_json_inputs() {
    let d = deps(&[]);
    let event: KinesisEvent = serde_json::from_str(MILLI).unwrap();
    let (_, report) = process_batch(&d, &event).await;
    assert_eq!(report.malformed, 0);
    assert_eq!(windows(&d), model(&[&event]));

    let d = deps(&[("INPUT_FORMAT", "json")]);
    let event: KinesisEvent = serde_json::from_str(PLAIN).unwrap();
    let (_, report) = process_batch(&d, &event).await;
    assert_eq!((report.readings, report.malformed), (12, 0));
    let w = windows(&d);
    let total: u64 = w.values().map(|s| s.0).sum();
    assert_eq!(total, 12);
    process_batch(&d, &event).await;
    assert_eq!(
        windows(&d),
        w,
        "plain records are identified by their Kinesis coordinates"
    );
}

fn change(
    event_id: &str,
    name: &str,
    device: &str,
    value: Value,
    created_micros: i64,
    item: &str,
    with_old: bool,
) -> Vec<u8> {
    let old = with_old.then(|| (device.to_owned(), value.clone(), created_micros));
    change_with_old(event_id, name, device, value, created_micros, item, old)
}

/// A change record; `old` is the item's previous image (device, value, createdAt), as
/// Kinesis Data Streams for DynamoDB sends it for MODIFY and REMOVE.
fn change_with_old(
    event_id: &str,
    name: &str,
    device: &str,
    value: Value,
    created_micros: i64,
    item: &str,
    old: Option<(String, Value, i64)>,
) -> Vec<u8> {
    let image = |device: &str, value: &Value, created: i64| json!({"id": {"S": item}, "deviceID": {"S": device}, "value": {"N": value}, "createdAt": {"S": streamwatch_core::time::format_micros(created)}});
    let mut d = json!({"ApproximateCreationDateTime": created_micros + 100, "ApproximateCreationDateTimePrecision": "MICROSECOND", "Keys": {"id": {"S": item}}});
    if name != "REMOVE" {
        d["NewImage"] = image(device, &value, created_micros);
    }
    if let Some((od, ov, oc)) = old {
        d["OldImage"] = image(&od, &ov, oc);
    }
    json!({"eventID": event_id, "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": d})
        .to_string()
        .into_bytes()
}

fn kinesis(shard: usize, seq: u64, data: Vec<u8>) -> KinesisEventRecord {
    let sequence_number = format!("4959033827149025660855969253836157109592157{seq:013}");
    KinesisEventRecord {
        kinesis: KinesisRecord {
            partition_key: "p".into(),
            sequence_number: sequence_number.clone(),
            data: data.into(),
            approximate_arrival_timestamp: 1_795_262_400.0,
            ..Default::default()
        },
        event_id: Some(format!("shardId-{shard:012}:{sequence_number}")),
        ..Default::default()
    }
}

const T0: i64 = 1_795_262_400_000_000;
const MIN: i64 = 60_000_000;

#[tokio::test]
async fn bad_input_is_skipped_and_counted() {
    let d = deps(&[]);
    let records = vec![
        kinesis(0, 1, change("e1", "REMOVE", "device1", json!("50"), T0, "i1", false)),
        kinesis(0, 2, change("e2", "INSERT", "device1", json!("fast"), T0, "i2", false)),
        kinesis(0, 3, br#"{"eventID":"e3","eventName":"INSERT","eventSource":"aws:dynamodb","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{},"NewImage":{"value":{"N":"5"}}}}"#.to_vec()),
        kinesis(0, 4, change("e4", "INSERT", "device1", json!("1e400"), T0, "i4", false)),
        kinesis(0, 5, b"not json".to_vec()),
        kinesis(0, 6, change("e6", "INSERT", "风机-7", json!("61"), T0, "i6", false)),
        kinesis(0, 7, change("e7", "INSERT", "device1", json!("99999999999999999999999"), T0, "i7", false)),
    ];
    let (response, report) = process_batch(&d, &KinesisEvent { records }).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "bad input never fails the batch"
    );
    assert_eq!(
        report.malformed, 5,
        "REMOVE without OldImage, text value, missing key, value beyond f64, not JSON"
    );
    let w = windows(&d);
    assert_eq!(
        w[&("风机-7".to_owned(), T0)],
        (1, 61.0),
        "unicode keys are fine"
    );
    assert_eq!(
        w[&("device1".to_owned(), T0)],
        (1, 1e23),
        "large but finite values count"
    );
}

#[tokio::test]
async fn windows_close_into_firing_and_resolved_alerts_and_late_records_are_counted() {
    let d = deps(&[]);
    let mut seq = 0;
    let mut records = Vec::new();
    // device1: minute 0 avg 70 (fires), minute 1 avg 65 (fires), minute 2 avg 40 (resolves).
    for (minute, values) in [(0, [60, 80]), (1, [60, 70]), (2, [30, 50])] {
        for (i, v) in values.iter().enumerate() {
            seq += 1;
            records.push(kinesis(
                0,
                seq,
                change(
                    &format!("e{seq}"),
                    "INSERT",
                    "device1",
                    json!(v.to_string()),
                    T0 + minute * MIN + i as i64 * 10_000_000,
                    &format!("i{seq}"),
                    false,
                ),
            ));
        }
    }
    // A reading at minute 3 moves the watermark past minute 2's end + 5 s lateness.
    seq += 1;
    records.push(kinesis(
        0,
        seq,
        change(
            "e-late-wm",
            "INSERT",
            "device2",
            json!("10"),
            T0 + 3 * MIN + 6_000_000,
            "iw",
            false,
        ),
    ));
    let (_, report) = process_batch(&d, &KinesisEvent { records }).await;
    assert_eq!(report.windows_closed, 3);
    let alerts = d.outbox.alerts();
    let kinds: Vec<(AlertKind, String)> =
        alerts.iter().map(|a| (a.kind, a.summary.clone())).collect();
    assert_eq!(
        kinds,
        vec![
            (
                AlertKind::Firing,
                "Wind speed avg 70 mph > 60 on device1".to_owned()
            ),
            (
                AlertKind::Firing,
                "Wind speed avg 65 mph > 60 on device1".to_owned()
            ),
            (
                AlertKind::Resolved,
                "Wind speed avg 40 mph back within avg > 60 on device1".to_owned()
            ),
        ]
    );
    // A record for the closed minute 0: late, counted, not applied.
    let (_, report) = process_batch(
        &d,
        &KinesisEvent {
            records: vec![kinesis(
                0,
                100,
                change(
                    "late",
                    "INSERT",
                    "device1",
                    json!("99"),
                    T0 + 1_000_000,
                    "late-item",
                    false,
                ),
            )],
        },
    )
    .await;
    assert_eq!(report.late, 1);
    let w0 = d
        .store
        .windows()
        .into_iter()
        .find(|w| w.key == "device1" && w.start_micros == T0)
        .unwrap();
    assert_eq!((w0.stats().unwrap().avg, w0.closed), (70.0, true));
    // The idle device2 window closes by the schedule once the wall clock passes end + lateness + grace.
    d.clock
        .0
        .store(T0 + 4 * MIN + 5_000_000 + 9_000_000, Ordering::SeqCst);
    assert_eq!(
        close_idle(&d).await.unwrap().windows_closed,
        0,
        "grace not yet over"
    );
    d.clock
        .0
        .store(T0 + 4 * MIN + 5_000_000 + 10_000_000, Ordering::SeqCst);
    assert_eq!(close_idle(&d).await.unwrap().windows_closed, 1);
    assert_eq!(d.outbox.alerts().len(), 3, "a calm window alerts nothing");
}

/// One reading change for the property test.
#[derive(Debug, Clone)]
enum Step {
    Insert {
        item: usize,
        device: usize,
        minute: i64,
        value: u32,
    },
    Modify {
        item: usize,
        value: u32,
    },
    Remove {
        item: usize,
    },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0usize..40, 0usize..3, 0i64..4, 20u32..90).prop_map(|(item, device, minute, value)| Step::Insert { item, device, minute, value }),
            2 => (0usize..40, 20u32..90).prop_map(|(item, value)| Step::Modify { item, value }),
            1 => (0usize..40).prop_map(|item| Step::Remove { item }),
        ],
        1..80,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random changes across 3 shards, delivered with random whole-batch retries, suffix
    /// retries, bisected halves and duplicated change records, in random shard interleaving:
    /// the final windows and alerts equal the model computed from the unique changes.
    #[test]
    fn windows_are_exact_under_any_lambda_delivery(steps in steps(), seed in any::<u64>()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            // Lateness of a day: windows close only at the end, so every change counts.
            let d = deps(&[("ALLOWED_LATENESS_SECONDS", "3600"), ("WINDOW_SECONDS", "60")]);
            for s in 1..3 {
                d.probe.add_shard(streamwatch_core::progress::ShardInfo { shard: format!("shardId-{s:012}"), parents: Vec::new(), closed: false });
            }
            // Current image per item: (device, minute, value), as the table holds it.
            let mut items: BTreeMap<usize, (usize, i64, u32)> = BTreeMap::new();
            let mut shards: Vec<Vec<KinesisEventRecord>> = vec![Vec::new(); 3];
            let mut all: Vec<KinesisEvent> = Vec::new();
            let mut rng = seed | 1; // xorshift must not start at 0
            let mut next = |n: u64| { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng % n.max(1) };
            for (i, step) in steps.iter().enumerate() {
                let t = T0 + i as i64 * 1_000;
                let created_of = |item: usize, minute: i64| T0 + minute * MIN + (item as i64 % 50) * 1_000_000;
                // A put over an existing item is a MODIFY carrying the old image, as DynamoDB sends it.
                let (name, item, device, minute, value, old) = match *step {
                    Step::Insert { item, device, minute, value } => match items.insert(item, (device, minute, value)) {
                        None => ("INSERT", item, device, minute, value, None),
                        Some(prev) => ("MODIFY", item, device, minute, value, Some(prev)),
                    },
                    Step::Modify { item, value } => match items.get(&item).copied() {
                        Some(prev @ (dv, m, _)) => { items.insert(item, (dv, m, value)); ("MODIFY", item, dv, m, value, Some(prev)) }
                        None => continue,
                    },
                    Step::Remove { item } => match items.remove(&item) {
                        Some(prev @ (dv, m, _)) => ("REMOVE", item, dv, m, 0, Some(prev)),
                        None => continue,
                    },
                };
                let old = old.map(|(dv, m, v)| (format!("device{dv}"), json!(v.to_string()), created_of(item, m)));
                let created = created_of(item, minute);
                let mut data: Value = serde_json::from_slice(&change_with_old(&format!("ev{i}"), name, &format!("device{device}"), json!(value.to_string()), created, &format!("item{item}"), old)).unwrap();
                data["dynamodb"]["ApproximateCreationDateTime"] = json!(t);
                let bytes = data.to_string().into_bytes();
                let shard = item % 3;
                let seq = (shards[shard].len() + 1) as u64;
                shards[shard].push(kinesis(shard, seq, bytes.clone()));
                if next(5) == 0 {
                    // The feature's duplicate: same change, new sequence number.
                    let seq = (shards[shard].len() + 1) as u64;
                    shards[shard].push(kinesis(shard, seq, bytes));
                }
            }
            for records in &shards {
                all.push(KinesisEvent { records: records.clone() });
            }
            // Deliver each shard in batches of 7 with random retries; interleave shards.
            let mut cursors = [0usize; 3];
            while cursors.iter().zip(&shards).any(|(c, s)| *c < s.len()) {
                let s = next(3) as usize;
                if cursors[s] >= shards[s].len() { continue; }
                let end = (cursors[s] + 7).min(shards[s].len());
                let batch = shards[s][cursors[s]..end].to_vec();
                match next(4) {
                    0 => { process_batch(&d, &KinesisEvent { records: batch.clone() }).await; }
                    // Lambda never delivers a later record before an earlier one: a retried
                    // suffix comes after the batch (below).
                    1 => { process_batch(&d, &KinesisEvent { records: batch.clone() }).await; }
                    2 => { let mid = batch.len() / 2; process_batch(&d, &KinesisEvent { records: batch[..mid].to_vec() }).await; }
                    _ => {}
                }
                let cut = next(batch.len() as u64) as usize;
                let (response, _) = process_batch(&d, &KinesisEvent { records: batch.clone() }).await;
                prop_assert!(response.batch_item_failures.is_empty());
                let (response, _) = process_batch(&d, &KinesisEvent { records: batch[cut..].to_vec() }).await;
                prop_assert!(response.batch_item_failures.is_empty());
                cursors[s] = end;
            }
            let refs: Vec<&KinesisEvent> = all.iter().collect();
            let expected = model(&refs);
            prop_assert_eq!(windows(&d), expected.clone());
            // Close everything; alerts match the model's windows above 60.
            d.clock.0.store(T0 + 100 * MIN + 3_600_000_000, Ordering::SeqCst);
            close_idle(&d).await.unwrap();
            let firing: Vec<(String, i64)> = d.outbox.alerts().iter().filter(|a| a.kind == AlertKind::Firing).map(|a| (a.key.clone(), a.window.as_ref().unwrap().start_micros)).collect();
            let want: Vec<(String, i64)> = expected.iter().filter(|(_, (c, s))| s / *c as f64 > 60.0).map(|(k, _)| k.clone()).collect();
            let mut firing_sorted = firing.clone();
            firing_sorted.sort();
            prop_assert_eq!(firing_sorted, want);
            Ok(())
        })?;
    }
}

const SCHEDULE: &str = include_str!("../../../events/window-aggregator-schedule.json");

fn lambda_event(payload: &str) -> lambda_runtime::LambdaEvent<window_aggregator::Trigger> {
    lambda_runtime::LambdaEvent::new(
        serde_json::from_str(payload).unwrap(),
        lambda_runtime::Context::default(),
    )
}

/// One binary, two triggers: the entry point tells a Kinesis batch from the schedule.
#[tokio::test]
async fn the_entry_point_serves_both_triggers_and_rejects_anything_else() {
    let d = deps(&[]);
    let response = window_aggregator::handle(&d, lambda_event(MICRO))
        .await
        .unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert!(!windows(&d).is_empty());

    // The sample schedule event fires at 12:05Z, well after the sample's minute closed.
    let schedule: Value = serde_json::from_str(SCHEDULE).unwrap();
    let fired = chrono::DateTime::parse_from_rfc3339(schedule["time"].as_str().unwrap())
        .unwrap()
        .timestamp_micros();
    d.clock.0.store(fired, Ordering::SeqCst);
    let before = d.outbox.alerts().len() as u64;
    let response = window_aggregator::handle(&d, lambda_event(SCHEDULE))
        .await
        .unwrap();
    assert!(
        response["windowsClosed"].as_u64().unwrap() > 0,
        "{response}"
    );
    assert!(d.store.windows().iter().all(|w| w.closed && w.settled));
    assert_eq!(
        before + response["alertsWritten"].as_u64().unwrap(),
        d.outbox.alerts().len() as u64
    );

    assert!(
        window_aggregator::handle(&d, lambda_event(r#"{"hello": "world"}"#))
            .await
            .is_err()
    );
}

#[test]
fn operational_metrics_are_one_emf_line() {
    let report = window_aggregator::BatchReport {
        records_in: 100,
        readings: 97,
        malformed: 3,
        late: 2,
        windows_written: 5,
        windows_closed: 5,
        alerts_written: 1,
        ..Default::default()
    };
    let line = report.emf("streamwatch/window-aggregator", 1_795_262_400_000);
    assert!(!line.contains('\n'));
    let v: Value = serde_json::from_str(&line).unwrap();
    let directive = &v["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(v["_aws"]["Timestamp"], 1_795_262_400_000i64);
    assert_eq!(directive["Namespace"], "streamwatch/window-aggregator");
    let names: Vec<&str> = directive["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    for (name, value) in [
        ("RecordsIn", 100),
        ("Malformed", 3),
        ("LateRecords", 2),
        ("WindowsClosed", 5),
        ("AlertsWritten", 1),
    ] {
        assert!(names.contains(&name), "{name} declared");
        assert_eq!(v[name], value, "{name}");
    }
}

/// Closing stops at the invocation's deadline (after at least one window start) and leaves
/// the rest due for the next pass, which finishes them; starts in order.
#[tokio::test]
async fn closing_stops_at_the_deadline_and_the_next_pass_carries_on() {
    let d = deps(&[]);
    // A second shard that has delivered nothing holds the watermark back until the
    // schedule's probe finds it caught up: every window is still open then.
    d.probe.add_shard(streamwatch_core::progress::ShardInfo {
        shard: "shardId-000000000001".into(),
        parents: Vec::new(),
        closed: false,
    });
    let mut records = Vec::new();
    // In time order, as a shard carries them.
    for minute in 0..3 {
        for (i, device) in ["device1", "device2", "device3"].iter().enumerate() {
            let seq = (minute * 10 + i) as u64 + 1;
            records.push(kinesis(
                0,
                seq,
                change(
                    &format!("e{seq}"),
                    "INSERT",
                    device,
                    json!("70"),
                    T0 + minute as i64 * MIN,
                    &format!("i{seq}"),
                    false,
                ),
            ));
        }
    }
    let (_, report) = process_batch(&d, &KinesisEvent { records }).await;
    assert_eq!(report.windows_closed, 0);
    assert_eq!(d.store.windows().iter().filter(|w| !w.settled).count(), 9);
    // The schedule with a deadline already passed: one start (three keys), then it stops.
    d.clock.0.store(T0 + 10 * MIN, Ordering::SeqCst);
    let report = window_aggregator::close_idle_within(&d, Some(tokio::time::Instant::now()))
        .await
        .unwrap();
    assert_eq!(report.windows_closed, 3);
    assert!(report.close_deferred);
    let closed: Vec<i64> = d
        .store
        .windows()
        .iter()
        .filter(|w| w.settled)
        .map(|w| w.start_micros)
        .collect();
    assert_eq!(closed, vec![T0; 3], "the oldest start first");
    let report = close_idle(&d).await.unwrap();
    assert_eq!(report.windows_closed, 6);
    assert!(d.store.windows().iter().all(|w| w.settled));
    let firing: Vec<(String, i64)> = d
        .outbox
        .alerts()
        .iter()
        .map(|a| (a.key.clone(), a.window.as_ref().unwrap().start_micros))
        .collect();
    assert_eq!(firing.len(), 9, "every window fired once: {firing:?}");
}
