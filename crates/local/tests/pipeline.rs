//! The pipeline's real handlers on the embedded backends, checked against models computed
//! from the inputs: accidents grouped by (County, State) as the template configures the
//! alerter, the turbine story's episodes, and the alerter's settings against the template.

use std::collections::{BTreeMap, BTreeSet};

use streamwatch_core::KinesisEvent;
use streamwatch_core::notify::NotificationKind;
use streamwatch_local::pipeline::{ALERTER_ENV, Pipeline};
use streamwatch_local::readings::{Imperfections, ReadingsStream};
use streamwatch_local::scenario::TurbineScenario;

/// Accidents from the reference fixture through the real metrics-publisher and alerter,
/// grouped as the template configures it: nothing goes out alone; the alerter's schedule
/// sends nothing before the 30 s group wait, then one notification per (County, State)
/// listing exactly its severity-4 accidents (grouped here from the fixture's own fields).
#[tokio::test]
async fn severe_accidents_go_out_as_one_notification_per_county_and_state() {
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
    // The model: severity >= 4 rows by their County and State columns.
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, d) in &payloads {
        let row: serde_json::Value = serde_json::from_slice(d).unwrap();
        if row["Severity"].as_i64() >= Some(4) {
            let group = format!(
                "County={}, State={}",
                row["County"].as_str().unwrap(),
                row["State"].as_str().unwrap()
            );
            expected
                .entry(group)
                .or_default()
                .insert(row["ID"].as_str().unwrap().to_owned());
        }
    }
    assert!(expected.len() > 5 && expected.values().any(|ids| ids.len() > 3));
    let severe: usize = expected.values().map(BTreeSet::len).sum();

    let mut p = Pipeline::new(900).unwrap();
    // 2026-11-21T12:30Z: the fixture's Txn_Timestamps are within CloudWatch's window.
    let now = 1_795_264_200_000_000;
    let totals = p.replay_accidents(&payloads, 2, now).await;
    assert_eq!(totals.given_up, 0);
    assert_eq!(p.accident_records, payloads.len() as u64);
    assert!(p.deliver_alerts().await.is_empty(), "grouped: none alone");
    assert_eq!(p.alerter_totals.grouped, severe as u64);
    assert!(p.redeliver_alerts().await.is_empty());
    assert_eq!(
        p.alerter_totals.grouped, severe as u64,
        "a retry joins nothing twice"
    );
    assert!(
        p.alerter_schedule(now + 29_000_000).await.is_empty(),
        "within the group wait"
    );

    let sent = p.alerter_schedule(now + 30_000_000).await;
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &sent {
        let body: serde_json::Value = serde_json::from_str(&m.json).unwrap();
        let ids: BTreeSet<String> = body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["key"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(body["count"].as_u64(), Some(ids.len() as u64));
        assert!(
            m.subject
                .starts_with(&format!("[ALERT] {} accident-severity alert", ids.len()))
        );
        let group = m.attributes["group"].clone();
        assert!(
            got.insert(group, ids).is_none(),
            "one notification per group"
        );
    }
    assert_eq!(got, expected);
    assert!(
        p.alerter_schedule(now + 600_000_000).await.is_empty(),
        "each group once"
    );
    assert!(p.metric_requests >= 1);
}

/// The embedded alerter's settings are the template's parameter defaults.
#[test]
fn the_alerter_runs_with_the_template_defaults() {
    let template = include_str!("../../../template.yaml");
    let default_of = |parameter: &str| -> String {
        let mut lines = template
            .lines()
            .skip_while(|l| l.trim() != format!("{parameter}:"));
        lines
            .next()
            .unwrap_or_else(|| panic!("{parameter} not in template.yaml"));
        let line = lines.find(|l| l.trim().starts_with("Default:")).unwrap();
        line.trim()["Default:".len()..]
            .trim()
            .trim_matches('"')
            .to_owned()
    };
    let env: BTreeMap<&str, &str> = ALERTER_ENV.into_iter().collect();
    assert_eq!(
        env["GROUP_BY"],
        format!("accident-severity={}", default_of("AccidentGroupBy"))
    );
    assert_eq!(env["GROUP_WAIT_SECONDS"], default_of("GroupWaitSeconds"));
    assert_eq!(
        env["GROUP_INTERVAL_SECONDS"],
        default_of("GroupIntervalSeconds")
    );
    assert!(template.contains("GROUP_BY: !Sub \"accident-severity=${AccidentGroupBy}\""));
}

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
