//! The window-aggregator's configuration, read once at init; every error names its variable.
//! Defaults reproduce the reference pipeline: per-turbine 60 s windows of
//! `NewImage.value`, alert when the average is above 60 mph.

use std::time::Duration;

use streamwatch_core::config::{ConfigError, Source, optional, parsed_or, required};
use streamwatch_core::window::{WindowRule, WindowSpec};
use streamwatch_core::{Condition, FieldPath};

/// What the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Kinesis Data Streams for DynamoDB change records.
    DynamoDb,
    /// Plain JSON objects, one per record.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `WINDOWS_TABLE` (required).
    pub windows_table: String,
    /// `ALERTS_TABLE` (required).
    pub alerts_table: String,
    /// `INPUT_FORMAT`: `dynamodb` (default) or `json`.
    pub input: InputFormat,
    /// `WINDOW_KEY` (default `NewImage.deviceID`, or `deviceID` for json).
    pub key: FieldPath,
    /// `WINDOW_VALUE` (default `NewImage.value`, or `value`).
    pub value: FieldPath,
    /// `WINDOW_EVENT_TIME` (default `NewImage.createdAt`, or `createdAt`); `none` to use the
    /// change record's creation time (then arrival time) only.
    pub event_time: Option<FieldPath>,
    /// The same paths read from `OldImage` (REMOVE, and a MODIFY that moved a reading).
    pub old_key: Option<FieldPath>,
    pub old_value: Option<FieldPath>,
    pub old_event_time: Option<FieldPath>,
    /// `WINDOW_SECONDS` (60) and `ALLOWED_LATENESS_SECONDS` (5, the reference watermark).
    pub spec: WindowSpec,
    /// `CLOSE_GRACE_SECONDS` (10): a shard the schedule finds caught up has progressed to
    /// wall clock minus this (the delay between a change and its arrival on the stream).
    pub grace: Duration,
    /// `MAX_FUTURE_SKEW_SECONDS` (60): a reading stamped further ahead of its record's own
    /// time is counted (`FutureRecords`) and logged with its key. (No reading moves its
    /// shard's progress past its record's time, however small its skew.)
    pub max_future_skew: Duration,
    /// `STREAM_ARN`: the stream the function reads, for its shards (`ListShards`) and the
    /// schedule's probe. Required by the deployed function (`main`); tests and the local
    /// pipeline give their own probe.
    pub stream_arn: Option<String>,
    /// `WINDOW_RULE_NAME` (`windspeed-avg`), `WINDOW_CONDITION` (`avg > 60`),
    /// `RESOLVE_HYSTERESIS` (0), `WINDOW_LABEL` (`Wind speed`), `WINDOW_UNIT` (`mph`).
    pub rule: WindowRule,
    /// `STATE_TTL_HOURS` (48): window state lives this long after its last write.
    pub state_ttl: Duration,
    /// `OPS_METRIC_NAMESPACE` (`streamwatch/window-aggregator`): operational metrics (EMF).
    pub ops_namespace: String,
}

fn path(src: &impl Source, name: &str, default: &str) -> Result<FieldPath, ConfigError> {
    let text = optional(src, name).unwrap_or_else(|| default.to_owned());
    FieldPath::parse(text.trim()).map_err(|e| ConfigError {
        variable: name.into(),
        reason: e.to_string(),
    })
}

fn old_image(path: &FieldPath) -> Option<FieldPath> {
    let text = path.as_str();
    let rest = text.strip_prefix("dynamodb.").unwrap_or(text);
    rest.strip_prefix("NewImage.")
        .and_then(|r| FieldPath::parse(&format!("OldImage.{r}")).ok())
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&streamwatch_core::config::Env)
    }

    /// Reads and checks every variable, one block each (the first bad one is the error, named).
    /// Longer than 80 lines because the function has that many settings: one flat list reads
    /// better than the same blocks spread over helpers.
    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        let bad = |variable: &str, reason: &str| ConfigError {
            variable: variable.into(),
            reason: reason.into(),
        };
        let input = match optional(src, "INPUT_FORMAT").as_deref().map(str::trim) {
            None | Some("dynamodb") => InputFormat::DynamoDb,
            Some("json") => InputFormat::Json,
            Some(_) => return Err(bad("INPUT_FORMAT", "must be dynamodb or json")),
        };
        let (dk, dv, dt) = match input {
            InputFormat::DynamoDb => ("NewImage.deviceID", "NewImage.value", "NewImage.createdAt"),
            InputFormat::Json => ("deviceID", "value", "createdAt"),
        };
        let key = path(src, "WINDOW_KEY", dk)?;
        let value = path(src, "WINDOW_VALUE", dv)?;
        let event_time = match optional(src, "WINDOW_EVENT_TIME").as_deref().map(str::trim) {
            Some("none") => None,
            _ => Some(path(src, "WINDOW_EVENT_TIME", dt)?),
        };
        let seconds: u64 = parsed_or(src, "WINDOW_SECONDS", 60)?;
        if !(1..=86_400).contains(&seconds) {
            return Err(bad("WINDOW_SECONDS", "must be between 1 and 86400"));
        }
        let lateness: u64 = parsed_or(src, "ALLOWED_LATENESS_SECONDS", 5)?;
        if lateness > 3_600 {
            return Err(bad("ALLOWED_LATENESS_SECONDS", "must be at most 3600"));
        }
        let grace: u64 = parsed_or(src, "CLOSE_GRACE_SECONDS", 10)?;
        let skew: u64 = parsed_or(src, "MAX_FUTURE_SKEW_SECONDS", 60)?;
        if skew > 86_400 {
            return Err(bad("MAX_FUTURE_SKEW_SECONDS", "must be at most 86400"));
        }
        let name = optional(src, "WINDOW_RULE_NAME").unwrap_or_else(|| "windspeed-avg".into());
        if name.contains('#') || name.trim().is_empty() {
            return Err(bad(
                "WINDOW_RULE_NAME",
                "must be non-empty and must not contain '#'",
            ));
        }
        let condition_text = optional(src, "WINDOW_CONDITION").unwrap_or_else(|| "avg > 60".into());
        let condition = Condition::parse(&condition_text).map_err(|e| ConfigError {
            variable: "WINDOW_CONDITION".into(),
            reason: e.to_string(),
        })?;
        let stat = condition.path.as_str();
        if !["avg", "min", "max", "sum", "count"].contains(&stat) || condition.threshold().is_none()
        {
            return Err(bad(
                "WINDOW_CONDITION",
                "must compare avg, min, max, sum or count with a number, e.g. `avg > 60`",
            ));
        }
        let hysteresis: f64 = parsed_or(src, "RESOLVE_HYSTERESIS", 0.0)?;
        if !hysteresis.is_finite() || hysteresis < 0.0 {
            return Err(bad("RESOLVE_HYSTERESIS", "must be a non-negative number"));
        }
        let ttl_hours: u64 = parsed_or(src, "STATE_TTL_HOURS", 48)?;
        if ttl_hours == 0 {
            return Err(bad("STATE_TTL_HOURS", "must be at least 1"));
        }
        Ok(Self {
            windows_table: required(src, "WINDOWS_TABLE")?,
            alerts_table: required(src, "ALERTS_TABLE")?,
            input,
            old_key: old_image(&key),
            old_value: old_image(&value),
            old_event_time: event_time.as_ref().and_then(old_image),
            key,
            value,
            event_time,
            spec: WindowSpec {
                size_micros: seconds as i64 * 1_000_000,
                lateness_micros: lateness as i64 * 1_000_000,
            },
            grace: Duration::from_secs(grace),
            max_future_skew: Duration::from_secs(skew),
            stream_arn: optional(src, "STREAM_ARN"),
            rule: WindowRule {
                name,
                condition,
                hysteresis,
                label: optional(src, "WINDOW_LABEL").unwrap_or_else(|| "Wind speed".into()),
                unit: optional(src, "WINDOW_UNIT").unwrap_or_else(|| "mph".into()),
            },
            state_ttl: Duration::from_secs(ttl_hours * 3600),
            ops_namespace: optional(src, "OPS_METRIC_NAMESPACE")
                .unwrap_or_else(|| "streamwatch/window-aggregator".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_reproduce_the_reference_and_errors_name_the_variable() {
        let c = Config::from_source(&[("WINDOWS_TABLE", "w"), ("ALERTS_TABLE", "a")]).unwrap();
        assert_eq!(c.key.as_str(), "NewImage.deviceID");
        assert_eq!(c.old_key.unwrap().as_str(), "OldImage.deviceID");
        assert_eq!(c.spec.size_micros, 60_000_000);
        assert_eq!(c.rule.condition.to_string(), "avg > 60");
        for (var, value) in [
            ("WINDOW_SECONDS", "0"),
            ("WINDOW_CONDITION", "Severity > 2"),
            ("INPUT_FORMAT", "xml"),
            ("WINDOW_RULE_NAME", "a#b"),
            ("WINDOW_KEY", "a..b"),
            ("MAX_FUTURE_SKEW_SECONDS", "-1"),
        ] {
            let err =
                Config::from_source(&[("WINDOWS_TABLE", "w"), ("ALERTS_TABLE", "a"), (var, value)])
                    .unwrap_err();
            assert_eq!(err.variable, var);
        }
        assert_eq!(
            Config::from_source(&[("ALERTS_TABLE", "a")])
                .unwrap_err()
                .variable,
            "WINDOWS_TABLE"
        );
    }
}
