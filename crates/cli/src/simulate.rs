//! `streamwatch simulate turbines`: the reference wind-turbine simulator as a command.
//! Writes readings to the readings table exactly as the reference web app did (item layout
//! below), in BatchWriteItem calls of at most 25 items, retrying unprocessed items and
//! throttled calls with backoff.
//!
//! Item: `id` (S, UUID v4: the hash key, so one turbine's readings spread over every shard
//! of the change stream), `deviceID` (S, `device1`…`deviceN`), `value` (N, integer mph,
//! uniform in `[min, max)`), `index` (N, the turbine's reading counter from 0),
//! `createdAt`/`updatedAt` (S, ISO-8601 UTC with milliseconds, `2026-11-21T12:00:00.542Z`),
//! `__typename` (S, `windspeed`).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use crate::aws_args::{Aws, AwsArgs};
use crate::backoff::{self, Wait as _};
use crate::failure::{CallKind, SdkCall};
use crate::{Failure, plural};

/// DynamoDB's BatchWriteItem limit (moto accepts more; real DynamoDB rejects the call).
pub const BATCH_ITEMS: usize = 25;

#[derive(clap::Args, Debug)]
pub struct TurbinesArgs {
    /// The readings table (default: the stack's `ReadingsTableName` output).
    #[arg(long)]
    pub table: Option<String>,
    /// Turbines, named device1..deviceN.
    #[arg(long, default_value_t = 5)]
    pub devices: u32,
    /// Calm readings are integers uniform in [min, max) mph, as the reference simulator's.
    #[arg(long, default_value_t = 25)]
    pub min: u64,
    #[arg(long, default_value_t = 70)]
    pub max: u64,
    /// Readings per turbine, then stop (as fast as the table takes them unless --rate).
    #[arg(long)]
    pub count: Option<u64>,
    /// Readings per second per turbine (default 1 without --count, unlimited with it).
    #[arg(long, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Stop after this many seconds (without --count or --duration: run until Ctrl-C).
    #[arg(long, allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// DEVICE:MPH:SECONDS — DEVICE (`device3` or `3`) reads MPH for the first SECONDS seconds,
    /// enough to push its window average over the threshold. Repeatable.
    #[arg(long, value_name = "DEVICE:MPH:SECONDS")]
    pub gust: Vec<Gust>,
    /// Seed for the calm readings (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Attempts per batch before giving up (unprocessed items and throttling are retried).
    #[arg(long, default_value_t = 10)]
    pub max_attempts: u32,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// A forced gust: `device` reads `mph` for the first `seconds` of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Gust {
    pub device: u32,
    pub mph: u64,
    pub seconds: f64,
}

impl FromStr for Gust {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let (Some(device), Some(mph), Some(seconds), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("{s:?} is not DEVICE:MPH:SECONDS"));
        };
        let device = device
            .strip_prefix("device")
            .unwrap_or(device)
            .parse::<u32>()
            .ok()
            .filter(|d| *d >= 1)
            .ok_or_else(|| {
                format!("{device:?} is not a device (device1, device2, … or 1, 2, …)")
            })?;
        let mph = mph
            .parse::<u64>()
            .map_err(|_| format!("{mph:?} is not a whole number of mph"))?;
        let seconds = seconds
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| format!("{seconds:?} is not a positive number of seconds"))?;
        Ok(Self {
            device,
            mph,
            seconds,
        })
    }
}

/// What a run wrote.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub readings: u64,
    pub calls: u64,
    pub unprocessed_retried: u64,
    /// Calls the service throttled (retried).
    pub throttled_retried: u64,
    /// Calls that failed otherwise: 5xx, timeouts, resets (retried). A refused connection
    /// is neither: the run stops at once.
    pub failed_retried: u64,
}

/// Where the writes go: the client, the table, and the endpoint (for messages).
pub struct Target {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    pub endpoint: String,
}

/// Runs the simulator; the final totals line goes to stdout.
pub async fn run(args: TurbinesArgs) -> Result<(), Failure> {
    validate(&args)?;
    let aws = args.aws.load().await?;
    let table = aws
        .resolve(args.table.as_deref(), "--table", "ReadingsTableName")
        .await?;
    let target = Target {
        client: aws_sdk_dynamodb::Client::new(&aws.config),
        table: table.clone(),
        endpoint: aws.endpoint.clone(),
    };
    for warning in gust_warnings(&args, &aws) {
        eprintln!("streamwatch: warning: {warning}");
    }
    // Without --count the run is open-ended, so it needs a pace; with it, as fast as possible.
    let rate = args.rate.or(if args.count.is_none() {
        Some(1.0)
    } else {
        None
    });
    let total = args.count.map(|c| c * u64::from(args.devices));
    eprintln!("{}", start_line(&args, rate, &table));
    let bar = progress_bar(total);
    let mut plain = PlainProgress::new(&bar);
    let started = Instant::now();
    let mut rng = match args.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => rand::make_rng(),
    };
    let mut totals = Totals::default();
    let mut batch: Vec<WriteRequest> = Vec::with_capacity(BATCH_ITEMS);
    let interrupted = interrupt_flag();
    let mut tick: u64 = 0;
    let outcome: Result<(), Failure> = async {
        loop {
            if !tick_due(&args, rate, tick, started, &interrupted).await {
                break;
            }
            let elapsed = started.elapsed().as_secs_f64();
            for device in 1..=args.devices {
                let value = match args
                    .gust
                    .iter()
                    .find(|g| g.device == device && elapsed < g.seconds)
                {
                    Some(gust) => gust.mph,
                    None => rng.random_range(args.min..args.max),
                };
                batch.push(reading(device, value, tick));
                if batch.len() == BATCH_ITEMS {
                    write_batch(
                        &target,
                        std::mem::take(&mut batch),
                        &mut totals,
                        args.max_attempts,
                    )
                    .await?;
                    bar.set_position(totals.readings);
                }
            }
            plain.tick(&bar, &totals, &args.gust, elapsed);
            // Paced runs write each tick's readings at their time, not when a batch fills.
            if rate.is_some() && !batch.is_empty() {
                write_batch(
                    &target,
                    std::mem::take(&mut batch),
                    &mut totals,
                    args.max_attempts,
                )
                .await?;
                bar.set_position(totals.readings);
            }
            tick += 1;
        }
        if !batch.is_empty() {
            write_batch(
                &target,
                std::mem::take(&mut batch),
                &mut totals,
                args.max_attempts,
            )
            .await?;
        }
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", totals_line(&args, &totals, &table, seconds));
    outcome
}

/// Waits until tick `tick` is due (paced runs); false when the run is over: `--count` ticks
/// done, `--duration` passed, or Ctrl-C.
async fn tick_due(
    args: &TurbinesArgs,
    rate: Option<f64>,
    tick: u64,
    started: Instant,
    interrupted: &Interrupt,
) -> bool {
    if args.count.is_some_and(|c| tick >= c) {
        return false;
    }
    if let Some(rate) = rate {
        let due = Duration::from_secs_f64(tick as f64 / rate);
        if args.duration.is_some_and(|d| due.as_secs_f64() >= d) {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep_until((started + due).into()) => {}
            () = interrupted.notified() => {}
        }
    } else if args
        .duration
        .is_some_and(|d| started.elapsed().as_secs_f64() >= d)
    {
        return false;
    }
    !interrupted.is_set()
}

/// The final totals line.
fn totals_line(args: &TurbinesArgs, totals: &Totals, table: &str, seconds: f64) -> String {
    format!(
        "wrote {} {} of {} {} to {table} in {seconds:.1} s ({:.0} readings/s): {} BatchWriteItem {}, {} unprocessed {}, {} throttled and {} failed calls retried",
        totals.readings,
        plural(totals.readings, "reading"),
        args.devices,
        plural(u64::from(args.devices), "turbine"),
        totals.readings as f64 / seconds.max(1e-9),
        totals.calls,
        plural(totals.calls, "call"),
        totals.unprocessed_retried,
        plural(totals.unprocessed_retried, "item"),
        totals.throttled_retried,
        totals.failed_retried,
    )
}

fn validate(args: &TurbinesArgs) -> Result<(), Failure> {
    if args.devices == 0 || args.min >= args.max {
        return Err(Failure::usage("need --devices >= 1 and --min < --max"));
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(Failure::usage("--rate must be a positive number"));
    }
    if args.duration.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
        return Err(Failure::usage(
            "--duration must be a positive number of seconds",
        ));
    }
    if let Some(g) = args.gust.iter().find(|g| g.device > args.devices) {
        return Err(Failure::usage(format!(
            "--gust device{} but only {} devices",
            g.device, args.devices
        )));
    }
    Ok(())
}

/// One reading in the reference simulator's item layout (see the module docs).
pub fn reading(device: u32, value: u64, index: u64) -> WriteRequest {
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let item = HashMap::from([
        (
            "id".to_owned(),
            AttributeValue::S(uuid::Uuid::new_v4().to_string()),
        ),
        (
            "deviceID".to_owned(),
            AttributeValue::S(format!("device{device}")),
        ),
        ("value".to_owned(), AttributeValue::N(value.to_string())),
        ("index".to_owned(), AttributeValue::N(index.to_string())),
        ("createdAt".to_owned(), AttributeValue::S(now.clone())),
        ("updatedAt".to_owned(), AttributeValue::S(now)),
        (
            "__typename".to_owned(),
            AttributeValue::S("windspeed".to_owned()),
        ),
    ]);
    // `PutRequest::build` fails only without an item, and the item is always set.
    let put = PutRequest::builder().set_item(Some(item)).build();
    WriteRequest::builder().set_put_request(put.ok()).build()
}

/// Writes up to 25 requests, retrying unprocessed items and transient failures with
/// backoff until every item is in the table or the attempts run out.
pub async fn write_batch(
    target: &Target,
    mut requests: Vec<WriteRequest>,
    totals: &mut Totals,
    max_attempts: u32,
) -> Result<(), Failure> {
    let (client, table) = (&target.client, target.table.as_str());
    let mut backoff = backoff::producer(max_attempts);
    while !requests.is_empty() {
        let n = requests.len() as u64;
        totals.calls += 1;
        let result = client
            .batch_write_item()
            .request_items(table, requests.clone())
            .send()
            .await;
        match result {
            Ok(out) => {
                let unprocessed = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(table))
                    .unwrap_or_default();
                totals.readings += n - unprocessed.len() as u64;
                if unprocessed.is_empty() {
                    return Ok(());
                }
                totals.unprocessed_retried += unprocessed.len() as u64;
                requests = unprocessed;
                if !backoff.wait().await {
                    return Err(Failure::runtime(format!(
                        "{} items still unprocessed by {table} after {} attempts",
                        requests.len(),
                        backoff.attempts()
                    )));
                }
            }
            Err(e) => {
                let call =
                    SdkCall::read(&format!("BatchWriteItem on {table}"), &e, &target.endpoint);
                if !call.is_retryable() {
                    // A closed port or a missing table: the next attempt fares no better.
                    return Err(Failure::from(call));
                }
                if call.kind == CallKind::Throttled {
                    totals.throttled_retried += 1;
                } else {
                    totals.failed_retried += 1;
                }
                if !backoff.wait().await {
                    return Err(Failure::runtime(format!(
                        "still failing after {} attempts: {}",
                        backoff.attempts(),
                        call.line
                    ))
                    .detail(Some(call.debug)));
                }
            }
        }
    }
    Ok(())
}

/// The line printed before the first write: what will happen, and for how long.
fn start_line(args: &TurbinesArgs, rate: Option<f64>, table: &str) -> String {
    let pace = rate.map_or("as fast as the table takes them".to_owned(), |r| {
        format!(
            "{r} {}/s each",
            if r == 1.0 { "reading" } else { "readings" }
        )
    });
    let until = match (args.count, args.duration) {
        (Some(c), _) => format!("{c} {} each", plural(c, "reading")),
        (None, Some(d)) => format!("for {d} s"),
        (None, None) => "until Ctrl-C".to_owned(),
    };
    let gusts: Vec<String> = args
        .gust
        .iter()
        .map(|g| {
            format!(
                "; gust device{} {} mph for the first {} s",
                g.device, g.mph, g.seconds
            )
        })
        .collect();
    format!(
        "simulating {} {} into {table}, {pace}, {until}{}",
        args.devices,
        plural(u64::from(args.devices), "turbine"),
        gusts.concat()
    )
}

/// Gusts that will not (or are unlikely to) push a window average over the threshold: the
/// dev stack's `WindSpeedThreshold` and `WindowSeconds` when the endpoint is its, else the
/// template's defaults (60 mph, 60 s).
fn gust_warnings(args: &TurbinesArgs, aws: &Aws) -> Vec<String> {
    let parameter = |name: &str, default: f64| {
        aws.local_parameter(name)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let threshold = parameter("WindSpeedThreshold", 60.0);
    let window = parameter("WindowSeconds", 60.0).max(1.0);
    let calm_max = (args.max - 1) as f64;
    let calm_mean = (args.min as f64 + calm_max) / 2.0;
    let mut out = Vec::new();
    for g in &args.gust {
        // The best case: the gust starts on a window boundary and fills as much of that
        // window as it lasts; the rest of the window is calm.
        let covered = g.seconds.min(window) / window;
        let mph = g.mph as f64;
        let at_most = covered * mph + (1.0 - covered) * calm_max;
        let likely = covered * mph + (1.0 - covered) * calm_mean;
        let spec = format!("--gust device{}:{}:{}", g.device, g.mph, g.seconds);
        if at_most <= threshold {
            out.push(format!(
                "{spec} cannot alert: a {window} s window averages at most {at_most:.1} mph, the alert needs more than {threshold}"
            ));
        } else if likely <= threshold {
            out.push(format!(
                "{spec} is unlikely to alert: a {window} s window averages about {likely:.1} mph with it, the alert needs more than {threshold} (gust longer or stronger)"
            ));
        }
    }
    out
}

/// Progress for a log or a pipe, where the bar does not draw: one line every 10 s.
struct PlainProgress {
    on: bool,
    last: Instant,
}

impl PlainProgress {
    fn new(bar: &ProgressBar) -> Self {
        Self {
            on: bar.is_hidden(),
            last: Instant::now(),
        }
    }

    fn tick(&mut self, bar: &ProgressBar, totals: &Totals, gusts: &[Gust], elapsed: f64) {
        let gusting: Vec<String> = gusts
            .iter()
            .filter(|g| elapsed < g.seconds)
            .map(|g| format!("device{}", g.device))
            .collect();
        let message = format!(
            "{} {} ({:.0}/s){}",
            totals.readings,
            plural(totals.readings, "reading"),
            totals.readings as f64 / elapsed.max(1e-9),
            if gusting.is_empty() {
                String::new()
            } else {
                format!(", gusting: {}", gusting.join(", "))
            }
        );
        if self.on {
            if self.last.elapsed() >= Duration::from_secs(10) {
                self.last = Instant::now();
                eprintln!("simulate: {:.0} s: {message}", elapsed);
            }
        } else {
            bar.set_message(message);
        }
    }
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    bar
}

/// Set by Ctrl-C: the run stops after the batch in flight and prints its totals (Ctrl-C is
/// how an open-ended run ends, so it exits 0). Also wakes a run waiting for its next tick.
struct Interrupt {
    set: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
}

impl Interrupt {
    fn is_set(&self) -> bool {
        self.set.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn notified(&self) {
        self.wake.notified().await;
    }
}

fn interrupt_flag() -> std::sync::Arc<Interrupt> {
    let flag = std::sync::Arc::new(Interrupt {
        set: std::sync::atomic::AtomicBool::new(false),
        wake: tokio::sync::Notify::new(),
    });
    let set = flag.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            set.set.store(true, std::sync::atomic::Ordering::Relaxed);
            // A stored permit: a run not waiting right now sees it at its next wait.
            set.wake.notify_one();
        }
    });
    flag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gusts_parse_with_or_without_the_device_prefix() {
        assert_eq!(
            "device3:85:90".parse::<Gust>().unwrap(),
            Gust {
                device: 3,
                mph: 85,
                seconds: 90.0
            }
        );
        assert_eq!("2:70:1.5".parse::<Gust>().unwrap().device, 2);
        for bad in [
            "device3:85",
            "device0:85:90",
            "x:85:90",
            "3:fast:90",
            "3:85:-1",
            "3:85:9:9",
        ] {
            assert!(bad.parse::<Gust>().is_err(), "{bad}");
        }
    }

    #[test]
    fn readings_have_the_reference_layout() {
        let r = reading(4, 61, 7);
        let item = r.put_request().unwrap().item();
        assert_eq!(item["deviceID"], AttributeValue::S("device4".into()));
        assert_eq!(item["value"], AttributeValue::N("61".into()));
        assert_eq!(item["index"], AttributeValue::N("7".into()));
        assert_eq!(item["__typename"], AttributeValue::S("windspeed".into()));
        let AttributeValue::S(id) = &item["id"] else {
            panic!("id is a string")
        };
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        let AttributeValue::S(created) = &item["createdAt"] else {
            panic!("createdAt is a string")
        };
        assert_eq!(created.len(), "2026-11-21T12:00:00.542Z".len());
        assert!(created.ends_with('Z'));
        assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok());
        assert_eq!(item["updatedAt"], item["createdAt"]);
    }
}
