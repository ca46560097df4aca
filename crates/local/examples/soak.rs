//! The soak runner (kept out of the `streamwatch` CLI): the embedded pipeline under a fixed
//! load for hours of simulated time, see `streamwatch_local::soak`. Prints progress every
//! ten simulated minutes and one JSON line of results; exits 1 when a count is not exact.
//!
//! `cargo run --release -p streamwatch-local --example soak -- --turbines 1000 --minutes 120`
//! (`bench/soak.sh` does this).

use std::process::ExitCode;

use streamwatch_local::soak::{SoakOptions, run};

fn parse(args: &[String]) -> Result<SoakOptions, String> {
    let mut opts = SoakOptions::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--turbines" => opts.turbines = n()? as usize,
            "--minutes" => opts.minutes = n()? as u32,
            "--shards" => opts.shards = n()? as usize,
            "--accidents-every" => opts.accidents_every_minutes = n()? as u32,
            "--seed" => opts.seed = n()?,
            other => {
                return Err(format!(
                    "unknown option {other} (--turbines --minutes --shards --accidents-every --seed)"
                ));
            }
        }
    }
    Ok(opts)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(64);
        }
    };
    let report = match run(&opts, |line| eprintln!("{line}")).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(1);
        }
    };
    let json = serde_json::json!({
        "turbines": report.turbines,
        "simulated_minutes": report.simulated_minutes,
        "readings": report.readings,
        "change_records": report.change_records,
        "accident_records": report.accident_records,
        "accident_loops": report.accident_loops,
        "lambda_invocations": report.lambda_invocations,
        "wall_seconds": (report.wall_seconds * 10.0).round() / 10.0,
        "readings_per_second": report.readings_per_second().round(),
        "rss_kb_start": report.memory_start.rss_kb,
        "peak_rss_kb_start": report.memory_start.hwm_kb,
        "rss_kb_end": report.memory_end.rss_kb,
        "peak_rss_kb_end": report.memory_end.hwm_kb,
        "windows_checked": report.windows_checked,
        "windows_expected": report.windows_expected,
        "firing_alerts": report.firing_alerts,
        "firing_windows_expected": report.firing_windows_expected,
        "accidents_counted": report.accidents_counted,
        "accidents_selected_expected": report.accidents_selected_expected,
        "event_alerts": report.event_alerts,
        "event_alerts_expected": report.event_alerts_expected,
        "notifications": report.notifications,
        "exact": report.exact(),
        "mismatches": report.window_mismatches,
    });
    println!("{json}");
    if report.exact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
