//! The raw layer's layout (docs/archive.md), as Firehose writes it and as the local stacks
//! (`dev run`, the demo) reproduce it: the partition keys a delivery stream's
//! `MetadataExtractionQuery` takes from a record, the S3 prefix its `Prefix` template makes
//! of them, and the object names. The query is evaluated in the subset of jq 1.6 the
//! template uses: `{key: expr, …}` where `expr` is a pipeline of a path (`.a.b`), an
//! optional string slice (`[0:10]`) or division (`/ 1000000`), `floor` and
//! `strftime("…")`. A query outside it is refused when parsed, naming the part.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One step of a key's pipeline.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Path(Vec<String>),
    Slice(usize, usize),
    Divide(f64),
    Floor,
    Strftime(String),
}

/// A parsed `MetadataExtractionQuery`: partition key → pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionQuery {
    keys: Vec<(String, Vec<Step>)>,
}

impl PartitionQuery {
    /// Parses the query, or says which part is outside the supported subset.
    pub fn parse(query: &str) -> Result<Self, String> {
        let body = query
            .trim()
            .strip_prefix('{')
            .and_then(|q| q.strip_suffix('}'))
            .ok_or_else(|| format!("{query:?}: expected {{key: expr, …}}"))?;
        let mut keys = Vec::new();
        for part in split_top(body, ',') {
            let (key, expr) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?}: expected key: expr"))?;
            let expr = expr.trim();
            let expr = expr
                .strip_prefix('(')
                .and_then(|e| e.strip_suffix(')'))
                .unwrap_or(expr);
            let mut steps = Vec::new();
            for stage in split_top(expr, '|') {
                steps.extend(parse_stage(stage.trim())?);
            }
            keys.push((key.trim().to_owned(), steps));
        }
        if keys.is_empty() {
            return Err(format!("{query:?}: no partition keys"));
        }
        Ok(Self { keys })
    }

    /// The partition keys of one record, or why it has none (Firehose then writes it under
    /// the error prefix).
    pub fn extract(&self, record: &Value) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for (key, steps) in &self.keys {
            let mut v = record.clone();
            for step in steps {
                v = apply(step, &v).map_err(|e| format!("{key}: {e}"))?;
            }
            let text = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                other => return Err(format!("{key}: {other} is not a string or number")),
            };
            out.insert(key.clone(), text);
        }
        Ok(out)
    }
}

/// Splits on `sep` outside parentheses, brackets and string literals.
fn split_top(text: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth -= 1,
            c if c == sep && depth == 0 && !quoted => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

fn parse_stage(stage: &str) -> Result<Vec<Step>, String> {
    if stage == "floor" {
        return Ok(vec![Step::Floor]);
    }
    if let Some(fmt) = stage
        .strip_prefix("strftime(\"")
        .and_then(|s| s.strip_suffix("\")"))
    {
        return Ok(vec![Step::Strftime(fmt.to_owned())]);
    }
    let Some(rest) = stage.strip_prefix('.') else {
        return Err(format!("{stage:?} is outside the supported jq subset"));
    };
    let (path, tail) = match rest.find(['[', '/', ' ']) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let mut steps = Vec::new();
    let fields: Vec<String> = path
        .split('.')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    steps.push(Step::Path(fields));
    if let Some(slice) = tail.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let (a, b) = slice
            .split_once(':')
            .ok_or_else(|| format!("{stage:?}: only [m:n] slices are supported"))?;
        let n = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("{stage:?}: slice bound {s:?}"))
        };
        steps.push(Step::Slice(n(a)?, n(b)?));
    } else if let Some(divisor) = tail.strip_prefix('/') {
        let d: f64 = divisor
            .trim()
            .parse()
            .map_err(|_| format!("{stage:?}: divisor {divisor:?}"))?;
        steps.push(Step::Divide(d));
    } else if !tail.is_empty() {
        return Err(format!(
            "{stage:?}: {tail:?} is outside the supported jq subset"
        ));
    }
    Ok(steps)
}

fn apply(step: &Step, v: &Value) -> Result<Value, String> {
    match step {
        Step::Path(fields) => {
            let mut cur = v;
            for f in fields {
                cur = cur
                    .get(f)
                    .ok_or_else(|| format!(".{} is missing", fields.join(".")))?;
            }
            Ok(cur.clone())
        }
        Step::Slice(a, b) => {
            let s = v.as_str().ok_or_else(|| format!("{v} is not a string"))?;
            // jq slices strings by code point; past the end is cut short.
            let cut: String = s.chars().skip(*a).take(b.saturating_sub(*a)).collect();
            if cut.is_empty() {
                return Err(format!("{s:?}[{a}:{b}] is empty"));
            }
            Ok(Value::String(cut))
        }
        Step::Divide(d) => {
            let n = v.as_f64().ok_or_else(|| format!("{v} is not a number"))?;
            Ok(serde_json::json!(n / d))
        }
        Step::Floor => {
            let n = v.as_f64().ok_or_else(|| format!("{v} is not a number"))?;
            Ok(serde_json::json!(n.floor() as i64))
        }
        Step::Strftime(fmt) => {
            let n = v.as_f64().ok_or_else(|| format!("{v} is not a number"))?;
            let t = DateTime::<Utc>::from_timestamp(n as i64, 0)
                .ok_or_else(|| format!("{n} is not a time"))?;
            Ok(Value::String(t.format(fmt).to_string()))
        }
    }
}

/// Renders a Firehose prefix template: `!{partitionKeyFromQuery:k}` from `keys`,
/// `!{timestamp:<Java date pattern>}` from `arrival`, `!{firehose:error-output-type}` from
/// `error_type`.
pub fn render_prefix(
    template: &str,
    keys: &BTreeMap<String, String>,
    arrival: DateTime<Utc>,
    error_type: Option<&str>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("!{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("{template:?}: unclosed !{{"))?;
        let expr = &rest[start + 2..start + end];
        let (ns, arg) = expr.split_once(':').unwrap_or((expr, ""));
        match ns {
            "partitionKeyFromQuery" => out.push_str(
                keys.get(arg)
                    .ok_or_else(|| format!("{template:?}: no partition key {arg}"))?,
            ),
            "timestamp" => out.push_str(&arrival.format(&java_to_strftime(arg)).to_string()),
            "firehose" if arg == "error-output-type" => {
                out.push_str(error_type.unwrap_or("processing-failed"))
            }
            _ => return Err(format!("{template:?}: !{{{expr}}} is not supported")),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The Java date patterns Firehose prefixes use (yyyy, MM, dd, HH, mm, ss) as strftime.
fn java_to_strftime(pattern: &str) -> String {
    pattern
        .replace("yyyy", "%Y")
        .replace("MM", "%m")
        .replace("dd", "%d")
        .replace("HH", "%H")
        .replace("mm", "%M")
        .replace("ss", "%S")
}

/// A Firehose object name: `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<unique>`, `.gz`
/// when compressed.
pub fn object_name(stream: &str, at: DateTime<Utc>, unique: &str, gzip: bool) -> String {
    format!(
        "{stream}-1-{}-{unique}{}",
        at.format("%Y-%m-%d-%H-%M-%S"),
        if gzip { ".gz" } else { "" }
    )
}

/// Records as an object's body: one JSON record per line (the template's
/// `AppendDelimiterToRecord`), each record's bytes as they were.
pub fn lines<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(r);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACCIDENTS: &str = "{dt: .Txn_Timestamp[0:10], hr: .Txn_Timestamp[11:13]}";
    const READINGS: &str = r#"{dt: (.dynamodb.ApproximateCreationDateTime / 1000000 | floor | strftime("%Y-%m-%d")), hr: (.dynamodb.ApproximateCreationDateTime / 1000000 | floor | strftime("%H"))}"#;

    #[test]
    fn the_templates_queries_give_date_and_hour() {
        let q = PartitionQuery::parse(ACCIDENTS).unwrap();
        let keys = q
            .extract(&json!({"Txn_Timestamp": "2026-11-30T07:59:59.123456"}))
            .unwrap();
        assert_eq!(keys["dt"], "2026-11-30");
        assert_eq!(keys["hr"], "07");
        assert!(q.extract(&json!({"ID": "A-1"})).is_err());
        assert!(q.extract(&json!({"Txn_Timestamp": 5})).is_err());

        let q = PartitionQuery::parse(READINGS).unwrap();
        // 2026-11-30T23:30:00.5Z in microseconds.
        let keys = q
            .extract(
                &json!({"dynamodb": {"ApproximateCreationDateTime": 1_796_081_400_500_000i64}}),
            )
            .unwrap();
        assert_eq!(
            (keys["dt"].as_str(), keys["hr"].as_str()),
            ("2026-11-30", "23")
        );
    }

    #[test]
    fn queries_outside_the_subset_are_refused_by_name() {
        for q in ["{dt: .a | ascii_downcase}", "dt: .a", "{dt: .a[1]}", "{}"] {
            assert!(PartitionQuery::parse(q).is_err(), "{q}");
        }
    }

    #[test]
    fn prefixes_render_keys_timestamps_and_error_types() {
        let keys = [
            ("dt".to_owned(), "2026-11-30".to_owned()),
            ("hr".to_owned(), "07".to_owned()),
        ]
        .into();
        let at = DateTime::<Utc>::from_timestamp(1_796_081_400, 0).unwrap();
        assert_eq!(
            render_prefix(
                "accidents/dt=!{partitionKeyFromQuery:dt}/hr=!{partitionKeyFromQuery:hr}/",
                &keys,
                at,
                None
            )
            .unwrap(),
            "accidents/dt=2026-11-30/hr=07/"
        );
        assert_eq!(
            render_prefix("errors/a/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/hr=!{timestamp:HH}/", &keys, at, None).unwrap(),
            "errors/a/processing-failed/dt=2026-11-30/hr=23/"
        );
        assert!(render_prefix("x/!{partitionKeyFromQuery:zz}/", &keys, at, None).is_err());
        assert_eq!(
            object_name("s", at, "u", true),
            "s-1-2026-11-30-23-30-00-u.gz"
        );
    }
}
