//! `streamwatch demo`: both reference pipelines end to end on one machine — turbine readings
//! through the readings table's change stream, the window-aggregator and the alerter;
//! accident rows through KPL aggregation, the metrics-publisher and the alerter — with the
//! notifications printed as they are sent, a summary, and a self-contained HTML report.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use streamwatch_core::notify::NotificationKind;
use streamwatch_core::notify::group::is_batch_id;
use streamwatch_core::notify::silence::Silence;
use streamwatch_core::time::format_micros;

use crate::accidents::{Slices, check_header, read_slices};
use crate::pipeline::Pipeline;
use crate::readings::{Imperfections, ReadingsStream};
use crate::report::{DemoReport, Marker, NotificationLine, TurbineSeries, render_html};
use crate::scenario::{Reading, TurbineScenario};
use crate::sent_log::{SentLog, group_alerts};
use crate::summary::summary_rows;
pub use crate::summary::{Sent, Summary, summary_table};

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
    /// The turbine a silence holds back for the whole run (as `streamwatch silence add
    /// --match key=DEVICE` would); None: no silence.
    pub silence: Option<String>,
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
            silence: Some("device4".into()),
        }
    }
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

/// The simulated run's clock: 10-second ticks, as the turbines' readings arrive.
const TICK: i64 = 10_000_000;
const MINUTE: i64 = 60_000_000;

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
    let mut log = SentLog::default();
    if let Some(device) = &opts.silence {
        add_silence(&mut p, device, out, &mut summary).await?;
    }
    // Accidents: the CSV replayed in slices over the run (accidents::SLICE_MINUTES apart).
    let mut slices = accident_slices(opts, out, &mut summary)?;
    // Turbines: the story, fed in ticks of 10 simulated seconds.
    let mut turbines = opts.turbines_on.then(|| turbine_feed(opts, &mut summary));
    let mut next = 0;
    let mut t = START_MICROS + TICK;
    let end = START_MICROS + i64::from(opts.minutes) * MINUTE;
    let mut last_report = START_MICROS;
    loop {
        let now = t + 1_000_000;
        if let Some((readings, stream)) = &mut turbines {
            while next < readings.len() && readings[next].event_time_micros < t {
                stream.put(&readings[next]);
                next += 1;
            }
            let shards = stream.take();
            summary.change_records += shards.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
            p.process_readings(shards, now).await;
        }
        while let Some(entry) = slices.first_entry().filter(|e| *e.key() <= t) {
            p.replay_accidents(&entry.remove(), 2, now).await;
        }
        let sent = p.deliver_alerts().await;
        log.delivered(out, &p, now, sent);
        if (t - START_MICROS) % MINUTE == 0 {
            // The alerter's one-minute schedule: due accident groups go out.
            log.scheduled(out, now, p.alerter_schedule(now).await);
        }
        let readings_done = turbines.as_ref().is_none_or(|(r, _)| next == r.len());
        let done = readings_done && slices.is_empty() && t >= end;
        if t - last_report >= 5 * MINUTE || done {
            last_report = t;
            progress_line(out, &p, t.min(end), next, log.sent.len(), started);
        }
        if opts.speed > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(10.0 / opts.speed)).await;
        }
        if done {
            // Ten quiet minutes more: the schedules close the idle keys' last windows and
            // send what is left of the groups.
            let later = t + 10 * MINUTE;
            if turbines.is_some() {
                p.process_readings(Vec::new(), later).await;
            }
            let sent = p.deliver_alerts().await;
            log.delivered(out, &p, later, sent);
            log.scheduled(out, later, p.alerter_schedule(later).await);
            break;
        }
        t += TICK;
    }
    summary.accident_kinesis_records = p.accident_kinesis_records;
    if let Some((_, stream)) = &turbines {
        summary.duplicates_injected = stream.duplicates_injected;
        summary.reorders_injected = stream.reorders_injected;
    }
    let series = turbine_series(&p, &mut summary);
    let report = finish(opts, &p, log, series, &mut summary, started)?;
    Ok((summary, report))
}

/// Adds the demo's silence on `device` (a turbine under maintenance) before the run.
async fn add_silence(
    p: &mut Pipeline,
    device: &str,
    out: &mut impl Write,
    summary: &mut Summary,
) -> Result<(), DemoError> {
    let silence = demo_silence(p, device);
    p.silence(&silence)
        .await
        .map_err(|e| DemoError::Options(format!("silence: {e}")))?;
    let _ = writeln!(
        out,
        "  silence {}: {} alerts of {} held back until {} ({})",
        silence.id,
        p.aggregator.config.rule.name,
        device,
        &format_micros(silence.ends_micros)[11..16],
        silence.comment
    );
    summary.silence = Some(format!("{} ({device})", silence.id));
    Ok(())
}

/// The accident CSV's rows by the simulated time their slice is replayed (none when the
/// accidents are off); bad rows printed and counted.
fn accident_slices(
    opts: &Options,
    out: &mut impl Write,
    summary: &mut Summary,
) -> Result<Slices, DemoError> {
    if !opts.accidents_on {
        return Ok(Slices::new());
    }
    let csv = opts.csv.as_deref().unwrap_or(SAMPLE_CSV);
    check_header(csv).map_err(|e| DemoError::Options(format!("--csv: {e}")))?;
    let (by_time, bad_rows) = read_slices(csv, START_MICROS, opts.minutes)?;
    summary.accident_rows = by_time.values().map(|s| s.len() as u64).sum();
    summary.accident_bad_rows = bad_rows.len() as u64;
    for b in &bad_rows {
        let _ = writeln!(out, "  skipped CSV line {}: {}", b.line, b.reason);
    }
    summary.reference_put_metric_data_calls = by_time
        .values()
        .flatten()
        .filter(|(_, d)| severity(d).is_some_and(|s| s > 2))
        .count() as u64;
    Ok(by_time)
}

/// The turbines' readings of the whole story and the stream that delivers them.
fn turbine_feed(opts: &Options, summary: &mut Summary) -> (Vec<Reading>, ReadingsStream) {
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
    (
        readings,
        ReadingsStream::new(opts.shards, Imperfections::default(), opts.seed),
    )
}

/// Prints the progress line of simulated time `t`.
fn progress_line(
    out: &mut impl Write,
    p: &Pipeline,
    t: i64,
    readings: usize,
    notifications: usize,
    started: Instant,
) {
    let elapsed = started.elapsed().as_secs_f64().max(1e-6);
    let _ = writeln!(
        out,
        "[{}] {:>6} readings  {:>4} windows closed  {:>3} notifications  {:>8.0} readings/s  {:>6.0}x real time",
        &format_micros(t)[11..16],
        readings,
        p.aggregator
            .store
            .windows()
            .iter()
            .filter(|w| w.closed)
            .count(),
        notifications,
        readings as f64 / elapsed,
        (t - START_MICROS) as f64 / 1e6 / elapsed
    );
}

/// The silence the demo adds before the run, as `streamwatch silence add --rule
/// windspeed-avg --match key=DEVICE --for 2h --comment maintenance` would.
fn demo_silence(p: &Pipeline, device: &str) -> Silence {
    Silence {
        id: format!("demo-{device}"),
        rule: p.aggregator.config.rule.name.clone(),
        matchers: vec![("key".into(), device.to_owned())],
        starts_micros: START_MICROS,
        ends_micros: START_MICROS + 120 * MINUTE,
        comment: "turbine under maintenance".into(),
        created_by: "streamwatch demo".into(),
    }
}

fn severity(payload: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v["Severity"].as_i64())
}

/// Each turbine's closed windows (for the charts), and the window counts of the summary.
fn turbine_series(p: &Pipeline, summary: &mut Summary) -> BTreeMap<String, TurbineSeries> {
    let mut series: BTreeMap<String, TurbineSeries> = BTreeMap::new();
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
    let alerts = p.outbox.alerts();
    summary.window_alerts = alerts.iter().filter(|a| a.window.is_some()).count() as u64;
    summary.accident_alerts = alerts.iter().filter(|a| a.window.is_none()).count() as u64;
    series
}

/// The summary's notification log and counts, the raw layer, and the HTML report.
fn finish(
    opts: &Options,
    p: &Pipeline,
    log: SentLog,
    mut series: BTreeMap<String, TurbineSeries>,
    summary: &mut Summary,
    started: Instant,
) -> Result<DemoReport, DemoError> {
    // When each notification's alert happened (its event time), for the log and markers.
    let alert_times: BTreeMap<String, i64> = p
        .outbox
        .alerts()
        .into_iter()
        .map(|a| (a.id, a.event_time_micros))
        .collect();
    let mut lines = Vec::new();
    for (tick_time, m) in &log.sent {
        let time = alert_times
            .get(&m.notification_id)
            .copied()
            .unwrap_or(*tick_time);
        let alerts = group_alerts(m);
        let kind = if is_batch_id(&m.notification_id) {
            "group".to_owned()
        } else {
            kind_name(m.kind).to_owned()
        };
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
            sent_at: format_micros(*tick_time),
            kind: kind.clone(),
            key,
            subject: m.subject.clone(),
            alerts,
        });
        lines.push(NotificationLine {
            time_micros: time,
            kind,
            subject: m.subject.clone(),
        });
    }
    for record in p.silenced() {
        let alert = p.outbox.get(&record.alert_id);
        let subject = alert.map_or_else(|| record.key.clone(), |a| a.summary);
        if let Some(s) = series.get_mut(&record.key) {
            s.markers.push(Marker {
                time_micros: record.event_time_micros,
                kind: "silenced".into(),
            });
        }
        summary.silenced.push(Sent {
            event_time: format_micros(record.event_time_micros),
            sent_at: String::new(),
            kind: record.alert_kind.as_str().to_owned(),
            key: record.key.clone(),
            subject: subject.clone(),
            alerts: Vec::new(),
        });
        lines.push(NotificationLine {
            time_micros: record.event_time_micros,
            kind: "silenced".into(),
            subject: format!("not sent: {subject}"),
        });
    }
    lines.sort_by_key(|l| l.time_micros);
    summary.notifications = log.sent.len() as u64;
    summary.grouped_alerts = p.alerter_totals.grouped;
    summary.group_notifications = p.alerter_totals.group_notifications;
    summary.put_metric_data_calls = p.metric_requests as u64;
    summary.metric_datums = p.sink.datums().len() as u64;
    summary.lambda_invocations = p.publisher_mapping.invocations
        + p.aggregator_mapping.invocations
        + p.alerter_mapping.invocations;
    summary.lambda_retries =
        p.publisher_mapping.retries + p.aggregator_mapping.retries + p.alerter_mapping.retries;
    if let (Some(dir), Some(archive)) = (&opts.archive_dir, &p.archive) {
        let now = streamwatch_core::clock::Clock::now_micros(&p.clock);
        let at = chrono::DateTime::from_timestamp_micros(now).unwrap_or_default();
        let (records, objects) = archive
            .write(dir, at)
            .map_err(|e| DemoError::Options(format!("cannot write {}: {e}", dir.display())))?;
        summary.archived_records = records;
        summary.archive_objects = objects;
    }
    summary.wall_seconds = started.elapsed().as_secs_f64();

    let (by_severity, by_county) = accident_bars(p);
    Ok(DemoReport {
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
        summary: summary_rows(summary),
    })
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

/// The report as HTML.
pub fn html(report: &DemoReport) -> String {
    render_html(report)
}
