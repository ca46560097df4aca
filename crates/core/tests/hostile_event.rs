//! Hostile input for the Lambda Kinesis envelope every stream function deserialises:
//! arbitrary bytes as an event, generated envelopes (missing and mistyped members, bad
//! base64, eventIDs without a shard, sequence numbers of any length), the corpus
//! (`tests/corpus/event/`) and explicit cases. The envelope either fails to parse (the
//! runtime reports an invocation error: real Lambda never sends one) or every record
//! yields its user records or a malformed-parent error carrying its coordinates.
//!
//! Longer run: `PROPTEST_CASES=100000 cargo test --release -p streamwatch-core --test hostile_event`.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{bounded, cases, corpus, on_small_stack};
use proptest::prelude::*;
use serde_json::{Value, json};
use streamwatch_core::record::{self, parse_event, position};
use streamwatch_core::{ChangeRecord, JsonObject, kpl};

#[global_allocator]
static ALLOC: common::Tracking = common::Tracking;

/// The target: parse the envelope, split every record into user records, decode each
/// payload as the functions would.
fn target(data: &[u8]) {
    bounded("kinesis event", data, |d| {
        let Ok(event) = parse_event(d) else {
            return;
        };
        for parent in record::parents(&event) {
            let _ = parent.arrival.timestamp_micros();
            match parent.user_records() {
                Ok(users) => {
                    for u in users {
                        let _ = position(u.sequence_number, u.sub_sequence_number);
                        let _ = JsonObject::parse(u.data);
                        let _ = ChangeRecord::from_slice(u.data);
                    }
                }
                Err(e) => {
                    assert_eq!(e.sequence_number, parent.sequence_number);
                    assert_eq!(e.shard_id, parent.shard_id);
                }
            }
        }
    });
}

fn envelope(records: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "Records": records })).unwrap()
}

#[test]
fn corpus_replays_clean() {
    for (name, bytes) in corpus("event") {
        eprintln!("event corpus {name}");
        on_small_stack(move || target(&bytes));
    }
}

#[test]
fn adversarial_envelopes() {
    let ok = B64.encode(br#"{"Severity":4}"#);
    for record in [
        json!({"kinesis": {"data": "!!!not base64!!!", "sequenceNumber": "1"}, "eventID": "s:1"}),
        json!({"kinesis": {"data": ok, "sequenceNumber": "9".repeat(100_000)}, "eventID": "no-colon"}),
        json!({"kinesis": {"data": ok, "approximateArrivalTimestamp": 1e300}}),
        json!({"kinesis": {"data": ok, "approximateArrivalTimestamp": -1e300}}),
        json!({"kinesis": {"data": ok, "approximateArrivalTimestamp": "soon"}}),
        json!({"kinesis": {"data": 42}}),
        json!({"kinesis": {}}),
        json!({"kinesis": null}),
        json!({}),
        json!([1, 2]),
        json!({"kinesis": {"data": "", "partitionKey": "p".repeat(1 << 16)}, "eventID": ":"}),
        json!({"kinesis": {"data": "8ona", "sequenceNumber": "1"}, "eventID": "s:1"}),
    ] {
        target(&envelope(vec![record]));
    }
    // 10,000 records (Lambda's maximum), each a KPL magic with garbage behind it.
    let garbage = B64.encode([
        0xF3, 0x89, 0x9A, 0xC2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
    ]);
    let records = (0..10_000)
        .map(|i| json!({"kinesis": {"data": garbage, "sequenceNumber": i.to_string()}, "eventID": format!("s:{i}")}))
        .collect();
    target(&envelope(records));
    // Deep nesting in a member the envelope does not even read.
    let deep = format!(
        "{{\"Records\":[],\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    on_small_stack(move || target(deep.as_bytes()));
}

fn member() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,10}".prop_map(Value::String),
        "[A-Za-z0-9+/=]{0,16}".prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| Value::String(B64.encode(b))),
    ]
}

fn record_value() -> impl Strategy<Value = Value> {
    (
        prop::option::of(member()),
        prop::option::of(member()),
        prop::option::of(member()),
        prop::option::of(member()),
        prop::option::of(member()),
    )
        .prop_map(|(data, seq, pk, arrival, event_id)| {
            let mut k = serde_json::Map::new();
            for (name, v) in [
                ("data", data),
                ("sequenceNumber", seq),
                ("partitionKey", pk),
                ("approximateArrivalTimestamp", arrival),
            ] {
                if let Some(v) = v {
                    k.insert(name.into(), v);
                }
            }
            let mut r = json!({ "kinesis": k });
            if let Some(id) = event_id {
                r["eventID"] = id;
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        target(&data);
    }

    #[test]
    fn generated_envelopes(records in prop::collection::vec(record_value(), 0..6), cut in any::<prop::sample::Index>()) {
        let bytes = envelope(records);
        target(&bytes);
        target(&bytes[..cut.index(bytes.len())]);
    }

    /// A batch's parents (which may check the batch's KPL digests together) split every
    /// record exactly as de-aggregating it alone does: valid aggregates, aggregates with
    /// one byte changed, and arbitrary data, mixed, of every length around the MD5 block.
    #[test]
    fn batch_and_single_record_deaggregation_agree(
        blobs in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..300), 0u8..3, any::<prop::sample::Index>(), any::<u8>()),
            1..12,
        ),
    ) {
        let datas: Vec<Vec<u8>> = blobs
            .into_iter()
            .map(|(body, how, at, byte)| {
                let mut agg = kpl::Aggregator::default();
                let _ = agg.add("pk", None, &body);
                let mut data = agg.finish().map(|a| a.data).unwrap_or_default();
                match how {
                    0 => data,
                    1 => {
                        let i = at.index(data.len());
                        data[i] ^= byte | 1;
                        data
                    }
                    _ => body,
                }
            })
            .collect();
        let records: Vec<Value> = datas
            .iter()
            .enumerate()
            .map(|(i, d)| json!({"kinesis": {"data": B64.encode(d), "sequenceNumber": i.to_string()}, "eventID": format!("s:{i}")}))
            .collect();
        let event = parse_event(&envelope(records)).unwrap();
        for (parent, data) in record::parents(&event).zip(&datas) {
            let batch = parent.user_records().map(|u| u.iter().map(|r| r.data.to_vec()).collect::<Vec<_>>());
            let single = kpl::deaggregate(data).map(|p| match p {
                kpl::Payload::Plain(d) => vec![d.to_vec()],
                kpl::Payload::Aggregated(subs) => subs.iter().map(|s| s.data.to_vec()).collect(),
            });
            prop_assert_eq!(batch.ok(), single.ok());
        }
    }
}
