//! The one writer of the functions' operational metrics as CloudWatch Embedded Metric Format:
//! a log line CloudWatch Logs turns into metrics, so counting costs no API call. Each
//! invocation (or recovery pass) prints one line of counts. The accident metrics, which
//! need values, counts and several resolutions, are packed by `metrics::emf_lines`.

use serde_json::{Map, Value, json};

/// One EMF line of counts: `counts` as `Count` metrics in `namespace`, at `timestamp_ms`,
/// under `dimensions` (names and values; the values become members of the line, as EMF
/// requires). Metric and dimension names share the line's members: callers keep them apart.
pub fn counts_line(
    namespace: &str,
    dimensions: &[(&str, &str)],
    counts: &[(&str, usize)],
    timestamp_ms: i64,
) -> String {
    let definitions: Vec<Value> = counts
        .iter()
        .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
        .collect();
    let dimension_names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimension_names],
                "Metrics": definitions,
            }],
        }),
    );
    for (name, value) in dimensions {
        line.insert((*name).into(), (*value).into());
    }
    for (name, count) in counts {
        line.insert((*name).into(), (*count).into());
    }
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counts_line_declares_each_metric_and_carries_its_value() {
        let line = counts_line(
            "streamwatch/alerter",
            &[("FunctionName", "f")],
            &[("Sent", 2), ("Malformed", 0)],
            1_795_262_400_000,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_795_262_400_000i64);
        assert_eq!(directive["Namespace"], "streamwatch/alerter");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "Sent", "Unit": "Count"}, {"Name": "Malformed", "Unit": "Count"}])
        );
        assert_eq!(
            (
                v["FunctionName"].clone(),
                v["Sent"].clone(),
                v["Malformed"].clone()
            ),
            (json!("f"), json!(2), json!(0))
        );
        assert!(!line.contains('\n'), "one log line");
    }

    #[test]
    fn without_dimensions_the_dimension_set_is_empty() {
        let v: Value = serde_json::from_str(&counts_line("ns", &[], &[("A", 1)], 5)).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!(v["A"], 1);
    }
}
