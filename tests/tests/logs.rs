//! What the functions log, captured: each real handler runs over sample events that carry
//! an email address, an AWS account id and a password-like payload value in every field
//! it might echo (payloads that are not JSON, fields of the wrong type, times that are not
//! times, alert records that do not decode, `eventSourceARN`s). At INFO level none of those
//! strings may appear in any log line; every skipped record is logged with its shard,
//! sequence number and (for user records) sub-sequence number. At DEBUG a payload may
//! appear — that is what debug logging is for — and the test does not forbid it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use streamwatch_adapters::EmbeddedAlertOutbox;
use streamwatch_adapters::EmbeddedMetricSink;
use streamwatch_adapters::alert_state::EmbeddedAlertStateStore;
use streamwatch_adapters::sns::EmbeddedNotifier;
use streamwatch_adapters::windows::EmbeddedWindowStore;
use streamwatch_core::{KinesisEvent, kpl};
use tracing::Level;

const EMAIL: &str = "jane.doe@example.com";
const ACCOUNT: &str = "123456789012";
const SECRET: &str = "hunter2-s3cr3t";
const FORBIDDEN: [&str; 4] = [EMAIL, ACCOUNT, SECRET, "example.com"];
/// 2026-11-21T12:30:00Z.
const NOW: i64 = 1_795_264_200_000_000;

/// A writer the subscriber appends JSON log lines to.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Runs `f` on a current-thread runtime with a JSON subscriber at `level` (the runtime's
/// format), and returns the log lines.
fn capture<F: std::future::Future>(level: Level, f: impl FnOnce() -> F) -> Vec<Value> {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(move || writer.clone())
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    tracing::subscriber::with_default(subscriber, || rt.block_on(f()));
    out.lines()
}

fn assert_nothing_sensitive(function: &str, lines: &[Value]) {
    assert!(!lines.is_empty(), "{function}: nothing logged");
    for line in lines {
        let text = line.to_string();
        for f in FORBIDDEN {
            assert!(!text.contains(f), "{function} logged {f:?}: {text}");
        }
    }
}

fn skipped<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(message))
        })
        .map(|l| &l["fields"])
        .collect()
}

fn kinesis_event(blobs: &[Vec<u8>]) -> KinesisEvent {
    let records: Vec<Value> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"kinesis": {"data": B64.encode(b), "partitionKey": EMAIL,
                   "sequenceNumber": format!("4959000000000000000000{i:02}"),
                   "approximateArrivalTimestamp": (NOW / 1_000_000) as f64},
                   "eventID": format!("shardId-000000000001:4959000000000000000000{i:02}"),
                   "eventSourceARN": format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/s"),
                   "invokeIdentityArn": format!("arn:aws:iam::{ACCOUNT}:role/r")})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("event")
}

fn accident(changes: Value) -> Vec<u8> {
    let mut a = json!({"ID": "A-1", "Severity": 4, "City": "Dayton", "County": "Montgomery",
        "Txn_Timestamp": "2026-11-21T12:00:00.250000",
        "Description": format!("reported by {EMAIL}, account {ACCOUNT}, pw {SECRET}")});
    for (k, v) in changes.as_object().cloned().unwrap_or_default() {
        a[k] = v;
    }
    serde_json::to_vec(&a).expect("json")
}

#[test]
fn metrics_publisher_logs_coordinates_not_payloads() {
    let bad_payloads = [
        accident(json!({"Severity": format!("{EMAIL} {SECRET}")})),
        accident(json!({"Txn_Timestamp": format!("{SECRET} {ACCOUNT}")})),
        accident(json!({"City": format!("{EMAIL}\u{1}")})),
        accident(json!({"County": format!("{EMAIL} {}", "x".repeat(1100))})),
        format!("password={SECRET} {EMAIL}").into_bytes(),
        serde_json::to_vec(&json!(format!("{EMAIL} {ACCOUNT}"))).expect("json"),
    ];
    let mut agg = kpl::Aggregator::default();
    for p in &bad_payloads {
        assert!(agg.add(EMAIL, None, p).expect("fits").is_none());
    }
    let mut blobs = vec![agg.finish().expect("records").data];
    blobs.push(accident(json!({})));
    // A broken aggregate: right magic and digest, a partition-key index out of range.
    let mut msg = vec![0x0a, EMAIL.len() as u8];
    msg.extend_from_slice(EMAIL.as_bytes());
    msg.extend_from_slice(&[0x1a, 0x04, 0x08, 0x07, 0x1a, 0x00]);
    let mut broken = kpl::MAGIC.to_vec();
    broken.extend_from_slice(&msg);
    broken.extend_from_slice(md5_of(&msg).as_slice());
    blobs.push(broken);
    let event = kinesis_event(&blobs);

    let vars: HashMap<String, String> = [(
        "ALERTS_TABLE".to_owned(),
        format!("arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/alerts"),
    )]
    .into();
    let deps = metrics_publisher::Deps {
        config: metrics_publisher::Config::from_source(&vars).expect("config"),
        sink: EmbeddedMetricSink::new(),
        outbox: EmbeddedAlertOutbox::new(),
    };
    let lines = capture(Level::INFO, || async {
        let (response, report) = metrics_publisher::process(&deps, &event, NOW).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.malformed, 7, "{report:?}");
    });
    assert_nothing_sensitive("metrics-publisher", &lines);
    let users = skipped(&lines, "skipping malformed record");
    assert_eq!(users.len(), 6, "one line per malformed user record");
    for (i, f) in users.iter().enumerate() {
        assert_eq!(f["shard"], "shardId-000000000001");
        assert_eq!(f["sequence"], "495900000000000000000000");
        assert_eq!(f["sub_sequence"], i as u64, "{f}");
        assert!(f["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    let parents = skipped(&lines, "skipping malformed Kinesis record");
    assert_eq!(parents.len(), 1);
    assert_eq!(parents[0]["sequence"], "495900000000000000000002");
    assert_eq!(parents[0]["shard"], "shardId-000000000001");
}

fn md5_of(bytes: &[u8]) -> Vec<u8> {
    use md5::Digest as _;
    md5::Md5::digest(bytes).to_vec()
}

struct Fixed(AtomicI64);
impl window_aggregator::Clock for Fixed {
    fn now_micros(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn change(new_image: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "awsRegion": "us-east-1", "eventID": "e-1", "eventName": "INSERT",
        "userIdentity": {"principalId": format!("AROA{ACCOUNT}:{EMAIL}"), "type": "Service"},
        "recordFormat": "application/json",
        "tableName": format!("arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/readings"),
        "dynamodb": {"ApproximateCreationDateTime": NOW / 1000, "ApproximateCreationDateTimePrecision": "MILLISECOND",
                     "Keys": {"id": {"S": SECRET}}, "NewImage": new_image, "SizeBytes": 10},
        "eventSource": "aws:dynamodb"}))
    .expect("json")
}

#[test]
fn window_aggregator_logs_coordinates_not_payloads() {
    let image = |value: Value, created: &str| {
        json!({"id": {"S": SECRET}, "deviceID": {"S": "device1"}, "value": value,
               "createdAt": {"S": created}, "owner": {"S": EMAIL}})
    };
    let blobs = vec![
        change(image(
            json!({"S": format!("{EMAIL} {SECRET}")}),
            "2026-11-21T12:29:00Z",
        )),
        change(image(json!({"N": "61"}), &format!("{SECRET} {ACCOUNT}"))),
        change(json!({"value": {"N": "70"}, "note": {"S": EMAIL}})),
        format!("{EMAIL} {SECRET} {ACCOUNT}").into_bytes(),
        change(image(json!({"N": "65"}), "2026-11-21T12:29:00Z")),
    ];
    let event = kinesis_event(&blobs);
    let env: HashMap<String, String> = [
        (
            "WINDOWS_TABLE".to_owned(),
            format!("arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/w"),
        ),
        ("ALERTS_TABLE".to_owned(), "alerts".to_owned()),
    ]
    .into();
    let deps = window_aggregator::Deps {
        config: window_aggregator::Config::from_source(&env).expect("config"),
        store: EmbeddedWindowStore::new(),
        outbox: EmbeddedAlertOutbox::new(),
        probe: streamwatch_adapters::shards::EmbeddedShardProbe::with_shards(8),
        clock: Fixed(AtomicI64::new(NOW)),
    };
    let lines = capture(Level::INFO, || async {
        let (response, report) = window_aggregator::process_batch(&deps, &event).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((report.malformed, report.readings), (4, 1), "{report:?}");
        // Close the windows too: that path logs alerts.
        deps.clock
            .0
            .store(NOW + 3_600_000_000, std::sync::atomic::Ordering::SeqCst);
        window_aggregator::close_idle(&deps)
            .await
            .expect("schedule");
    });
    assert_nothing_sensitive("window-aggregator", &lines);
    let users = skipped(&lines, "skipping malformed record");
    assert_eq!(users.len(), 4);
    for f in users {
        assert_eq!(f["shard"], "shardId-000000000001");
        assert!(
            f["sequence"]
                .as_str()
                .is_some_and(|s| s.starts_with("4959"))
        );
        // Plain records have no sub-sequence number; the field is then absent.
        assert!(f.get("sub_sequence").is_none_or(Value::is_u64), "{f}");
    }
}

#[test]
fn alerter_logs_coordinates_not_payloads() {
    let good: Value =
        serde_json::from_str(include_str!("../../events/alerter-firing.json")).expect("sample");
    let mut record = good["Records"][0].clone();
    record["eventSourceARN"] = json!(format!(
        "arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/alerts/stream/x"
    ));
    let mut alert: Value = serde_json::from_str(
        record["dynamodb"]["NewImage"]["alert"]["S"]
            .as_str()
            .expect("alert"),
    )
    .expect("alert json");
    alert["details"] = json!({"Description": format!("{EMAIL} {SECRET} {ACCOUNT}")});
    record["dynamodb"]["NewImage"]["alert"]["S"] = json!(alert.to_string());

    let mut malformed = record.clone();
    let mut bad = alert.clone();
    bad["event_time_micros"] = json!(format!("{EMAIL} {SECRET}"));
    malformed["dynamodb"]["NewImage"]["alert"]["S"] = json!(bad.to_string());
    malformed["dynamodb"]["SequenceNumber"] = json!("4421584500000000017450439192");
    malformed["eventID"] = json!("e-malformed");
    let mut not_json = record.clone();
    not_json["dynamodb"]["NewImage"]["alert"]["S"] = json!(format!("{EMAIL} {SECRET} {ACCOUNT}"));
    not_json["dynamodb"]["SequenceNumber"] = json!("4421584500000000017450439193");
    not_json["eventID"] = json!("e-not-json");
    let mut other_id = record.clone();
    // Alert ids are coordinates (rule#key#window), logged on purpose; not a payload.
    other_id["dynamodb"]["NewImage"]["alert_id"] = json!({"S": "windspeed-avg#device9#0#firing"});
    other_id["dynamodb"]["SequenceNumber"] = json!("4421584500000000017450439194");
    other_id["eventID"] = json!("e-other-id");

    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({"Records": [record, malformed, not_json, other_id]}))
            .expect("event");
    let deps = alerter::Deps {
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: EmbeddedAlertStateStore::new(),
        notifier: EmbeddedNotifier::new(),
        clock: alerter::ManualClock::new(1_800_000_000_000_000),
        settings: alerter::Settings {
            repeat_interval: std::time::Duration::from_secs(900),
            claim_lease: std::time::Duration::from_secs(30),
            claim_wait: std::time::Duration::ZERO,
            retry: alerter::Backoff::default(),
            max_attempts: 20,
            state_lifetime: std::time::Duration::from_secs(48 * 3600),
        },
    };
    let lines = capture(Level::INFO, || async {
        let (response, report) = alerter::process(&deps, &event, "inv-1").await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((report.malformed, report.sent()), (3, 1), "{report:?}");
    });
    assert_nothing_sensitive("alerter", &lines);
    let skipped = skipped(&lines, "malformed alert record skipped");
    assert_eq!(skipped.len(), 3);
    for (f, (id, seq)) in skipped.iter().zip([
        ("e-malformed", "4421584500000000017450439192"),
        ("e-not-json", "4421584500000000017450439193"),
        ("e-other-id", "4421584500000000017450439194"),
    ]) {
        assert_eq!(
            (f["event_id"].as_str(), f["sequence"].as_str()),
            (Some(id), Some(seq)),
            "{f}"
        );
    }
    // The notification itself still carries the details: they are for people, not logs.
    assert!(deps.notifier.published()[0].email.contains(EMAIL));
}

#[test]
fn at_debug_level_skips_are_still_logged_with_coordinates() {
    // The same metrics-publisher batch at DEBUG still logs every skip with coordinates.
    let event = kinesis_event(&[EMAIL.as_bytes().to_vec()]);
    let vars: HashMap<String, String> = [("ALERTS_TABLE".to_owned(), "alerts".to_owned())].into();
    let deps = metrics_publisher::Deps {
        config: metrics_publisher::Config::from_source(&vars).expect("config"),
        sink: EmbeddedMetricSink::new(),
        outbox: EmbeddedAlertOutbox::new(),
    };
    let lines = capture(Level::DEBUG, || async {
        metrics_publisher::process(&deps, &event, NOW).await;
    });
    assert_eq!(skipped(&lines, "skipping malformed record").len(), 1);
}
