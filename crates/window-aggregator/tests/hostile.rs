//! Hostile input for window-aggregator: the Lambda event deserialisation (arbitrary bytes
//! as the function's `Value` payload, then as a `KinesisEvent`) and the real handler over
//! change records whose images carry every kind of wrong value (types, empty and
//! 2,000-character keys, NaN-ish and 400-digit numbers, times at chrono's limits, deep
//! `M`/`L`), arbitrary payloads and KPL aggregates of them. Whatever comes in, the batch
//! never fails for it, nothing panics or overflows, and every window the store holds has a
//! usable key and finite statistics.
//!
//! Longer run: `PROPTEST_CASES=20000 cargo test --release -p window-aggregator --test hostile`.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;
use serde_json::{Value, json};
use streamwatch_adapters::EmbeddedAlertOutbox;
use streamwatch_adapters::windows::EmbeddedWindowStore;
use streamwatch_core::{KinesisEvent, kpl};
use window_aggregator::{Clock, Config, Deps, close_idle, process_batch};

/// 2026-11-21T12:00:00Z.
const T0: i64 = 1_795_262_400_000_000;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct FixedClock(AtomicI64);
impl Clock for FixedClock {
    fn now_micros(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn deps(
    format: &str,
) -> Deps<
    EmbeddedWindowStore,
    EmbeddedAlertOutbox,
    streamwatch_adapters::shards::EmbeddedShardProbe,
    FixedClock,
> {
    let env: HashMap<String, String> = [
        ("WINDOWS_TABLE", "w"),
        ("ALERTS_TABLE", "a"),
        ("INPUT_FORMAT", format),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Deps {
        config: Config::from_source(&env).expect("configuration"),
        store: EmbeddedWindowStore::new(),
        outbox: EmbeddedAlertOutbox::new(),
        probe: streamwatch_adapters::shards::EmbeddedShardProbe::with_shards(8),
        clock: FixedClock(AtomicI64::new(T0 + 3_600_000_000)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Runs a batch and the schedule through the real handler, on a 2 MiB stack (a tokio
/// worker's), and checks what a hostile batch may and may not do.
fn run(event: KinesisEvent, format: &'static str) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let deps = deps(format);
            let rt = runtime();
            let (response, report) = rt.block_on(process_batch(&deps, &event));
            assert!(
                response.batch_item_failures.is_empty(),
                "bad input must never fail the batch: {report:?}"
            );
            assert_eq!(report.records_in, event.records.len());
            rt.block_on(close_idle(&deps)).expect("schedule");
            for w in deps.store.windows() {
                assert!(!w.key.is_empty() && w.key.len() <= 1024, "key {:?}", w.key);
                assert!(w.start_micros < w.end_micros);
                for e in w.entries.values() {
                    assert!(e.value.is_finite());
                }
            }
        })
        .expect("thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn envelope(payloads: &[Vec<u8>], aggregate: bool) -> KinesisEvent {
    let blobs: Vec<Vec<u8>> = if aggregate {
        let mut agg = kpl::Aggregator::default();
        let mut out: Vec<Vec<u8>> = payloads
            .iter()
            .filter_map(|p| agg.add("pk", None, p).ok().flatten().map(|a| a.data))
            .collect();
        out.extend(agg.finish().map(|a| a.data));
        out
    } else {
        payloads.to_vec()
    };
    let records: Vec<Value> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"kinesis": {"data": B64.encode(b), "partitionKey": "pk",
                   "sequenceNumber": format!("4959{i:020}"),
                   "approximateArrivalTimestamp": (T0 / 1_000_000) as f64},
                   "eventID": format!("shardId-00000000000{}:4959{i:020}", i % 3)})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("envelope")
}

fn attribute() -> impl Strategy<Value = Value> {
    prop_oneof![
        "device[0-9]".prop_map(|s| json!({"S": s})),
        "[0-9]{1,3}".prop_map(|n| json!({"N": n})),
        Just(json!({"S": ""})),
        Just(json!({"S": "d".repeat(2000)})),
        Just(json!({"N": "NaN"})),
        Just(json!({"N": "1E+400"})),
        Just(json!({"N": "-1E+400"})),
        Just(json!({"N": "9".repeat(400)})),
        Just(json!({"N": "9200000000000000000"})),
        Just(json!({"S": "-262143-01-01T00:00:00"})),
        Just(json!({"S": "+262142-12-31T23:59:59.999999"})),
        Just(json!({"S": "1970-01-01T00:00:00Z"})),
        Just(json!({"S": "9999-12-31T23:59:59Z"})),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z"
            .prop_map(|s| json!({"S": s})),
        Just(json!({"BOOL": true})),
        Just(json!({"NULL": true})),
        Just(json!({"L": [{"N": "1"}]})),
        Just(json!({"M": {"a": {"N": "1"}}})),
        Just(json!({"Z": "1"})),
        Just(json!("bare")),
        ".{0,6}".prop_map(|s| json!({"S": s})),
    ]
}

fn image() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop_oneof![
            Just("deviceID".to_owned()),
            Just("value".to_owned()),
            Just("createdAt".to_owned()),
            Just("id".to_owned()),
            "[a-z]{1,4}",
        ],
        attribute(),
        0..6,
    )
    .prop_map(|m| {
        let mut base = json!({"id": {"S": "k"}, "deviceID": {"S": "device1"}, "value": {"N": "61"},
                              "createdAt": {"S": "2026-11-21T12:00:01Z"}});
        for (k, v) in m {
            base[k] = v;
        }
        base
    })
}

fn change_record() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just("INSERT"), Just("MODIFY"), Just("REMOVE"), Just("UPSERT")],
        prop::option::of(image()),
        prop::option::of(image()),
        prop_oneof![
            Just(json!(T0 + 1_000_000)),
            Just(json!((T0 + 1_000_000) / 1000)),
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(1e19)),
            Just(json!(9.2e18)),
            Just(json!("soon")),
        ],
        prop::option::of(prop_oneof![Just("MICROSECOND"), Just("MILLISECOND"), Just("SECOND"), Just("NANOSECOND")]),
        "[a-z0-9]{1,6}",
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(name, new, old, ts, precision, id, cut, truncate)| {
            let mut dynamodb = json!({"ApproximateCreationDateTime": ts, "Keys": {"id": {"S": "k"}}, "SizeBytes": 10});
            if let Some(p) = precision {
                dynamodb["ApproximateCreationDateTimePrecision"] = json!(p);
            }
            if let Some(n) = new {
                dynamodb["NewImage"] = n;
            }
            if let Some(o) = old {
                dynamodb["OldImage"] = o;
            }
            let bytes = serde_json::to_vec(&json!({"awsRegion": "us-east-1", "eventID": id, "eventName": name,
                "recordFormat": "application/json", "tableName": "t", "dynamodb": dynamodb,
                "eventSource": "aws:dynamodb"})).expect("json");
            if truncate {
                bytes[..cut.index(bytes.len())].to_vec()
            } else {
                bytes
            }
        })
}

fn json_reading() -> impl Strategy<Value = Vec<u8>> {
    (attribute(), attribute(), attribute()).prop_map(|(k, v, t)| {
        // The plain-JSON input: take the attribute's inner value.
        let inner = |a: Value| {
            a.as_object()
                .and_then(|o| o.values().next().cloned())
                .unwrap_or(a)
        };
        serde_json::to_vec(&json!({"deviceID": inner(k), "value": inner(v), "createdAt": inner(t)}))
            .expect("json")
    })
}

#[test]
fn deep_images_and_the_function_payload_from_the_corpus() {
    // Deep M at the limit serde_json allows, and far past it.
    for depth in [60, 100_000] {
        let deep = format!(
            "{}{{\"N\":\"1\"}}{}",
            "{\"M\":{\"a\":".repeat(depth),
            "}}".repeat(depth)
        );
        let record = format!(
            r#"{{"eventID":"e","eventName":"INSERT","eventSource":"aws:dynamodb","dynamodb":{{"ApproximateCreationDateTime":{},"Keys":{{"id":{{"S":"k"}}}},"NewImage":{{"deviceID":{{"S":"device1"}},"value":{{"N":"70"}},"x":{deep}}}}}}}"#,
            T0 / 1000
        );
        run(envelope(&[record.into_bytes()], false), "dynamodb");
    }
    // The function receives a `Value`, then reads a KinesisEvent out of it.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/corpus/event");
    for entry in std::fs::read_dir(dir).expect("corpus").flatten() {
        let bytes = std::fs::read(entry.path()).expect("read");
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes)
            && let Ok(event) = serde_json::from_value::<KinesisEvent>(value)
        {
            run(event.clone(), "dynamodb");
            run(event, "json");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn arbitrary_bytes_as_the_function_payload(data in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(value) = serde_json::from_slice::<Value>(&data)
            && let Ok(event) = serde_json::from_value::<KinesisEvent>(value)
        {
            run(event, "dynamodb");
        }
    }

    #[test]
    fn arbitrary_payloads(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6), aggregate in any::<bool>()) {
        run(envelope(&payloads, aggregate), "dynamodb");
    }

    #[test]
    fn hostile_change_records(payloads in prop::collection::vec(change_record(), 1..10), aggregate in any::<bool>()) {
        run(envelope(&payloads, aggregate), "dynamodb");
    }

    #[test]
    fn hostile_json_readings(payloads in prop::collection::vec(json_reading(), 1..10)) {
        run(envelope(&payloads, false), "json");
    }
}
