//! The accident source of the demo: the shipped CSV of US-accident rows read as a stream
//! (constant memory) and converted to the reference producer's JSON, and the demo's replay
//! of it in slices over the run.

use std::collections::BTreeMap;
use std::io::Read;

use streamwatch_core::accident::row_to_json;
use streamwatch_core::time::{format_micros, parse_iso};

/// A row that could not be converted, with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    pub reason: String,
}

/// What reading a CSV produced: (partition key = `ID`, JSON) per good row, and the bad rows.
#[derive(Debug, Default)]
pub struct Rows {
    pub payloads: Vec<(String, Vec<u8>)>,
    pub bad: Vec<BadRow>,
}

/// Refuses a CSV whose header lacks the columns the rules read (core `check_columns`).
pub fn check_header(input: &[u8]) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| format!("no CSV header: {e}"))?;
    streamwatch_core::accident::check_columns(headers.iter())
}

/// Reads every row of `input`; `txn(i)` gives row `i`'s `Txn_Timestamp`.
pub fn read_csv(input: impl Read, txn: impl Fn(usize) -> String) -> Result<Rows, csv::Error> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let id_column = header_refs.iter().position(|h| *h == "ID");
    let mut rows = Rows::default();
    let mut record = csv::StringRecord::new();
    let mut i = 0;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                let fields: Vec<&str> = record.iter().collect();
                match row_to_json(&header_refs, &fields, &txn(i)) {
                    Ok(json) => {
                        let key = id_column
                            .and_then(|c| fields.get(c))
                            .map_or_else(|| format!("row-{line}"), |s| (*s).to_owned());
                        rows.payloads.push((key, json.into_bytes()));
                    }
                    Err(e) => rows.bad.push(BadRow {
                        line,
                        reason: e.to_string(),
                    }),
                }
                i += 1;
            }
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(e),
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                rows.bad.push(BadRow {
                    line,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(rows)
}

/// Simulated minutes between two slices of the demo's accident replay: the CSV's rows, split
/// evenly in order, go out in one slice per this many minutes of the run (two in the default
/// thirty), so a (County, State) group with accidents in both slices gets a second email.
/// More than the default group interval plus wait: each slice's groups go out together.
pub const SLICE_MINUTES: u32 = 15;
/// Each slice goes out this far into its minute (the alerter's schedule runs on the minute).
pub const SLICE_OFFSET_MICROS: i64 = 30_000_000;

/// When row `i` of `rows` is replayed in a run of `minutes` starting at `start`.
pub fn replay_micros(start: i64, i: usize, rows: usize, minutes: u32) -> i64 {
    let slices = minutes.div_ceil(SLICE_MINUTES).max(1) as usize;
    let slice = (i * slices / rows.max(1)).min(slices - 1);
    start + slice as i64 * i64::from(SLICE_MINUTES) * 60_000_000 + SLICE_OFFSET_MICROS
}

/// Rows of `input` a CSV reader yields (bad ones included): what `read_csv` numbers.
pub fn count_rows(input: &[u8]) -> usize {
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(input)
        .records()
        .filter(Result::is_ok)
        .count()
}

/// Accident payloads (partition key, JSON) by the simulated time they are replayed.
pub type Slices = BTreeMap<i64, Vec<(String, Vec<u8>)>>;

/// The rows of a run of `minutes` from `start`, by replay time: each row's `Txn_Timestamp`
/// is its slice's replay time plus 10 ms per row (so rows stay apart and in their minute).
pub fn read_slices(
    input: &[u8],
    start: i64,
    minutes: u32,
) -> Result<(Slices, Vec<BadRow>), csv::Error> {
    let n = count_rows(input);
    let txn = |i: usize| {
        let at = replay_micros(start, i, n, minutes) + (i % 100) as i64 * 10_000;
        format_micros(at).trim_end_matches('Z').to_owned()
    };
    let rows = read_csv(input, txn)?;
    let mut slices = Slices::new();
    for (key, data) in rows.payloads {
        // The slice is the row's Txn_Timestamp down to the slice offset in its minute.
        let txn = serde_json::from_slice::<serde_json::Value>(&data)
            .ok()
            .and_then(|v| v["Txn_Timestamp"].as_str().and_then(parse_iso))
            .unwrap_or(start);
        let at = txn - (txn - SLICE_OFFSET_MICROS).rem_euclid(60_000_000);
        slices.entry(at).or_default().push((key, data));
    }
    Ok((slices, rows.bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::collections::HashMap;

    /// Every row of the sample CSV converts to exactly the reference producer's JSON.
    #[test]
    fn sample_csv_matches_the_reference_producer_byte_for_byte() {
        let csv = include_bytes!("../../../tests/fixtures/us-accidents-sample.csv");
        let rows = read_csv(&csv[..], |_| "TXN".into()).unwrap();
        assert_eq!(rows.payloads.len(), 500);
        assert!(rows.bad.is_empty());
        let ours: HashMap<String, String> = rows
            .payloads
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    String::from_utf8(v)
                        .unwrap()
                        .replace(r#","Txn_Timestamp":"TXN""#, ""),
                )
            })
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut compared = 0;
        for line in
            include_str!("../../../tests/fixtures/kinesis-accidents-plain.expected.jsonl").lines()
        {
            let l: serde_json::Value = serde_json::from_str(line).unwrap();
            let reference =
                String::from_utf8(b64.decode(l["data"].as_str().unwrap()).unwrap()).unwrap();
            let cut = reference.find(r#","Txn_Timestamp""#).unwrap();
            let id: serde_json::Value = serde_json::from_str(&reference).unwrap();
            // The fixture holds 1,000 accidents; the shipped CSV is the first 500 of them.
            let Some(mine) = ours.get(id["ID"].as_str().unwrap()) else {
                continue;
            };
            assert_eq!(
                *mine,
                format!("{}}}", &reference[..cut]),
                "row {}",
                id["ID"]
            );
            compared += 1;
        }
        assert_eq!(compared, 500, "every CSV row compared");
    }

    /// The sample's rows go out in two slices of a 30-minute run, in order and evenly, each
    /// row's `Txn_Timestamp` in its slice's minute; a 5-minute run replays them at once.
    #[test]
    fn the_sample_is_replayed_in_slices_fifteen_minutes_apart() {
        let csv = include_bytes!("../../../tests/fixtures/us-accidents-sample.csv");
        let start = 1_795_262_400_000_000;
        let (slices, bad) = read_slices(csv, start, 30).unwrap();
        assert!(bad.is_empty());
        let times: Vec<i64> = slices.keys().copied().collect();
        assert_eq!(times, [start + 30_000_000, start + 930_000_000]);
        assert_eq!(
            slices.values().map(Vec::len).collect::<Vec<_>>(),
            [250, 250]
        );
        let ids: Vec<&str> = slices.values().flatten().map(|(k, _)| k.as_str()).collect();
        let in_order: Vec<String> = read_csv(&csv[..], |_| String::new())
            .unwrap()
            .payloads
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(ids, in_order);
        for (at, rows) in &slices {
            for (_, data) in rows {
                let v: serde_json::Value = serde_json::from_slice(data).unwrap();
                let txn = v["Txn_Timestamp"].as_str().unwrap();
                assert_eq!(&txn[..16], &format_micros(*at)[..16], "{txn}");
            }
        }
        let (once, _) = read_slices(csv, start, 5).unwrap();
        assert_eq!(once.len(), 1);
    }

    #[test]
    fn bad_rows_are_reported_with_their_line_and_skipped() {
        let csv = "ID,Severity,Start_Time\nA-1,2,2/8/2016 0:37\nA-2,2\nA-3,3,not a time\nA-4,4,2/8/2016 1:00\n";
        let rows = read_csv(csv.as_bytes(), |i| format!("t{i}")).unwrap();
        assert_eq!(rows.payloads.len(), 2);
        assert_eq!(
            rows.bad.iter().map(|b| b.line).collect::<Vec<_>>(),
            vec![3, 4]
        );
    }
}
