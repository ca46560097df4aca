//! `streamwatch demo` end to end: deterministic, the story's notifications, grouped accident
//! emails and a silenced turbine against models of the input, a report with one chart per
//! turbine, one-line errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn demo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_streamwatch"))
        .arg("demo")
        .args(args)
        .output()
        .expect("streamwatch runs")
}

#[test]
fn demo_is_deterministic_and_tells_the_story() {
    let dir = std::env::temp_dir().join(format!("streamwatch-demo-{}", std::process::id()));
    let report = dir.join("report.html");
    let run = || {
        let out = demo(&["--json", "--report", report.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run();
    let second = run();
    assert_eq!(
        first["sent"], second["sent"],
        "same seed, same notifications"
    );
    let kinds = &first["notifications_by_kind"];
    // device2's episode; device4's is silenced (see the test below).
    assert_eq!(
        (
            kinds["firing"].as_u64(),
            kinds["reminder"].as_u64(),
            kinds["resolved"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert!(
        kinds["group"].as_u64().unwrap() > 0,
        "severity-4 accidents notify, grouped"
    );
    assert!(first["duplicates_injected"].as_u64().unwrap() > 0);
    assert!(
        first["put_metric_data_calls"].as_u64().unwrap() * 10
            < first["reference_put_metric_data_calls"].as_u64().unwrap()
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        html.matches("<svg class=\"chart\"").count(),
        5,
        "one chart per turbine"
    );
    assert!(html.contains("[FIRING] Wind speed avg"));
    assert!(!html.contains("<script") && !html.contains("https://"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_and_unreadable_csv_are_one_line() {
    for (args, code) in [
        (vec!["--min", "80", "--max", "70"], 64),
        (vec!["--csv", "/nonexistent.csv"], 1),
        (vec!["--turbines", "x"], 64),
    ] {
        let out = demo(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("streamwatch: "));
    }
}

/// The demo keeps the raw layer as files in the archive's S3 layout: every accident row
/// under `accidents/dt=…/hr=…/` of its own `Txn_Timestamp`, every change record the readings
/// stream carried (injected duplicates included, as a stream source delivers them) under
/// `readings/`, GZIP JSON lines.
#[test]
fn demo_writes_the_raw_layer_in_the_archive_layout() {
    let dir = std::env::temp_dir().join(format!("streamwatch-demo-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = demo(&[
        "--minutes",
        "5",
        "--json",
        "--archive-dir",
        dir.to_str().unwrap(),
        "--report",
        dir.join("r.html").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut counts = std::collections::BTreeMap::new();
    let mut ids = std::collections::BTreeSet::new();
    for top in ["accidents", "readings"] {
        for day in std::fs::read_dir(dir.join(top)).unwrap() {
            let day = day.unwrap();
            let dt = day
                .file_name()
                .to_str()
                .unwrap()
                .strip_prefix("dt=")
                .unwrap()
                .to_owned();
            for hour in std::fs::read_dir(day.path()).unwrap() {
                let hour = hour.unwrap();
                let hr = hour
                    .file_name()
                    .to_str()
                    .unwrap()
                    .strip_prefix("hr=")
                    .unwrap()
                    .to_owned();
                for object in std::fs::read_dir(hour.path()).unwrap() {
                    let bytes = std::fs::read(object.unwrap().path()).unwrap();
                    for line in streamwatch_local::archive::read_lines(&bytes).unwrap() {
                        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                        if top == "accidents" {
                            let t = v["Txn_Timestamp"].as_str().unwrap();
                            assert_eq!((&t[..10], &t[11..13]), (dt.as_str(), hr.as_str()), "{v}");
                            ids.insert(v["ID"].as_str().unwrap().to_owned());
                        } else {
                            let micros = v["dynamodb"]["ApproximateCreationDateTime"]
                                .as_i64()
                                .unwrap();
                            let t = chrono::DateTime::from_timestamp_micros(micros).unwrap();
                            assert_eq!(
                                t.format("%Y-%m-%d/%H").to_string(),
                                format!("{dt}/{hr}"),
                                "{v}"
                            );
                        }
                        *counts.entry(top).or_insert(0u64) += 1;
                    }
                }
            }
        }
    }
    assert_eq!(
        counts["accidents"],
        summary["accident_rows"].as_u64().unwrap()
    );
    assert_eq!(
        ids.len() as u64,
        summary["accident_rows"].as_u64().unwrap(),
        "each row once"
    );
    assert_eq!(
        counts["readings"],
        summary["change_records"].as_u64().unwrap()
    );
    assert_eq!(
        counts.values().sum::<u64>(),
        summary["archived_records"].as_u64().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the demo with `--json` and the raw layer under `dir`; its summary.
fn demo_json(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let _ = std::fs::remove_dir_all(dir);
    let mut args = vec![
        "--json",
        "--archive-dir",
        dir.to_str().unwrap(),
        "--report",
        "",
    ];
    let report = dir.join("r.html");
    args[4] = report.to_str().unwrap();
    args.extend_from_slice(extra);
    let out = demo(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every JSON line of the raw layer's `top` prefix (`accidents`, `readings`).
fn archived(dir: &Path, top: &str) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    let mut stack = vec![dir.join(top)];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            for line in streamwatch_local::archive::read_lines(&bytes).unwrap() {
                lines.push(serde_json::from_slice(&line).unwrap());
            }
        }
    }
    lines
}

fn micros(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .timestamp_micros()
}

/// The demo's accident emails against a model of its input: the shipped CSV's severity-4
/// rows (read with the `csv` crate, its raw columns) grouped by (County, State) and the minute
/// the producer sent them in (their `Txn_Timestamp` in the raw layer). One email per group
/// and slice, listing exactly its accidents; none before the template's 30 s group wait after
/// its accidents arrived; a group's emails at least its 300 s interval apart; no accident
/// alone. And the silence on device4: the turbine emails are those of a run without the
/// silence minus device4's, which are recorded as silenced instead.
#[test]
fn demo_groups_accident_emails_and_silences_one_turbine() {
    let base = std::env::temp_dir().join(format!("streamwatch-demo-groups-{}", std::process::id()));
    let run = demo_json(&base.join("silenced"), &[]);
    let control = demo_json(&base.join("control"), &["--silence", "none"]);

    let csv_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/us-accidents-sample.csv");
    let mut reader = csv::Reader::from_path(csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, severity, county, state) = (
        column("ID"),
        column("Severity"),
        column("County"),
        column("State"),
    );
    let sent_minute: BTreeMap<String, String> = archived(&base.join("silenced"), "accidents")
        .iter()
        .map(|v| {
            let txn = v["Txn_Timestamp"].as_str().unwrap();
            (v["ID"].as_str().unwrap().to_owned(), txn[..16].to_owned())
        })
        .collect();
    let mut expected: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        if row[severity].parse::<u32>().unwrap() >= 4 {
            let minute = sent_minute[&row[id]].clone();
            expected
                .entry((row[county].to_owned(), row[state].to_owned(), minute))
                .or_default()
                .insert(row[id].to_owned());
        }
    }
    let severe: usize = expected.values().map(BTreeSet::len).sum();
    assert_eq!(severe, 37);
    assert!(expected.len() < severe, "the CSV has groups to make");

    let sent = run["sent"].as_array().unwrap();
    assert!(
        sent.iter().all(|s| s["kind"] != "event"),
        "no accident alone"
    );
    let mut got: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    let mut last_sent: BTreeMap<(String, String), i64> = BTreeMap::new();
    for s in sent.iter().filter(|s| s["kind"] == "group") {
        let ids: BTreeSet<String> = s["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let first = ids.first().unwrap();
        let bucket = expected
            .iter()
            .find(|(_, members)| members.contains(first))
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("{first} is not a severe accident"));
        let (c, st, minute) = &bucket;
        assert!(
            s["subject"]
                .as_str()
                .unwrap()
                .contains(&format!("(County={c}, State={st})")),
            "{s}"
        );
        let at = micros(s["sent_at"].as_str().unwrap());
        assert!(
            at >= micros(&format!("{minute}:00Z")) + 30_000_000,
            "before the group wait: {s}"
        );
        if let Some(previous) = last_sent.insert((c.clone(), st.clone()), at) {
            assert!(
                at - previous >= 300_000_000,
                "within the group interval: {s}"
            );
        }
        assert!(
            got.insert(bucket, ids).is_none(),
            "one email per group and slice: {s}"
        );
    }
    assert_eq!(
        got, expected,
        "every severe accident in exactly its group's email"
    );
    assert_eq!(
        run["group_notifications"].as_u64(),
        Some(expected.len() as u64)
    );
    assert_eq!(run["grouped_alerts"].as_u64(), Some(severe as u64));
    assert!(
        expected
            .keys()
            .map(|(c, s, _)| (c, s))
            .collect::<BTreeSet<_>>()
            .len()
            < expected.len(),
        "some group gets a second email"
    );

    let turbine = |summary: &serde_json::Value, key: &str| -> Vec<(String, String)> {
        summary["sent"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["key"].as_str().is_some_and(|k| k.starts_with("device")))
            .filter(|s| key.is_empty() || s["key"] == key)
            .map(|s| {
                (
                    s["key"].as_str().unwrap().to_owned(),
                    s["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let silenced: Vec<(String, String)> = run["silenced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_owned(),
                s["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        silenced,
        turbine(&control, "device4"),
        "device4's episode, held back"
    );
    assert!(!silenced.is_empty());
    let others: Vec<_> = turbine(&control, "")
        .into_iter()
        .filter(|(k, _)| k != "device4")
        .collect();
    assert_eq!(turbine(&run, ""), others, "nothing else changes");
    assert_eq!(control["silenced"].as_array().map(Vec::len), Some(0));
    let _ = std::fs::remove_dir_all(&base);
}
