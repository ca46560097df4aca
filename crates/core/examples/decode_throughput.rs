//! Throughput of de-aggregate + decode + JSON field extraction over one event file, for
//! `bench/decode.sh` (which runs the Python reference on the same file in the same go).
//!
//! Usage: `decode_throughput EVENT.json [RUNS]` — prints one JSON line with the median
//! records/s over RUNS passes (envelope parse included in every pass, as in Python).

use std::time::Instant;

use streamwatch_core::{FieldPath, Fields, JsonObject, record};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: decode_throughput EVENT.json [RUNS]");
        std::process::exit(64);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("decode_throughput: cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let paths: Vec<FieldPath> = ["Severity", "City", "County", "Txn_Timestamp"]
        .iter()
        .filter_map(|p| FieldPath::parse(p).ok())
        .collect();
    let mut rates = Vec::with_capacity(runs);
    let mut records = 0;
    let mut checksum = 0.0;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let Ok(event) = record::parse_event(&bytes) else {
            eprintln!("decode_throughput: {path} is not a Kinesis event");
            std::process::exit(1);
        };
        records = 0;
        checksum = 0.0;
        for parent in record::parents(&event) {
            let Ok(users) = parent.user_records() else {
                continue;
            };
            for user in users {
                let Ok(obj) = JsonObject::parse(user.data) else {
                    continue;
                };
                checksum += obj.field(&paths[0]).and_then(|v| v.as_f64()).unwrap_or(0.0);
                for p in &paths[1..] {
                    std::hint::black_box(obj.field(p));
                }
                records += 1;
            }
        }
        rates.push(records as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{{\"impl\":\"streamwatch\",\"records\":{records},\"runs\":{},\"records_per_s\":{median:.0},\"checksum\":{checksum}}}",
        rates.len()
    );
}
