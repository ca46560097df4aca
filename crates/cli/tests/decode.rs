//! `streamwatch decode` against the reference de-aggregator's output: every fixture must
//! come out line for line, byte for byte, as `aws-kinesis-agg` produced it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn streamwatch(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamwatch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("streamwatch runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("streamwatch exits")
}

fn assert_matches_reference(name: &str) {
    let event = fixtures().join(format!("{name}.json"));
    let out = streamwatch(&["decode", event.to_str().unwrap()], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected =
        std::fs::read_to_string(fixtures().join(format!("{name}.expected.jsonl"))).unwrap();
    let actual = String::from_utf8(out.stdout).unwrap();
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    assert_eq!(a.len(), e.len(), "{name}: line count");
    for (i, (a, e)) in a.iter().zip(&e).enumerate() {
        assert_eq!(a, e, "{name}: line {}", i + 1);
    }
}

#[test]
fn kpl_accidents_match_the_reference_deaggregator() {
    assert_matches_reference("kinesis-accidents-kpl");
}

#[test]
fn plain_accidents_match_the_reference_deaggregator() {
    assert_matches_reference("kinesis-accidents-plain");
}

#[test]
fn edge_cases_match_the_reference_deaggregator() {
    assert_matches_reference("kinesis-kpl-edge-cases");
}

#[test]
fn json_mode_unmarshals_change_records_and_notes_binary() {
    let event = fixtures().join("kinesis-windspeed-changes.json");
    let out = streamwatch(&["decode", "--data", "json", event.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 60);
    let first = &lines[0]["data"];
    assert_eq!(first["eventName"], "INSERT");
    assert_eq!(first["dynamodb"]["NewImage"]["deviceID"], "device1");
    assert_eq!(first["dynamodb"]["NewImage"]["value"], 60);
    assert_eq!(
        first["dynamodb"]["ApproximateCreationDateTime"],
        1_795_262_400_542_892_i64
    );

    let edge = fixtures().join("kinesis-kpl-edge-cases.json");
    let out = streamwatch(&["decode", "--data", "json", edge.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let binary = text
        .lines()
        .find(|l| l.contains("\"plain-binary\""))
        .unwrap();
    let binary: serde_json::Value = serde_json::from_str(binary).unwrap();
    assert!(binary["data"].as_str().unwrap().starts_with("AAECAwQF"));
    assert!(binary["note"].as_str().unwrap().contains("not JSON"));
    let json_line = text.lines().find(|l| l.contains("\"plain-json\"")).unwrap();
    let json_line: serde_json::Value = serde_json::from_str(json_line).unwrap();
    assert_eq!(json_line["data"]["ID"], "A-2716613");
}

/// An aggregated record with a correct digest but a broken body: exit 2, the record named
/// on stderr with its sequence number, the other records still printed.
#[test]
fn malformed_aggregate_exits_2_and_names_the_record() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    // pk table ["a"], one record whose partition key index (9) is out of range.
    let body = [0x0a, 0x01, b'a', 0x1a, 0x05, 0x08, 0x09, 0x1a, 0x01, b'x'];
    let mut data = streamwatch_core::kpl::MAGIC.to_vec();
    data.extend_from_slice(&body);
    data.extend_from_slice(&md5_digest(&body));
    let event = serde_json::json!({"Records": [
        {"eventID": "shardId-000000000000:100", "kinesis": {"partitionKey": "a", "sequenceNumber": "100",
         "data": b64.encode(&data), "approximateArrivalTimestamp": 1.5}},
        {"eventID": "shardId-000000000000:101", "kinesis": {"partitionKey": "b", "sequenceNumber": "101",
         "data": b64.encode(b"{\"ok\":true}"), "approximateArrivalTimestamp": 1.5}},
        {"eventID": "shardId-000000000000:102", "kinesis": {"partitionKey": "c", "sequenceNumber": "102",
         "data": "%%%not-base64", "approximateArrivalTimestamp": 1.5}}
    ]});
    let out = streamwatch(&["decode", "-"], Some(event.to_string().as_bytes()));
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.contains("\"sequenceNumber\": \"101\""));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("sequence 100") && stderr.contains("out of range"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sequence 102") && stderr.contains("base64"),
        "{stderr}"
    );
}

fn md5_digest(bytes: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(bytes).into()
}

#[test]
fn unreadable_input_is_one_line_and_exit_1() {
    for (args, stdin) in [
        (vec!["decode", "/nonexistent/event.json"], None),
        (vec!["decode", "-"], Some(&b"{not json"[..])),
        (vec!["decode", "-"], Some(&b"[1,2]"[..])),
    ] {
        let out = streamwatch(&args, stdin);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("streamwatch: "), "{stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
    }
    let out = streamwatch(&["decode", "--data", "yaml", "x"], None);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
}
