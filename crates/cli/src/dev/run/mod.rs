//! `streamwatch dev run`: the template's three functions as their real binaries, each
//! invocation in a sandbox process behind its own local Lambda Runtime API, fed the way
//! Lambda feeds them: one poller per shard per event source mapping (batch size, batching
//! window, filter criteria, `batchItemFailures`, bisection, retry limit and the on-failure
//! queue, via `streamwatch_emulator::esm`), the schedule events, and — where the emulator
//! lacks Kinesis Data Streams for DynamoDB — a forward of the table's DynamoDB stream to
//! its Kinesis stream. Prints one line per invocation.
//!
//! Starting positions: `dev up` creates the streams empty and the mappings exist from then
//! on, so `LATEST` and `TRIM_HORIZON` both start at the beginning of each shard the first
//! time; `dev run` keeps per-shard checkpoints in `target/dev/checkpoints.json`, so a
//! second `dev run` continues where the first stopped (`dev up` clears them).
//!
//! # Layout
//! * here: the arguments, the state every task shares, and [`run`], which wires the rest;
//! * `sandbox`: the functions and their sandbox processes;
//! * `poll`: the event source mappings (read, filter, batch, deliver, give up);
//! * `forward`: the DynamoDB stream → Kinesis forward;
//! * `schedule`: the schedule events, and how long an idle stack keeps running.

mod forward;
mod poll;
mod sandbox;
mod schedule;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use streamwatch_emulator::stream::StreamReader;

use super::Stack;
use super::checkpoints::Checkpoints;
use super::template::{self, ACCOUNT, Context};
use crate::Failure;
use poll::Mapping;
use sandbox::{Function, Site};
use schedule::Schedule;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Where `dev up` wrote stack.json; logs and checkpoints go here too.
    #[arg(long, default_value = super::STATE_DIR)]
    pub state_dir: PathBuf,
    /// Directory holding the metrics-publisher, window-aggregator and alerter binaries
    /// (default: target/release when all three are there, else target/debug).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Stop once no record has moved for this many seconds, but never before the last open
    /// windows can close and alert (window, lateness, grace and schedule interval from the
    /// template, plus 5 s), which is also the value when none is given. Without the flag:
    /// run until Ctrl-C.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "0", allow_negative_numbers = true)]
    pub until_idle: Option<f64>,
    /// Fire each schedule this often instead of the template's rate.
    #[arg(long, value_name = "SECONDS")]
    pub schedule_every: Option<f64>,
    /// How often a shard with nothing new is polled again (Lambda: about once a second).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub poll_ms: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_text() -> String {
    chrono::Utc::now().format("%H:%M:%S%.3f").to_string()
}

/// State every task shares: clients, checkpoints, the activity clock.
struct Shared {
    region: String,
    account: String,
    sqs: aws_sdk_sqs::Client,
    checkpoints: Checkpoints,
    last_activity: Mutex<Instant>,
    holding: AtomicUsize,
    stopping: AtomicBool,
    poll: Duration,
    forwarded: AtomicU64,
}

impl Shared {
    fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// Counts a poller as holding records (a batch being gathered or delivered) while alive.
struct Holding<'a> {
    shared: &'a Shared,
    held: bool,
}

impl<'a> Holding<'a> {
    fn new(shared: &'a Shared) -> Self {
        Self {
            shared,
            held: false,
        }
    }

    fn set(&mut self, held: bool) {
        if held != self.held {
            if held {
                self.shared.holding.fetch_add(1, Ordering::Relaxed);
            } else {
                self.shared.holding.fetch_sub(1, Ordering::Relaxed);
            }
            self.held = held;
        }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// `dev run` is stopping: no iterator to read from.
struct Stopping;

/// A shard iterator after the checkpoint, or at the start (`None`: the shard is closed and
/// read to its end); retried until it opens or the run stops.
async fn resume(
    shared: &Shared,
    source: &StreamReader,
    shard: &str,
    key: &str,
) -> Result<Option<String>, Stopping> {
    loop {
        if shared.stopping() {
            return Err(Stopping);
        }
        let after = shared.checkpoints.get(key);
        match source.iterator(shard, after.as_deref()).await {
            Ok(it) => return Ok(it),
            Err(e) if after.is_some() => {
                eprintln!(
                    "dev run: {shard}: cannot resume after checkpoint {after:?} ({e}); starting at the shard's beginning"
                );
                shared.checkpoints.forget(key);
            }
            Err(e) => {
                eprintln!("dev run: {shard}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What the template asks `dev run` to emulate.
struct Plan {
    functions: Vec<Arc<Function>>,
    mappings: Vec<Arc<Mapping>>,
    schedules: Vec<Schedule>,
}

pub async fn run(args: RunArgs) -> Result<(), Failure> {
    check(&args)?;
    let stack = Stack::read(&args.state_dir)?;
    let tpl = template::load(&stack.template).map_err(Failure::usage)?;
    let mut ctx = Context {
        region: stack.region.clone(),
        parameters: stack.parameters.clone(),
        resources: stack.resources.clone(),
        ..Default::default()
    };
    ctx.evaluate_conditions(&tpl).map_err(Failure::usage)?;
    let account = account_of(&stack);
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => sandbox::default_bin_dir(&tpl),
    };
    let logs = args.state_dir.join("logs");
    std::fs::create_dir_all(&logs)
        .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", logs.display())))?;
    let config = super::sdk_config(&stack.endpoint, &stack.region, 3).await;
    let shared = Arc::new(shared(&args, &stack, &account, &config));
    let site = Site {
        ctx: &ctx,
        stack: &stack,
        globals: &tpl["Globals"]["Function"],
        bin_dir: &bin_dir,
        logs: &logs,
        account: &account,
    };
    let plan = plan(&tpl, &site, &config, args.schedule_every)?;

    let mut tasks = tokio::task::JoinSet::new();
    poll::start(&mut tasks, &shared, &plan.mappings).await?;
    forward::start(&mut tasks, &shared, &stack.forwards, &config).await?;
    schedule::start(&mut tasks, &shared, &plan.schedules);
    // The raw layer (archive.rs): its own task, stopped after the functions so its last
    // pass delivers everything they wrote.
    let archiver = super::archive::Archiver::new(&stack, &config, &args.state_dir);
    let archive_stop = Arc::new(AtomicBool::new(false));
    let archive_task = archiver.clone().map(|a| {
        a.describe().iter().for_each(|line| println!("{line}"));
        tokio::spawn(a.run(
            archive_stop.clone(),
            shared.poll.max(Duration::from_secs(1)),
        ))
    });
    let why = wait(&shared, until_idle(args.until_idle, &plan.schedules)).await;
    shared.stopping.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    for f in &plan.functions {
        f.shutdown().await;
    }
    archive_stop.store(true, Ordering::Relaxed);
    if let Some(task) = archive_task {
        let _ = task.await;
    }
    println!("dev run: stopped ({why})");
    summary(&plan.functions, &shared, &stack);
    if let Some(a) = &archiver {
        println!("  {}", a.summary());
    }
    println!("  function logs: {}", logs.display());
    Ok(())
}

fn check(args: &RunArgs) -> Result<(), Failure> {
    if let Some(s) = args.until_idle
        && !(s.is_finite() && s >= 0.0)
    {
        return Err(Failure::usage(
            "--until-idle must be a number of seconds (or nothing: as long as windows need)",
        ));
    }
    if let Some(s) = args.schedule_every
        && !(s.is_finite() && s > 0.0)
    {
        return Err(Failure::usage(
            "--schedule-every must be a positive number of seconds",
        ));
    }
    Ok(())
}

/// The account of the stack's ARNs (moto's default when none names one).
fn account_of(stack: &Stack) -> String {
    stack
        .resources
        .values()
        .find_map(|r| r.attributes.get("Arn"))
        .and_then(|arn| arn.split(':').nth(4))
        .filter(|a| !a.is_empty())
        .unwrap_or(ACCOUNT)
        .to_owned()
}

fn shared(args: &RunArgs, stack: &Stack, account: &str, config: &aws_config::SdkConfig) -> Shared {
    Shared {
        region: stack.region.clone(),
        account: account.to_owned(),
        sqs: aws_sdk_sqs::Client::new(config),
        checkpoints: Checkpoints::load(args.state_dir.join("checkpoints.json")),
        last_activity: Mutex::new(Instant::now()),
        holding: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        poll: Duration::from_millis(args.poll_ms.max(10)),
        forwarded: AtomicU64::new(0),
    }
}

/// Every enabled function of the template with its stream and schedule events.
fn plan(
    tpl: &Value,
    site: &Site<'_>,
    config: &aws_config::SdkConfig,
    schedule_every: Option<f64>,
) -> Result<Plan, Failure> {
    let (ctx, stack) = (site.ctx, site.stack);
    let mut plan = Plan {
        functions: Vec::new(),
        mappings: Vec::new(),
        schedules: Vec::new(),
    };
    for (logical, res) in template::resources_of(tpl, "AWS::Serverless::Function") {
        if !ctx.enabled(res) {
            continue;
        }
        let props = &res["Properties"];
        let function = Arc::new(site.function(logical, props)?);
        if !function.binary.is_file() {
            return Err(Failure::usage(format!(
                "{} not found; build it (`cargo build --release -p {}`) or pass --bin-dir",
                function.binary.display(),
                function
                    .binary
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("?")
            )));
        }
        for (event, spec) in props["Events"].as_object().into_iter().flatten() {
            let p = &spec["Properties"];
            let what = format!("{logical} event {event}");
            match spec["Type"].as_str() {
                Some(kind @ ("Kinesis" | "DynamoDB")) => {
                    let m = poll::mapping(ctx, stack, config, &function, event, kind, p)?;
                    plan.mappings.push(Arc::new(m));
                }
                Some("Schedule") => {
                    if let Some(every) = schedule::interval(ctx, &what, p, schedule_every)? {
                        plan.schedules.push(Schedule {
                            function: function.clone(),
                            event: event.clone(),
                            every,
                        });
                    }
                }
                other => eprintln!(
                    "dev run: {what}: type {} is not emulated",
                    other.unwrap_or("?")
                ),
            }
        }
        plan.functions.push(function);
    }
    Ok(plan)
}

/// `--until-idle` as a duration, never shorter than the last window needs (said in a line).
fn until_idle(asked: Option<f64>, schedules: &[Schedule]) -> Option<Duration> {
    let asked = Duration::from_secs_f64(asked?);
    let (needed, why) = schedule::windows_close_within(schedules);
    if asked >= needed {
        return Some(asked);
    }
    println!(
        "dev run: stops after {:.0} s without records{} ({why})",
        needed.as_secs_f64(),
        if asked.is_zero() {
            String::new()
        } else {
            format!(" (not {:.0} s)", asked.as_secs_f64())
        },
    );
    Some(needed)
}

/// Until Ctrl-C, or until nothing is held and no record moved for `until_idle`.
async fn wait(shared: &Shared, until_idle: Option<Duration>) -> &'static str {
    let idle = async {
        match until_idle {
            None => std::future::pending::<()>().await,
            Some(limit) => loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if shared.holding.load(Ordering::Relaxed) == 0
                    && lock(&shared.last_activity).elapsed() >= limit
                {
                    return;
                }
            },
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = idle => "idle",
    }
}

/// One line per function: invocations, records delivered, errors, records given up.
fn summary(functions: &[Arc<Function>], shared: &Shared, stack: &Stack) {
    for f in functions {
        let invocations = f.stats.invocations.load(Ordering::Relaxed);
        let records = f.stats.records.load(Ordering::Relaxed);
        let errors = f.stats.errors.load(Ordering::Relaxed);
        let given_up = f.stats.given_up.load(Ordering::Relaxed);
        println!(
            "  {:<32} {:>6} {:<11} {:>8} {:<7} delivered (retries included) {:>4} {:<6} {:>6} {:<7} given up",
            f.name,
            invocations,
            crate::plural(invocations, "invocation"),
            records,
            crate::plural(records, "record"),
            errors,
            crate::plural(errors, "error"),
            given_up,
            crate::plural(given_up, "record"),
        );
    }
    if !stack.forwards.is_empty() {
        println!(
            "  forwarded {} table changes to Kinesis",
            shared.forwarded.load(Ordering::Relaxed)
        );
    }
}
