//! Hostile input for the CSV reader the demo and the replay use: arbitrary bytes as a
//! file, the sample with bytes changed, unbalanced quotes, invalid UTF-8, a 1 MiB cell.
//! Reading never panics and never stops at a bad row: every row becomes one valid JSON
//! payload or one bad row with its line number, and I/O is the only fatal error.
//!
//! Longer run: `PROPTEST_CASES=20000 cargo test --release -p streamwatch-local --test hostile_csv`.

use proptest::prelude::*;
use streamwatch_local::accidents::read_csv;
use streamwatch_local::demo::SAMPLE_CSV;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads `bytes` and checks every payload is a JSON object with the send time.
fn target(bytes: &[u8]) {
    let Ok(rows) = read_csv(bytes, |i| format!("T{i}")) else {
        // Only a header that cannot be read at all; a reader over memory has no I/O error.
        return;
    };
    for (_, payload) in &rows.payloads {
        let v: serde_json::Value = serde_json::from_slice(payload).expect("valid JSON");
        assert!(
            v.get("Txn_Timestamp")
                .is_some_and(serde_json::Value::is_string)
        );
    }
    for bad in &rows.bad {
        assert!(!bad.reason.is_empty());
    }
}

#[test]
fn adversarial_files() {
    let header = SAMPLE_CSV
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default()
        .to_vec();
    let with = |row: &[u8]| {
        let mut f = header.clone();
        f.push(b'\n');
        f.extend_from_slice(row);
        f
    };
    let huge = vec![b'9'; 1 << 20];
    for file in [
        Vec::new(),
        b"\"".to_vec(),
        with(b"\"unbalanced,quote"),
        with(b"A-1,\xff\xfe,3"),
        with(&[b"A-1,MapQuest,".as_slice(), &huge].concat()),
        with(b"\r\n\r\n,,,,\n"),
        vec![b','; 100_000],
    ] {
        target(&file);
    }
    // The sample itself: 500 rows, none bad.
    let rows = read_csv(SAMPLE_CSV, |_| "T".into()).expect("sample");
    assert_eq!((rows.payloads.len(), rows.bad.len()), (500, 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        target(&data);
    }

    #[test]
    fn the_sample_with_bytes_changed(
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![Just(b'"'), Just(b','), Just(b'\n'), Just(0xff), any::<u8>()]), 1..8),
    ) {
        // The first 40 lines keep each case fast.
        let end = SAMPLE_CSV.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(40).map_or(SAMPLE_CSV.len(), |(i, _)| i);
        let mut file = SAMPLE_CSV[..end].to_vec();
        for (at, byte) in edits {
            let i = at.index(file.len());
            file[i] = byte;
        }
        target(&file);
    }
}
