//! `streamwatch`: the command-line side of streamwatch. Errors are one line on stderr and
//! a non-zero exit code, never a backtrace.

mod alerts;
mod archive_source;
mod aws_args;
mod backoff;
mod decode;
mod dev;
mod failure;
mod replay;
mod silence;
mod simulate;

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use failure::{EXIT_USAGE, Failure};

#[derive(Parser)]
#[command(
    name = "streamwatch",
    version,
    about = "Real-time notifications from streaming data"
)]
struct Cli {
    /// On failure, also print the full error (the AWS SDK's request and response detail);
    /// setting RUST_LOG does the same.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run both reference pipelines end to end on this machine (embedded backends, the real
    /// handlers), print the notifications as they are sent, and write an HTML report.
    Demo(DemoArgs),
    /// Print the user records of a Lambda Kinesis event, one JSON line each
    /// (exit 0: all decoded; 2: some records malformed; 1: unreadable input).
    Decode {
        /// The event file, or `-` for standard input.
        event: PathBuf,
        /// How to print each record's data.
        #[arg(long, value_enum, default_value = "base64")]
        data: decode::DataFormat,
    },
    /// Produce the reference readings into a real (or emulated) AWS account.
    #[command(subcommand)]
    Simulate(Simulate),
    /// Replay recorded data into a real (or emulated) AWS account.
    #[command(subcommand)]
    Replay(Replay),
    /// The stack on a local AWS API emulator: `dev up` creates it from template.yaml,
    /// `dev run` runs the functions' binaries on its streams.
    #[command(subcommand)]
    Dev(dev::Dev),
    /// Notifications that could not be sent: `alerts list --pending` shows them, `alerts
    /// redrive` sends them (against AWS or the local dev stack).
    #[command(subcommand)]
    Alerts(alerts::Alerts),
    /// Silences: `silence add --rule R --match key=device3 --for 2h` holds back matching
    /// alerts' notifications (recorded, not sent); `silence list`, `silence expire ID`.
    #[command(subcommand)]
    Silence(silence::SilenceCommand),
}

#[derive(Subcommand)]
enum Simulate {
    /// Write wind-speed readings to the readings table as the reference simulator did
    /// (exit 0: done; 1: AWS failure; 64: bad arguments).
    Turbines(simulate::TurbinesArgs),
}

#[derive(Subcommand)]
enum Replay {
    /// Put the rows of a US-Accidents CSV into a Kinesis stream as the reference producer's
    /// JSON, KPL-aggregated (exit 0: all rows sent; 2: some rows bad and skipped; 1: AWS or
    /// input failure, with the --start-row to resume from; 64: bad arguments).
    Accidents(replay::AccidentsArgs),
}

/// `word` for one, `word`s for any other count ("1 record", "500 records").
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// Runs an async command on a fresh runtime and turns its outcome into the exit code.
fn run_async(
    command: impl std::future::Future<Output = Result<(), Failure>>,
    verbose: bool,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("streamwatch: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.print(verbose);
            ExitCode::from(failure.code)
        }
    }
}

/// Which sources the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DemoSource {
    Turbines,
    Accidents,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Turbines (device1..deviceN), one reading per second each.
    #[arg(long, default_value_t = 5)]
    turbines: usize,
    /// Simulated minutes of turbine readings.
    #[arg(long, default_value_t = 30)]
    minutes: u32,
    /// Calm readings are uniform in [min, max) mph, as the reference simulator's.
    #[arg(long, default_value_t = 25)]
    min: u64,
    #[arg(long, default_value_t = 70)]
    max: u64,
    /// Same seed, same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Simulated seconds per real second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    speed: f64,
    /// Shards of the readings stream.
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// Which sources to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [DemoSource::Turbines, DemoSource::Accidents])]
    sources: Vec<DemoSource>,
    /// Accident CSV in the US-Accidents layout (default: the shipped 500-row sample).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Where to write the HTML report.
    #[arg(long, default_value = "target/streamwatch-demo.html")]
    report: PathBuf,
    /// Where to write the raw layer: both streams and the rejects in the S3 layout the
    /// archive's Firehose delivery streams make (docs/archive.md).
    #[arg(long, default_value = "target/demo-archive")]
    archive_dir: PathBuf,
    /// The turbine a silence holds back for the whole run (its alerts are recorded as
    /// silenced, not sent); `none`: no silence.
    #[arg(long, default_value = "device4")]
    silence: String,
    /// Print the summary as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

fn run_demo(args: DemoArgs) -> ExitCode {
    let fail = |(code, message): (u8, String)| {
        eprintln!("streamwatch: {message}");
        ExitCode::from(code)
    };
    let opts = match demo_options(&args) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail((1, format!("cannot start the runtime: {e}"))),
    };
    let mut progress = io::stderr();
    if !args.json {
        // (With --json, stdout is kept for the JSON document.)
        let _ = writeln!(
            progress,
            "streamwatch demo: {} turbines x {} min (seed {}), accidents from {}",
            opts.turbines,
            opts.minutes,
            opts.seed,
            args.csv
                .as_ref()
                .map_or("the shipped sample".into(), |p| p.display().to_string())
        );
    }
    let result = runtime.block_on(streamwatch_local::demo::run(&opts, &mut progress));
    let (summary, report) = match result {
        Ok(r) => r,
        Err(e) => {
            let code = if matches!(e, streamwatch_local::demo::DemoError::Options(_)) {
                EXIT_USAGE
            } else {
                1
            };
            return fail((code, e.to_string()));
        }
    };
    match demo_outputs(&args, &summary, &report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail((1, message)),
    }
}

/// The demo's options from its arguments; an error is (exit code, message).
fn demo_options(args: &DemoArgs) -> Result<streamwatch_local::demo::Options, (u8, String)> {
    let csv = match &args.csv {
        None => None,
        Some(path) => match std::fs::read(path) {
            // Checked before the banner, so a wrong file is one line.
            Ok(b) if args.sources.contains(&DemoSource::Accidents) => {
                if let Err(e) = streamwatch_local::accidents::check_header(&b) {
                    return Err((EXIT_USAGE, format!("{}: {e}", path.display())));
                }
                Some(b)
            }
            Ok(b) => Some(b),
            Err(e) => return Err((1, format!("cannot read {}: {e}", path.display()))),
        },
    };
    if args.turbines == 0 || args.minutes == 0 || args.min >= args.max || args.shards == 0 {
        return Err((
            EXIT_USAGE,
            "need --turbines >= 1, --minutes >= 1, --min < --max, --shards >= 1".into(),
        ));
    }
    if !(args.speed >= 0.0 && args.speed.is_finite()) {
        return Err((EXIT_USAGE, "--speed must be a non-negative number".into()));
    }
    Ok(streamwatch_local::demo::Options {
        turbines: args.turbines,
        minutes: args.minutes,
        min: args.min,
        max: args.max,
        seed: args.seed,
        speed: args.speed,
        shards: args.shards,
        turbines_on: args.sources.contains(&DemoSource::Turbines),
        accidents_on: args.sources.contains(&DemoSource::Accidents),
        csv,
        archive_dir: Some(args.archive_dir.clone()),
        silence: Some(args.silence.clone()).filter(|s| s != "none"),
        ..Default::default()
    })
}

/// Writes the HTML report, then prints the summary (a table, or JSON with --json).
fn demo_outputs(
    args: &DemoArgs,
    summary: &streamwatch_local::demo::Summary,
    report: &streamwatch_local::report::DemoReport,
) -> Result<(), String> {
    if let Some(dir) = args.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&args.report, streamwatch_local::demo::html(report))
        .map_err(|e| format!("cannot write {}: {e}", args.report.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "\nSummary ({:.1} s wall clock)\n{}",
            summary.wall_seconds,
            streamwatch_local::demo::summary_table(summary)
        );
        println!("Report: {}", args.report.display());
        println!(
            "Raw layer: {} records in {} GZIP objects under {}/ (docs/archive.md)",
            summary.archived_records,
            summary.archive_objects,
            args.archive_dir.display()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("streamwatch: {}", first.trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let verbose = cli.verbose || std::env::var_os("RUST_LOG").is_some();
    match cli.command {
        Command::Demo(args) => run_demo(args),
        Command::Decode { event, data } => run_decode(&event, data),
        Command::Simulate(Simulate::Turbines(args)) => run_async(simulate::run(args), verbose),
        Command::Replay(Replay::Accidents(args)) => run_async(replay::run(args), verbose),
        Command::Dev(command) => run_async(dev::run(command), verbose),
        Command::Alerts(command) => run_async(alerts::run(command), verbose),
        Command::Silence(command) => run_async(silence::run(command), verbose),
    }
}

fn run_decode(path: &std::path::Path, format: decode::DataFormat) -> ExitCode {
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        io::stdin().read_to_end(&mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            eprintln!("streamwatch: cannot read {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut err = io::stderr().lock();
    let result = decode::decode(&bytes, format, &mut out, &mut err);
    let flushed = out.flush();
    match (result, flushed) {
        (Ok(summary), Ok(())) if summary.malformed == 0 => ExitCode::SUCCESS,
        (Ok(summary), Ok(())) => {
            eprintln!(
                "streamwatch: {} malformed Kinesis record(s) skipped; {} user records decoded",
                summary.malformed, summary.user_records
            );
            ExitCode::from(2)
        }
        (Err(decode::DecodeError::Io(e)), _) if e.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        (Err(e), _) => {
            eprintln!("streamwatch: {}: {e}", path.display());
            ExitCode::from(1)
        }
        (_, Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        (_, Err(e)) => {
            eprintln!("streamwatch: cannot write output: {e}");
            ExitCode::from(1)
        }
    }
}
