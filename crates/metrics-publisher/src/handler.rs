//! One invocation: decode every user record of the batch, evaluate the filter and the
//! alert rule on it, write the per-event alerts, aggregate the selected records into
//! datums and publish them with the function's own operational metrics, then report
//! `batchItemFailures` from the first parent record whose effects are not all durable.

use std::borrow::Cow;
use std::collections::BTreeMap;

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use futures::StreamExt;
use serde::Serialize;
use streamwatch_core::alert::{event_alert_id, keyed_event_alert_id};
use streamwatch_core::metrics::{
    Datum, Dimension, MetricSink, Resolution, SeriesAggregator, SeriesKey, Unit,
    check_dimension_value, check_timestamp, check_value, fold_to_ascii,
};
use streamwatch_core::record::{MalformedParent, ParentRecord, parents};
use streamwatch_core::time::{Micros, parse_event_time};
use streamwatch_core::{
    AlertKind, AlertOutbox, AlertRecord, FieldPath, FieldValue, Fields, JsonObject, KinesisEvent,
    PortError, PutOutcome, UserRecord,
};

use crate::config::{AlertConfig, Config, MetricConfig, MetricValue, TimestampSource};
use crate::reject::{self, Reject};

/// Alerts per outbox call: BatchGetItem's limit of 100 keys.
const ALERTS_PER_CALL: usize = 100;

/// What the function needs: its configuration and its two ports.
pub struct Deps<S, A> {
    pub config: Config,
    pub sink: S,
    pub outbox: A,
}

/// What one invocation did, for logs, tests and the bench.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    /// Kinesis records in the event (aggregated ones count once).
    pub records_in: usize,
    /// User records de-aggregated from them.
    pub user_records: usize,
    /// Records skipped as malformed (a broken parent counts once, whatever it held).
    pub malformed: usize,
    /// User records the metric filter did not select.
    pub filtered_out: usize,
    /// User records that became metric samples.
    pub selected: usize,
    /// Data datums sent (after aggregation).
    pub datums: usize,
    /// PutMetricData requests (or EMF lines) the datums and operational metrics needed.
    pub metric_requests: usize,
    /// Alerts created by this invocation.
    pub alerts_written: usize,
    /// Alerts that already existed (a retried or duplicated record, the same event again).
    pub alerts_existing: usize,
    /// Alerts whose record lacked the configured key field: their id comes from the
    /// record's coordinates, so a second delivery of that event is a second alert.
    pub alerts_without_key: usize,
    /// Alerts given up on for a permanent error (logged).
    pub alerts_rejected: usize,
    /// Datums given up on for a permanent error (logged).
    pub datums_rejected: usize,
    /// Sequence number Lambda is asked to retry from, if any.
    pub retry_from: Option<String>,
    /// One line per malformed record for the archive's `rejected/` prefix (`reject.rs`).
    pub rejects: Vec<String>,
}

/// A selected record's contribution to a series.
struct Sample {
    parent: usize,
    key: SeriesKey,
    value: f64,
}

/// What evaluating one user record gave.
#[derive(Default)]
struct Evaluated {
    sample: Option<(SeriesKey, f64)>,
    alert: Option<AlertRecord>,
    /// The alert's record lacked the configured key field.
    alert_without_key: bool,
    filtered_out: bool,
    malformed: Option<String>,
}

/// Longest text kept in an alert's summary description and in each detail: alert records
/// go to DynamoDB (400 KB items) and notifications (256 KB), whatever a record carries.
const MAX_DETAIL_CHARS: usize = 1_000;
const MAX_SUMMARY_DESCRIPTION_CHARS: usize = 200;

/// Fields copied into an alert's details.
const DETAIL_FIELDS: [&str; 6] = [
    "City",
    "County",
    "State",
    "Severity",
    "Description",
    "Start_Time",
];

/// Processes one event. `now` decides which timestamps CloudWatch would still accept.
///
/// Alerts are written before metrics are published: a parent whose alert is not durable
/// is retried, and the metrics of it and of every later parent are then left for the
/// retry instead of being published twice.
#[tracing::instrument(skip_all, fields(records = event.records.len()))]
pub async fn process<S: MetricSink, A: AlertOutbox>(
    deps: &Deps<S, A>,
    event: &KinesisEvent,
    now: Micros,
) -> (KinesisEventResponse, BatchReport) {
    let mut report = BatchReport {
        records_in: event.records.len(),
        ..BatchReport::default()
    };
    if event.records.is_empty() {
        return (KinesisEventResponse::default(), report);
    }
    let decoded = decode_batch(&deps.config, event, now, &mut report);
    let retry_from = write_alerts(deps, &decoded, &mut report).await;
    let retry_from = publish_metrics(deps, decoded.samples, retry_from, now, &mut report).await;
    let response = batch_response(event, retry_from, &mut report);
    log_report(&report);
    (response, report)
}

/// What decoding and judging a batch gave: the metric samples and the per-event alerts,
/// each with the index of the parent record it came from.
#[derive(Default)]
struct Decoded {
    samples: Vec<Sample>,
    /// Alerts and their parents side by side, so the records go to the outbox as one slice.
    alerts: Vec<AlertRecord>,
    alert_parents: Vec<usize>,
}

/// Decodes every user record of the batch and evaluates the filter and the alert rule on
/// it, counting into `report`; malformed parents and user records are logged and skipped.
fn decode_batch(
    config: &Config,
    event: &KinesisEvent,
    now: Micros,
    report: &mut BatchReport,
) -> Decoded {
    let detail_paths: Vec<FieldPath> = DETAIL_FIELDS
        .iter()
        .filter_map(|f| FieldPath::parse(f).ok())
        .collect();
    let mut decoded = Decoded::default();
    for parent in parents(event) {
        let users = match parent.user_records() {
            Ok(users) => users,
            Err(malformed) => {
                skip_parent(&parent, &malformed, report);
                continue;
            }
        };
        for user in users {
            report.user_records += 1;
            let e = evaluate(config, &user, &detail_paths, now);
            if let Some(reason) = e.malformed {
                skip_user(&user, reason, report);
            }
            if e.filtered_out {
                report.filtered_out += 1;
            }
            if let Some((key, value)) = e.sample {
                report.selected += 1;
                decoded.samples.push(Sample {
                    parent: parent.index,
                    key,
                    value,
                });
            }
            if let Some(alert) = e.alert {
                if e.alert_without_key {
                    report.alerts_without_key += 1;
                }
                decoded.alerts.push(alert);
                decoded.alert_parents.push(parent.index);
            }
        }
    }
    decoded
}

/// Counts, logs and keeps the reject line of a parent record that holds no user record.
fn skip_parent(parent: &ParentRecord<'_>, malformed: &MalformedParent, report: &mut BatchReport) {
    report.malformed += 1;
    tracing::warn!(
        shard = malformed.shard_id,
        sequence = malformed.sequence_number,
        reason = %malformed.error,
        "skipping malformed Kinesis record"
    );
    report.rejects.push(reject::line(&Reject {
        reason: malformed.error.to_string(),
        shard: malformed.shard_id.clone(),
        sequence: malformed.sequence_number.clone(),
        sub_sequence: None,
        partition_key: parent.partition_key.to_owned(),
        arrival: parent.arrival.to_rfc3339(),
        data: match parent.data {
            Ok(bytes) => bytes,
            Err(text) => text.as_bytes(),
        },
    }));
}

/// Counts, logs and keeps the reject line of a malformed user record.
fn skip_user(user: &UserRecord<'_>, reason: String, report: &mut BatchReport) {
    report.malformed += 1;
    tracing::warn!(
        shard = user.shard_id,
        sequence = user.sequence_number,
        sub_sequence = user.sub_sequence_number,
        reason,
        "skipping malformed record"
    );
    report.rejects.push(reject::line(&Reject {
        reason,
        shard: user.shard_id.to_owned(),
        sequence: user.sequence_number.to_owned(),
        sub_sequence: user.sub_sequence_number,
        partition_key: user.partition_key.to_owned(),
        arrival: user.arrival.to_rfc3339(),
        data: user.data,
    }));
}

/// Writes the batch's alerts to the outbox and counts the outcomes. Returns the lowest
/// parent index whose alert failed transiently: the batch is retried from there.
async fn write_alerts<S: MetricSink, A: AlertOutbox>(
    deps: &Deps<S, A>,
    decoded: &Decoded,
    report: &mut BatchReport,
) -> Option<usize> {
    let mut retry_from: Option<usize> = None;
    // In chunks, so a store that batches (DynamoDB: one BatchGetItem and four
    // BatchWriteItem calls per 100) makes a few calls instead of one per alert.
    let writes: Vec<_> = decoded
        .alerts
        .chunks(ALERTS_PER_CALL)
        .enumerate()
        .map(|(chunk, records)| {
            let write = deps.outbox.put_alerts(records);
            async move { (chunk, write.await) }
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(writes)
        .buffer_unordered(deps.config.alert_concurrency)
        .collect()
        .await;
    let results = results.into_iter().flat_map(|(chunk, results)| {
        results
            .into_iter()
            .enumerate()
            .map(move |(k, result)| (chunk * ALERTS_PER_CALL + k, result))
    });
    for (i, result) in results {
        let (Some(&parent), Some(alert)) = (decoded.alert_parents.get(i), decoded.alerts.get(i))
        else {
            continue;
        };
        match result {
            Ok(PutOutcome::Created) => report.alerts_written += 1,
            Ok(PutOutcome::AlreadyExists) => report.alerts_existing += 1,
            Err(err) if err.is_transient() => {
                tracing::warn!(alert = alert.id, error = %err, "alert not written, batch will be retried from its record");
                retry_from = Some(retry_from.map_or(parent, |r| r.min(parent)));
            }
            Err(err) => {
                report.alerts_rejected += 1;
                tracing::error!(alert = alert.id, error = %err, "alert rejected for good, skipped");
            }
        }
    }
    retry_from
}

/// Aggregates the samples of the parents before `retry_from` into datums and publishes
/// them with the operational metrics. Returns `retry_from`, lowered to the first parent of
/// any datum whose request failed transiently.
async fn publish_metrics<S: MetricSink, A: AlertOutbox>(
    deps: &Deps<S, A>,
    samples: Vec<Sample>,
    mut retry_from: Option<usize>,
    now: Micros,
    report: &mut BatchReport,
) -> Option<usize> {
    let mut aggregator = SeriesAggregator::new();
    for s in samples {
        if retry_from.is_none_or(|r| s.parent < r) {
            aggregator.add(s.key, s.value, s.parent);
        }
    }
    // Each datum's first parent; None for the operational metrics, which describe this
    // invocation and are not retried.
    let (mut datums, mut sources): (Vec<Datum>, Vec<Option<usize>>) = aggregator
        .finish()
        .into_iter()
        .map(|(d, first)| (d, Some(first)))
        .unzip();
    report.datums = datums.len();
    for datum in ops_datums(&deps.config.ops_namespace, report, now) {
        datums.push(datum);
        sources.push(None);
    }

    match deps.sink.publish(&datums).await {
        Ok(published) => report.metric_requests = published.requests,
        Err(err) => {
            report.metric_requests = err.published.requests;
            for failure in err.failures {
                let first = failure.datums.iter().filter_map(|&i| sources[i]).min();
                log_failure(&failure.error, failure.datums.len(), first);
                if failure.error.is_transient() {
                    if let Some(first) = first {
                        retry_from = Some(retry_from.map_or(first, |r| r.min(first)));
                    }
                } else {
                    report.datums_rejected += failure.datums.len();
                }
            }
        }
    }
    retry_from
}

/// The `batchItemFailures` answer: the sequence number of parent `retry_from`, if any
/// (Lambda restarts from the lowest one reported), also noted in the report.
fn batch_response(
    event: &KinesisEvent,
    retry_from: Option<usize>,
    report: &mut BatchReport,
) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    if let Some(index) = retry_from {
        let sequence = event.records[index].kinesis.sequence_number.clone();
        report.retry_from = Some(sequence.clone());
        let mut failure = KinesisBatchItemFailure::default();
        failure.item_identifier = Some(sequence);
        response.batch_item_failures.push(failure);
    }
    response
}

fn log_report(report: &BatchReport) {
    tracing::info!(
        records_in = report.records_in,
        user_records = report.user_records,
        malformed = report.malformed,
        filtered_out = report.filtered_out,
        selected = report.selected,
        datums = report.datums,
        metric_requests = report.metric_requests,
        alerts_written = report.alerts_written,
        alerts_existing = report.alerts_existing,
        retry_from = report.retry_from,
        "batch done"
    );
}

fn log_failure(error: &PortError, datums: usize, first_parent: Option<usize>) {
    match (error.is_transient(), first_parent) {
        (true, Some(parent)) => tracing::warn!(
            datums,
            first_parent = parent,
            error = %error,
            "metric request failed after retries, batch will be retried from its first record"
        ),
        (true, None) => tracing::warn!(
            datums,
            error = %error,
            "operational metrics not published (they describe this invocation; not retried)"
        ),
        (false, _) => tracing::error!(
            datums,
            error = %error,
            "metric request rejected for good, its datums are dropped"
        ),
    }
}

/// The function's own metrics, in the same sink, standard resolution, no dimensions.
fn ops_datums(namespace: &str, report: &BatchReport, now: Micros) -> Vec<Datum> {
    let resolution = Resolution::Standard;
    let counts = [
        ("RecordsIn", report.records_in),
        ("UserRecords", report.user_records),
        ("Malformed", report.malformed),
        ("FilteredOut", report.filtered_out),
        ("DatumsPublished", report.datums),
        ("AlertsWritten", report.alerts_written),
        ("AlertsWithoutKey", report.alerts_without_key),
    ];
    counts
        .iter()
        .map(|(name, n)| {
            Datum::single(
                SeriesKey {
                    namespace: namespace.to_owned(),
                    name: (*name).to_owned(),
                    dimensions: Vec::new(),
                    timestamp_millis: resolution.bucket_millis(now),
                    unit: Unit::COUNT,
                    resolution,
                },
                *n as f64,
                1.0,
            )
        })
        .collect()
}

/// Decodes one user record and evaluates the metric filter and the alert rule on it.
fn evaluate(
    config: &Config,
    user: &UserRecord<'_>,
    detail_paths: &[FieldPath],
    now: Micros,
) -> Evaluated {
    let mut out = Evaluated::default();
    let record = match JsonObject::parse(user.data) {
        Ok(record) => record,
        Err(e) => {
            out.malformed = Some(format!(
                "payload is not a JSON object: {}",
                streamwatch_core::json::redacted_error(&e)
            ));
            return out;
        }
    };
    let arrival = user.arrival.timestamp_micros();

    let metric = &config.metric;
    let selected = match &metric.filter {
        None => Ok(true),
        Some(filter) => filter.eval(&record).map_err(|e| format!("filter: {e}")),
    };
    match selected {
        Ok(true) => match sample(metric, &record, arrival, now) {
            Ok(sample) => out.sample = Some(sample),
            Err(reason) => out.malformed = Some(reason),
        },
        Ok(false) => out.filtered_out = true,
        Err(reason) => out.malformed = Some(reason),
    }

    if let Some(alerts) = &config.alerts {
        match alerts.rule.eval(&record) {
            Ok(true) => {
                // An alert is worth sending even when its timestamp is unreadable.
                let time = match event_time(metric, &record) {
                    Some(Ok(t)) => t,
                    _ => arrival,
                };
                let (alert, without_key) = alert(alerts, user, &record, detail_paths, time);
                out.alert = Some(alert);
                out.alert_without_key = without_key;
            }
            Ok(false) => {}
            Err(e) => {
                out.malformed
                    .get_or_insert_with(|| format!("alert rule: {e}"));
            }
        }
    }
    out
}

/// The record's series and value, or why it cannot be a datum CloudWatch accepts.
fn sample(
    metric: &MetricConfig,
    record: &JsonObject<'_>,
    arrival: Micros,
    now: Micros,
) -> Result<(SeriesKey, f64), String> {
    let mut dimensions = Vec::with_capacity(metric.dimensions.len());
    for (name, path) in &metric.dimensions {
        let value = match record.field(path) {
            None | Some(FieldValue::Null) => {
                return Err(format!("dimension {name}: field {path} is missing"));
            }
            Some(v) => fold_to_ascii(&v.to_text()).into_owned(),
        };
        check_dimension_value(&value).map_err(|e| format!("dimension {name}: value {e}"))?;
        dimensions.push(Dimension {
            name: name.clone(),
            value,
        });
    }
    let value = match &metric.value {
        MetricValue::Count => 1.0,
        MetricValue::Field(path) => {
            let v = record
                .field(path)
                .ok_or_else(|| format!("value field {path} is missing"))?;
            let n = v
                .as_f64()
                .ok_or_else(|| format!("value field {path} is {}, not a number", v.kind()))?;
            check_value(n).map_err(|e| format!("value field {path}: {e}"))?;
            n
        }
    };
    let time = match event_time(metric, record) {
        Some(Ok(t)) => t,
        Some(Err(reason)) => return Err(reason),
        None => arrival,
    };
    check_timestamp(time, now).map_err(|e| format!("timestamp {e}"))?;
    Ok((
        SeriesKey {
            namespace: metric.namespace.clone(),
            name: metric.name.clone(),
            dimensions,
            timestamp_millis: metric.resolution.bucket_millis(time),
            unit: metric.unit,
            resolution: metric.resolution,
        },
        value,
    ))
}

/// The configured timestamp field: `None` when absent or null (arrival time applies),
/// an error when present but not a time.
fn event_time(metric: &MetricConfig, record: &JsonObject<'_>) -> Option<Result<Micros, String>> {
    let TimestampSource::Field(path) = &metric.timestamp else {
        return None;
    };
    match record.field(path)? {
        FieldValue::Null => None,
        v => Some(
            parse_event_time(&v)
                .ok_or_else(|| format!("timestamp field {path} is {}, not a time", v.kind())),
        ),
    }
}

/// The alert record for one matching user record, and whether its key field was missing.
/// Its id comes from the rule and the event's key field (the accident `ID`), so any
/// delivery of the same event maps to the same, already written alert; without a key, from
/// the record's coordinates (the same delivery retried still maps to the same alert).
fn alert(
    config: &AlertConfig,
    user: &UserRecord<'_>,
    record: &JsonObject<'_>,
    detail_paths: &[FieldPath],
    event_time: Micros,
) -> (AlertRecord, bool) {
    let text = |path: &FieldPath| -> Option<String> {
        match record.field(path)? {
            FieldValue::Null => None,
            v => Some(clip(&v.to_text(), MAX_DETAIL_CHARS).into_owned()),
        }
    };
    let details: BTreeMap<String, String> = detail_paths
        .iter()
        .filter_map(|p| text(p).map(|v| (p.as_str().to_owned(), v)))
        .collect();
    let event_key = config
        .key_field
        .as_ref()
        .and_then(text)
        .filter(|k| !k.trim().is_empty());
    let without_key = config.key_field.is_some() && event_key.is_none();
    let id = match &event_key {
        Some(k) => keyed_event_alert_id(&config.name, k),
        None => event_alert_id(
            &config.name,
            user.shard_id,
            user.sequence_number,
            user.sub_sequence_number,
        ),
    };
    let key = event_key.unwrap_or_else(|| user.partition_key.to_owned());
    let severity = text(&config.severity_field).unwrap_or_default();
    let source = match user.sub_sequence_number {
        Some(sub) => format!("{}/{}/{sub}", user.shard_id, user.sequence_number),
        None => format!("{}/{}", user.shard_id, user.sequence_number),
    };
    let alert = AlertRecord {
        id,
        rule: config.name.clone(),
        summary: summary(&severity, &key, &details),
        key,
        kind: AlertKind::Event,
        severity,
        event_time_micros: event_time,
        window: None,
        details,
        source: vec![source],
    };
    (alert, without_key)
}

/// `Severity 4 accident in Dallas, Dallas County, TX at 2016-02-08T00:37:00: <description>`,
/// leaving out whatever the record lacks.
fn summary(severity: &str, key: &str, details: &BTreeMap<String, String>) -> String {
    let get = |k: &str| details.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let mut s = if severity.is_empty() {
        "Accident".to_owned()
    } else {
        format!("Severity {severity} accident")
    };
    let place: Vec<String> = [
        get("City").map(str::to_owned),
        get("County").map(|c| format!("{c} County")),
        get("State").map(str::to_owned),
    ]
    .into_iter()
    .flatten()
    .collect();
    if place.is_empty() {
        s.push_str(&format!(" {key}"));
    } else {
        s.push_str(&format!(" in {}", place.join(", ")));
    }
    if let Some(start) = get("Start_Time") {
        s.push_str(&format!(" at {start}"));
    }
    if let Some(description) = get("Description") {
        s.push_str(&format!(
            ": {}",
            clip(description, MAX_SUMMARY_DESCRIPTION_CHARS)
        ));
    }
    s
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((at, _)) => Cow::Owned(format!("{}…", &s[..at])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_well_with_and_without_fields() {
        let details: BTreeMap<String, String> = [
            ("City", "Dallas"),
            ("County", "Dallas"),
            ("State", "TX"),
            ("Start_Time", "2016-02-08T00:37:00"),
            ("Description", "Right lane blocked"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(
            summary("4", "A-1", &details),
            "Severity 4 accident in Dallas, Dallas County, TX at 2016-02-08T00:37:00: Right lane blocked"
        );
        assert_eq!(summary("", "A-1", &BTreeMap::new()), "Accident A-1");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
