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
