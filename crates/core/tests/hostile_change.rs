//! Hostile input for the DynamoDB change-record and DynamoDB-JSON decoder: arbitrary
//! bytes, generated DynamoDB JSON (every type, wrong types, bad base64, several tags in one
//! value, deep `M`/`L`), the corpus (`tests/corpus/change/`) and explicit cases. Nothing
//! may panic, overflow the stack (tested on a 2 MiB thread, a tokio worker's stack) or
//! allocate out of proportion.
//!
//! Longer run: `PROPTEST_CASES=100000 cargo test --release -p streamwatch-core --test hostile_change`.

mod common;

use common::{bounded, cases, corpus, on_small_stack};
use proptest::prelude::*;
use serde_json::{Value, json};
use streamwatch_core::change::{AttributeValue, ChangeRecord, Item, item_to_json};
use streamwatch_core::{FieldPath, Fields};

#[global_allocator]
static ALLOC: common::Tracking = common::Tracking;

const PATHS: &[&str] = &[
    "NewImage.deviceID",
    "NewImage.value",
    "NewImage.m.a[0].b",
    "OldImage.value",
    "Keys.id",
    "dynamodb.NewImage.createdAt",
    "ApproximateCreationDateTime",
    "eventName",
    "NewImage",
];

/// The target: parse a change record; if it parses, read every field the functions read
/// and unmarshal it to plain JSON. Also parse the bytes as a bare DynamoDB item.
fn target(data: &[u8]) {
    let paths: Vec<FieldPath> = PATHS.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
    bounded("change record", data, |d| {
        if let Ok(record) = ChangeRecord::from_slice(d) {
            for p in &paths {
                if let Some(v) = record.field(p) {
                    let _ = v.as_f64();
                    let _ = v.to_text();
                }
            }
            let plain = record.to_plain_json();
            assert!(plain.is_object());
            let _ = record.creation_time_micros();
        }
        if let Ok(item) = serde_json::from_slice::<Item>(d) {
            let _ = item_to_json(&item);
        }
    });
}

fn run_on_small_stack(data: Vec<u8>) {
    on_small_stack(move || target(&data));
}

fn envelope(new_image: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "awsRegion": "us-east-1", "eventID": "e-1", "eventName": "INSERT",
        "recordFormat": "application/json", "tableName": "t", "eventSource": "aws:dynamodb",
        "dynamodb": {"ApproximateCreationDateTime": 1_795_262_400_000_000_i64,
                     "ApproximateCreationDateTimePrecision": "MICROSECOND",
                     "Keys": {"id": {"S": "k"}}, "NewImage": new_image, "SizeBytes": 10}
    }))
    .unwrap()
}

/// `{"M":{"a":{"M":…}}}` (or `L`) `depth` levels deep, built as text: a `Value` that deep
/// could not even be dropped safely.
fn deep(tag: &str, depth: usize) -> String {
    let (open, close) = if tag == "M" {
        ("{\"M\":{\"a\":", "}}")
    } else {
        ("{\"L\":[", "]}")
    };
    format!(
        "{}{{\"N\":\"1\"}}{}",
        open.repeat(depth),
        close.repeat(depth)
    )
}

#[test]
fn corpus_replays_clean() {
    for (name, bytes) in corpus("change") {
        eprintln!("change corpus {name}");
        run_on_small_stack(bytes);
    }
}

#[test]
fn deep_maps_and_lists_are_errors_not_stack_overflows() {
    for tag in ["M", "L"] {
        for depth in [10, 60, 200, 100_000] {
            let record = format!(
                r#"{{"eventID":"e","eventName":"INSERT","dynamodb":{{"ApproximateCreationDateTime":1795262400000,"Keys":{{}},"NewImage":{{"x":{}}}}}}}"#,
                deep(tag, depth)
            );
            let parsed = on_small_stack(move || {
                let r = ChangeRecord::from_slice(record.as_bytes());
                let plain = r.as_ref().ok().map(ChangeRecord::to_plain_json);
                (r.is_ok(), plain.is_some())
            });
            // serde_json stops at 128 levels of nesting; each DynamoDB level is two.
            assert_eq!(parsed.0, depth <= 60, "{tag} at depth {depth}");
        }
    }
}

#[test]
fn timestamps_out_of_range_are_errors() {
    for ts in [
        "1e400",
        "-1",
        "18446744073709551615",
        "1e300",
        "9.3e18",
        "\"1795262400\"",
        "null",
        "true",
    ] {
        let text = format!(
            r#"{{"eventID":"e","eventName":"INSERT","dynamodb":{{"ApproximateCreationDateTime":{ts},"ApproximateCreationDateTimePrecision":"MICROSECOND"}}}}"#
        );
        assert!(
            bounded("timestamp", text.as_bytes(), ChangeRecord::from_slice).is_err(),
            "{ts}"
        );
    }
    // Seconds named explicitly (a DynamoDB Streams unit) far in the future.
    let text = r#"{"eventID":"e","eventName":"INSERT","dynamodb":{"ApproximateCreationDateTime":9.3e12,"ApproximateCreationDateTimePrecision":"SECOND"}}"#;
    assert!(ChangeRecord::from_slice(text.as_bytes()).is_err());
}

#[test]
fn huge_values_stay_in_proportion() {
    // A 1 MiB number, string, base64 blob and set: linear work, linear memory.
    let digits = "9".repeat(1 << 20);
    let blob = "QUFB".repeat(1 << 18);
    let set: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
    for image in [
        json!({"value": {"N": digits}}),
        json!({"value": {"S": digits}}),
        json!({"value": {"B": blob}}),
        json!({"value": {"NS": set}}),
        json!({"value": {"B": "not base64!"}}),
        json!({"value": {"S": "a", "N": "1"}}),
        json!({"value": {"X": "1"}}),
        json!({"value": {"N": 1}}),
        json!({"value": {"BOOL": "yes"}}),
    ] {
        target(&envelope(image));
    }
    // The 1 MiB number does not become a float, nor a panic.
    let r = ChangeRecord::from_slice(&envelope(json!({"value": {"N": "9".repeat(400)}}))).unwrap();
    let v = r
        .field(&FieldPath::parse("NewImage.value").unwrap())
        .unwrap();
    assert_eq!(v.as_f64(), None);
}

fn attribute() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        ".{0,8}".prop_map(|s| json!({"S": s})),
        prop_oneof!["-?[0-9]{1,40}(\\.[0-9]{1,5})?(E[+-]?[0-9]{1,4})?", ".{0,6}"]
            .prop_map(|n| json!({"N": n})),
        prop_oneof!["[A-Za-z0-9+/]{0,12}={0,2}", ".{0,6}"].prop_map(|b| json!({"B": b})),
        any::<bool>().prop_map(|b| json!({"BOOL": b})),
        any::<bool>().prop_map(|b| json!({"NULL": b})),
        prop::collection::vec(".{0,4}", 0..4).prop_map(|v| json!({"SS": v})),
        prop::collection::vec("[0-9]{1,4}", 0..4).prop_map(|v| json!({"NS": v})),
        prop::collection::vec("[A-Za-z0-9+/]{0,8}", 0..3).prop_map(|v| json!({"BS": v})),
        // Wrong shapes: a bare scalar, an unknown tag, two tags, an empty object.
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,4}".prop_map(|s| json!({"Z": s})),
        Just(json!({"S": "a", "N": "1"})),
        Just(json!({})),
        Just(json!({"N": 5})),
    ];
    leaf.prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            prop::collection::btree_map("[a-z]{1,3}", inner.clone(), 0..5)
                .prop_map(|m| json!({"M": m})),
            prop::collection::vec(inner, 0..5).prop_map(|l| json!({"L": l})),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        target(&data);
    }

    #[test]
    fn generated_images(
        image in prop::collection::btree_map("[a-zA-Z]{1,8}", attribute(), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = envelope(serde_json::to_value(image).unwrap());
        target(&bytes);
        // Every prefix of a record is a truncated record.
        target(&bytes[..cut.index(bytes.len())]);
    }

    #[test]
    fn valid_values_round_trip_through_plain_json(
        image in prop::collection::btree_map("[a-z]{1,4}", attribute(), 0..4),
    ) {
        if let Ok(item) = serde_json::from_value::<Item>(serde_json::to_value(&image).unwrap()) {
            let plain = item_to_json(&item);
            prop_assert_eq!(plain.as_object().map(|o| o.len()), Some(item.len()));
            let again: Item = serde_json::from_value(serde_json::to_value(&item).unwrap()).unwrap();
            prop_assert_eq!(again, item);
        }
        let _ = AttributeValue::S(String::new());
    }
}
