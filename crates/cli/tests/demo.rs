//! `streamwatch demo` end to end: deterministic, the story's notifications, a report with
//! one chart per turbine, one-line errors.

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
    assert_eq!(
        (
            kinds["firing"].as_u64(),
            kinds["reminder"].as_u64(),
            kinds["resolved"].as_u64()
        ),
        (Some(2), Some(1), Some(2))
    );
    assert!(
        kinds["event"].as_u64().unwrap() > 0,
        "severity-4 accidents notify"
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
