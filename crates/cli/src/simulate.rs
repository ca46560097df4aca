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

use crate::Failure;
use crate::aws_args::AwsArgs;
use crate::backoff::Backoff;

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
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many seconds (without --count or --duration: run until Ctrl-C).
    #[arg(long)]
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
    pub throttled_retried: u64,
}

/// Runs the simulator; the final totals line goes to stdout.
pub async fn run(args: TurbinesArgs) -> Result<(), Failure> {
    validate(&args)?;
    let config = args.aws.load().await?;
    let table = args
        .aws
        .resolve(
            &config,
            args.table.as_deref(),
            "--table",
            "ReadingsTableName",
        )
        .await?;
    let client = aws_sdk_dynamodb::Client::new(&config);
    // Without --count the run is open-ended, so it needs a pace; with it, as fast as possible.
    let rate = args.rate.or(if args.count.is_none() {
        Some(1.0)
    } else {
        None
    });
    let total = args.count.map(|c| c * u64::from(args.devices));
    let bar = progress_bar(total);
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
            if args.count.is_some_and(|c| tick >= c) {
                break;
            }
            if let Some(rate) = rate {
                let due = Duration::from_secs_f64(tick as f64 / rate);
                if args.duration.is_some_and(|d| due.as_secs_f64() >= d) {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep_until((started + due).into()) => {}
                    () = interrupted.notified() => {}
                }
            } else if args
                .duration
                .is_some_and(|d| started.elapsed().as_secs_f64() >= d)
            {
                break;
            }
            if interrupted.is_set() {
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
                        &client,
                        &table,
                        std::mem::take(&mut batch),
                        &mut totals,
                        args.max_attempts,
                    )
                    .await?;
                    bar.set_position(totals.readings);
                }
            }
            // Paced runs write each tick's readings at their time, not when a batch fills.
            if rate.is_some() && !batch.is_empty() {
                write_batch(
                    &client,
                    &table,
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
                &client,
                &table,
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
    println!(
        "wrote {} readings of {} turbines to {table} in {seconds:.1} s ({:.0} readings/s): {} BatchWriteItem calls, {} unprocessed items and {} throttled calls retried",
        totals.readings,
        args.devices,
        totals.readings as f64 / seconds.max(1e-9),
        totals.calls,
        totals.unprocessed_retried,
        totals.throttled_retried,
    );
    outcome
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
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
    totals: &mut Totals,
    max_attempts: u32,
) -> Result<(), Failure> {
    let mut backoff = Backoff::new(max_attempts);
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
                let e = streamwatch_adapters::aws::classify("BatchWriteItem", e);
                if !e.is_transient() {
                    return Err(Failure::runtime(format!(
                        "BatchWriteItem on {table}: {}",
                        e.source
                    )));
                }
                totals.throttled_retried += 1;
                if !backoff.wait().await {
                    return Err(Failure::runtime(format!(
                        "BatchWriteItem on {table} still failing after {} attempts: {}",
                        backoff.attempts(),
                        e.source
                    )));
                }
            }
        }
    }
    Ok(())
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} readings ({per_sec})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {pos} readings ({per_sec})")
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
