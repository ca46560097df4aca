//! The function's configuration, read once at init from environment variables. Defaults
//! reproduce the reference accident pipeline; a missing or invalid variable fails the init
//! with a message naming it.

use streamwatch_core::config::{ConfigError, Env, Source, optional, parsed_or, required};
use streamwatch_core::metrics::{
    MAX_DIMENSIONS, Resolution, Unit, check_dimension_name, check_name, check_namespace,
};
use streamwatch_core::{Condition, FieldPath};

/// Where metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// CloudWatch PutMetricData.
    Api,
    /// Embedded Metric Format lines on stdout (no API calls).
    Emf,
}

/// What one selected record adds to its series.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// 1 per record: the metric counts records.
    Count,
    /// A numeric field of the record.
    Field(FieldPath),
}

/// Where a datum's timestamp comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TimestampSource {
    /// A field (ISO-8601 or epoch s/ms/µs); the record's arrival time when absent or null.
    Field(FieldPath),
    /// Always the record's arrival time in Kinesis.
    Arrival,
}

/// The data metric: which records, which series, which value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricConfig {
    pub namespace: String,
    pub name: String,
    pub unit: Unit,
    pub resolution: Resolution,
    /// Records for which this holds become samples; `None` selects every record.
    pub filter: Option<Condition>,
    /// Dimension name and the field giving its value, in order.
    pub dimensions: Vec<(String, FieldPath)>,
    pub value: MetricValue,
    pub timestamp: TimestampSource,
}

/// The per-event alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    pub rule: Condition,
    /// Rule name in alert records and their ids.
    pub name: String,
    /// `ALERT_KEY_FIELD` (default `ID`, `none` for no key): the field naming the event (the
    /// accident `ID`). It is the alert's key and makes its id, so an event delivered many
    /// times is one alert; without it (or when a record lacks it, counted as
    /// `AlertsWithoutKey`) the id comes from the record's Kinesis coordinates and the key is
    /// the partition key.
    pub key_field: Option<FieldPath>,
    /// Field whose text is the alert's severity.
    pub severity_field: FieldPath,
    /// DynamoDB alerts table.
    pub table: String,
}

/// Everything the function reads at init.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub sink: SinkKind,
    pub metric: MetricConfig,
    /// Namespace of the function's own operational metrics.
    pub ops_namespace: String,
    /// `None` when `ALERT_RULE=off`.
    pub alerts: Option<AlertConfig>,
    /// PutMetricData requests of one batch in flight at once.
    pub publish_concurrency: usize,
    /// Deadline of one PutMetricData attempt (`PUT_METRIC_DATA_TIMEOUT_SECONDS`).
    pub put_metric_data_timeout: std::time::Duration,
    /// Alert writes of one batch in flight at once.
    pub alert_concurrency: usize,
    /// Write a reject line (with the record's bytes) per skipped record to stdout for the
    /// raw layer's `rejected/` (`ARCHIVE_REJECTS`, template: on with `CreateArchive`). Off,
    /// the function's logs carry no payloads.
    pub archive_rejects: bool,
}

pub const DEFAULT_DIMENSIONS: &str =
    "severity_accident=Severity,city_accident=City,county_accident=County";

fn invalid(variable: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.into(),
        reason: reason.into(),
    }
}

fn text_or(src: &impl Source, name: &str, default: &str) -> String {
    optional(src, name)
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| default.to_owned())
}

fn path(src: &impl Source, name: &str, default: &str) -> Result<FieldPath, ConfigError> {
    FieldPath::parse(&text_or(src, name, default)).map_err(|e| invalid(name, e.to_string()))
}

fn condition(src: &impl Source, name: &str, default: &str) -> Result<Condition, ConfigError> {
    Condition::parse(&text_or(src, name, default)).map_err(|e| invalid(name, e.to_string()))
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&Env)
    }

    /// Reads and checks every variable, one block each (the first bad one is the error, named).
    /// Longer than 80 lines because the function has that many settings: one flat list reads
    /// better than the same blocks spread over helpers.
    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        let sink = match text_or(src, "METRICS_SINK", "api").as_str() {
            "api" => SinkKind::Api,
            "emf" => SinkKind::Emf,
            other => {
                return Err(invalid(
                    "METRICS_SINK",
                    format!("invalid value {other:?}: expected api or emf"),
                ));
            }
        };
        let namespace = text_or(src, "METRIC_NAMESPACE", "streamwatch/accidents");
        check_namespace(&namespace).map_err(|e| invalid("METRIC_NAMESPACE", e))?;
        let ops_namespace = text_or(src, "OPS_METRIC_NAMESPACE", "streamwatch/metrics-publisher");
        check_namespace(&ops_namespace).map_err(|e| invalid("OPS_METRIC_NAMESPACE", e))?;
        let name = text_or(src, "METRIC_NAME", "accidents");
        check_name(&name).map_err(|e| invalid("METRIC_NAME", e))?;
        let unit: Unit = parsed_or(src, "METRIC_UNIT", Unit::COUNT)?;
        let resolution: Resolution = parsed_or(src, "METRIC_STORAGE_RESOLUTION", Resolution::High)?;
        let filter = match text_or(src, "METRIC_FILTER", "Severity > 2").as_str() {
            "all" => None,
            _ => Some(condition(src, "METRIC_FILTER", "Severity > 2")?),
        };
        let dimensions = dimensions(&text_or(src, "METRIC_DIMENSIONS", DEFAULT_DIMENSIONS))
            .map_err(|e| invalid("METRIC_DIMENSIONS", e))?;
        if dimensions.iter().any(|(d, _)| *d == name) {
            // EMF puts dimension values and metric values side by side in one JSON object.
            return Err(invalid(
                "METRIC_DIMENSIONS",
                format!("a dimension is named like the metric ({name})"),
            ));
        }
        let value = match text_or(src, "METRIC_VALUE", "count").as_str() {
            "count" => MetricValue::Count,
            _ => MetricValue::Field(path(src, "METRIC_VALUE", "count")?),
        };
        let timestamp = match text_or(src, "METRIC_TIMESTAMP_FIELD", "Txn_Timestamp").as_str() {
            "arrival" => TimestampSource::Arrival,
            _ => TimestampSource::Field(path(src, "METRIC_TIMESTAMP_FIELD", "Txn_Timestamp")?),
        };
        let alerts = match text_or(src, "ALERT_RULE", "Severity >= 4").as_str() {
            "off" => None,
            _ => Some(AlertConfig {
                rule: condition(src, "ALERT_RULE", "Severity >= 4")?,
                name: text_or(src, "ALERT_RULE_NAME", "accident-severity"),
                key_field: match text_or(src, "ALERT_KEY_FIELD", "ID").as_str() {
                    "none" | "" => None,
                    _ => Some(path(src, "ALERT_KEY_FIELD", "ID")?),
                },
                severity_field: path(src, "ALERT_SEVERITY_FIELD", "Severity")?,
                table: required(src, "ALERTS_TABLE")?.trim().to_owned(),
            }),
        };
        let publish_concurrency = parsed_or(src, "PUBLISH_CONCURRENCY", 4usize)?;
        if !(1..=32).contains(&publish_concurrency) {
            return Err(invalid("PUBLISH_CONCURRENCY", "must be 1 to 32"));
        }
        let timeout_seconds = parsed_or(
            src,
            "PUT_METRIC_DATA_TIMEOUT_SECONDS",
            streamwatch_adapters::cloudwatch::ATTEMPT_TIMEOUT.as_secs(),
        )?;
        if !(1..=900).contains(&timeout_seconds) {
            return Err(invalid(
                "PUT_METRIC_DATA_TIMEOUT_SECONDS",
                "must be 1 to 900 (Lambda's longest timeout)",
            ));
        }
        let alert_concurrency = parsed_or(src, "ALERT_CONCURRENCY", 16usize)?;
        if !(1..=128).contains(&alert_concurrency) {
            return Err(invalid("ALERT_CONCURRENCY", "must be 1 to 128"));
        }
        let archive_rejects = parsed_or(src, "ARCHIVE_REJECTS", false)?;
        Ok(Self {
            sink,
            metric: MetricConfig {
                namespace,
                name,
                unit,
                resolution,
                filter,
                dimensions,
                value,
                timestamp,
            },
            ops_namespace,
            alerts,
            publish_concurrency,
            put_metric_data_timeout: std::time::Duration::from_secs(timeout_seconds),
            alert_concurrency,
            archive_rejects,
        })
    }
}

/// Parses `name=Field,name=Field` (`none` for no dimensions).
fn dimensions(text: &str) -> Result<Vec<(String, FieldPath)>, String> {
    if text == "none" {
        return Ok(Vec::new());
    }
    let mut out: Vec<(String, FieldPath)> = Vec::new();
    for item in text.split(',') {
        let (name, field) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not name=Field"))?;
        let (name, field) = (name.trim(), field.trim());
        check_dimension_name(name).map_err(|e| format!("dimension name {name:?} {e}"))?;
        if name == "_aws" {
            return Err("dimension name _aws is reserved by the Embedded Metric Format".into());
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("dimension {name} is listed twice"));
        }
        let field = FieldPath::parse(field).map_err(|e| e.to_string())?;
        out.push((name.to_owned(), field));
    }
    if out.len() > MAX_DIMENSIONS {
        return Err(format!(
            "{} dimensions (CloudWatch allows {MAX_DIMENSIONS})",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_reproduce_the_reference_pipeline() {
        let c = Config::from_source(&[("ALERTS_TABLE", "alerts")]).unwrap();
        assert_eq!(c.sink, SinkKind::Api);
        assert_eq!(c.metric.namespace, "streamwatch/accidents");
        assert_eq!(c.metric.name, "accidents");
        assert_eq!(c.metric.unit, Unit::COUNT);
        assert_eq!(c.metric.resolution, Resolution::High);
        assert_eq!(
            c.metric.filter.as_ref().unwrap().to_string(),
            "Severity > 2"
        );
        let dims: Vec<(&str, &str)> = c
            .metric
            .dimensions
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_str()))
            .collect();
        assert_eq!(
            dims,
            [
                ("severity_accident", "Severity"),
                ("city_accident", "City"),
                ("county_accident", "County")
            ]
        );
        assert_eq!(c.metric.value, MetricValue::Count);
        assert_eq!(
            c.metric.timestamp,
            TimestampSource::Field(FieldPath::parse("Txn_Timestamp").unwrap())
        );
        assert_eq!(c.ops_namespace, "streamwatch/metrics-publisher");
        let a = c.alerts.unwrap();
        assert_eq!(a.rule.to_string(), "Severity >= 4");
        assert_eq!(a.name, "accident-severity");
        assert_eq!(a.key_field.as_ref().map(|f| f.as_str()), Some("ID"));
        assert_eq!(a.table, "alerts");
        assert_eq!((c.publish_concurrency, c.alert_concurrency), (4, 16));
        assert_eq!(c.put_metric_data_timeout.as_secs(), 10);
    }

    #[test]
    fn every_error_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("METRICS_SINK", "stdout"),
            ("METRIC_NAMESPACE", "AWS/Lambda"),
            ("METRIC_UNIT", "Parsecs"),
            ("METRIC_STORAGE_RESOLUTION", "5"),
            ("METRIC_FILTER", "Severity >"),
            ("METRIC_DIMENSIONS", "city=City,city=County"),
            ("METRIC_DIMENSIONS", "accidents=City"),
            ("METRIC_DIMENSIONS", "City"),
            ("METRIC_VALUE", "a..b"),
            ("METRIC_TIMESTAMP_FIELD", "[0]"),
            ("ALERT_RULE", "Severity"),
            ("PUBLISH_CONCURRENCY", "0"),
            ("PUT_METRIC_DATA_TIMEOUT_SECONDS", "0"),
            ("PUT_METRIC_DATA_TIMEOUT_SECONDS", "ten"),
            ("ALERT_CONCURRENCY", "many"),
        ];
        for (var, value) in cases {
            let err = Config::from_source(&[("ALERTS_TABLE", "t"), (var, value)]).unwrap_err();
            assert_eq!(err.variable, *var, "{var}={value}: {err}");
        }
        let err = Config::from_source(&[("METRICS_SINK", "emf")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration variable ALERTS_TABLE: is not set"
        );
    }

    #[test]
    fn alerts_and_filter_can_be_switched_off() {
        let c = Config::from_source(&[
            ("ALERT_RULE", "off"),
            ("METRIC_FILTER", "all"),
            ("METRICS_SINK", "emf"),
            ("METRIC_DIMENSIONS", "none"),
            ("METRIC_VALUE", "Distance(mi)"),
            ("METRIC_TIMESTAMP_FIELD", "arrival"),
            ("METRIC_STORAGE_RESOLUTION", "60"),
        ])
        .unwrap();
        assert!(c.alerts.is_none() && c.metric.filter.is_none());
        assert_eq!(c.sink, SinkKind::Emf);
        assert!(c.metric.dimensions.is_empty());
        assert_eq!(
            c.metric.value,
            MetricValue::Field(FieldPath::parse("Distance(mi)").unwrap())
        );
        assert_eq!(c.metric.timestamp, TimestampSource::Arrival);
        assert_eq!(c.metric.resolution, Resolution::Standard);
    }
}
