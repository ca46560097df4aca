//! Hostile input for metrics-publisher: the Lambda event deserialisation (arbitrary bytes
//! as a `KinesisEvent`) and the real handler over envelopes whose payloads are arbitrary
//! bytes, truncated JSON, KPL aggregates of them, and accident records with every field
//! mutated (types, control characters, huge numbers, far-off times). Whatever comes in, the
//! batch never fails for it, nothing panics, and nothing CloudWatch would reject reaches
//! the sink: every datum has valid dimension values, a finite value in range and a
//! timestamp CloudWatch accepts.
//!
//! Longer run: `PROPTEST_CASES=20000 cargo test --release -p metrics-publisher --test hostile`.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use metrics_publisher::{Config, Deps, process};
use proptest::prelude::*;
use serde_json::{Value, json};
use streamwatch_adapters::{EmbeddedAlertOutbox, EmbeddedMetricSink};
use streamwatch_core::metrics::{check_dimension_value, check_timestamp, check_value};
use streamwatch_core::{KinesisEvent, kpl};

/// 2026-11-21T12:30:00Z, half an hour after the sample's `Txn_Timestamp`s.
const NOW: i64 = 1_795_264_200_000_000;
const NS: &str = "streamwatch/accidents";

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn deps() -> Deps<EmbeddedMetricSink, EmbeddedAlertOutbox> {
    let vars: HashMap<String, String> = [("ALERTS_TABLE".to_owned(), "alerts".to_owned())].into();
    Deps {
        config: Config::from_source(&vars).expect("default configuration"),
        sink: EmbeddedMetricSink::new(),
        outbox: EmbeddedAlertOutbox::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Runs the real handler and checks what a hostile batch may and may not do.
fn run(event: &KinesisEvent) {
    let deps = deps();
    let (response, report) = runtime().block_on(process(&deps, event, NOW));
    assert!(
        response.batch_item_failures.is_empty(),
        "bad input must never fail the batch: {report:?}"
    );
    assert_eq!(report.records_in, event.records.len());
    assert!(report.selected + report.filtered_out <= report.user_records + report.malformed);
    assert_eq!((report.datums_rejected, report.alerts_rejected), (0, 0));
    let mut samples = 0.0;
    for d in deps.sink.datums() {
        for dim in &d.series.dimensions {
            check_dimension_value(&dim.value).unwrap_or_else(|e| panic!("{}: {e}", dim.name));
        }
        for v in &d.values {
            check_value(*v).unwrap();
        }
        check_timestamp(d.series.timestamp_millis * 1000, NOW).unwrap();
        if d.series.namespace == NS {
            samples += d.counts.iter().sum::<f64>();
        }
    }
    assert_eq!(
        samples, report.selected as f64,
        "every selected record counted once"
    );
}

fn envelope(payloads: &[Vec<u8>], aggregate: bool) -> KinesisEvent {
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    if aggregate {
        let mut agg = kpl::Aggregator::default();
        for (i, p) in payloads.iter().enumerate() {
            if let Ok(Some(out)) = agg.add(&format!("pk-{i}"), None, p) {
                blobs.push(out.data);
            }
        }
        blobs.extend(agg.finish().map(|a| a.data));
    } else {
        blobs = payloads.to_vec();
    }
    let records: Vec<Value> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"kinesis": {"data": B64.encode(b), "partitionKey": "pk",
                   "sequenceNumber": format!("4959{i:020}"),
                   "approximateArrivalTimestamp": (NOW / 1_000_000) as f64},
                   "eventID": format!("shardId-000000000000:4959{i:020}")})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("envelope")
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (1i64..5).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(json!(1e300)),
        Just(json!(-0.0)),
        ".{0,12}".prop_map(Value::String),
        "[\\x00-\\x1f\\x7f]{1,3}".prop_map(Value::String),
        Just(Value::String(" ".into())),
        Just(Value::String("x".repeat(1100))),
        Just(Value::String("San José ✓".into())),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z?"
            .prop_map(Value::String),
        Just(json!([1, 2])),
        Just(json!({"a": {"b": [null]}})),
    ]
}

fn accident() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::btree_map(
            prop_oneof![
                Just("Severity".to_owned()),
                Just("City".to_owned()),
                Just("County".to_owned()),
                Just("Txn_Timestamp".to_owned()),
                Just("Start_Time".to_owned()),
                Just("Description".to_owned()),
                "[A-Za-z_]{1,8}",
            ],
            hostile_value(),
            0..8,
        ),
        any::<prop::sample::Index>(),
        0u8..4,
    )
        .prop_map(|(fields, cut, how)| {
            let mut base = json!({"Severity": 4, "City": "Dayton", "County": "Montgomery",
                                  "Txn_Timestamp": "2026-11-21T12:00:00.250000",
                                  "Description": "Accident on I-75 reported by jane.doe@example.com"});
            for (k, v) in fields {
                base[k] = v;
            }
            let bytes = serde_json::to_vec(&base).expect("json");
            match how {
                0 => bytes[..cut.index(bytes.len() + 1)].to_vec(),
                _ => bytes,
            }
        })
}

#[test]
fn the_event_envelope_from_arbitrary_corpus_bytes() {
    // The core corpus of envelopes, deserialised as the runtime does and then handled.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/corpus/event");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("corpus").flatten() {
        let bytes = std::fs::read(entry.path()).expect("read");
        if let Ok(event) = serde_json::from_slice::<KinesisEvent>(&bytes) {
            run(&event);
            n += 1;
        }
    }
    assert!(n >= 4, "{n} corpus events parsed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn arbitrary_bytes_as_an_event(data in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(event) = serde_json::from_slice::<KinesisEvent>(&data) {
            run(&event);
        }
    }

    #[test]
    fn arbitrary_payloads(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6), aggregate in any::<bool>()) {
        run(&envelope(&payloads, aggregate));
    }

    #[test]
    fn mutated_accident_records(payloads in prop::collection::vec(accident(), 1..12), aggregate in any::<bool>()) {
        run(&envelope(&payloads, aggregate));
    }
}
