//! `streamwatch`: the command-line side of streamwatch. Errors are one line on stderr and
//! a non-zero exit code, never a backtrace.

mod decode;

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a usage error (sysexits' EX_USAGE); 1 and 2 have meanings of their own.
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "streamwatch",
    version,
    about = "Real-time notifications from streaming data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the user records of a Lambda Kinesis event, one JSON line each
    /// (exit 0: all decoded; 2: some records malformed; 1: unreadable input).
    Decode {
        /// The event file, or `-` for standard input.
        event: PathBuf,
        /// How to print each record's data.
        #[arg(long, value_enum, default_value = "base64")]
        data: decode::DataFormat,
    },
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
    match cli.command {
        Command::Decode { event, data } => run_decode(&event, data),
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
