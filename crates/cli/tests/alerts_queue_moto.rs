//! `streamwatch alerts redrive --queue` against moto, with the real function binaries under
//! `streamwatch dev run`: the metrics-publisher's alerts-table writes fail for good (a fault
//! proxy answers 500 to every DynamoDB write it makes), so its batches are given up and land
//! in its on-failure queue as Lambda's batch pointers. The redrive re-reads them from the
//! stream and writes their alerts; the alerter then sends exactly one message per accident
//! with Severity >= 4 (counted from the CSV, not by the function's rule), the queue is
//! empty, and a pointer redriven a second time adds nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::stack::{dev_run, dev_up};
use common::{FUNCTIONS, function_binaries, streamwatch, text};
use serde_json::Value;
use streamwatch_tests::faults::{Fault, FaultPlan, FaultProxy};
use streamwatch_tests::{MotoServer, scan_all, workspace_root};

const CSV: &str = "tests/fixtures/us-accidents-sample.csv";
const QUEUE: &str = "streamwatch-MetricsPublisherDLQ";
const TABLE: &str = "streamwatch-AlertsTable";

/// The accidents an operator must hear about: Severity 4 and above, by ID, read from the
/// CSV with the csv crate (the template's `AlertSeverity` default is 4).
fn severe_ids(root: &Path, start_row: usize) -> BTreeSet<String> {
    let mut reader = csv::Reader::from_path(root.join(CSV)).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, severity) = (col("ID"), col("Severity"));
    reader
        .records()
        .skip(start_row)
        .map(Result::unwrap)
        .filter(|r| r[severity].parse::<u32>().unwrap() >= 4)
        .map(|r| r[id].to_owned())
        .collect()
}

/// Binaries for `dev run`: the real ones, the metrics-publisher's endpoint swapped for
/// the proxy when `through` is given.
fn bin_dir(dir: &Path, through: Option<&str>) -> std::path::PathBuf {
    let real = function_binaries();
    std::fs::create_dir_all(dir).unwrap();
    for f in FUNCTIONS {
        let path = dir.join(f);
        match (f, through) {
            ("metrics-publisher", Some(proxy)) => {
                let script = format!(
                    "#!/bin/sh\nAWS_ENDPOINT_URL={proxy} exec {} \"$@\"\n",
                    real.join(f).display()
                );
                std::fs::write(&path, script).unwrap();
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .unwrap();
            }
            _ => std::os::unix::fs::symlink(real.join(f), &path).unwrap(),
        }
    }
    dir.to_path_buf()
}

/// `dev run` as this test runs it; its stdout.
async fn run_until_idle(state: &Path, bins: &Path) -> String {
    let run = dev_run(state, bins, "3", Duration::from_secs(300)).await;
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// Every message of the queue, read and left in it (visible again at once).
async fn peek(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut handles = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            break;
        }
        for m in got.messages() {
            bodies.push(m.body().unwrap().to_owned());
            handles.push(m.receipt_handle().unwrap().to_owned());
        }
    }
    for h in handles {
        sqs.change_message_visibility()
            .queue_url(url)
            .receipt_handle(h)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    bodies
}

/// Alert ids in the alerts table (`record_type = alert`).
async fn alert_keys(ddb: &aws_sdk_dynamodb::Client) -> Vec<String> {
    scan_all(ddb, TABLE)
        .await
        .iter()
        .filter(|i| i.get("record_type").and_then(|v| v.as_s().ok()) == Some(&"alert".into()))
        .map(|i| {
            let alert: Value =
                serde_json::from_str(i["alert"].as_s().unwrap()).expect("alert JSON");
            alert["key"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Whether `text` names `id` as a whole word (`A-1` is not in `A-12`).
fn names(text: &str, id: &str) -> bool {
    text.match_indices(id).any(|(at, _)| {
        !text[at + id.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// Accident IDs in the SNS messages moto holds, with how many messages named each.
fn sent_ids(moto: &MotoServer, ids: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for n in moto.sns_notifications() {
        let text = n.to_string();
        for id in ids.iter().filter(|id| names(&text, id)) {
            *out.entry(id.clone()).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_given_up_on_alert_writes_are_redriven_from_the_queue_once() {
    // GIVEN the dev stack on moto, and a proxy that fails every DynamoDB write
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let writes = [
        "PutItem",
        "BatchWriteItem",
        "UpdateItem",
        "TransactWriteItems",
    ];
    let plan: FaultPlan = Arc::new(move |op: &str, _n: u64| {
        if writes.contains(&op) {
            Fault::Http500
        } else {
            Fault::Pass
        }
    });
    let proxy = FaultProxy::start(&endpoint, plan, Duration::from_secs(1)).await;
    let root = workspace_root();
    let state = std::env::temp_dir().join(format!("streamwatch-redrive-q-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    // One email per accident, as these checks count them (the template groups severe
    // accidents by county since #19; tests/tests/group_alerts.rs covers that).
    dev_up(&endpoint, &state, &["WindowSeconds=3", "AccidentGroupBy="]).await;
    // AND the sample CSV replayed KPL-aggregated, then its last 100 rows again as plain
    // records (a producer re-sending under new sequence numbers)
    let csv = root.join(CSV);
    for extra in [&[][..], &["--no-aggregate", "--start-row", "400"][..]] {
        let mut args = vec![
            "replay",
            "accidents",
            "--endpoint-url",
            &endpoint,
            "--stream",
            "streamwatch-AccidentsStream",
            "--csv",
            csv.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let replay = streamwatch(&args).await;
        assert_eq!(replay.status.code(), Some(0), "{}", text(&replay));
    }
    let expected = severe_ids(&root, 0);
    assert!(expected.len() > 30, "{expected:?}");
    assert!(
        !severe_ids(&root, 400).is_empty(),
        "the resent rows hold severe accidents"
    );

    // WHEN dev run runs with the failing metrics-publisher
    let failing = run_until_idle(
        &state,
        &bin_dir(&state.join("bin-failing"), Some(&proxy.endpoint())),
    )
    .await;
    assert!(
        failing.contains("given up (RetryAttemptsExhausted) -> "),
        "{failing}"
    );
    let sdk = streamwatch_tests::sdk_config(&moto).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let url = sqs
        .get_queue_url()
        .queue_name(QUEUE)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    // THEN the batches are in the queue and no alert exists, nothing was sent
    let pointers = peek(&sqs, &url).await;
    assert!(!pointers.is_empty());
    assert!(
        pointers.iter().all(|b| b.contains("KinesisBatchInfo")),
        "{pointers:?}"
    );
    assert_eq!(alert_keys(&ddb).await, Vec::<String>::new());
    assert!(moto.sns_notifications().is_empty());

    // WHEN the queue is redriven
    let redrive = streamwatch(&[
        "alerts",
        "redrive",
        "--queue",
        &url,
        "--table",
        TABLE,
        "--endpoint-url",
        &endpoint,
        "--template",
        root.join("template.yaml").to_str().unwrap(),
    ])
    .await;
    assert_eq!(redrive.status.code(), Some(0), "{}", text(&redrive));
    let report: Value = serde_json::from_slice(&redrive.stdout).expect("one JSON line");
    // THEN every pointer was redone and deleted, one alert per severe accident written
    assert_eq!(report["messages"], pointers.len(), "{report}");
    assert_eq!(report["drained"], pointers.len(), "{report}");
    assert_eq!(report["alerts_written"], expected.len(), "{report}");
    assert!(peek(&sqs, &url).await.is_empty());
    let mut keys = alert_keys(&ddb).await;
    keys.sort();
    assert_eq!(keys, expected.iter().cloned().collect::<Vec<_>>());

    // WHEN one pointer comes back (a redrive that died before its delete) and is redriven
    sqs.send_message()
        .queue_url(&url)
        .message_body(&pointers[0])
        .send()
        .await
        .unwrap();
    let again = streamwatch(&[
        "alerts",
        "redrive",
        "--queue",
        &url,
        "--table",
        TABLE,
        "--endpoint-url",
        &endpoint,
        "--template",
        root.join("template.yaml").to_str().unwrap(),
    ])
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let report: Value = serde_json::from_slice(&again.stdout).expect("one JSON line");
    assert_eq!(
        (
            report["drained"].as_u64(),
            report["alerts_written"].as_u64()
        ),
        (Some(1), Some(0)),
        "{report}"
    );
    // AND a pointer whose records are gone (a deleted shard) is kept and said so
    let gone = pointers[0].replace("shardId-0000", "shardId-9999");
    sqs.send_message()
        .queue_url(&url)
        .message_body(&gone)
        .send()
        .await
        .unwrap();
    let expired = streamwatch(&[
        "alerts",
        "redrive",
        "--queue",
        &url,
        "--table",
        TABLE,
        "--endpoint-url",
        &endpoint,
        "--template",
        root.join("template.yaml").to_str().unwrap(),
    ])
    .await;
    assert_eq!(expired.status.code(), Some(1), "{}", text(&expired));
    let report: Value = serde_json::from_slice(&expired.stdout).expect("one JSON line");
    assert_eq!(
        (report["expired"].as_u64(), report["drained"].as_u64()),
        (Some(1), Some(0)),
        "{report}"
    );
    assert!(
        String::from_utf8_lossy(&expired.stderr).contains("kept in the queue"),
        "{}",
        text(&expired)
    );
    assert_eq!(peek(&sqs, &url).await, vec![gone]);

    // WHEN dev run runs again with the real binaries (the alerter reads the new alerts)
    run_until_idle(&state, &bin_dir(&state.join("bin-real"), None)).await;
    // THEN exactly one message per severe accident was sent
    let sent = sent_ids(&moto, &expected);
    assert_eq!(sent.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(sent.values().all(|&n| n == 1), "{sent:?}");
    assert_eq!(moto.sns_notifications().len(), expected.len());
    let _ = std::fs::remove_dir_all(&state);
}
