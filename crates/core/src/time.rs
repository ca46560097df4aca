//! Event timestamps: ISO-8601 text (with or without offset; naive means UTC) and epoch
//! numbers in seconds, milliseconds or microseconds (told apart by magnitude), all read
//! as microseconds since the Unix epoch.

use chrono::{DateTime, NaiveDateTime, Utc};

use serde::{Deserialize, Serialize};

use crate::value::FieldValue;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// Unit of `ApproximateCreationDateTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Precision {
    Microsecond,
    Millisecond,
    /// DynamoDB Streams (not Kinesis) sends seconds; never named in the payload.
    Second,
}

/// Unit of an epoch timestamp by its magnitude: anything past 1e14 is microseconds
/// (1e14 µs is 1973), past 1e11 milliseconds (1e11 ms is 1973), else seconds.
pub fn infer_precision(value: f64) -> Precision {
    if value >= 1e14 {
        Precision::Microsecond
    } else if value >= 1e11 {
        Precision::Millisecond
    } else {
        Precision::Second
    }
}

/// Reads a field value as an event time.
pub fn parse_event_time(value: &FieldValue<'_>) -> Option<Micros> {
    match value {
        FieldValue::String(s) => parse_iso(s),
        FieldValue::Number(_) => {
            let v = value.as_f64()?;
            if v < 0.0 {
                return None;
            }
            let micros = match infer_precision(v) {
                Precision::Microsecond => v,
                Precision::Millisecond => v * 1e3,
                Precision::Second => v * 1e6,
            };
            (micros < 9.2e18).then_some(micros.round() as i64)
        }
        _ => None,
    }
}

/// ISO-8601 / RFC 3339 text; a time without offset is taken as UTC.
pub fn parse_iso(s: &str) -> Option<Micros> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// Formats microseconds as RFC 3339 UTC with millisecond precision.
pub fn format_micros(micros: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| micros.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn parses_the_formats_the_pipelines_use() {
        let t = 1_795_262_400_542_000;
        assert_eq!(parse_iso("2026-11-21T12:00:00.542Z"), Some(t));
        assert_eq!(parse_iso("2026-11-21T13:00:00.542+01:00"), Some(t));
        assert_eq!(parse_iso("2026-11-21T12:00:00.542000"), Some(t));
        assert_eq!(parse_iso("2026-11-21 12:00:00.542"), Some(t));
        assert_eq!(parse_iso("2026-11-21T12:00"), Some(t - 542_000));
        assert_eq!(parse_iso("yesterday"), None);
        let n = |s: &'static str| FieldValue::Number(Cow::Borrowed(s));
        assert_eq!(parse_event_time(&n("1795262400.542")), Some(t));
        assert_eq!(parse_event_time(&n("1795262400542")), Some(t));
        assert_eq!(parse_event_time(&n("1795262400542000")), Some(t));
        assert_eq!(parse_event_time(&n("-5")), None);
        assert_eq!(parse_event_time(&n("1e300")), None);
        assert_eq!(parse_event_time(&FieldValue::Bool(true)), None);
        assert_eq!(format_micros(t), "2026-11-21T12:00:00.542Z");
    }
}
