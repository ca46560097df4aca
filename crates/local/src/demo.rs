//! `streamwatch demo`: both reference pipelines end to end on one machine — turbine readings
//! through the readings table's change stream, the window-aggregator and the alerter;
//! accident rows through KPL aggregation, the metrics-publisher and the alerter — with the
//! notifications printed as they are sent, a summary, and a self-contained HTML report.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use streamwatch_core::notify::{Message, NotificationKind};
use streamwatch_core::time::format_micros;

use crate::accidents::{BadRow, check_header, read_csv};
use crate::pipeline::Pipeline;
use crate::readings::{Imperfections, ReadingsStream};
use crate::report::{DemoReport, Marker, NotificationLine, TurbineSeries, render_html};
use crate::scenario::TurbineScenario;

/// The shipped sample of US-accident rows (the dataset's layout, `M/D/YYYY H:MM` times).
pub const SAMPLE_CSV: &[u8] = include_bytes!("../../../tests/fixtures/us-accidents-sample.csv");

/// 2026-11-21T12:00:00Z: the demo's simulated start (a minute boundary).
pub const START_MICROS: i64 = 1_795_262_400_000_000;

#[derive(Debug, Clone)]
pub struct Options {
    pub turbines: usize,
    pub minutes: u32,
    pub min: u64,
    pub max: u64,
    pub seed: u64,
    /// Simulated seconds per real second; 0 runs as fast as possible.
    pub speed: f64,
    pub shards: usize,
    pub turbines_on: bool,
    pub accidents_on: bool,
    /// Accident CSV; the shipped sample when `None`.
    pub csv: Option<Vec<u8>>,
    pub repeat_interval_secs: u64,
    pub threshold: f64,
    /// Where to write the raw layer (Firehose's S3 layout as files); None: not kept.
    pub archive_dir: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            turbines: 5,
            minutes: 30,
            min: 25,
            max: 70,
            seed: 42,
            speed: 0.0,
            shards: 4,
            turbines_on: true,
            accidents_on: true,
            csv: None,
            repeat_interval_secs: 900,
            threshold: 60.0,
            archive_dir: None,
        }
    }
}

/// A notification as the demo saw it go out.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub event_time: String,
    pub kind: String,
    pub key: String,
    pub subject: String,
}

/// What the run did (also `--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub simulated_minutes: u32,
    pub turbine_readings: u64,
    pub change_records: u64,
    pub duplicates_injected: u64,
    pub reorders_injected: u64,
    pub windows_closed: u64,
    pub window_alerts: u64,
    pub accident_rows: u64,
    pub accident_bad_rows: u64,
    pub accident_kinesis_records: u64,
    pub accident_alerts: u64,
    pub metric_datums: u64,
    pub put_metric_data_calls: u64,
    pub reference_put_metric_data_calls: u64,
    pub notifications: u64,
    pub notifications_by_kind: BTreeMap<String, u64>,
    pub lambda_invocations: u64,
    pub lambda_retries: u64,
    pub sent: Vec<Sent>,
    /// Records and objects written to the raw layer's directory.
    pub archived_records: u64,
    pub archive_objects: u64,
    pub wall_seconds: f64,
}

/// A demo that cannot start (bad options, unreadable CSV).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Options(String),
    #[error("accident CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("configuration: {0}")]
    Config(#[from] streamwatch_core::config::ConfigError),
}

fn kind_name(k: NotificationKind) -> &'static str {
    match k {
        NotificationKind::Firing => "firing",
        NotificationKind::Reminder => "reminder",
        NotificationKind::Resolved => "resolved",
        NotificationKind::Event => "event",
    }
}

/// Runs the demo; progress and notifications go to `out`.
pub async fn run(opts: &Options, out: &mut impl Write) -> Result<(Summary, DemoReport), DemoError> {
    if opts.turbines == 0 || opts.minutes == 0 || opts.min >= opts.max || opts.shards == 0 {
        return Err(DemoError::Options(
            "need --turbines >= 1, --minutes >= 1, --min < --max, --shards >= 1".into(),
        ));
    }
    let started = Instant::now();
    let mut p = Pipeline::new(opts.repeat_interval_secs)?;
    if opts.archive_dir.is_some() {
        p.archive = Some(crate::archive::Collector::default());
    }
    let mut summary = Summary {
        seed: opts.seed,
        simulated_minutes: opts.minutes,
        ..Summary::default()
    };
    let mut sent: Vec<(i64, Message)> = Vec::new();

    // Accidents: the whole CSV replayed at the start, as the reference producer does.
    if opts.accidents_on {
        let csv = opts.csv.as_deref().unwrap_or(SAMPLE_CSV);
        check_header(csv).map_err(|e| DemoError::Options(format!("--csv: {e}")))?;
        let rows = read_csv(csv, |i| {
            format_micros(START_MICROS + i as i64 * 10_000)
                .trim_end_matches('Z')
                .to_owned()
        })?;
        let bad_rows: Vec<BadRow> = rows.bad;
        summary.accident_rows = rows.payloads.len() as u64;
        summary.accident_bad_rows = bad_rows.len() as u64;
        for b in &bad_rows {
            let _ = writeln!(out, "  skipped CSV line {}: {}", b.line, b.reason);
        }
        let selected = rows
            .payloads
            .iter()
            .filter(|(_, d)| {
                serde_json::from_slice::<serde_json::Value>(d)
                    .ok()
                    .and_then(|v| v["Severity"].as_i64())
                    .is_some_and(|s| s > 2)
            })
            .count();
        summary.reference_put_metric_data_calls = selected as u64;
        p.replay_accidents(&rows.payloads, 2, START_MICROS + 60_000_000)
            .await;
        summary.accident_kinesis_records = p.accident_kinesis_records;
        for m in p.deliver_alerts().await {
            print_sent(out, &m);
            sent.push((START_MICROS, m));
        }
        summary.accident_alerts = p.outbox.alerts().len() as u64;
    }

    // Turbines: the story in ticks of 10 simulated seconds.
    let mut series: BTreeMap<String, TurbineSeries> = BTreeMap::new();
    if opts.turbines_on {
        let scenario = TurbineScenario::default_story(
            opts.turbines,
            opts.minutes,
            opts.min,
            opts.max,
            opts.threshold,
            opts.seed,
            START_MICROS,
        );
        let readings = scenario.readings();
        summary.turbine_readings = readings.len() as u64;
        let mut stream = ReadingsStream::new(opts.shards, Imperfections::default(), opts.seed);
        let tick = 10_000_000;
        let mut next = 0;
        let mut t = START_MICROS + tick;
        let end = START_MICROS + i64::from(opts.minutes) * 60_000_000;
        let mut last_report = START_MICROS;
        while t <= end + 10 * 60_000_000 {
            while next < readings.len() && readings[next].event_time_micros < t {
                stream.put(&readings[next]);
                next += 1;
            }
            let shards = stream.take();
            summary.change_records += shards.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
            p.process_readings(shards, t + 1_000_000).await;
            for m in p.deliver_alerts().await {
                print_sent(out, &m);
                sent.push((t, m));
            }
            if t - last_report >= 5 * 60_000_000 || next == readings.len() && t >= end {
                last_report = t;
                let _ = writeln!(
                    out,
                    "[{}] {:>6} readings  {:>4} windows closed  {:>3} notifications  {:>8.0} readings/s  {:>6.0}x real time",
                    &format_micros(t.min(end))[11..16],
                    next,
                    p.aggregator
                        .store
                        .windows()
                        .iter()
                        .filter(|w| w.closed)
                        .count(),
                    sent.len(),
                    next as f64 / started.elapsed().as_secs_f64().max(1e-6),
                    (t.min(end) - START_MICROS) as f64
                        / 1e6
                        / started.elapsed().as_secs_f64().max(1e-6)
                );
            }
            if opts.speed > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(10.0 / opts.speed)).await;
            }
            if next == readings.len() && t >= end {
                // Ten quiet minutes more: the schedule closes the idle keys' last windows.
                p.process_readings(Vec::new(), t + 10 * 60_000_000).await;
                for m in p.deliver_alerts().await {
                    print_sent(out, &m);
                    sent.push((t, m));
                }
                break;
            }
            t += tick;
        }
        summary.duplicates_injected = stream.duplicates_injected;
        summary.reorders_injected = stream.reorders_injected;
        for w in p.aggregator.store.windows() {
            if let Some(s) = w.stats() {
                series
                    .entry(w.key.clone())
                    .or_insert_with(|| TurbineSeries {
                        device: w.key.clone(),
                        windows: Vec::new(),
                        markers: Vec::new(),
                    })
                    .windows
                    .push((w.start_micros, s.avg));
            }
            summary.windows_closed += u64::from(w.closed);
        }
        summary.window_alerts = p
            .outbox
            .alerts()
            .iter()
            .filter(|a| a.window.is_some())
            .count() as u64;
    }

    // When each notification's alert happened (its event time), for the log and markers.
    let alert_times: BTreeMap<String, i64> = p
        .outbox
        .alerts()
        .into_iter()
        .map(|a| (a.id, a.event_time_micros))
        .collect();
    let mut lines = Vec::new();
    for (tick_time, m) in &sent {
        let time = alert_times
            .get(&m.notification_id)
            .copied()
            .unwrap_or(*tick_time);
        let kind = kind_name(m.kind).to_owned();
        let key = m.attributes.get("key").cloned().unwrap_or_default();
        *summary
            .notifications_by_kind
            .entry(kind.clone())
            .or_default() += 1;
        if let Some(s) = series.get_mut(&key) {
            s.markers.push(Marker {
                time_micros: time,
                kind: kind.clone(),
            });
        }
        summary.sent.push(Sent {
            event_time: format_micros(time),
            kind: kind.clone(),
            key,
            subject: m.subject.clone(),
        });
        lines.push(NotificationLine {
            time_micros: time,
            kind,
            subject: m.subject.clone(),
        });
    }
    summary.notifications = sent.len() as u64;
    summary.put_metric_data_calls = p.metric_requests as u64;
    summary.metric_datums = p.sink.datums().len() as u64;
    summary.lambda_invocations = p.publisher_mapping.invocations
        + p.aggregator_mapping.invocations
        + p.alerter_mapping.invocations;
    summary.lambda_retries =
        p.publisher_mapping.retries + p.aggregator_mapping.retries + p.alerter_mapping.retries;
    if let (Some(dir), Some(archive)) = (&opts.archive_dir, &p.archive) {
        let now = window_aggregator::Clock::now_micros(&p.clock);
        let at = chrono::DateTime::from_timestamp_micros(now).unwrap_or_default();
        let (records, objects) = archive
            .write(dir, at)
            .map_err(|e| DemoError::Options(format!("cannot write {}: {e}", dir.display())))?;
        summary.archived_records = records;
        summary.archive_objects = objects;
    }
    summary.wall_seconds = started.elapsed().as_secs_f64();

    let (by_severity, by_county) = accident_bars(&p);
    let report = DemoReport {
        title: "streamwatch demo".into(),
        subtitle: format!(
            "{} turbines x {} simulated minutes (seed {}), {} accident rows; generated by `streamwatch demo`",
            opts.turbines, opts.minutes, opts.seed, summary.accident_rows
        ),
        threshold: opts.threshold,
        turbines: series.into_values().collect(),
        accidents_by_severity: by_severity,
        accidents_by_county: by_county,
        notifications: lines,
        summary: summary_rows(&summary),
    };
    Ok((summary, report))
}

fn print_sent(out: &mut impl Write, m: &Message) {
    let _ = writeln!(out, "  -> {}", m.subject);
}

/// Labelled values of a bar chart.
type Bars = Vec<(String, f64)>;

/// Selected accidents by severity and by county (top 12), from what the metric sink holds.
fn accident_bars(p: &Pipeline) -> (Bars, Bars) {
    let mut severity: BTreeMap<String, f64> = BTreeMap::new();
    let mut county: BTreeMap<String, f64> = BTreeMap::new();
    for ((ns, _, dims, _), stats) in p.sink.series() {
        if ns != p.publisher.config.metric.namespace {
            continue;
        }
        for d in dims {
            match d.name.as_str() {
                "severity_accident" => {
                    *severity.entry(format!("Severity {}", d.value)).or_default() +=
                        stats.sample_count
                }
                "county_accident" => {
                    *county.entry(d.value.clone()).or_default() += stats.sample_count
                }
                _ => {}
            }
        }
    }
    let mut counties: Vec<(String, f64)> = county.into_iter().collect();
    counties.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    counties.truncate(12);
    (severity.into_iter().collect(), counties)
}

fn summary_rows(s: &Summary) -> Vec<(String, String)> {
    vec![
        ("turbine readings".into(), s.turbine_readings.to_string()),
        (
            "change records (incl. injected duplicates / reorders)".into(),
            format!(
                "{} ({} / {})",
                s.change_records, s.duplicates_injected, s.reorders_injected
            ),
        ),
        ("windows closed".into(), s.windows_closed.to_string()),
        ("window alerts".into(), s.window_alerts.to_string()),
        (
            "accident rows (bad rows skipped)".into(),
            format!("{} ({})", s.accident_rows, s.accident_bad_rows),
        ),
        (
            "KPL-aggregated Kinesis records".into(),
            s.accident_kinesis_records.to_string(),
        ),
        ("accident alerts".into(), s.accident_alerts.to_string()),
        (
            "notifications".into(),
            if s.notifications_by_kind.is_empty() {
                s.notifications.to_string()
            } else {
                format!(
                    "{} ({})",
                    s.notifications,
                    s.notifications_by_kind
                        .iter()
                        .map(|(k, n)| format!("{n} {k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ),
        ("metric datums".into(), s.metric_datums.to_string()),
        (
            "PutMetricData calls (reference: one per selected record)".into(),
            format!(
                "{} ({})",
                s.put_metric_data_calls, s.reference_put_metric_data_calls
            ),
        ),
        (
            "Lambda invocations (retries)".into(),
            format!("{} ({})", s.lambda_invocations, s.lambda_retries),
        ),
    ]
}

/// The summary as a text table.
pub fn summary_table(s: &Summary) -> String {
    let rows = summary_rows(s);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out
}

/// The report as HTML.
pub fn html(report: &DemoReport) -> String {
    render_html(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_notifications_is_a_plain_zero() {
        let rows = summary_rows(&Summary::default());
        let (_, value) = rows.iter().find(|(k, _)| k == "notifications").unwrap();
        assert_eq!(value, "0");
        let some = Summary {
            notifications: 3,
            notifications_by_kind: [("event".to_owned(), 2), ("firing".to_owned(), 1)].into(),
            ..Default::default()
        };
        let rows = summary_rows(&some);
        let (_, value) = rows.iter().find(|(k, _)| k == "notifications").unwrap();
        assert_eq!(value, "3 (2 event, 1 firing)");
    }
}
