//! `streamwatch dev` end to end against moto: `dev up` creates the stack from template.yaml,
//! the sample accidents CSV is replayed, a gust is simulated, `dev run` runs the three real
//! function binaries until the stack is quiet; then CloudWatch holds the metric sums an
//! independent count over the CSV gives, the alerts table the expected alerts, and SNS
//! exactly the expected messages, once each.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
mod common;

use common::stack::{cloudwatch_sums, config, dev_run, dev_up, expected_metrics};
use common::{FUNCTIONS, function_binaries, streamwatch, text};
use streamwatch_tests::{MotoServer, workspace_root};

use streamwatch_tests::scan_all;

fn s(item: &HashMap<String, AttributeValue>, k: &str) -> String {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_up_replay_simulate_and_run_until_idle() {
    let bin_dir = function_binaries();
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let root = workspace_root();
    let state = std::env::temp_dir().join(format!("streamwatch-dev-moto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let state_arg = state.to_str().unwrap();
    let csv = root.join("tests/fixtures/us-accidents-sample.csv");

    // GIVEN the stack made by `dev up` from template.yaml, with 3 s windows closed 15 s late
    // (so the last ones close on the schedule well after the last reading is delivered)
    dev_up(
        &endpoint,
        &state,
        // One email per accident, as these checks count them (the template groups severe
        // accidents by county since #19; tests/tests/group_alerts.rs covers that).
        &[
            "WindowSeconds=3",
            "AllowedLatenessSeconds=15",
            "AccidentGroupBy=",
        ],
    )
    .await;
    let stack: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("stack.json")).unwrap()).unwrap();
    for (logical, reference) in [
        ("ReadingsTable", "streamwatch-ReadingsTable"),
        ("AccidentsStream", "streamwatch-AccidentsStream"),
        ("AlertsTable", "streamwatch-AlertsTable"),
        (
            "AlertsTopic",
            "arn:aws:sns:us-east-1:123456789012:streamwatch-AlertsTopic",
        ),
    ] {
        assert_eq!(stack["resources"][logical]["ref"], reference, "{stack}");
    }
    // moto has no Kinesis streaming destination: the readings table streams to dev run.
    assert_eq!(
        stack["forwards"][0]["kinesis_stream"],
        "streamwatch-ReadingsStream"
    );

    // AND the sample CSV replayed and a gust on device1 (calm readings stay under 40 mph)
    let replay = streamwatch(&[
        "replay",
        "accidents",
        "--endpoint-url",
        &endpoint,
        "--stream",
        "streamwatch-AccidentsStream",
        "--csv",
        csv.to_str().unwrap(),
    ])
    .await;
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay));
    let simulate = streamwatch(&[
        "simulate",
        "turbines",
        "--endpoint-url",
        &endpoint,
        "--table",
        "streamwatch-ReadingsTable",
        "--devices",
        "2",
        "--rate",
        "4",
        "--duration",
        "12",
        "--min",
        "25",
        "--max",
        "40",
        "--gust",
        "device1:90:6",
    ])
    .await;
    assert_eq!(simulate.status.code(), Some(0), "{}", text(&simulate));

    // WHEN dev run runs the functions "until idle for 1 s": too short for the last windows
    // (3 s windows, 15 s lateness, the schedule's 10 s grace, every 2 s), so it waits for
    // them, as a newcomer's `dev run --until-idle 30` must. (The CLI before this waited the
    // 1 s and stopped before any window closed: SNS got only the 37 accident messages.)
    let run = dev_run(&state, &bin_dir, "1", Duration::from_secs(240)).await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("dev run: stopped (idle)"), "{}", text(&run));
    assert!(
        stdout.contains("dev run: stops after 35 s without records (not 1 s) (")
            && stdout.contains(": window 3 s + lateness 15 s + grace 10 s + schedule 2 s + 5 s)"),
        "{}",
        text(&run)
    );
    for f in FUNCTIONS {
        assert!(
            stdout.contains(&format!("streamwatch-{f} ")),
            "no invocation of {f}: {}",
            text(&run)
        );
    }

    let sdk = config(&endpoint).await;
    let (expected_series, severe_ids) = expected_metrics(&csv);
    assert_eq!(severe_ids.len(), 37);

    // THEN CloudWatch holds, per (severity, city, county), the count of Severity > 2 rows
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let sums = cloudwatch_sums(&cw).await;
    assert_eq!(sums, expected_series);
    assert_eq!(sums.values().sum::<f64>(), 139.0);

    // AND the alerts table holds one event alert per Severity 4 row, and device1's window
    // alerts: firing, then one resolved; none for device2
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let items = scan_all(&ddb, "streamwatch-AlertsTable").await;
    let alerts: Vec<&HashMap<String, AttributeValue>> = items
        .iter()
        .filter(|i| s(i, "record_type") == "alert")
        .collect();
    let mut accident_keys: Vec<String> = alerts
        .iter()
        .filter(|a| s(a, "rule") == "accident-severity")
        .map(|a| {
            assert_eq!(s(a, "kind"), "event");
            s(a, "key")
        })
        .collect();
    accident_keys.sort();
    assert_eq!(accident_keys, severe_ids);
    let windows: Vec<(String, String)> = alerts
        .iter()
        .filter(|a| s(a, "rule") == "windspeed-avg")
        .map(|a| (s(a, "key"), s(a, "kind")))
        .collect();
    assert!(windows.iter().all(|(k, _)| k == "device1"), "{windows:?}");
    let firing = windows.iter().filter(|(_, kind)| kind == "firing").count();
    let resolved = windows
        .iter()
        .filter(|(_, kind)| kind == "resolved")
        .count();
    assert!(firing >= 1 && resolved == 1, "{windows:?}");
    assert_eq!(alerts.len(), 37 + firing + resolved);

    // AND SNS holds exactly one message per Severity 4 accident, and device1's FIRING then
    // RESOLVED ([message id, message, subject, attributes, group id] each)
    let sent = moto.sns_notifications();
    let attribute = |n: &serde_json::Value, name: &str| {
        n[3][name]["Value"].as_str().unwrap_or_default().to_owned()
    };
    let mut accident_notified: Vec<String> = sent
        .iter()
        .filter(|n| attribute(n, "rule") == "accident-severity")
        .map(|n| attribute(n, "key"))
        .collect();
    accident_notified.sort();
    assert_eq!(accident_notified, severe_ids);
    let wind: Vec<String> = sent
        .iter()
        .filter(|n| attribute(n, "rule") == "windspeed-avg")
        .map(|n| n[2].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(wind.len(), 2, "{wind:?}");
    assert!(
        wind[0].starts_with("[FIRING] Wind speed avg") && wind[0].ends_with("on device1"),
        "{wind:?}"
    );
    assert!(
        wind[1].starts_with("[RESOLVED] Wind speed avg") && wind[1].ends_with("on device1"),
        "{wind:?}"
    );
    assert_eq!(sent.len(), 37 + 2);

    // AND nothing was given up: every on-failure queue is empty
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    for q in ["MetricsPublisherDLQ", "WindowAggregatorDLQ", "AlerterDLQ"] {
        let url = stack["resources"][q]["ref"].as_str().unwrap();
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        assert!(got.messages().is_empty(), "{q}: {:?}", got.messages());
    }

    // AND a second dev run resumes from the checkpoints: nothing is delivered again
    let again = streamwatch(&[
        "dev",
        "run",
        "--state-dir",
        state_arg,
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--until-idle",
        "2",
    ])
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert!(!again_out.contains("shardId-"), "{}", text(&again));
    assert_eq!(moto.sns_notifications().len(), 37 + 2);
    let _ = std::fs::remove_dir_all(&state);
}

/// Every record in every shard of a Kinesis stream: (shard id, sequence number).
async fn stream_records(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, String)> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let mut out = Vec::new();
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        loop {
            let page = kinesis
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            out.extend(
                page.records()
                    .iter()
                    .map(|r| (shard.shard_id().to_owned(), r.sequence_number().to_owned())),
            );
            match page.next_shard_iterator {
                Some(next) => iterator = next,
                None => break,
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_always_fails_sends_its_batches_to_the_on_failure_queue() {
    // GIVEN a stack whose metrics-publisher binary exits at once (the others are real)
    let real = function_binaries();
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let root = workspace_root();
    let state = std::env::temp_dir().join(format!("streamwatch-dev-fail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let bins = state.join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    for f in ["window-aggregator", "alerter"] {
        std::os::unix::fs::symlink(real.join(f), bins.join(f)).unwrap();
    }
    let broken = bins.join("metrics-publisher");
    std::fs::write(&broken, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Short windows and schedule: `--until-idle` waits for windows to close (25 s here).
    dev_up(&endpoint, &state, &["WindowSeconds=3"]).await;
    // AND ten plain accident records on the stream
    let replay = streamwatch(&[
        "replay",
        "accidents",
        "--endpoint-url",
        &endpoint,
        "--stream",
        "streamwatch-AccidentsStream",
        "--csv",
        root.join("tests/fixtures/us-accidents-sample.csv")
            .to_str()
            .unwrap(),
        "--no-aggregate",
        "--start-row",
        "490",
    ])
    .await;
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay));
    let sdk = config(&endpoint).await;
    let on_stream = stream_records(
        &aws_sdk_kinesis::Client::new(&sdk),
        "streamwatch-AccidentsStream",
    )
    .await;
    assert!(!on_stream.is_empty());

    // WHEN dev run runs until idle
    let run = dev_run(&state, &bins, "3", Duration::from_secs(120)).await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("given up (RetryAttemptsExhausted) -> "),
        "{}",
        text(&run)
    );

    // THEN the on-failure queue holds Lambda's invocation records covering every record,
    // each batch after 1 + MaximumRetryAttempts (5) attempts
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = "streamwatch-MetricsPublisherDLQ";
    let url = sqs
        .get_queue_url()
        .queue_name(url)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mut records = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            break;
        }
        for m in got.messages() {
            records.push(serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let mut covered = 0;
    for r in &records {
        assert_eq!(
            r["requestContext"]["condition"], "RetryAttemptsExhausted",
            "{r}"
        );
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 6, "{r}");
        assert_eq!(
            r["requestContext"]["functionArn"],
            "arn:aws:lambda:us-east-1:123456789012:function:streamwatch-metrics-publisher"
        );
        let info = &r["KinesisBatchInfo"];
        assert_eq!(
            info["streamArn"],
            "arn:aws:kinesis:us-east-1:123456789012:stream/streamwatch-AccidentsStream"
        );
        let shard = info["shardId"].as_str().unwrap();
        let in_shard: Vec<&String> = on_stream
            .iter()
            .filter(|(s, _)| s == shard)
            .map(|(_, seq)| seq)
            .collect();
        assert!(in_shard.contains(&&info["startSequenceNumber"].as_str().unwrap().to_owned()));
        assert!(in_shard.contains(&&info["endSequenceNumber"].as_str().unwrap().to_owned()));
        covered += info["batchSize"].as_u64().unwrap();
    }
    assert_eq!(covered as usize, on_stream.len(), "{records:?}");
    // AND the other functions' queues are empty
    for q in ["streamwatch-WindowAggregatorDLQ", "streamwatch-AlerterDLQ"] {
        let url = sqs
            .get_queue_url()
            .queue_name(q)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let got = sqs.receive_message().queue_url(&url).send().await.unwrap();
        assert!(got.messages().is_empty(), "{q}");
    }
    let _ = std::fs::remove_dir_all(&state);
}
