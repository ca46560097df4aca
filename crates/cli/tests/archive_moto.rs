//! The raw layer end to end against moto (docs/archive.md): `dev up` creates the archive
//! bucket, the shipped CSV is replayed (KPL-aggregated) with two records the
//! metrics-publisher must reject, turbines are simulated, and `dev run` runs the functions
//! and delivers both streams as the template's Firehose delivery streams would. Then S3
//! holds every record once, under the partition of its own time, with the content the
//! input had; the rejects under `rejected/` with their reasons; the record no partition
//! could be read from under `errors/`. Finally, on a fresh stack, a backfill from the
//! archive (`replay accidents --from-archive`) reproduces the same metrics.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

mod common;

use common::stack::{cloudwatch_sums, config, dev_run, dev_up, expected_metrics};
use common::{function_binaries, streamwatch, text};
use streamwatch_tests::{MotoServer, scan_all, workspace_root};

const BUCKET: &str = "streamwatch-archivebucket";
const ACCIDENTS: &str = "streamwatch-AccidentsStream";

/// Every archived object: key → its record lines.
async fn archive(s3: &aws_sdk_s3::Client) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        for o in page.contents() {
            let key = o.key().unwrap().to_owned();
            let body = s3
                .get_object()
                .bucket(BUCKET)
                .key(&key)
                .send()
                .await
                .unwrap();
            let bytes = body.body.collect().await.unwrap().into_bytes();
            assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{key}: GZIP");
            out.insert(key, streamwatch_local::archive::read_lines(&bytes).unwrap());
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

/// (dt, hr) of an object key under `top/dt=…/hr=…/`, and its object name.
fn partition<'a>(key: &'a str, top: &str) -> (&'a str, &'a str, &'a str) {
    let rest = key
        .strip_prefix(&format!("{top}/dt="))
        .unwrap_or_else(|| panic!("{key}"));
    let (dt, rest) = rest.split_once("/hr=").unwrap();
    let (hr, name) = rest.split_once('/').unwrap();
    (dt, hr, name)
}

/// The day and hour of a naive ISO time (the accident records' `Txn_Timestamp`).
fn day_hour(naive: &str) -> (String, String) {
    let t = NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f").unwrap();
    (t.format("%Y-%m-%d").to_string(), t.format("%H").to_string())
}

fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// `dev run` as both tests here run it; its stdout.
async fn run_until_idle(state: &Path, bin_dir: &Path) -> String {
    let run = dev_run(state, bin_dir, "1", Duration::from_secs(240)).await;
    String::from_utf8_lossy(&run.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_streams_and_the_rejects_land_in_s3_once_and_a_backfill_reproduces_the_metrics() {
    let bin_dir = function_binaries();
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let state =
        std::env::temp_dir().join(format!("streamwatch-archive-moto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let csv = workspace_root().join("tests/fixtures/us-accidents-sample.csv");
    let sdk = config(&endpoint).await;
    let s3 = s3_client(&sdk);
    let started = Utc::now();

    // GIVEN the stack `dev up` made, with the archive (CreateArchive defaults to true)
    dev_up(
        &endpoint,
        &state,
        &["WindowSeconds=3", "AllowedLatenessSeconds=15"],
    )
    .await;
    let stack: Value =
        serde_json::from_slice(&std::fs::read(state.join("stack.json")).unwrap()).unwrap();
    assert_eq!(stack["resources"]["ArchiveBucket"]["ref"], BUCKET);
    assert_eq!(stack["archives"].as_array().unwrap().len(), 3, "{stack}");

    // AND the shipped CSV replayed, KPL-aggregated, plus two records the metrics-publisher
    // must reject: one not JSON (no partition can be read from it either), one without County
    let replay = streamwatch(&[
        "replay",
        "accidents",
        "--endpoint-url",
        &endpoint,
        "--stream",
        ACCIDENTS,
        "--csv",
        csv.to_str().unwrap(),
    ])
    .await;
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay));
    let txn = Utc::now()
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    let no_county = serde_json::json!({"ID": "A-no-county", "Severity": 3, "City": "Dayton", "Txn_Timestamp": txn}).to_string();
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    for (key, data) in [
        ("bad-1", b"not json".to_vec()),
        ("A-no-county", no_county.clone().into_bytes()),
    ] {
        kinesis
            .put_record()
            .stream_name(ACCIDENTS)
            .partition_key(key)
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }
    // AND two turbines simulated
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
        "6",
        "--min",
        "25",
        "--max",
        "40",
    ])
    .await;
    assert_eq!(simulate.status.code(), Some(0), "{}", text(&simulate));

    // WHEN dev run runs the functions and the emulated delivery streams until idle
    let out = run_until_idle(&state, &bin_dir).await;
    assert!(
        out.contains("dev run: archiving Kinesis stream streamwatch-AccidentsStream"),
        "{out}"
    );
    let ended = Utc::now();
    let objects = archive(&s3).await;

    // THEN every CSV row and the County-less record is under accidents/ exactly once, in
    // the partition of its own Txn_Timestamp, with the CSV's content
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let mut rows: HashMap<String, (i64, String, String)> = HashMap::new();
    for r in reader.records() {
        let r = r.unwrap();
        rows.insert(
            r[col("ID")].to_owned(),
            (
                r[col("Severity")].parse().unwrap(),
                r[col("City")].to_owned(),
                r[col("County")].to_owned(),
            ),
        );
    }
    rows.insert("A-no-county".into(), (3, "Dayton".into(), String::new()));
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (key, lines) in objects.iter().filter(|(k, _)| k.starts_with("accidents/")) {
        let (dt, hr, name) = partition(key, "accidents");
        assert!(
            name.starts_with("streamwatch-accidents-archive-1-") && name.ends_with(".gz"),
            "{key}"
        );
        for line in lines {
            let v: Value = serde_json::from_slice(line).unwrap();
            let id = v["ID"].as_str().unwrap().to_owned();
            assert_eq!(
                day_hour(v["Txn_Timestamp"].as_str().unwrap()),
                (dt.to_owned(), hr.to_owned()),
                "{key}: {v}"
            );
            let (severity, city, county) = &rows[&id];
            assert_eq!(v["Severity"].as_i64(), Some(*severity), "{v}");
            assert_eq!(v["City"].as_str().unwrap_or(""), city, "{v}");
            assert_eq!(v["County"].as_str().unwrap_or(""), county, "{v}");
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), rows.len(), "every record archived");
    assert!(
        seen.values().all(|n| *n == 1),
        "each once: {:?}",
        seen.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );

    // AND the record without a readable partition is under errors/accidents/, as it was sent
    let errors: Vec<Value> = objects
        .iter()
        .filter(|(k, _)| k.starts_with("errors/accidents/processing-failed/dt="))
        .flat_map(|(_, lines)| lines.iter().map(|l| serde_json::from_slice(l).unwrap()))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0]["errorCode"],
        "DynamicPartitioning.MetadataExtractionFailed"
    );
    assert_eq!(
        errors[0]["rawData"],
        base64::engine::general_purpose::STANDARD.encode("not json")
    );

    // AND every reading the table holds is under readings/ once, in the partition of its
    // change record's creation time
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let mut ids: Vec<String> = scan_all(&ddb, "streamwatch-ReadingsTable")
        .await
        .iter()
        .map(|i| i["id"].as_s().unwrap().clone())
        .collect();
    ids.sort();
    assert!(ids.len() >= 40, "{} readings", ids.len());
    let mut archived_ids = Vec::new();
    for (key, lines) in objects.iter().filter(|(k, _)| k.starts_with("readings/")) {
        let (dt, hr, _) = partition(key, "readings");
        for line in lines {
            let v: Value = serde_json::from_slice(line).unwrap();
            assert_eq!(v["eventName"], "INSERT", "{v}");
            let micros = v["dynamodb"]["ApproximateCreationDateTime"]
                .as_i64()
                .unwrap();
            let t = DateTime::<Utc>::from_timestamp_micros(micros).unwrap();
            assert_eq!(
                (t.format("%Y-%m-%d").to_string(), t.format("%H").to_string()),
                (dt.to_owned(), hr.to_owned()),
                "{v}"
            );
            archived_ids.push(
                v["dynamodb"]["Keys"]["id"]["S"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    archived_ids.sort();
    assert_eq!(archived_ids, ids);

    // AND the two rejects are under rejected/, with their reasons, coordinates and bytes,
    // in an hour of the run
    let hours: Vec<String> = [started, ended]
        .iter()
        .map(|t| t.format("%Y-%m-%d/%H").to_string())
        .collect();
    let mut rejects: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    for (key, lines) in objects.iter().filter(|(k, _)| k.starts_with("rejected/")) {
        let (dt, hr, _) = partition(key, "rejected");
        assert!(
            hours.contains(&format!("{dt}/{hr}")),
            "{key} outside {hours:?}"
        );
        for line in lines {
            let v: Value = serde_json::from_slice(line).unwrap();
            assert_eq!(v["function"], "metrics-publisher");
            assert!(v["shard"].as_str().unwrap().starts_with("shardId-"), "{v}");
            assert!(!v["sequence"].as_str().unwrap().is_empty(), "{v}");
            let data = base64::engine::general_purpose::STANDARD
                .decode(v["data"].as_str().unwrap())
                .unwrap();
            rejects.insert(data, v["reason"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert!(
        rejects[&b"not json".to_vec()].contains("not a JSON object"),
        "{rejects:?}"
    );
    assert!(
        rejects[&no_county.into_bytes()].contains("County"),
        "{rejects:?}"
    );

    // AND CloudWatch holds the CSV's metrics (the rejected records add nothing)
    let (expected, _) = expected_metrics(&csv);
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    assert_eq!(cloudwatch_sums(&cw).await, expected);

    // WHEN the stack is lost but the archive kept (the bucket is retained), and the
    // accidents are backfilled from it into a fresh stack
    moto.reset();
    dev_up(
        &endpoint,
        &state,
        &["WindowSeconds=3", "AllowedLatenessSeconds=15"],
    )
    .await;
    for (key, lines) in objects.iter().filter(|(k, _)| k.starts_with("accidents/")) {
        let body = streamwatch_local::archive::gzip_lines(lines);
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    let backfill = streamwatch(&[
        "replay",
        "accidents",
        "--endpoint-url",
        &endpoint,
        "--stream",
        ACCIDENTS,
        "--from-archive",
        &format!("s3://{BUCKET}/accidents/"),
    ])
    .await;
    assert_eq!(backfill.status.code(), Some(0), "{}", text(&backfill));
    assert!(
        String::from_utf8_lossy(&backfill.stdout)
            .contains(&format!("replayed {} rows", rows.len())),
        "{}",
        text(&backfill)
    );
    run_until_idle(&state, &bin_dir).await;

    // THEN CloudWatch holds the same metrics as the original run
    assert_eq!(cloudwatch_sums(&cw).await, expected);
    let _ = std::fs::remove_dir_all(&state);
}
