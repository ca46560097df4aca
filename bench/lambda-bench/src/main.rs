//! `lambda_bench`: cold starts, warm invocations and memory of the three release Lambda
//! binaries — and of the reference Python consumer under `awslambdaric` — each behind its
//! own local Lambda Runtime API (`streamwatch_emulator::runtime_api`), with the environment
//! `template.yaml` gives it and every AWS call answered by moto. `bench/lambda.sh` starts
//! moto, creates the resources and runs this; see docs/performance.md.
//!
//! Init is process spawn → first `GET /runtime/invocation/next`. A warm invocation is
//! timed queued → response; the function process's CPU time is the sum of its threads'
//! scheduler run time around the invocation; "waiting" is wall − CPU, an approximation of
//! the time spent on the AWS APIs (it also holds runtime-API transfer and scheduling
//! delay on this shared machine), shown beside moto's own CPU over the same interval.
//! Every measurement rotates over all processes so machine noise hits them alike.

mod fixtures;
mod procfs;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use chrono::{DurationRound as _, Utc};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use streamwatch_emulator::runtime_api::{InvocationResult, RuntimeApi, function_command};
use tokio::process::Child;

/// Longest a process may take from spawn to its first `GET next`.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one warm invocation may take (the template's function timeout is 60 s; the
/// Python reference makes one PutMetricData call per record on a shared machine).
const INVOKE_TIMEOUT: Duration = Duration::from_secs(300);
/// The Python reference's handler, as `awslambdaric` takes it.
const PYTHON_HANDLER: &str = "handler.lambda_handler";

#[derive(Parser)]
#[command(
    about = "Cold start, warm per-batch latency/CPU and peak RSS of the Lambda binaries against moto"
)]
struct Args {
    /// Function environments as bench/template_env.py prints them.
    #[arg(long)]
    env: PathBuf,
    /// Where the release binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Python interpreter with bench/requirements.txt installed; omit to skip the reference.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Directory holding the reference handler module.
    #[arg(long, default_value = "bench/reference_lambda")]
    python_dir: PathBuf,
    /// The KPL-aggregated accidents batch.
    #[arg(long, default_value = "tests/fixtures/kinesis-accidents-kpl.json")]
    kpl: PathBuf,
    /// An alerts-table stream event whose first record is copied into the alerter batch.
    #[arg(long, default_value = "events/alerter-firing.json")]
    alert_template: PathBuf,
    /// Spawns per function for the init measurement.
    #[arg(long, default_value_t = 20)]
    init_runs: usize,
    /// Measured warm invocations per function and fixture (after one unmeasured).
    #[arg(long, default_value_t = 10)]
    batch_runs: usize,
    /// moto_server's pid, to report its CPU time during each invocation.
    #[arg(long)]
    moto_pid: Option<u32>,
    /// Directory for the functions' stdout/stderr.
    #[arg(long, default_value = "target/lambda-bench")]
    logs: PathBuf,
    /// Write every sample and summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Append summary rows (TSV: section, measure, ours, reference, ratio, goal) here, for
    /// bench/all.sh's combined table.
    #[arg(long)]
    rows: Option<PathBuf>,
    /// Skip the init runs.
    #[arg(long)]
    no_init: bool,
    /// Skip the warm-invocation runs.
    #[arg(long)]
    no_batch: bool,
    /// Also run metrics-publisher on the KPL batch with this one variable changed
    /// (`KEY=VALUE`, repeatable), e.g. `ALERT_RULE=off` or `METRICS_SINK=emf`, to split its
    /// CPU time between the metric path and the alert writes.
    #[arg(long, value_name = "KEY=VALUE")]
    mp_env: Vec<String>,
    /// Give each window-aggregator series the windows table `<WINDOWS_TABLE>-s<shard>`
    /// (bench/lambda.sh creates `-s1` to `-s3`).
    #[arg(long)]
    window_table_per_series: bool,
    /// Run the warm invocations of these functions only (label, repeatable), e.g.
    /// `--only window-aggregator`.
    #[arg(long, value_name = "LABEL")]
    only: Vec<String>,
}

#[derive(Deserialize)]
struct TemplateEnv {
    functions: Vec<FunctionEnv>,
}

#[derive(Deserialize)]
struct FunctionEnv {
    #[serde(rename = "crate")]
    krate: String,
    function_name: String,
    memory_mb: u32,
    env: BTreeMap<String, String>,
}

/// One process to start: a release binary or the Python reference.
#[derive(Clone)]
struct Target {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    cwd: Option<PathBuf>,
    function_name: String,
    memory_mb: u32,
    env: BTreeMap<String, String>,
    log: PathBuf,
}

impl Target {
    fn command(&self, api: &RuntimeApi) -> anyhow::Result<tokio::process::Command> {
        let mut cmd = function_command(&self.program, api, &self.function_name, self.memory_mb);
        // A sandbox starts from a clean environment: what the runtime sets, the
        // credentials/region/endpoint, and the template's variables — nothing of ours.
        let runtime: Vec<(String, String)> = cmd
            .as_std()
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        cmd.env_clear().envs(runtime);
        for key in [
            "PATH",
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
        ] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        if let Ok(region) = std::env::var("AWS_REGION") {
            cmd.env("AWS_DEFAULT_REGION", region);
        }
        cmd.env("TZ", ":UTC").env("LANG", "C.UTF-8");
        cmd.envs(&self.env).args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        cmd.stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        Ok(cmd)
    }
}

const PYTHON_LABEL: &str = "python reference";

/// A started process whose init finished.
struct Started {
    child: Child,
    pid: u32,
    init: Duration,
    init_cpu_ns: u64,
    rss_kb: u64,
}

async fn start(target: &Target, api: &RuntimeApi) -> anyhow::Result<Started> {
    let mut cmd = target.command(api)?;
    let spawned = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", target.program.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("{} has no pid", target.label))?;
    let ready = tokio::select! {
        at = api.ready() => at,
        status = child.wait() => bail!(
            "{} exited during init ({}); its output is in {}",
            target.label,
            status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
            target.log.display()
        ),
        () = tokio::time::sleep(INIT_TIMEOUT) => bail!("{} did not finish init in {INIT_TIMEOUT:?}", target.label),
    };
    Ok(Started {
        init: ready.saturating_duration_since(spawned),
        init_cpu_ns: procfs::cpu_total_ns(pid),
        rss_kb: procfs::status_kb(pid, "VmRSS").unwrap_or(0),
        child,
        pid,
    })
}

async fn stop(mut child: Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[derive(Serialize, Default)]
struct InitResult {
    label: String,
    init_ms: Vec<f64>,
    init_cpu_ms: Vec<f64>,
    rss_mb: Vec<f64>,
}

async fn run_init(targets: &[Target], runs: usize) -> anyhow::Result<Vec<InitResult>> {
    let mut results: Vec<InitResult> = targets
        .iter()
        .map(|t| InitResult {
            label: t.label.clone(),
            ..Default::default()
        })
        .collect();
    for round in 0..runs {
        // Rotate who goes first, so a disturbance at the start of a round hits all alike.
        for i in 0..targets.len() {
            let k = (i + round) % targets.len();
            let api = RuntimeApi::bind().await?;
            let s = start(&targets[k], &api).await?;
            results[k].init_ms.push(ms(s.init));
            results[k].init_cpu_ms.push(s.init_cpu_ns as f64 / 1e6);
            results[k].rss_mb.push(s.rss_kb as f64 / 1024.0);
            stop(s.child).await;
        }
        eprint!("\rinit: round {}/{runs}", round + 1);
    }
    eprintln!();
    Ok(results)
}

/// What one warm-invocation series sends.
enum Payload {
    Fixed(Vec<u8>),
    Changes {
        shard: usize,
        records: usize,
        turbines: usize,
    },
    Alerts {
        records: usize,
        template: Value,
    },
}

/// One long-lived process and its series of warm invocations.
struct Series {
    target: Target,
    fixture: String,
    payload: Payload,
    api: RuntimeApi,
    started: Started,
    samples: Vec<BatchSample>,
}

#[derive(Serialize, Clone)]
struct BatchSample {
    event_bytes: usize,
    wall_ms: f64,
    handler_ms: f64,
    cpu_ms: f64,
    wait_ms: f64,
    moto_cpu_ms: Option<f64>,
    peak_rss_mb: f64,
    failed_items: usize,
    error: Option<String>,
}

#[derive(Serialize)]
struct BatchResult {
    label: String,
    fixture: String,
    samples: Vec<BatchSample>,
}

struct Clock {
    start: chrono::DateTime<Utc>,
    seq: u64,
}

impl Series {
    fn event(&self, round: usize, clock: &mut Clock) -> anyhow::Result<Vec<u8>> {
        Ok(match &self.payload {
            Payload::Fixed(bytes) => bytes.clone(),
            Payload::Changes {
                shard,
                records,
                turbines,
            } => {
                // Each round an hour later: a new stretch of the stream, new windows.
                let start = clock.start + chrono::Duration::hours(round as i64);
                fixtures::change_event(*shard, *records, *turbines, round, start, &mut clock.seq)
            }
            Payload::Alerts { records, template } => {
                fixtures::alert_event(template, *records, round)?
            }
        })
    }

    async fn measure(&mut self, event: Vec<u8>, moto: Option<u32>) -> anyhow::Result<()> {
        let pid = self.started.pid;
        let event_bytes = event.len();
        let moto_before = moto.and_then(procfs::process_cpu_ns);
        let before = procfs::thread_cpu_ns(pid);
        let reset = procfs::reset_peak_rss(pid);
        let invocation = self
            .api
            .invoke(event, INVOKE_TIMEOUT)
            .await
            .map_err(|e| anyhow!("{} on {}: {e}", self.target.label, self.fixture))?;
        let after = procfs::thread_cpu_ns(pid);
        let moto_cpu_ms = moto
            .and_then(procfs::process_cpu_ns)
            .zip(moto_before)
            .map(|(after, before)| after.saturating_sub(before) as f64 / 1e6);
        let peak_kb = procfs::status_kb(pid, "VmHWM").unwrap_or(0);
        let cpu_ms = procfs::cpu_delta_ns(&before, &after) as f64 / 1e6;
        let wall_ms = ms(invocation
            .finished
            .saturating_duration_since(invocation.queued));
        let (failed_items, mut error) = outcome(&invocation.result);
        if let Err(e) = reset {
            error.get_or_insert(format!("peak RSS not reset ({e}): peak since start"));
        }
        self.samples.push(BatchSample {
            event_bytes,
            wall_ms,
            handler_ms: ms(invocation
                .finished
                .saturating_duration_since(invocation.picked_up)),
            cpu_ms,
            wait_ms: (wall_ms - cpu_ms).max(0.0),
            moto_cpu_ms,
            peak_rss_mb: peak_kb as f64 / 1024.0,
            failed_items,
            error,
        });
        Ok(())
    }
}

/// Failed batch items and the error, if the function reported one.
fn outcome(result: &InvocationResult) -> (usize, Option<String>) {
    match result {
        InvocationResult::Response(body) => {
            let failures = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("batchItemFailures")?.as_array().map(Vec::len))
                .unwrap_or(0);
            (failures, None)
        }
        InvocationResult::Error {
            error_type,
            error_message,
        } => (0, Some(format!("{error_type}: {error_message}"))),
    }
}

async fn run_batches(
    targets: &[Target],
    args: &Args,
    kpl: Vec<u8>,
    alert_template: Value,
) -> anyhow::Result<Vec<BatchResult>> {
    let by_label = |label: &str| targets.iter().find(|t| t.label == label).cloned();
    let mut plan: Vec<(Target, String, Payload)> = Vec::new();
    if let Some(t) = by_label("metrics-publisher") {
        plan.push((
            t,
            "KPL accidents 5.6 MB".into(),
            Payload::Fixed(kpl.clone()),
        ));
    }
    for change in &args.mp_env {
        let (key, value) = change
            .split_once('=')
            .ok_or_else(|| anyhow!("--mp-env {change}: expected KEY=VALUE"))?;
        if let Some(mut t) = by_label("metrics-publisher") {
            t.label = format!("mp {key}={value}");
            t.env.insert(key.to_owned(), value.to_owned());
            plan.push((
                t,
                "KPL accidents 5.6 MB".into(),
                Payload::Fixed(kpl.clone()),
            ));
        }
    }
    if let Some(t) = by_label(PYTHON_LABEL) {
        plan.push((t, "KPL accidents 5.6 MB".into(), Payload::Fixed(kpl)));
    }
    if let Some(t) = by_label("window-aggregator") {
        // Each series on its own windows table when bench/lambda.sh made them (suffix
        // `-s<shard>`): closing is by the slowest shard of a table, so a shared table would
        // make one series close the other's windows.
        let own_table = |shard: usize| {
            let mut t = t.clone();
            if args.window_table_per_series
                && let Some(table) = t.env.get_mut("WINDOWS_TABLE")
            {
                table.push_str(&format!("-s{shard}"));
            }
            t
        };
        plan.push((
            own_table(1),
            "100 change records".into(),
            Payload::Changes {
                shard: 1,
                records: 100,
                turbines: 5,
            },
        ));
        // The largest batch Lambda can deliver: its invocation payload is at most 6 MB,
        // and these change records take ~1,490 bytes each in the event.
        plan.push((
            own_table(3),
            "4,000 change records (5.9 MB, Lambda's payload limit)".into(),
            Payload::Changes {
                shard: 3,
                records: 4_000,
                turbines: 100,
            },
        ));
        // Lambda's record limit (10,000), which change records of this size can only reach
        // in an event over the 6 MB payload limit (14.9 MB): kept as the stress case.
        plan.push((
            own_table(2),
            "10,000 change records".into(),
            Payload::Changes {
                shard: 2,
                records: 10_000,
                turbines: 100,
            },
        ));
    }
    if let Some(t) = by_label("alerter") {
        plan.push((
            t,
            "10 new alerts".into(),
            Payload::Alerts {
                records: 10,
                template: alert_template,
            },
        ));
    }
    plan.retain(|(t, _, _)| args.only.is_empty() || args.only.contains(&t.label));
    let mut series = Vec::new();
    for (target, fixture, payload) in plan {
        let api = RuntimeApi::bind().await?;
        let started = start(&target, &api).await?;
        series.push(Series {
            target,
            fixture,
            payload,
            api,
            started,
            samples: Vec::new(),
        });
    }
    let mut clock = Clock {
        start: (Utc::now() - chrono::Duration::days(2))
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or_else(|_| Utc::now()),
        seq: 0,
    };
    // Round 0 is the unmeasured first invocation (connections to moto opened, lazy state
    // built); its samples are dropped below.
    for round in 0..=args.batch_runs {
        for i in 0..series.len() {
            let k = (i + round) % series.len();
            let event = series[k].event(round, &mut clock)?;
            series[k].measure(event, args.moto_pid).await?;
        }
        eprint!("\rwarm invocations: round {round}/{}", args.batch_runs);
    }
    eprintln!();
    let mut out = Vec::new();
    for mut s in series {
        s.samples.remove(0);
        stop(s.started.child).await;
        out.push(BatchResult {
            label: s.target.label,
            fixture: s.fixture,
            samples: s.samples,
        });
    }
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The q-quantile by nearest rank (q = 0.5: the median).
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores (shared)")
}

/// Summary rows for bench/all.sh: section, measure, ours, reference, ratio, goal.
struct Rows(Vec<[String; 6]>);

impl Rows {
    fn push(&mut self, cells: [&str; 6]) {
        self.0.push(cells.map(str::to_owned));
    }
}

fn report_init(init: &[InitResult], runs: usize, rows: &mut Rows) {
    println!(
        "\nInit: process spawn -> first GET /runtime/invocation/next, {runs} spawns each, interleaved"
    );
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "", "median", "p90", "init CPU", "RSS at ready", "Python / this"
    );
    let python = init
        .iter()
        .find(|r| r.label == PYTHON_LABEL)
        .map(|r| median(&r.init_ms));
    for r in init {
        let med = median(&r.init_ms);
        let ratio = python
            .filter(|_| r.label != PYTHON_LABEL)
            .map(|p| format!("{:.1}x", p / med))
            .unwrap_or_default();
        println!(
            "{:<20} {:>7.1} ms {:>7.1} ms {:>7.1} ms {:>9.1} MB {:>14}",
            r.label,
            med,
            quantile(&r.init_ms, 0.9),
            median(&r.init_cpu_ms),
            median(&r.rss_mb),
            ratio
        );
        if r.label != PYTHON_LABEL {
            rows.push([
                "init (spawn -> first GET next), median",
                &r.label,
                &format!("{med:.1} ms (p90 {:.1})", quantile(&r.init_ms, 0.9)),
                &python.map_or("-".into(), |p| format!("{p:.0} ms")),
                &python.map_or("-".into(), |p| format!("{:.1}x", p / med)),
                &format!(
                    "<= 20 ms, >= 5x: {}",
                    if med <= 20.0 && python.is_none_or(|p| p / med >= 5.0) {
                        "met"
                    } else {
                        "NOT met"
                    }
                ),
            ]);
        }
    }
}

fn report_batches(batches: &[BatchResult], runs: usize, rows: &mut Rows) {
    println!(
        "\nWarm invocations: medians of {runs} (after one unmeasured), interleaved; wait = wall - process CPU (approximation)"
    );
    println!(
        "{:<20} {:<22} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>8}",
        "", "fixture", "wall", "handler", "CPU", "wait", "moto CPU", "peak RSS", "errors"
    );
    for b in batches {
        let col = |f: fn(&BatchSample) -> f64| median(&b.samples.iter().map(f).collect::<Vec<_>>());
        let moto: Vec<f64> = b.samples.iter().filter_map(|s| s.moto_cpu_ms).collect();
        let peak = b.samples.iter().map(|s| s.peak_rss_mb).fold(0.0, f64::max);
        let errors = b
            .samples
            .iter()
            .filter(|s| s.error.is_some() || s.failed_items > 0)
            .count();
        println!(
            "{:<20} {:<22} {:>7.1} ms {:>7.1} ms {:>7.1} ms {:>7.1} ms {:>10} {:>8.1} MB {:>8}",
            b.label,
            b.fixture,
            col(|s| s.wall_ms),
            col(|s| s.handler_ms),
            col(|s| s.cpu_ms),
            col(|s| s.wait_ms),
            if moto.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1} ms", median(&moto))
            },
            peak,
            errors
        );
        for s in b.samples.iter().filter_map(|s| s.error.as_deref()).take(1) {
            println!("    first error: {s}");
        }
    }
    // Ours beside the reference on the one fixture both run.
    let kpl = |label: &str| {
        batches
            .iter()
            .find(|b| b.label == label && b.fixture.starts_with("KPL"))
    };
    if let (Some(ours), Some(reference)) = (kpl("metrics-publisher"), kpl(PYTHON_LABEL)) {
        println!("\nKPL batch, Python reference / metrics-publisher (medians):");
        for (name, f) in [
            (
                "wall",
                (|s: &BatchSample| s.wall_ms) as fn(&BatchSample) -> f64,
            ),
            ("process CPU", |s| s.cpu_ms),
            ("peak RSS", |s| s.peak_rss_mb),
        ] {
            let o = median(&ours.samples.iter().map(f).collect::<Vec<_>>());
            let r = median(&reference.samples.iter().map(f).collect::<Vec<_>>());
            println!("  {name:<12} {o:>9.1} vs {r:>9.1}  = {:.1}x", r / o);
        }
    }
    for b in batches.iter().filter(|b| b.label != PYTHON_LABEL) {
        let cpu = median(&b.samples.iter().map(|s| s.cpu_ms).collect::<Vec<_>>());
        let wall = median(&b.samples.iter().map(|s| s.wall_ms).collect::<Vec<_>>());
        let peak = b.samples.iter().map(|s| s.peak_rss_mb).fold(0.0, f64::max);
        let reference = (b.fixture.starts_with("KPL"))
            .then(|| kpl(PYTHON_LABEL))
            .flatten()
            .map(|r| {
                (
                    median(&r.samples.iter().map(|s| s.cpu_ms).collect::<Vec<_>>()),
                    median(&r.samples.iter().map(|s| s.wall_ms).collect::<Vec<_>>()),
                    r.samples.iter().map(|s| s.peak_rss_mb).fold(0.0, f64::max),
                )
            });
        let label = format!("{} / {}", b.label, b.fixture);
        rows.push([
            "warm batch, process CPU (median)",
            &label,
            &format!("{cpu:.1} ms"),
            &reference.map_or("-".into(), |r| format!("{:.0} ms", r.0)),
            &reference.map_or("-".into(), |r| format!("{:.1}x", r.0 / cpu)),
            &if b.fixture.starts_with("KPL") {
                format!("<= 15 ms: {}", if cpu <= 15.0 { "met" } else { "NOT met" })
            } else {
                String::new()
            },
        ]);
        rows.push([
            "warm batch, wall queued -> response (median)",
            &label,
            &format!("{wall:.1} ms"),
            &reference.map_or("-".into(), |r| format!("{:.0} ms", r.1)),
            &reference.map_or("-".into(), |r| format!("{:.1}x", r.1 / wall)),
            "",
        ]);
        rows.push([
            "peak RSS (max over runs)",
            &label,
            &format!("{peak:.1} MB"),
            &reference.map_or("-".into(), |r| format!("{:.1} MB", r.2)),
            &reference.map_or("-".into(), |r| format!("{:.1}x", r.2 / peak)),
            &format!("<= 64 MB: {}", if peak <= 64.0 { "met" } else { "NOT met" }),
        ]);
    }
}

fn targets(args: &Args) -> anyhow::Result<Vec<Target>> {
    let text = std::fs::read_to_string(&args.env)
        .with_context(|| format!("cannot read {}", args.env.display()))?;
    let env: TemplateEnv = serde_json::from_str(&text)
        .with_context(|| format!("{} is not template_env.py output", args.env.display()))?;
    std::fs::create_dir_all(&args.logs)
        .with_context(|| format!("cannot create {}", args.logs.display()))?;
    let mut out = Vec::new();
    for f in &env.functions {
        let program = args.bin_dir.join(&f.krate);
        if !program.is_file() {
            bail!(
                "{} not found: cargo build --release -p {}",
                program.display(),
                f.krate
            );
        }
        out.push(Target {
            label: f.krate.clone(),
            program,
            args: Vec::new(),
            cwd: None,
            function_name: f.function_name.clone(),
            memory_mb: f.memory_mb,
            env: f.env.clone(),
            log: args.logs.join(format!("{}.log", f.krate)),
        });
    }
    if let Some(python) = &args.python {
        let dir = std::fs::canonicalize(&args.python_dir)
            .with_context(|| format!("cannot find {}", args.python_dir.display()))?;
        let topic = env
            .functions
            .iter()
            .find_map(|f| f.env.get("TOPIC_ARN").cloned())
            .unwrap_or_default();
        let dir_s = dir.display().to_string();
        out.push(Target {
            label: PYTHON_LABEL.to_owned(),
            // Absolute but not canonical: the venv's `python` symlink is what selects the venv.
            program: std::path::absolute(python)
                .with_context(|| format!("cannot resolve {}", python.display()))?,
            args: vec!["-m".into(), "awslambdaric".into(), PYTHON_HANDLER.into()],
            cwd: Some(dir.clone()),
            function_name: "streamwatch-reference-accidents".into(),
            memory_mb: 128,
            env: BTreeMap::from([
                ("TOPIC_ARN".to_owned(), topic),
                ("LAMBDA_TASK_ROOT".to_owned(), dir_s.clone()),
                ("PYTHONPATH".to_owned(), dir_s),
                ("_HANDLER".to_owned(), PYTHON_HANDLER.to_owned()),
                // /var/task is read-only on Lambda: no __pycache__ beside the handler.
                ("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()),
            ]),
            log: args.logs.join("python-reference.log"),
        });
    }
    Ok(out)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let targets = targets(&args)?;
    let kpl =
        std::fs::read(&args.kpl).with_context(|| format!("cannot read {}", args.kpl.display()))?;
    let alert_template: Value = serde_json::from_slice(
        &std::fs::read(&args.alert_template)
            .with_context(|| format!("cannot read {}", args.alert_template.display()))?,
    )
    .with_context(|| format!("{} is not JSON", args.alert_template.display()))?;
    let machine = machine();
    let date = Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    println!("machine: {machine}; {date}");
    let mut rows = Rows(Vec::new());
    let init = if args.no_init {
        Vec::new()
    } else {
        run_init(&targets, args.init_runs).await?
    };
    let batches = if args.no_batch {
        Vec::new()
    } else {
        run_batches(&targets, &args, kpl, alert_template).await?
    };
    if !init.is_empty() {
        report_init(&init, args.init_runs, &mut rows);
    }
    if !batches.is_empty() {
        report_batches(&batches, args.batch_runs, &mut rows);
    }
    if let Some(path) = &args.json {
        let doc =
            serde_json::json!({"machine": machine, "date": date, "init": init, "batches": batches});
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.rows {
        append_rows(path, &rows)?;
    }
    Ok(())
}

fn append_rows(path: &Path, rows: &Rows) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    for r in &rows.0 {
        writeln!(f, "{}", r.join("\t"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lambda_bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lambda_bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(median(&v), 3.0);
        assert_eq!(quantile(&v, 0.9), 5.0);
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantile(&twenty, 0.9), 18.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn outcome_counts_batch_item_failures() {
        let ok = InvocationResult::Response(br#"{"batchItemFailures":[]}"#.to_vec());
        assert_eq!(outcome(&ok), (0, None));
        let two = InvocationResult::Response(
            br#"{"batchItemFailures":[{"itemIdentifier":"1"},{"itemIdentifier":"2"}]}"#.to_vec(),
        );
        assert_eq!(outcome(&two).0, 2);
        let err = InvocationResult::Error {
            error_type: "Runtime.Panic".into(),
            error_message: "boom".into(),
        };
        assert!(outcome(&err).1.is_some_and(|e| e.contains("boom")));
    }
}
