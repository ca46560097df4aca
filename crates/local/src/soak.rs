//! The soak: the embedded pipeline run for hours of simulated time at a fixed load —
//! `turbines` turbines at one reading a second through the readings stream and the
//! window-aggregator's event source mapping, with the sample accident CSV replayed through
//! the metrics-publisher every few simulated minutes — checking as it goes that every
//! closed window holds exactly its readings, and at the end that every firing window
//! alerted once and every selected accident was counted once. Memory is read from
//! `/proc/self/status` so a leak shows as growth between the start and the end.
//!
//! Readings are generated a minute at a time and windows are deleted once settled (as the
//! table's TTL does), so what the process holds is the working set, not the history.
//! Run it with `bench/soak.sh` (release build); `crates/local/tests/soak.rs` is a
//! scaled-down run with the same checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use streamwatch_core::AlertKind;
use streamwatch_core::time::format_micros;

use crate::accidents::read_csv;
use crate::demo::{SAMPLE_CSV, START_MICROS};
use crate::pipeline::Pipeline;
use crate::readings::{Imperfections, ReadingsStream};
use crate::scenario::{Gust, Reading, TurbineScenario};

const MINUTE: i64 = 60_000_000;
const TICK: i64 = 10_000_000;
const NS: &str = "streamwatch/accidents";

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub turbines: usize,
    pub minutes: u32,
    pub shards: usize,
    /// Replay the sample accident CSV every this many simulated minutes (0: never).
    pub accidents_every_minutes: u32,
    pub seed: u64,
}

impl Default for SoakOptions {
    fn default() -> Self {
        Self {
            turbines: 1_000,
            minutes: 120,
            shards: 4,
            accidents_every_minutes: 5,
            seed: 7,
        }
    }
}

/// Resident set size now and at its peak, in kB (`VmRSS`, `VmHWM`); 0 where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

impl Memory {
    pub fn now() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Self {
            rss_kb: field("VmRSS:"),
            hwm_kb: field("VmHWM:"),
        }
    }
}

/// What the soak did and measured. Every `*_expected` equals its counterpart in a
/// correct run; `window_mismatches` lists the first wrong windows.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    pub turbines: usize,
    pub simulated_minutes: u32,
    pub readings: u64,
    pub change_records: u64,
    pub windows_checked: u64,
    pub windows_expected: u64,
    pub window_mismatches: Vec<String>,
    pub firing_windows_expected: u64,
    pub firing_alerts: u64,
    pub firing_alerts_missing_or_extra: u64,
    pub accident_loops: u64,
    pub accident_records: u64,
    pub accidents_selected_expected: u64,
    pub accidents_counted: u64,
    pub event_alerts_expected: u64,
    pub event_alerts: u64,
    pub notifications: u64,
    pub lambda_invocations: u64,
    pub wall_seconds: f64,
    /// Memory after the first tenth of the run (the working set is built), and at the end.
    pub memory_start: Memory,
    pub memory_end: Memory,
}

impl SoakReport {
    /// Whether every count is exact.
    pub fn exact(&self) -> bool {
        self.window_mismatches.is_empty()
            && self.windows_checked == self.windows_expected
            && self.firing_alerts_missing_or_extra == 0
            && self.firing_alerts == self.firing_windows_expected
            && self.accidents_counted == self.accidents_selected_expected
            && self.event_alerts == self.event_alerts_expected
    }

    pub fn readings_per_second(&self) -> f64 {
        self.readings as f64 / self.wall_seconds.max(1e-9)
    }
}

/// A gust on every 50th turbine for a few minutes of every half hour, so windows fire
/// and resolve throughout the run.
fn gusts(turbines: usize, minute: u32) -> Vec<Gust> {
    (2..=turbines)
        .step_by(50)
        .filter(|t| (minute + *t as u32) % 30 < 4)
        .map(|t| Gust {
            device: format!("device{t}"),
            from_minute: 0,
            to_minute: 1,
            low: 64,
            high: 80,
        })
        .collect()
}

/// Runs the soak; `progress` gets one line every ten simulated minutes.
pub async fn run(opts: &SoakOptions, mut progress: impl FnMut(&str)) -> Result<SoakReport, String> {
    if opts.turbines == 0 || opts.minutes == 0 || opts.shards == 0 {
        return Err("need turbines, minutes and shards >= 1".into());
    }
    let started = Instant::now();
    let mut p = Pipeline::new(900).map_err(|e| e.to_string())?;
    let mut stream = ReadingsStream::new(opts.shards, Imperfections::default(), opts.seed);
    let mut report = SoakReport {
        turbines: opts.turbines,
        simulated_minutes: opts.minutes,
        ..SoakReport::default()
    };
    // (device, window start) → (count, sum) of the readings not yet checked.
    let mut expected: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    let mut firing_expected: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut severe_ids: BTreeSet<String> = BTreeSet::new();
    let rule = p.aggregator.config.rule.name.clone();

    let end = START_MICROS + i64::from(opts.minutes) * MINUTE;
    let warm = (opts.minutes / 10).max(1);
    for minute in 0..opts.minutes + 2 {
        let start = START_MICROS + i64::from(minute) * MINUTE;
        let readings = minute_readings(opts, minute, start, &mut expected);
        report.readings += readings.len() as u64;
        // Ticks of ten seconds: each tick's readings go through the stream and the mapping.
        let mut next = 0;
        for tick in 1..=6 {
            let t = start + tick * TICK;
            while next < readings.len() && readings[next].event_time_micros < t {
                stream.put(&readings[next]);
                next += 1;
            }
            let shards = stream.take();
            report.change_records += shards.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
            p.process_readings(shards, t + 1_000_000).await;
            report.notifications += p.deliver_alerts().await.len() as u64;
        }
        if opts.accidents_every_minutes > 0
            && minute < opts.minutes
            && minute % opts.accidents_every_minutes == 0
        {
            replay_accidents(&mut p, &mut report, &mut severe_ids, start).await?;
        }
        // The alerter's one-minute schedule: grouped accidents go out here.
        report.notifications += p.alerter_schedule(start + MINUTE + 1_000_000).await.len() as u64;
        // Check every window that ended a minute ago or more, then let the TTL take it.
        let now = start + MINUTE;
        check_windows(&p, &mut expected, &mut firing_expected, &mut report, now);
        if minute + 1 == warm {
            report.memory_start = Memory::now();
        }
        if (minute + 1) % 10 == 0 || minute + 1 == opts.minutes {
            let m = Memory::now();
            let done = start + MINUTE;
            progress(&format!(
                "[{}] {:>9} readings  {:>9.0} readings/s  RSS {:>7} kB  peak {:>7} kB",
                &format_micros(done.min(end))[11..16],
                report.readings,
                report.readings as f64 / started.elapsed().as_secs_f64().max(1e-9),
                m.rss_kb,
                m.hwm_kb
            ));
        }
    }
    report.memory_end = Memory::now();
    report.wall_seconds = started.elapsed().as_secs_f64();

    final_counts(&p, &mut report, &firing_expected, &rule);
    Ok(report)
}

/// The readings of simulated minute `minute` (none after the last), each added to the
/// expected (count, sum) of its device's window.
fn minute_readings(
    opts: &SoakOptions,
    minute: u32,
    start: i64,
    expected: &mut BTreeMap<(String, i64), (u64, u64)>,
) -> Vec<Reading> {
    let readings = if minute < opts.minutes {
        TurbineScenario {
            turbines: opts.turbines,
            minutes: 1,
            min: 25,
            max: 60,
            seed: opts.seed ^ (u64::from(minute) << 20),
            start_micros: start,
            gusts: gusts(opts.turbines, minute),
        }
        .readings()
    } else {
        Vec::new()
    };
    for r in &readings {
        let e = expected.entry((r.device.clone(), start)).or_default();
        e.0 += 1;
        e.1 += r.value;
    }
    readings
}

/// One replay of the sample CSV stamped at `start`, with what it must produce: accidents
/// selected for metrics (severity > 2) and one alert per severe accident ID, however often
/// it is replayed.
async fn replay_accidents(
    p: &mut Pipeline,
    report: &mut SoakReport,
    severe_ids: &mut BTreeSet<String>,
    start: i64,
) -> Result<(), String> {
    let rows = read_csv(SAMPLE_CSV, |i| {
        format_micros(start + i as i64 * 10_000)
            .trim_end_matches('Z')
            .to_owned()
    })
    .map_err(|e| e.to_string())?;
    for (_, d) in &rows.payloads {
        let row = serde_json::from_slice::<serde_json::Value>(d).ok();
        let severity = row
            .as_ref()
            .and_then(|v| v["Severity"].as_i64())
            .unwrap_or(0);
        report.accidents_selected_expected += u64::from(severity > 2);
        // One alert per accident (its `ID`), however often it is replayed.
        if severity >= 4 {
            let id = row.as_ref().and_then(|v| v["ID"].as_str()).unwrap_or("");
            severe_ids.insert(id.to_owned());
        }
    }
    report.event_alerts_expected = severe_ids.len() as u64;
    report.accident_records += rows.payloads.len() as u64;
    report.accident_loops += 1;
    p.replay_accidents(&rows.payloads, 2, start + MINUTE).await;
    report.notifications += p.deliver_alerts().await.len() as u64;
    Ok(())
}

/// Checks every window that ended two minutes before `now` against its readings (and notes
/// whether it must fire), then expires what the TTL would.
fn check_windows(
    p: &Pipeline,
    expected: &mut BTreeMap<(String, i64), (u64, u64)>,
    firing_expected: &mut BTreeSet<(String, i64)>,
    report: &mut SoakReport,
    now: i64,
) {
    let threshold_sum = 60 * 60; // avg > 60 over 60 readings
    let due: Vec<(String, i64)> = expected
        .keys()
        .filter(|(_, s)| *s + 2 * MINUTE <= now)
        .cloned()
        .collect();
    if !due.is_empty() {
        let stored: BTreeMap<(String, i64), _> = p
            .aggregator
            .store
            .windows()
            .into_iter()
            .map(|w| ((w.key.clone(), w.start_micros), w))
            .collect();
        for key in due {
            let Some((count, sum)) = expected.remove(&key) else {
                continue;
            };
            report.windows_expected += 1;
            if sum > threshold_sum * count / 60 {
                firing_expected.insert(key.clone());
            }
            let ok = stored.get(&key).is_some_and(|w| {
                let s = w.stats();
                w.closed && w.settled && s.is_some_and(|s| s.count == count && s.sum == sum as f64)
            });
            if ok {
                report.windows_checked += 1;
            } else if report.window_mismatches.len() < 10 {
                report.window_mismatches.push(format!(
                    "{} at {}: expected {count} readings summing to {sum}, stored {:?}",
                    key.0,
                    format_micros(key.1),
                    stored.get(&key).map(|w| (w.closed, w.settled, w.stats()))
                ));
            }
        }
        p.aggregator.store.expire(now - MINUTE);
    }
}

/// The totals read from the pipeline at the end: firing alerts against the expected ones,
/// event alerts, accidents counted in the metrics, invocations.
fn final_counts(
    p: &Pipeline,
    report: &mut SoakReport,
    firing_expected: &BTreeSet<(String, i64)>,
    rule: &str,
) {
    let alerts = p.outbox.alerts();
    let firing: BTreeSet<(String, i64)> = alerts
        .iter()
        .filter(|a| a.rule == rule && a.kind == AlertKind::Firing)
        .filter_map(|a| a.window.as_ref().map(|w| (a.key.clone(), w.start_micros)))
        .collect();
    report.firing_windows_expected = firing_expected.len() as u64;
    report.firing_alerts = firing.len() as u64;
    report.firing_alerts_missing_or_extra =
        firing.symmetric_difference(firing_expected).count() as u64;
    report.event_alerts = alerts.iter().filter(|a| a.window.is_none()).count() as u64;
    report.accidents_counted = p
        .sink
        .datums()
        .iter()
        .filter(|d| d.series.namespace == NS)
        .map(|d| d.counts.iter().sum::<f64>())
        .sum::<f64>() as u64;
    report.lambda_invocations = p.publisher_mapping.invocations
        + p.aggregator_mapping.invocations
        + p.alerter_mapping.invocations;
}
