//! US-accident rows (the dataset's CSV columns) as the reference producer's JSON: typed
//! numbers and booleans, ISO-8601 times, empty cells left out, columns in CSV order, and a
//! `Txn_Timestamp` appended. The output matches the reference byte for byte.

use std::fmt::Write as _;

use chrono::NaiveDateTime;

const INTEGERS: &[&str] = &["Severity"];
const FLOATS: &[&str] = &[
    "Start_Lat",
    "Start_Lng",
    "End_Lat",
    "End_Lng",
    "Distance(mi)",
    "Temperature(F)",
    "Wind_Chill(F)",
    "Humidity(%)",
    "Pressure(in)",
    "Visibility(mi)",
    "Wind_Speed(mph)",
    "Precipitation(in)",
];
const BOOLEANS: &[&str] = &[
    "Amenity",
    "Bump",
    "Crossing",
    "Give_Way",
    "Junction",
    "No_Exit",
    "Railway",
    "Roundabout",
    "Station",
    "Stop",
    "Traffic_Calming",
    "Traffic_Signal",
    "Turning_Loop",
];
const TIMES: &[&str] = &["Start_Time", "End_Time", "Weather_Timestamp"];

/// The columns the pipeline's rules read from an accident row, as template.yaml configures
/// the metrics-publisher: the alert key (`ALERT_KEY_FIELD`), the filter and alert rule's
/// field (`METRIC_FILTER`, `ALERT_RULE`) and the metric dimensions (`METRIC_DIMENSIONS`).
/// `Txn_Timestamp` is added by the producer. tests/tests/template.rs checks the two agree.
pub const REQUIRED_COLUMNS: [&str; 4] = ["ID", "Severity", "City", "County"];

/// Refuses a header that lacks any of [`REQUIRED_COLUMNS`], naming them, so a file that is
/// not an accident CSV (`/etc/passwd`) is not replayed as rows no rule can read.
pub fn check_columns<'a>(headers: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let present: Vec<&str> = headers.into_iter().map(str::trim).collect();
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !present.contains(c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "not a US-Accidents CSV: no {} {} (the metric filter, alert rule and dimensions read {})",
        missing.join(", "),
        if missing.len() == 1 {
            "column"
        } else {
            "columns"
        },
        REQUIRED_COLUMNS.join(", ")
    ))
}

/// Why a row could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("{found} columns, the header has {expected}")]
    ColumnCount { expected: usize, found: usize },
    #[error("column {column}: {value:?} is not {expected}")]
    Value {
        column: String,
        value: String,
        expected: &'static str,
    },
}

/// Parses the dataset's times: `M/D/YYYY H:MM` (the sample) and `YYYY-MM-DD HH:MM:SS(.fff)`
/// (the full dataset), as ISO-8601 without offset (`2016-02-08T00:37:00`).
pub fn iso_time(text: &str) -> Option<String> {
    let t = text.trim();
    for fmt in [
        "%m/%d/%Y %H:%M",
        "%m/%d/%Y %H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.format("%Y-%m-%dT%H:%M:%S%.f").to_string());
        }
    }
    None
}

/// Converts one row to the reference JSON. `txn_timestamp` is the send time, e.g.
/// `2026-11-21T12:00:00.250000`.
pub fn row_to_json(
    headers: &[&str],
    fields: &[&str],
    txn_timestamp: &str,
) -> Result<String, RowError> {
    if headers.len() != fields.len() {
        return Err(RowError::ColumnCount {
            expected: headers.len(),
            found: fields.len(),
        });
    }
    let bad = |column: &str, value: &str, expected| RowError::Value {
        column: column.to_owned(),
        value: value.chars().take(80).collect(),
        expected,
    };
    let mut out = String::with_capacity(1024);
    out.push('{');
    let mut first = true;
    for (name, value) in headers.iter().zip(fields) {
        if value.is_empty() {
            continue;
        }
        let rendered = if INTEGERS.contains(name) {
            value
                .trim()
                .parse::<i64>()
                .map_err(|_| bad(name, value, "an integer"))?
                .to_string()
        } else if FLOATS.contains(name) {
            let f = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| bad(name, value, "a number"))?;
            serde_json::Value::from(f).to_string()
        } else if BOOLEANS.contains(name) {
            match value.trim() {
                "TRUE" | "True" | "true" => "true".into(),
                "FALSE" | "False" | "false" => "false".into(),
                _ => return Err(bad(name, value, "TRUE or FALSE")),
            }
        } else if TIMES.contains(name) {
            let iso = iso_time(value)
                .ok_or_else(|| bad(name, value, "a time (M/D/YYYY H:MM or YYYY-MM-DD HH:MM:SS)"))?;
            serde_json::Value::String(iso).to_string()
        } else {
            serde_json::Value::String((*value).to_owned()).to_string()
        };
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(
            out,
            "{}:{rendered}",
            serde_json::Value::String((*name).to_owned())
        );
    }
    if !first {
        out.push(',');
    }
    let _ = write!(
        out,
        "\"Txn_Timestamp\":{}",
        serde_json::Value::String(txn_timestamp.to_owned())
    );
    out.push('}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_types_times_and_empties() {
        let headers = [
            "ID",
            "Severity",
            "Start_Time",
            "Humidity(%)",
            "Number",
            "Amenity",
            "Wind_Chill(F)",
        ];
        let json = row_to_json(
            &headers,
            &["A-1", "2", "2/8/2016 0:37", "77", "465", "TRUE", ""],
            "T",
        )
        .unwrap();
        assert_eq!(
            json,
            r#"{"ID":"A-1","Severity":2,"Start_Time":"2016-02-08T00:37:00","Humidity(%)":77.0,"Number":"465","Amenity":true,"Txn_Timestamp":"T"}"#
        );
        assert_eq!(
            iso_time("2016-02-08 05:46:00.000").unwrap(),
            "2016-02-08T05:46:00"
        );
        assert_eq!(
            iso_time("2016-02-08 05:46:00.25").unwrap(),
            "2016-02-08T05:46:00.250"
        );
        assert!(matches!(
            row_to_json(&headers, &["A"], "T"),
            Err(RowError::ColumnCount { .. })
        ));
        assert!(matches!(
            row_to_json(&headers, &["A-1", "high", "", "", "", "", ""], "T"),
            Err(RowError::Value { .. })
        ));
        assert!(matches!(
            row_to_json(&headers, &["A-1", "2", "yesterday", "", "", "", ""], "T"),
            Err(RowError::Value { .. })
        ));
    }
}
