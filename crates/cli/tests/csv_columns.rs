//! The producers check what they are given: `demo --csv` and `replay accidents` refuse a
//! file without the columns the metric filter, the alert rule and the dimensions read, in
//! one line naming them and before any AWS call (no endpoint is running here).

mod common;

use common::{streamwatch, text};
use streamwatch_tests::workspace_root;

/// The shipped sample with some columns dropped (by name, from the header and every row).
fn sample_without(columns: &[&str]) -> std::path::PathBuf {
    let root = workspace_root();
    let mut reader =
        csv::Reader::from_path(root.join("tests/fixtures/us-accidents-sample.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let keep: Vec<usize> = (0..headers.len())
        .filter(|&i| !columns.contains(&&headers[i]))
        .collect();
    let path = std::env::temp_dir().join(format!(
        "streamwatch-csv-without-{}-{}.csv",
        columns.join("-"),
        std::process::id()
    ));
    let mut writer = csv::Writer::from_path(&path).unwrap();
    writer
        .write_record(keep.iter().map(|&i| &headers[i]))
        .unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        writer.write_record(keep.iter().map(|&i| &row[i])).unwrap();
    }
    writer.flush().unwrap();
    path
}

fn assert_one_line_naming(out: &std::process::Output, names: &str) {
    assert_eq!(out.status.code(), Some(64), "{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{}", text(out));
    assert!(stderr.starts_with("streamwatch: "), "{}", text(out));
    assert!(
        stderr.contains(&format!("no {names} column")),
        "{}",
        text(out)
    );
    assert!(out.stdout.is_empty(), "{}", text(out));
}

#[tokio::test]
async fn demo_refuses_etc_passwd_and_a_csv_without_the_dimension_columns() {
    let out = streamwatch(&["demo", "--csv", "/etc/passwd", "--minutes", "1"]).await;
    assert_one_line_naming(&out, "ID, Severity, City, County");

    let csv = sample_without(&["City", "County"]);
    let out = streamwatch(&["demo", "--csv", csv.to_str().unwrap(), "--minutes", "1"]).await;
    assert_one_line_naming(&out, "City, County");
    let _ = std::fs::remove_file(csv);
}

#[tokio::test]
async fn replay_refuses_a_csv_without_severity_before_calling_aws() {
    let csv = sample_without(&["Severity"]);
    // An endpoint nobody listens on: the check must come first.
    let out = streamwatch(&[
        "replay",
        "accidents",
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--stream",
        "s",
        "--csv",
        csv.to_str().unwrap(),
    ])
    .await;
    assert_one_line_naming(&out, "Severity");
    let out = streamwatch(&[
        "replay",
        "accidents",
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--stream",
        "s",
        "--csv",
        "/etc/passwd",
    ])
    .await;
    assert_one_line_naming(&out, "ID, Severity, City, County");
    let _ = std::fs::remove_file(csv);
}
