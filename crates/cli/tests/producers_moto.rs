//! `streamwatch simulate turbines` and `streamwatch replay accidents` against moto: the real
//! binary writes, then the test reads back what the table and the stream hold.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_config::Region;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
mod common;

use common::{create_readings_table, read_stream, text};
use streamwatch_tests::MotoServer;
use streamwatch_tests::faults::{EVERY_QUICK_FAULT, Fault, FaultProxy, scripted_plan};

async fn config(endpoint: &str) -> aws_config::SdkConfig {
    streamwatch_adapters::aws::defaults()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await
}

/// Runs the real binary against `endpoint`.
async fn streamwatch(endpoint: &str, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--endpoint-url", endpoint]);
    common::streamwatch(&all).await
}

use streamwatch_tests::scan_all;

fn s(item: &HashMap<String, AttributeValue>, k: &str) -> String {
    item[k].as_s().unwrap().clone()
}

fn n(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item[k].as_n().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_writes_the_reference_items_with_a_gust() {
    let moto = MotoServer::start();
    let ddb = aws_sdk_dynamodb::Client::new(&config(&moto.endpoint()).await);
    create_readings_table(&ddb, "readings").await;

    let out = streamwatch(
        &moto.endpoint(),
        &[
            "simulate",
            "turbines",
            "--table",
            "readings",
            "--devices",
            "4",
            "--count",
            "30",
            "--gust",
            "device2:88:600",
            "--seed",
            "7",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 120 items in batches of 25: 5 calls (moto would accept 26, DynamoDB does not).
    assert!(
        stdout.contains("wrote 120 readings of 4 turbines to readings")
            && stdout.contains(": 5 BatchWriteItem calls"),
        "{stdout}"
    );

    let items = scan_all(&ddb, "readings").await;
    assert_eq!(items.len(), 120);
    let mut by_device: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for item in &items {
        let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "__typename",
                "createdAt",
                "deviceID",
                "id",
                "index",
                "updatedAt",
                "value"
            ]
        );
        let id = s(item, "id");
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert!(ids.insert(id));
        assert_eq!(s(item, "__typename"), "windspeed");
        let created = s(item, "createdAt");
        assert_eq!(s(item, "updatedAt"), created);
        assert!(
            chrono::NaiveDateTime::parse_from_str(&created, "%Y-%m-%dT%H:%M:%S%.3fZ").is_ok()
                && created.len() == 24,
            "{created}"
        );
        by_device
            .entry(s(item, "deviceID"))
            .or_default()
            .push((n(item, "index"), n(item, "value")));
    }
    assert_eq!(
        by_device.keys().collect::<Vec<_>>(),
        ["device1", "device2", "device3", "device4"]
    );
    for (device, readings) in &mut by_device {
        readings.sort_unstable();
        let indexes: Vec<u64> = readings.iter().map(|r| r.0).collect();
        assert_eq!(indexes, (0..30).collect::<Vec<_>>(), "{device}");
        for &(_, value) in readings.iter() {
            if device == "device2" {
                assert_eq!(value, 88, "the gust");
            } else {
                assert!((25..70).contains(&value), "{device}: {value}");
            }
        }
    }
    // Calm readings are spread over the range, not a constant.
    let calm: HashSet<u64> = by_device["device1"].iter().map(|r| r.1).collect();
    assert!(calm.len() > 5, "{calm:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_survives_throttling_errors_and_lost_responses() {
    let moto = MotoServer::start();
    let ddb = aws_sdk_dynamodb::Client::new(&config(&moto.endpoint()).await);
    create_readings_table(&ddb, "readings").await;
    // Every call of a batch fails at first, four times in a row (more than the SDK's own
    // three attempts), in every way the proxy knows but slowness.
    let plan = scripted_plan("BatchWriteItem", EVERY_QUICK_FAULT.to_vec());
    let proxy = FaultProxy::start(&moto.endpoint(), plan, Duration::from_secs(1)).await;
    let out = streamwatch(
        &proxy.endpoint(),
        &[
            "simulate",
            "turbines",
            "--table",
            "readings",
            "--devices",
            "5",
            "--count",
            "10",
            "--max-attempts",
            "20",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(proxy.total(Fault::Throttle) > 0 && proxy.total(Fault::LoseResponse) > 0);
    // A lost response is retried with the same ids: overwritten, never duplicated.
    let items = scan_all(&ddb, "readings").await;
    assert_eq!(items.len(), 50);
    let pairs: HashSet<(String, u64)> = items
        .iter()
        .map(|i| (s(i, "deviceID"), n(i, "index")))
        .collect();
    assert_eq!(pairs.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_reports_usage_and_aws_errors_in_one_line() {
    let moto = MotoServer::start();
    let no_name = streamwatch(&moto.endpoint(), &["simulate", "turbines", "--count", "1"]).await;
    assert_eq!(no_name.status.code(), Some(64), "{}", text(&no_name));
    let stderr = String::from_utf8_lossy(&no_name.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "streamwatch: need --table NAME or --stack NAME");
    assert_eq!(
        lines[1..],
        ["  hint: for the local stack: --stack local (after `streamwatch dev up`)"]
    );
    let bad_gust = streamwatch(
        &moto.endpoint(),
        &[
            "simulate",
            "turbines",
            "--table",
            "t",
            "--devices",
            "2",
            "--gust",
            "device3:80:60",
        ],
    )
    .await;
    assert_eq!(bad_gust.status.code(), Some(64), "{}", text(&bad_gust));
    let missing = streamwatch(
        &moto.endpoint(),
        &["simulate", "turbines", "--table", "nope", "--count", "1"],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    // The start line ("simulating …"), then the failure in one line.
    let stderr = String::from_utf8_lossy(&missing.stderr);
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("simulating 5 turbines into nope"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("streamwatch: BatchWriteItem on nope: ResourceNotFound"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------- replay

async fn create_stream(kinesis: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
}

/// The reference producer's JSON of every accident, by ID, without `Txn_Timestamp`.
fn reference_json() -> HashMap<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let lines = streamwatch_tests::fixture("kinesis-accidents-plain.expected.jsonl");
    let mut out = HashMap::new();
    for line in String::from_utf8(lines).unwrap().lines() {
        let l: serde_json::Value = serde_json::from_str(line).unwrap();
        let json = String::from_utf8(b64.decode(l["data"].as_str().unwrap()).unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        out.insert(v["ID"].as_str().unwrap().to_owned(), strip_txn(&json).0);
    }
    out
}

/// The JSON without its `Txn_Timestamp`, and that timestamp.
fn strip_txn(json: &str) -> (String, String) {
    let cut = json.find(r#","Txn_Timestamp":""#).expect("a Txn_Timestamp");
    let ts = json[cut + r#","Txn_Timestamp":""#.len()..json.len() - 2].to_owned();
    (format!("{}}}", &json[..cut]), ts)
}

fn sample_csv() -> String {
    streamwatch_tests::workspace_root()
        .join("tests/fixtures/us-accidents-sample.csv")
        .display()
        .to_string()
}

fn csv_ids() -> Vec<String> {
    let mut reader = csv::Reader::from_path(sample_csv()).unwrap();
    reader.records().map(|r| r.unwrap()[0].to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_puts_the_reference_json_kpl_aggregated() {
    let moto = MotoServer::start();
    let kinesis = aws_sdk_kinesis::Client::new(&config(&moto.endpoint()).await);
    create_stream(&kinesis, "accidents", 2).await;
    let before = chrono::Utc::now().naive_utc();
    let out = streamwatch(
        &moto.endpoint(),
        &[
            "replay",
            "accidents",
            "--csv",
            &sample_csv(),
            "--stream",
            "accidents",
            "--aggregate-max-bytes",
            "65536",
        ],
    )
    .await;
    let after = chrono::Utc::now().naive_utc();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("replayed 500 rows to accidents (0 bad): 500 user records in "),
        "{stdout}"
    );

    let got = read_stream(&kinesis, "accidents").await;
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|g| g.aggregated));
    let reference = reference_json();
    let mut seen = HashSet::new();
    for g in &got {
        let json = String::from_utf8(g.data.clone()).unwrap();
        let (body, ts) = strip_txn(&json);
        // Byte for byte the reference producer's JSON; the partition key is the ID.
        assert_eq!(body, reference[&g.partition_key], "{}", g.partition_key);
        let ts = chrono::NaiveDateTime::parse_from_str(&ts, "%Y-%m-%dT%H:%M:%S%.6f").unwrap();
        assert!(before <= ts && ts <= after, "{ts}");
        assert!(seen.insert(g.partition_key.clone()));
    }
    assert_eq!(seen, csv_ids().into_iter().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_skips_bad_rows_by_line_and_exits_2() {
    let moto = MotoServer::start();
    let kinesis = aws_sdk_kinesis::Client::new(&config(&moto.endpoint()).await);
    create_stream(&kinesis, "accidents", 1).await;
    let sample = std::fs::read_to_string(sample_csv()).unwrap();
    let mut lines = sample.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.take(6).collect();
    // Start_Time `2/8/2016 0:39` becomes `2/8/2016 0:39 PMX`: not a time.
    let bad_time = rows[3].replacen(",2/8/2016 0:39,", ",2/8/2016 0:39 PMX,", 1);
    assert_ne!(bad_time, rows[3]);
    let csv = [
        header,
        rows[0],
        rows[1],
        "A-broken,Source2,3",
        rows[2],
        &bad_time,
        rows[4],
    ]
    .join("\n");
    let dir = std::env::temp_dir().join(format!("sw-replay-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.csv");
    std::fs::write(&path, csv).unwrap();
    let out = streamwatch(
        &moto.endpoint(),
        &[
            "replay",
            "accidents",
            "--csv",
            path.to_str().unwrap(),
            "--stream",
            "accidents",
            "--no-aggregate",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("streamwatch: line 4: 3 columns"),
        "{stderr}"
    );
    assert!(stderr.contains("streamwatch: line 6: column "), "{stderr}");
    assert!(stderr.contains("2 bad rows skipped"), "{stderr}");

    let got = read_stream(&kinesis, "accidents").await;
    let ids: Vec<String> = got.iter().map(|g| g.partition_key.clone()).collect();
    let want: Vec<String> = [rows[0], rows[1], rows[2], rows[4]]
        .iter()
        .map(|r| r.split(',').next().unwrap().to_owned())
        .collect();
    assert_eq!(ids, want, "one shard keeps CSV order");
    assert!(got.iter().all(|g| !g.aggregated));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_resumes_from_start_row_and_survives_faults() {
    let moto = MotoServer::start();
    let kinesis = aws_sdk_kinesis::Client::new(&config(&moto.endpoint()).await);
    create_stream(&kinesis, "accidents", 2).await;
    let plan = scripted_plan("PutRecords", EVERY_QUICK_FAULT.to_vec());
    let proxy = FaultProxy::start(&moto.endpoint(), plan, Duration::from_secs(1)).await;
    let out = streamwatch(
        &proxy.endpoint(),
        &[
            "replay",
            "accidents",
            "--csv",
            &sample_csv(),
            "--stream",
            "accidents",
            "--start-row",
            "400",
            "--no-aggregate",
            "--max-attempts",
            "20",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(proxy.total(Fault::LoseResponse) > 0);
    let got = read_stream(&kinesis, "accidents").await;
    let ids: HashSet<String> = got.iter().map(|g| g.partition_key.clone()).collect();
    let want: HashSet<String> = csv_ids().into_iter().skip(400).collect();
    assert_eq!(ids, want);
    // A response lost after Kinesis took the records makes the retry put them again:
    // at-least-once, as every Kinesis producer (consumers de-duplicate by ID if needed).
    assert!(got.len() >= 100, "{}", got.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reads_the_stream_name_from_the_stack_outputs() {
    let moto = MotoServer::start();
    let config = config(&moto.endpoint()).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let template = serde_json::json!({
        "Resources": {"AccidentsStream": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}}},
        "Outputs": {"AccidentsStreamName": {"Value": {"Ref": "AccidentsStream"}}}
    });
    cfn.create_stack()
        .stack_name("sw")
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();
    let out = streamwatch(
        &moto.endpoint(),
        &[
            "replay",
            "accidents",
            "--csv",
            &sample_csv(),
            "--stack",
            "sw",
            "--start-row",
            "495",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let name = cfn
        .describe_stacks()
        .stack_name("sw")
        .send()
        .await
        .unwrap()
        .stacks()[0]
        .outputs()[0]
        .output_value()
        .unwrap()
        .to_owned();
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let got = read_stream(&kinesis, &name).await;
    assert_eq!(got.len(), 5);

    let no_output = streamwatch(
        &moto.endpoint(),
        &["simulate", "turbines", "--stack", "sw", "--count", "1"],
    )
    .await;
    assert_eq!(no_output.status.code(), Some(1), "{}", text(&no_output));
    assert!(
        String::from_utf8_lossy(&no_output.stderr)
            .contains("stack sw has no output ReadingsTableName (outputs: AccidentsStreamName)"),
        "{}",
        text(&no_output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_usage_and_input_errors() {
    let moto = MotoServer::start();
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &[
                "replay",
                "accidents",
                "--csv",
                "/nonexistent.csv",
                "--stream",
                "s",
            ],
            1,
            "cannot read /nonexistent.csv",
        ),
        (
            &["replay", "accidents", "--csv", &sample_csv()],
            64,
            "need --stream NAME or --stack NAME",
        ),
        (
            &[
                "replay",
                "accidents",
                "--csv",
                &sample_csv(),
                "--stream",
                "s",
                "--partition-key",
                "Nope",
            ],
            64,
            "--partition-key Nope: no such column",
        ),
        (
            &[
                "replay",
                "accidents",
                "--csv",
                &sample_csv(),
                "--stream",
                "missing",
            ],
            1,
            "resume with --start-row 0",
        ),
    ];
    for (args, code, message) in cases {
        let out = streamwatch(&moto.endpoint(), args).await;
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        // One line, and at most one hint.
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines[0].starts_with("streamwatch: "), "{args:?}: {stderr}");
        assert!(
            lines.len() == 1 || (lines.len() == 2 && lines[1].starts_with("  hint: ")),
            "{args:?}: {stderr}"
        );
    }
}

/// Writes `rows` accident rows (the sample's rows, cycled, with fresh IDs) to `path`.
fn generate_csv(path: &std::path::Path, rows: usize) {
    let mut reader = csv::Reader::from_path(sample_csv()).unwrap();
    let header = reader.headers().unwrap().clone();
    let sample: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let mut writer = csv::Writer::from_path(path).unwrap();
    writer.write_record(&header).unwrap();
    for i in 0..rows {
        let row = &sample[i % sample.len()];
        let id = format!("G-{i}");
        writer
            .write_record(std::iter::once(id.as_str()).chain(row.iter().skip(1)))
            .unwrap();
    }
    writer.flush().unwrap();
}

/// Replays `csv` under `/usr/bin/time` (when present); returns (final line, peak RSS in KB).
async fn replay_measured(endpoint: &str, csv: &str, stream: &str) -> (String, Option<u64>) {
    let rss_file = std::env::temp_dir().join(format!("sw-rss-{}-{stream}", std::process::id()));
    let time = std::path::Path::new("/usr/bin/time");
    let args = [
        "replay",
        "accidents",
        "--csv",
        csv,
        "--stream",
        stream,
        "--endpoint-url",
        endpoint,
    ];
    let mut command = if time.exists() {
        let mut c = tokio::process::Command::new(time);
        c.args(["-f", "%M", "-o", rss_file.to_str().unwrap()])
            .arg(env!("CARGO_BIN_EXE_streamwatch"));
        c
    } else {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_streamwatch"))
    };
    let out = command
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rss = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.trim().lines().last()?.parse().ok());
    std::fs::remove_file(rss_file).ok();
    (String::from_utf8_lossy(&out.stdout).trim().to_owned(), rss)
}

/// The full dataset is ~2.8 M rows: the replay must not grow with the file. Peak RSS and
/// throughput go to the test log (`--nocapture`); only memory and content are asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_100k_rows_runs_in_constant_memory() {
    let moto = MotoServer::start();
    let kinesis = aws_sdk_kinesis::Client::new(&config(&moto.endpoint()).await);
    let dir = std::env::temp_dir().join(format!("sw-replay-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (small, big) = (dir.join("10k.csv"), dir.join("100k.csv"));
    generate_csv(&small, 10_000);
    generate_csv(&big, 100_000);
    create_stream(&kinesis, "small", 4).await;
    create_stream(&kinesis, "big", 4).await;

    let (line_small, rss_small) =
        replay_measured(&moto.endpoint(), small.to_str().unwrap(), "small").await;
    let (line_big, rss_big) = replay_measured(&moto.endpoint(), big.to_str().unwrap(), "big").await;
    println!("10,000 rows: {line_small}; peak RSS {rss_small:?} KB");
    println!("100,000 rows: {line_big}; peak RSS {rss_big:?} KB");
    assert!(line_big.starts_with("replayed 100000 rows to big (0 bad): 100000 user records"));
    if let (Some(small), Some(big)) = (rss_small, rss_big) {
        // Ten times the rows (36 MB more CSV), the same memory: the slack covers how full
        // the largest PutRecords batch happened to be, not the file.
        assert!(big <= small + 16 * 1024, "peak RSS {small} KB -> {big} KB");
    }
    let got = read_stream(&kinesis, "big").await;
    assert_eq!(got.len(), 100_000);
    let ids: HashSet<&str> = got.iter().map(|g| g.partition_key.as_str()).collect();
    assert_eq!(ids.len(), 100_000);
    std::fs::remove_dir_all(dir).ok();
}

/// A stand-in for DynamoDB that takes only the first half of every other BatchWriteItem
/// call and hands the rest back as `UnprocessedItems` (moto never does: it always takes
/// everything). Returns its endpoint and the ids of the items it took, in order.
async fn half_taking_dynamodb() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let taken = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let state = taken.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (taken, calls) = (state.clone(), calls.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One HTTP/1.1 request (the SDK keeps connections alive).
                    let end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        let mut chunk = [0u8; 65536];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + length {
                        let mut chunk = [0u8; 65536];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: serde_json::Value =
                        serde_json::from_slice(&buf[end..end + length]).unwrap();
                    buf.drain(..end + length);
                    let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut unprocessed = serde_json::Map::new();
                    for (table, requests) in body["RequestItems"].as_object().unwrap() {
                        let requests = requests.as_array().unwrap();
                        let take = if call % 2 == 0 {
                            requests.len().div_ceil(2)
                        } else {
                            requests.len()
                        };
                        let mut taken = taken.lock().unwrap();
                        for r in &requests[..take] {
                            let id = r["PutRequest"]["Item"]["id"]["S"].as_str().unwrap();
                            taken.push(id.to_owned());
                        }
                        if take < requests.len() {
                            unprocessed.insert(table.clone(), requests[take..].to_vec().into());
                        }
                    }
                    let answer = serde_json::json!({ "UnprocessedItems": unprocessed }).to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if conn.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, taken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_retries_unprocessed_items_until_all_are_taken() {
    let (endpoint, taken) = half_taking_dynamodb().await;
    let out = streamwatch(
        &endpoint,
        &[
            "simulate",
            "turbines",
            "--table",
            "t",
            "--devices",
            "5",
            "--count",
            "20",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 100, "every reading taken once");
    assert_eq!(taken.iter().collect::<HashSet<_>>().len(), 100);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 4 batches of 25: each first call leaves 12 unprocessed, retried in a second call.
    assert!(
        stdout.contains(
            "8 BatchWriteItem calls, 48 unprocessed items, 0 throttled and 0 failed calls retried"
        ),
        "{stdout}"
    );
}
