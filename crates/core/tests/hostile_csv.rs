//! Hostile input for the accident-row converter (CSV row → the reference producer's JSON):
//! arbitrary cell text under the dataset's real header, arbitrary headers, arbitrary time
//! text, and the corpus (`tests/corpus/csv/`, one row per file under the sample's header).
//! A row converts to one valid JSON object or is an error naming its column; never a panic,
//! never JSON a consumer cannot parse. (The CSV tokenizer itself, `csv::Reader` over
//! arbitrary bytes, is exercised in `crates/local/tests/hostile_csv.rs`.)
//!
//! Longer run: `PROPTEST_CASES=100000 cargo test --release -p streamwatch-core --test hostile_csv`.

mod common;

use common::{bounded, cases, corpus};
use proptest::prelude::*;
use serde_json::Value;
use streamwatch_core::accident::{RowError, iso_time, row_to_json};

#[global_allocator]
static ALLOC: common::Tracking = common::Tracking;

const SAMPLE: &str = include_str!("../../../tests/fixtures/us-accidents-sample.csv");

fn header() -> Vec<&'static str> {
    SAMPLE
        .lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .collect()
}

/// The target: convert, and check the output is one JSON object holding exactly the
/// non-empty cells plus `Txn_Timestamp`, or the error names a real column.
fn target(headers: &[&str], fields: &[&str], txn: &str) {
    let input: usize = fields.iter().map(|f| f.len() + 1).sum::<usize>() + txn.len();
    let padded = vec![0u8; input];
    let out = bounded("row", &padded, |_| row_to_json(headers, fields, txn));
    match out {
        Ok(json) => {
            let v: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
            let o = v.as_object().expect("an object");
            assert_eq!(o.get("Txn_Timestamp").and_then(Value::as_str), Some(txn));
            for (h, f) in headers.iter().zip(fields) {
                if !f.is_empty() && *h != "Txn_Timestamp" {
                    assert!(o.contains_key(*h), "column {h} missing from {json}");
                }
            }
        }
        Err(RowError::ColumnCount { expected, found }) => {
            assert_eq!((expected, found), (headers.len(), fields.len()));
        }
        Err(RowError::Value { column, value, .. }) => {
            assert!(headers.contains(&column.as_str()));
            assert!(
                value.chars().count() <= 80,
                "error echoes at most 80 characters"
            );
        }
    }
}

#[test]
fn corpus_replays_clean() {
    let headers = header();
    for (name, bytes) in corpus("csv") {
        eprintln!("csv corpus {name}");
        let text = String::from_utf8_lossy(&bytes);
        let fields: Vec<&str> = text.trim_end_matches('\n').split(',').collect();
        target(&headers, &fields, "2026-11-21T12:00:00.000000");
        let mut padded = fields.clone();
        padded.resize(headers.len(), "");
        target(&headers, &padded, "T");
    }
}

#[test]
fn adversarial_cells() {
    let headers = header();
    let col = |name: &str| headers.iter().position(|h| *h == name).unwrap();
    let long = "9".repeat(1 << 20);
    for (name, value) in [
        ("Severity", "99999999999999999999"),
        ("Severity", "-0"),
        ("Severity", " 4 "),
        ("Start_Lat", "NaN"),
        ("Start_Lat", "inf"),
        ("Start_Lat", "1e400"),
        ("Start_Lat", long.as_str()),
        ("Start_Time", "2/30/2016 0:37"),
        ("Start_Time", "99999-01-01 00:00:00"),
        ("Start_Time", "2016-02-08 05:46:00.9999999999999999999"),
        ("Start_Time", "+262143-12-31 23:59:59"),
        ("Amenity", "yes"),
        ("Description", "\"quoted\"\\\u{0}\u{1f}\u{2028}é🚗"),
        ("City", long.as_str()),
    ] {
        let mut fields = vec![""; headers.len()];
        fields[col(name)] = value;
        target(&headers, &fields, "T\"\\\n");
    }
    // Duplicate and odd header names.
    target(&["ID", "ID", "\"", ""], &["a", "b", "c", "d"], "T");
    target(&[], &[], "");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn arbitrary_cells_under_the_real_header(
        cells in prop::collection::vec(
            prop_oneof![Just(String::new()), ".{0,12}", "[0-9./: -]{0,20}", "(TRUE|FALSE|true|x)"],
            0..60,
        ),
        txn in ".{0,30}",
    ) {
        let headers = header();
        let fields: Vec<&str> = cells.iter().map(String::as_str).collect();
        target(&headers, &fields, &txn);
        let mut full = fields.clone();
        full.resize(headers.len(), "");
        target(&headers, &full, &txn);
    }

    #[test]
    fn arbitrary_headers(
        pairs in prop::collection::vec((".{0,10}", ".{0,10}"), 0..10),
    ) {
        let headers: Vec<&str> = pairs.iter().map(|(h, _)| h.as_str()).collect();
        let fields: Vec<&str> = pairs.iter().map(|(_, f)| f.as_str()).collect();
        target(&headers, &fields, "T");
    }

    #[test]
    fn arbitrary_times(text in ".{0,40}", shaped in "[0-9]{1,6}[-/][0-9]{1,3}[-/][0-9]{1,6}[ T][0-9]{1,3}:[0-9]{1,3}(:[0-9]{1,3}(\\.[0-9]{0,12})?)?") {
        for t in [&text, &shaped] {
            if let Some(iso) = iso_time(t) {
                // What we emit must parse back as the same instant.
                prop_assert_eq!(iso_time(&iso), Some(iso.clone()));
            }
        }
    }
}
