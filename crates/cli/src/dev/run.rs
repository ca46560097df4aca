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

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamwatch_emulator::esm::{self, Invocation, MappingConfig};
use streamwatch_emulator::runtime_api::{
    InvocationResult, InvokeError, RuntimeApi, function_command,
};

use super::template::{self, ACCOUNT, Context};
use super::{Forward, Stack, sdk_error};
use crate::Failure;
use streamwatch_emulator::filter::Filters;
use streamwatch_emulator::stream::{Polled, Source, kinesis_change_record};

/// Lambda's synchronous invocation payload limit.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

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

/// One function: its binary, its environment, and its idle sandboxes.
struct Function {
    name: String,
    arn: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    timeout: Duration,
    memory: u32,
    log: PathBuf,
    idle: Mutex<Vec<Sandbox>>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    invocations: AtomicU64,
    records: AtomicU64,
    errors: AtomicU64,
    given_up: AtomicU64,
}

/// One function process and the Runtime API it polls.
struct Sandbox {
    api: RuntimeApi,
    child: tokio::process::Child,
}

/// What one invocation came to.
struct Invoked {
    outcome: Invocation,
    ms: f64,
    text: String,
}

impl Function {
    async fn spawn(&self) -> Result<Sandbox, String> {
        let api = RuntimeApi::bind()
            .await
            .map_err(|e| format!("cannot bind a runtime API: {e}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let mut command = function_command(&self.binary, &api, &self.name, self.memory);
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.stdout(log).stderr(err);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        Ok(Sandbox { api, child })
    }

    /// Invokes in an idle sandbox (or a new one); a sandbox that timed out, failed to
    /// initialise or exited is discarded, as Lambda does.
    async fn invoke(&self, payload: Vec<u8>) -> Invoked {
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let idle = lock(&self.idle).pop();
        let mut sandbox = match idle {
            Some(s) => s,
            None => match self.spawn().await {
                Ok(s) => s,
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    return Invoked {
                        outcome: Invocation::Error(e.clone()),
                        ms: 0.0,
                        text: format!("error: {e}"),
                    };
                }
            },
        };
        let result = tokio::select! {
            r = sandbox.api.invoke(payload, self.timeout) => Ok(r),
            status = sandbox.child.wait() => Err(status),
        };
        let (outcome, ms, text, keep) = match result {
            Ok(Ok(inv)) => {
                let ms = inv.finished.duration_since(inv.picked_up).as_secs_f64() * 1000.0;
                match inv.result {
                    InvocationResult::Response(body) => {
                        let failed = batch_item_failures(&body);
                        let text = if failed.is_empty() {
                            "ok".to_owned()
                        } else {
                            format!("{} batchItemFailures", failed.len())
                        };
                        (Invocation::Response { failed }, ms, text, true)
                    }
                    InvocationResult::Error {
                        error_type,
                        error_message,
                    } => {
                        let e = format!("{error_type}: {error_message}");
                        (
                            Invocation::Error(e.clone()),
                            ms,
                            format!("error: {e}"),
                            true,
                        )
                    }
                }
            }
            Ok(Err(InvokeError::Timeout)) => {
                let e = format!("timed out after {} s", self.timeout.as_secs());
                (Invocation::Error(e.clone()), elapsed_ms(started), e, false)
            }
            Ok(Err(e @ InvokeError::InitError { .. })) => (
                Invocation::Error(e.to_string()),
                elapsed_ms(started),
                format!("error: {e}"),
                false,
            ),
            Err(status) => {
                let e = format!(
                    "the process exited ({}); see {}",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    self.log.display()
                );
                (Invocation::Error(e.clone()), elapsed_ms(started), e, false)
            }
        };
        if matches!(outcome, Invocation::Error(_)) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        if keep {
            lock(&self.idle).push(sandbox);
        } else {
            let _ = sandbox.child.kill().await;
        }
        Invoked { outcome, ms, text }
    }

    async fn shutdown(&self) {
        let sandboxes: Vec<Sandbox> = std::mem::take(&mut *lock(&self.idle));
        for mut s in sandboxes {
            let _ = s.child.kill().await;
        }
    }
}

fn elapsed_ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// `{"batchItemFailures": [{"itemIdentifier": …}]}`; anything else means all done.
fn batch_item_failures(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    v["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| match &f["itemIdentifier"] {
            Value::String(s) => s.clone(),
            // An identifier that is no sequence number fails the whole batch in Lambda.
            other => other.to_string(),
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One emulated event source mapping.
struct Mapping {
    function: Arc<Function>,
    event: String,
    source: Source,
    config: MappingConfig,
    window: Duration,
    filters: Filters,
    /// On-failure SQS queue URL.
    on_failure: Option<String>,
    /// `FunctionResponseTypes` has `ReportBatchItemFailures`.
    report_failures: bool,
    /// `MaximumRecordAgeInSeconds` (None: -1 or unset, records never expire).
    max_record_age: Option<Duration>,
}

/// State every task shares: clients, checkpoints, the activity clock.
struct Shared {
    region: String,
    account: String,
    sqs: aws_sdk_sqs::Client,
    checkpoints: Mutex<BTreeMap<String, String>>,
    checkpoint_file: PathBuf,
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

    fn checkpoint(&self, key: &str) -> Option<String> {
        lock(&self.checkpoints).get(key).cloned()
    }

    fn set_checkpoint(&self, key: &str, seq: &str) {
        let text = {
            let mut c = lock(&self.checkpoints);
            c.insert(key.to_owned(), seq.to_owned());
            serde_json::to_string_pretty(&*c).unwrap_or_default()
        };
        if let Err(e) = std::fs::write(&self.checkpoint_file, text) {
            eprintln!(
                "dev run: cannot write {}: {e}",
                self.checkpoint_file.display()
            );
        }
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

impl Holding<'_> {
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

pub async fn run(args: RunArgs) -> Result<(), Failure> {
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
    let stack = Stack::read(&args.state_dir)?;
    let tpl = template::load(&stack.template).map_err(Failure::usage)?;
    let mut ctx = Context {
        region: stack.region.clone(),
        parameters: stack.parameters.clone(),
        resources: stack.resources.clone(),
        ..Default::default()
    };
    ctx.evaluate_conditions(&tpl).map_err(Failure::usage)?;
    let account = stack
        .resources
        .values()
        .find_map(|r| r.attributes.get("Arn"))
        .and_then(|arn| arn.split(':').nth(4))
        .filter(|a| !a.is_empty())
        .unwrap_or(ACCOUNT)
        .to_owned();
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => default_bin_dir(&tpl),
    };
    let logs = args.state_dir.join("logs");
    std::fs::create_dir_all(&logs)
        .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", logs.display())))?;
    let config = super::sdk_config(&stack.endpoint, &stack.region, 3).await;
    let checkpoint_file = args.state_dir.join("checkpoints.json");
    let checkpoints = std::fs::read_to_string(&checkpoint_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let shared = Arc::new(Shared {
        region: stack.region.clone(),
        account: account.clone(),
        sqs: aws_sdk_sqs::Client::new(&config),
        checkpoints: Mutex::new(checkpoints),
        checkpoint_file,
        last_activity: Mutex::new(Instant::now()),
        holding: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        poll: Duration::from_millis(args.poll_ms.max(10)),
        forwarded: AtomicU64::new(0),
    });

    let globals = &tpl["Globals"]["Function"];
    let mut functions = Vec::new();
    let mut mappings = Vec::new();
    let mut schedules = Vec::new();
    for (logical, res) in template::resources_of(&tpl, "AWS::Serverless::Function") {
        if !ctx.enabled(res) {
            continue;
        }
        let props = &res["Properties"];
        let function = Arc::new(function(
            &ctx, &stack, globals, logical, props, &bin_dir, &logs, &account,
        )?);
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
            match spec["Type"].as_str() {
                Some(kind @ ("Kinesis" | "DynamoDB")) => {
                    mappings.push(Arc::new(mapping(
                        &ctx, &stack, &config, &function, event, kind, p,
                    )?));
                }
                Some("Schedule") => {
                    let every = match args.schedule_every {
                        Some(s) => Duration::from_secs_f64(s),
                        None => {
                            let expr = ctx.string(&p["Schedule"]).map_err(|e| {
                                Failure::usage(format!("{logical} event {event}: Schedule: {e}"))
                            })?;
                            match rate(&expr) {
                                Some(d) => d,
                                None => {
                                    eprintln!(
                                        "dev run: {logical} event {event}: {expr} is not a rate(); \
                                         not scheduled (pass --schedule-every)"
                                    );
                                    continue;
                                }
                            }
                        }
                    };
                    schedules.push((function.clone(), event.clone(), every));
                }
                other => eprintln!(
                    "dev run: {logical} event {event}: type {} is not emulated",
                    other.unwrap_or("?")
                ),
            }
        }
        functions.push(function);
    }

    let mut tasks = tokio::task::JoinSet::new();
    for m in &mappings {
        let shards = m.source.shards().await.map_err(Failure::runtime)?;
        println!(
            "dev run: {} <- {} ({} shards, batch {}, window {} s{})",
            m.function.name,
            m.source.arn(),
            shards.len(),
            m.config.batch_size,
            m.window.as_secs_f64(),
            if m.filters.is_empty() {
                ""
            } else {
                ", filtered"
            }
        );
        for shard in shards {
            tasks.spawn(poll_shard(shared.clone(), m.clone(), shard));
        }
    }
    for f in &stack.forwards {
        let source = Source::DynamoDb {
            client: aws_sdk_dynamodbstreams::Client::new(&config),
            stream_arn: f.table_stream_arn.clone(),
        };
        let shards = source.shards().await.map_err(Failure::runtime)?;
        println!(
            "dev run: forwarding {}'s DynamoDB stream to Kinesis stream {} (Kinesis Data Streams for DynamoDB layout)",
            f.table, f.kinesis_stream
        );
        let kinesis = aws_sdk_kinesis::Client::new(&config);
        for shard in shards {
            tasks.spawn(forward_shard(
                shared.clone(),
                f.clone(),
                source.clone(),
                kinesis.clone(),
                shard,
            ));
        }
    }
    for (function, event, every) in schedules.iter().cloned() {
        println!(
            "dev run: {} on schedule {event} every {} s",
            function.name,
            every.as_secs_f64()
        );
        tasks.spawn(schedule(shared.clone(), function, event, every));
    }
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
    let until_idle = args.until_idle.map(|asked| {
        let needed = windows_close_within(&schedules);
        let asked = Duration::from_secs_f64(asked);
        if asked < needed.0 {
            println!(
                "dev run: stops after {:.0} s without records{} ({})",
                needed.0.as_secs_f64(),
                if asked.is_zero() {
                    String::new()
                } else {
                    format!(" (not {:.0} s)", asked.as_secs_f64())
                },
                needed.1
            );
            needed.0
        } else {
            asked
        }
    });
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
    let why = tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = idle => "idle",
    };
    shared.stopping.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    for f in &functions {
        f.shutdown().await;
    }
    archive_stop.store(true, Ordering::Relaxed);
    if let Some(task) = archive_task {
        let _ = task.await;
    }
    println!("dev run: stopped ({why})");
    for f in &functions {
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
    if let Some(a) = &archiver {
        println!("  {}", a.summary());
    }
    println!("  function logs: {}", logs.display());
    Ok(())
}

/// How long after the last record moved the last open window has surely closed and its
/// alert moved on: for each scheduled function with a window (`WINDOW_SECONDS`), the
/// window, its lateness and the schedule's grace (`ALLOWED_LATENESS_SECONDS`,
/// `CLOSE_GRACE_SECONDS`: the schedule closes a window once the wall clock minus the grace
/// passes its end plus the lateness), one schedule interval, and 5 s for the invocations —
/// with the sum spelled out for the line that says so. (A batch being gathered holds the
/// stack busy, so batching windows need no room here.) A stack without windows needs 5 s.
fn windows_close_within(schedules: &[(Arc<Function>, String, Duration)]) -> (Duration, String) {
    let margin = Duration::from_secs(5);
    let mut best = (margin, "no windowed function".to_owned());
    for (function, _, every) in schedules {
        let var = |name: &str| {
            function
                .env
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<f64>().ok())
        };
        let Some(window) = var("WINDOW_SECONDS") else {
            continue;
        };
        let lateness = var("ALLOWED_LATENESS_SECONDS").unwrap_or(0.0);
        let grace = var("CLOSE_GRACE_SECONDS").unwrap_or(0.0);
        let total = Duration::from_secs_f64(window + lateness + grace) + *every + margin;
        if total > best.0 {
            best = (
                total,
                format!(
                    "{}: window {window} s + lateness {lateness} s + grace {grace} s + schedule {} s + 5 s",
                    function.name,
                    every.as_secs_f64(),
                ),
            );
        }
    }
    best
}

/// `target/release` when it holds every function binary, else `target/debug`.
fn default_bin_dir(tpl: &Value) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let release = target.join("release");
    let all_there = template::resources_of(tpl, "AWS::Serverless::Function")
        .iter()
        .all(|(_, r)| release.join(binary_name(&r["Properties"])).is_file());
    if all_there {
        release
    } else {
        target.join("debug")
    }
}

/// The binary of a function: `BuildProperties.Binary`, else the crate CodeUri points at.
fn binary_name(props: &Value) -> String {
    if let Some(b) = props["Metadata"]["BuildProperties"]["Binary"].as_str() {
        return b.to_owned();
    }
    props["CodeUri"]
        .as_str()
        .and_then(|c| Path::new(c).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("bootstrap")
        .to_owned()
}

#[allow(clippy::too_many_arguments)]
fn function(
    ctx: &Context,
    stack: &Stack,
    globals: &Value,
    logical: &str,
    props: &Value,
    bin_dir: &Path,
    logs: &Path,
    account: &str,
) -> Result<Function, Failure> {
    let name = if props["FunctionName"].is_null() {
        format!("{}-{logical}", template::STACK_NAME)
    } else {
        ctx.string(&props["FunctionName"])
            .map_err(|e| Failure::usage(format!("{logical}: FunctionName: {e}")))?
    };
    let mut env = Vec::new();
    for vars in [
        &globals["Environment"]["Variables"],
        &props["Environment"]["Variables"],
    ] {
        for (k, v) in vars.as_object().into_iter().flatten() {
            let value = ctx
                .string(v)
                .map_err(|e| Failure::usage(format!("{logical}: environment {k}: {e}")))?;
            env.push((k.clone(), value));
        }
    }
    let logging = if props["LoggingConfig"].is_null() {
        &globals["LoggingConfig"]
    } else {
        &props["LoggingConfig"]
    };
    if let Ok(level) = ctx.string(&logging["ApplicationLogLevel"]) {
        env.push(("AWS_LAMBDA_LOG_LEVEL".into(), level));
    }
    if let Some(format) = logging["LogFormat"].as_str() {
        env.push(("AWS_LAMBDA_LOG_FORMAT".into(), format.to_owned()));
    }
    // Emulators are slower than the services: moto takes seconds for one 1,000-datum
    // PutMetricData, so a deadline sized for CloudWatch would cut off requests it goes on
    // to apply, and the retry would count their metrics twice. Here the invocation's own
    // timeout is the deadline.
    let number = |key: &str, default: u64| {
        props[key]
            .as_u64()
            .or_else(|| globals[key].as_u64())
            .unwrap_or(default)
    };
    let timeout = number("Timeout", 3);
    for (k, v) in env.iter_mut() {
        if k == "PUT_METRIC_DATA_TIMEOUT_SECONDS" {
            *v = timeout.to_string();
        }
    }
    env.push(("AWS_ENDPOINT_URL".into(), stack.endpoint.clone()));
    env.push(("AWS_REGION".into(), stack.region.clone()));
    env.push(("AWS_DEFAULT_REGION".into(), stack.region.clone()));
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        let keys = &stack.credentials;
        env.push(("AWS_ACCESS_KEY_ID".into(), keys.access_key_id.clone()));
        env.push((
            "AWS_SECRET_ACCESS_KEY".into(),
            keys.secret_access_key.clone(),
        ));
    }
    Ok(Function {
        arn: format!("arn:aws:lambda:{}:{account}:function:{name}", stack.region),
        log: logs.join(format!("{name}.log")),
        binary: bin_dir.join(binary_name(props)),
        env,
        timeout: Duration::from_secs(timeout),
        memory: u32::try_from(number("MemorySize", 128)).unwrap_or(128),
        idle: Mutex::new(Vec::new()),
        stats: Counters::default(),
        name,
    })
}

fn mapping(
    ctx: &Context,
    stack: &Stack,
    config: &aws_config::SdkConfig,
    function: &Arc<Function>,
    event: &str,
    kind: &str,
    p: &Value,
) -> Result<Mapping, Failure> {
    let what = format!("{} event {event}", function.name);
    let arn = ctx
        .string(&p["Stream"])
        .map_err(|e| Failure::usage(format!("{what}: Stream: {e}")))?;
    let source = if kind == "Kinesis" {
        let name = stack
            .resources
            .values()
            .find(|r| r.attributes.get("Arn") == Some(&arn))
            .map(|r| r.reference.clone())
            .ok_or_else(|| Failure::usage(format!("{what}: {arn} is no local stream")))?;
        Source::Kinesis {
            client: aws_sdk_kinesis::Client::new(config),
            stream_name: name,
            stream_arn: arn,
        }
    } else {
        Source::DynamoDb {
            client: aws_sdk_dynamodbstreams::Client::new(config),
            stream_arn: arn,
        }
    };
    if p["ParallelizationFactor"].as_u64().is_some_and(|n| n > 1) {
        eprintln!(
            "dev run: {what}: ParallelizationFactor > 1 is emulated as 1 (one batch per shard at a time)"
        );
    }
    let on_failure = match &p["DestinationConfig"]["OnFailure"]["Destination"] {
        Value::Null => None,
        d => {
            let arn = ctx
                .string(d)
                .map_err(|e| Failure::usage(format!("{what}: OnFailure: {e}")))?;
            let url = stack
                .resources
                .values()
                .find(|r| r.kind == "AWS::SQS::Queue" && r.attributes.get("Arn") == Some(&arn))
                .map(|r| r.reference.clone());
            if url.is_none() {
                eprintln!(
                    "dev run: {what}: on-failure destination {arn} is no local queue; given-up batches are only logged"
                );
            }
            url
        }
    };
    Ok(Mapping {
        function: function.clone(),
        event: event.to_owned(),
        source,
        config: MappingConfig {
            // Lambda's default batch size for both stream types.
            batch_size: p["BatchSize"].as_u64().unwrap_or(100) as usize,
            // Lambda's default is -1 (retry until the record expires); a local run needs an end.
            maximum_retry_attempts: p["MaximumRetryAttempts"]
                .as_u64()
                .map_or(10_000, |n| n as u32),
            bisect_on_error: p["BisectBatchOnFunctionError"].as_bool().unwrap_or(false),
        },
        window: Duration::from_secs(p["MaximumBatchingWindowInSeconds"].as_u64().unwrap_or(0)),
        filters: Filters::from_criteria(&p["FilterCriteria"])
            .map_err(|e| Failure::usage(format!("{what}: FilterCriteria: {e}")))?,
        on_failure,
        report_failures: p["FunctionResponseTypes"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures")),
        max_record_age: p["MaximumRecordAgeInSeconds"]
            .as_u64()
            .map(Duration::from_secs),
    })
}

/// `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)`, `rate(1 day)`.
fn rate(expr: &str) -> Option<Duration> {
    let inner = expr.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit.trim().trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

fn now_text() -> String {
    chrono::Utc::now().format("%H:%M:%S%.3f").to_string()
}

/// Reads a shard forever, gathering batches as the mapping says and delivering them.
async fn poll_shard(shared: Arc<Shared>, m: Arc<Mapping>, shard: String) {
    let key = format!("{}|{}|{}", m.function.name, m.source.arn(), shard);
    let role = format!(
        "arn:aws:iam::{}:role/{}-role",
        shared.account, m.function.name
    );
    let mut iterator = match open(&shared, &m.source, &shard, &key).await {
        Some(it) => it,
        None => return,
    };
    let mut pending: VecDeque<Polled> = VecDeque::new();
    let mut first_at: Option<Instant> = None;
    let mut last_read: Option<String> = None;
    let mut holding = Holding {
        shared: &shared,
        held: false,
    };
    loop {
        if shared.stopping() {
            return;
        }
        let mut got = 0;
        if let Some(it) = iterator.clone()
            && pending.len() < m.config.batch_size
        {
            let limit = (m.config.batch_size - pending.len()).min(10_000) as i32;
            match m
                .source
                .read(&shard, &it, limit, &shared.region, &role)
                .await
            {
                Ok((records, next)) => {
                    iterator = next;
                    got = records.len();
                    for r in records {
                        last_read = Some(r.seq.clone());
                        if m.filters.matches(&r.record) {
                            pending.push_back(r);
                        }
                    }
                    if got > 0 {
                        shared.touch();
                    }
                }
                Err(e) => {
                    eprintln!(
                        "dev run: {} {shard}: {e}; reopening the shard",
                        m.function.name
                    );
                    tokio::time::sleep(shared.poll).await;
                    // The reopened iterator starts after the checkpoint: what is pending
                    // will be read again.
                    pending.clear();
                    last_read = None;
                    first_at = None;
                    match open(&shared, &m.source, &shard, &key).await {
                        Some(it) => iterator = it,
                        None => return,
                    }
                    continue;
                }
            }
        } else if iterator.is_none() && pending.is_empty() {
            // A closed shard read to its end.
            return;
        }
        holding.set(!pending.is_empty());
        if pending.is_empty() {
            // Everything read was filtered out: the mapping moves past it all the same.
            if let Some(seq) = last_read.take() {
                shared.set_checkpoint(&key, &seq);
            }
        } else {
            let first = *first_at.get_or_insert_with(Instant::now);
            let full = pending.len() >= m.config.batch_size;
            if full || first.elapsed() >= m.window || iterator.is_none() {
                let batch = take_batch(&mut pending, m.config.batch_size);
                let batch_end = batch.last().map(|r| r.seq.clone());
                deliver(&shared, &m, &shard, batch).await;
                first_at = if pending.is_empty() {
                    None
                } else {
                    Some(Instant::now())
                };
                // Past the batch, or past everything read when nothing is left (records
                // filtered out after the batch count as done).
                let done = if pending.is_empty() {
                    last_read.take().or(batch_end)
                } else {
                    batch_end
                };
                if let Some(seq) = done {
                    shared.set_checkpoint(&key, &seq);
                }
                holding.set(!pending.is_empty());
                shared.touch();
                continue;
            }
        }
        if got == 0 {
            tokio::time::sleep(shared.poll).await;
        }
    }
}

/// A shard iterator after the checkpoint, or at the start; None when stopping.
async fn open(shared: &Shared, source: &Source, shard: &str, key: &str) -> Option<Option<String>> {
    loop {
        if shared.stopping() {
            return None;
        }
        let after = shared.checkpoint(key);
        match source.iterator(shard, after.as_deref()).await {
            Ok(it) => return Some(it),
            Err(e) if after.is_some() => {
                eprintln!(
                    "dev run: {shard}: cannot resume after checkpoint {after:?} ({e}); starting at the shard's beginning"
                );
                lock(&shared.checkpoints).remove(key);
            }
            Err(e) => {
                eprintln!("dev run: {shard}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Up to `max` records from the front, within Lambda's payload limit (at least one).
fn take_batch(pending: &mut VecDeque<Polled>, max: usize) -> Vec<Polled> {
    let mut batch = Vec::new();
    let mut bytes = 16;
    while let Some(r) = pending.front() {
        let size = r.record.to_string().len() + 1;
        if batch.len() >= max || (!batch.is_empty() && bytes + size > MAX_PAYLOAD_BYTES) {
            break;
        }
        bytes += size;
        if let Some(r) = pending.pop_front() {
            batch.push(r);
        }
    }
    batch
}

/// One batch through the function with Lambda's retry semantics; what is given up goes to
/// the on-failure queue as Lambda's invocation record. Records older than
/// `MaximumRecordAgeInSeconds` are given up without an invocation, as Lambda does.
async fn deliver(shared: &Shared, m: &Arc<Mapping>, shard: &str, batch: Vec<Polled>) {
    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    let (expired, batch): (Vec<Polled>, Vec<Polled>) = batch.into_iter().partition(|r| {
        m.max_record_age
            .is_some_and(|age| r.arrival > 0.0 && now - r.arrival > age.as_secs_f64())
    });
    if !expired.is_empty() {
        let expired: Vec<&Polled> = expired.iter().collect();
        give_up(shared, m, shard, &expired, "RecordAgeExceeded", 0).await;
    }
    let stats = esm::drain_shard(
        &batch,
        |r: &Polled| r.seq.as_str(),
        m.config,
        |records: Vec<Polled>| {
            let m = m.clone();
            let shard = shard.to_owned();
            async move {
                let n = records.len();
                let payload = json!({
                    "Records": records.iter().map(|r| &r.record).collect::<Vec<_>>()
                });
                let bytes = serde_json::to_vec(&payload).unwrap_or_default();
                m.function
                    .stats
                    .records
                    .fetch_add(n as u64, Ordering::Relaxed);
                let invoked = m.function.invoke(bytes).await;
                println!(
                    "{}  {:<30} {:<40} {:>6} {:<7}{:<20}  {:<24} {:>8.1} ms",
                    now_text(),
                    m.function.name,
                    shard,
                    n,
                    crate::plural(n as u64, "record"),
                    user_records(&records, n),
                    invoked.text,
                    invoked.ms
                );
                match invoked.outcome {
                    // Without ReportBatchItemFailures Lambda reads any response as success.
                    Invocation::Response { .. } if !m.report_failures => {
                        Invocation::Response { failed: Vec::new() }
                    }
                    other => other,
                }
            }
        },
    )
    .await;
    if stats.given_up.is_empty() {
        return;
    }
    let given: Vec<&Polled> = batch
        .iter()
        .filter(|r| stats.given_up.contains(&r.seq))
        .collect();
    let attempts = m.config.maximum_retry_attempts + 1;
    give_up(shared, m, shard, &given, "RetryAttemptsExhausted", attempts).await;
}

/// ` (500 user records)` when KPL aggregates are among the records (one Kinesis record can
/// carry hundreds of rows), else nothing.
fn user_records(records: &[Polled], kinesis_records: usize) -> String {
    use base64::Engine as _;
    let mut users = 0usize;
    let mut aggregated = false;
    for r in records {
        let data = r.record["kinesis"]["data"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
        match data.as_deref().map(streamwatch_core::kpl::deaggregate) {
            Some(Ok(streamwatch_core::kpl::Payload::Aggregated(subs))) => {
                aggregated = true;
                users += subs.len();
            }
            _ => users += 1,
        }
    }
    if aggregated {
        format!(" ({users} user {})", crate::plural(users as u64, "record"))
    } else {
        debug_assert_eq!(users, kinesis_records);
        String::new()
    }
}

/// Sends Lambda's on-failure invocation record for `given` (one shard's records, in order).
async fn give_up(
    shared: &Shared,
    m: &Mapping,
    shard: &str,
    given: &[&Polled],
    condition: &str,
    attempts: u32,
) {
    let (Some(first), Some(last)) = (given.first(), given.last()) else {
        return;
    };
    m.function
        .stats
        .given_up
        .fetch_add(given.len() as u64, Ordering::Relaxed);
    let iso = |secs: f64| {
        chrono::DateTime::from_timestamp_micros((secs * 1e6) as i64)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default()
    };
    let info = json!({
        "shardId": shard,
        "startSequenceNumber": first.seq,
        "endSequenceNumber": last.seq,
        "approximateArrivalOfFirstRecord": iso(first.arrival),
        "approximateArrivalOfLastRecord": iso(last.arrival),
        "batchSize": given.len(),
        "streamArn": m.source.arn(),
    });
    let record = json!({
        "requestContext": {
            "requestId": uuid::Uuid::new_v4().to_string(),
            "functionArn": m.function.arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        (if m.source.is_kinesis() { "KinesisBatchInfo" } else { "DDBStreamBatchInfo" }): info,
    });
    println!(
        "{}  {:<30} {:<40} {:>6} {:<7} given up ({condition}) -> {}",
        now_text(),
        m.function.name,
        shard,
        given.len(),
        crate::plural(given.len() as u64, "record"),
        m.on_failure.as_deref().unwrap_or("(no on-failure queue)")
    );
    if let Some(url) = &m.on_failure
        && let Err(e) = shared
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(record.to_string())
            .send()
            .await
    {
        eprintln!(
            "dev run: {} event {}: cannot send the on-failure record: {}",
            m.function.name,
            m.event,
            sdk_error("SQS SendMessage", &e)
        );
    }
}

/// Copies a table's DynamoDB stream shard into its Kinesis stream, each change in the
/// Kinesis Data Streams for DynamoDB layout, partition key = the item's key.
async fn forward_shard(
    shared: Arc<Shared>,
    f: Forward,
    source: Source,
    kinesis: aws_sdk_kinesis::Client,
    shard: String,
) {
    let key = format!("forward|{}|{}", source.arn(), shard);
    let Some(mut iterator) = open(&shared, &source, &shard, &key).await else {
        return;
    };
    let mut holding = Holding {
        shared: &shared,
        held: false,
    };
    while let Some(it) = iterator.clone() {
        if shared.stopping() {
            return;
        }
        let (records, next) = match source.read(&shard, &it, 1000, &shared.region, "").await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dev run: forward {shard}: {e}; reopening the shard");
                tokio::time::sleep(shared.poll).await;
                match open(&shared, &source, &shard, &key).await {
                    Some(it) => iterator = it,
                    None => return,
                }
                continue;
            }
        };
        iterator = next;
        if records.is_empty() {
            tokio::time::sleep(shared.poll).await;
            continue;
        }
        holding.set(true);
        shared.touch();
        let entries: Vec<(String, Vec<u8>)> = records
            .iter()
            .filter_map(|r| r.change.as_ref())
            .map(|c| {
                let payload = kinesis_change_record(c, &f.table, &shared.region, &f.precision);
                (c.partition_key.clone(), payload.to_string().into_bytes())
            })
            .collect();
        for chunk in entries.chunks(500) {
            put_all(&kinesis, &f.kinesis_stream, chunk).await;
        }
        shared
            .forwarded
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        if let Some(last) = records.last() {
            shared.set_checkpoint(&key, &last.seq);
        }
        shared.touch();
        holding.set(false);
    }
}

/// PutRecords with the failed entries retried (order within a partition key is kept: a
/// retry only ever re-sends a suffix of each key's records).
async fn put_all(kinesis: &aws_sdk_kinesis::Client, stream: &str, entries: &[(String, Vec<u8>)]) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let mut left: Vec<&(String, Vec<u8>)> = entries.iter().collect();
    let mut backoff = crate::backoff::producer(10);
    use crate::backoff::Wait as _;
    while !left.is_empty() {
        let request: Vec<PutRecordsRequestEntry> = left
            .iter()
            .filter_map(|(pk, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(pk)
                    .data(Blob::new(data.clone()))
                    .build()
                    .ok()
            })
            .collect();
        match kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(request))
            .send()
            .await
        {
            Ok(out) => {
                let failed: Vec<&(String, Vec<u8>)> = out
                    .records()
                    .iter()
                    .zip(&left)
                    .filter(|(r, _)| r.error_code().is_some())
                    .map(|(_, e)| *e)
                    .collect();
                left = failed;
            }
            Err(e) => eprintln!("dev run: forward: {}", sdk_error("Kinesis PutRecords", &e)),
        }
        if !left.is_empty() && !backoff.wait().await {
            eprintln!(
                "dev run: forward: {} changes not put on {stream} after 10 attempts; dropped",
                left.len()
            );
            return;
        }
    }
}

/// Invokes `function` with an EventBridge scheduled event every `every`.
async fn schedule(shared: Arc<Shared>, function: Arc<Function>, event: String, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.stopping() {
            return;
        }
        let payload = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": shared.account,
            "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": shared.region,
            "resources": [format!("arn:aws:events:{}:{}:rule/{}-{event}", shared.region, shared.account, template::STACK_NAME)],
            "detail": {},
        });
        // An invocation in flight is activity: what it closes may feed the next mapping.
        let mut holding = Holding {
            shared: &shared,
            held: false,
        };
        holding.set(true);
        let invoked = function
            .invoke(serde_json::to_vec(&payload).unwrap_or_default())
            .await;
        // Not a touch: a schedule firing on an idle stack must not keep it from idling.
        holding.set(false);
        println!(
            "{}  {:<30} {:<40} {:>6}          {:<24} {:>8.1} ms",
            now_text(),
            function.name,
            format!("schedule {event}"),
            "",
            invoked.text,
            invoked.ms
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(rate("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(rate("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(rate("rate(2 hours)"), Some(Duration::from_secs(7200)));
        assert_eq!(rate("cron(0 12 * * ? *)"), None);
    }

    #[test]
    fn failures_from_the_response() {
        assert_eq!(
            batch_item_failures(br#"{"batchItemFailures":[{"itemIdentifier":"42"}]}"#),
            vec!["42".to_owned()]
        );
        assert!(batch_item_failures(b"null").is_empty());
        assert!(batch_item_failures(br#"{"batchItemFailures":[]}"#).is_empty());
    }
}
