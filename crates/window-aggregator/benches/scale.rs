//! What the turbine pipeline's window state costs as the load grows: 5 turbines at 1 Hz on
//! 4 shards (the reference load), 500 on 4 (×100) and 5,000 on 16 (×1,000), through the real
//! handler with the embedded store, which keeps the DynamoDB items themselves and bills
//! every write as DynamoDB does (1 KB write units per item, rounded up per write). Lambda's event source mapping is simulated per shard as the template
//! configures it (batches of up to 500, a 10 s batching window, one invocation per shard at
//! a time), with the schedule's pass every minute.
//!
//! Prints, per load: batches, write requests per batch, bytes and write units per reading,
//! CPU per 1,000 records, and the alert latency (window end → alert written, p50/p99/max)
//! against the goal (end + lateness + 70 s). Writes the figures to
//! `target/bench/window-scale.json`, which `bench/cost.py` reads.
//!
//!   cargo bench -p window-aggregator --bench scale            # all three loads, 4 minutes
//!   SCALE_MINUTES=2 cargo bench -p window-aggregator --bench scale

#[path = "../tests/common/turbines.rs"]
mod turbines;

use serde_json::json;
use streamwatch_adapters::windows::EmbeddedWindowStore;
use streamwatch_core::time::Micros;
use turbines::{BATCH_SIZE, BATCH_WINDOW, LATENESS, SEC, Stream, deps, simulate};

/// One load: `turbines` at 1 Hz on `shards`.
struct Load {
    name: &'static str,
    turbines: usize,
    shards: usize,
}

fn percentile(sorted: &[Micros], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / SEC as f64
}

fn main() {
    let minutes: usize = std::env::var("SCALE_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(4);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let loads = [
        Load {
            name: "x1",
            turbines: 5,
            shards: 4,
        },
        Load {
            name: "x100",
            turbines: 500,
            shards: 4,
        },
        Load {
            name: "x1000",
            turbines: 5_000,
            shards: 16,
        },
    ];
    println!(
        "turbine window state, {minutes} simulated minutes per load (batches of up to {BATCH_SIZE}, {}s batching window, schedule every 60 s)",
        BATCH_WINDOW / SEC
    );
    println!(
        "{:6} {:>6} {:>6} {:>9} {:>8} {:>12} {:>11} {:>10} {:>9} {:>24}",
        "load",
        "turb.",
        "shards",
        "readings",
        "batches",
        "writes/batch",
        "bytes/rdg",
        "WRU/rdg",
        "µs/1000",
        "alert latency p50/p99/max s"
    );
    let mut out = serde_json::Map::new();
    for load in &loads {
        let stream = Stream {
            turbines: load.turbines,
            shards: load.shards,
            seconds: minutes * 60,
        };
        let d = deps(EmbeddedWindowStore::new(), load.shards);
        let fig = rt.block_on(simulate(&d, &stream));
        let windows = d.store.windows();
        assert_eq!(
            windows.len(),
            load.turbines * minutes,
            "every window stored"
        );
        assert!(windows.iter().all(|w| w.closed), "every window closed");
        let meter = d.store.meter();
        let mut lat = fig.latencies.clone();
        lat.sort_unstable();
        let per = |x: u64| x as f64 / fig.readings as f64;
        let (p50, p99, max) = (
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0),
        );
        let goal = (LATENESS + 70 * SEC) as f64 / SEC as f64;
        println!(
            "{:6} {:>6} {:>6} {:>9} {:>8} {:>12.1} {:>11.1} {:>10.4} {:>9.0} {:>11.1} / {:.1} / {:.1}{}",
            load.name,
            load.turbines,
            load.shards,
            fig.readings,
            fig.batches,
            meter.writes as f64 / fig.batches as f64,
            per(meter.bytes),
            per(meter.units),
            fig.cpu.as_secs_f64() * 1e9 / fig.readings as f64,
            p50,
            p99,
            max,
            if p99 <= goal { "" } else { "  OVER the goal" }
        );
        out.insert(
            load.name.into(),
            json!({
                "turbines": load.turbines, "shards": load.shards, "minutes": minutes,
                "readings": fig.readings, "batches": fig.batches, "alerts": lat.len(),
                "write_requests": meter.writes, "bytes_written": meter.bytes, "write_units": meter.units,
                "wru_per_reading": per(meter.units), "bytes_per_reading": per(meter.bytes),
                "cpu_us_per_1000": fig.cpu.as_secs_f64() * 1e9 / fig.readings as f64,
                "alert_latency_s": {"p50": p50, "p99": p99, "max": max, "goal": goal},
            }),
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("window-scale.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&serde_json::Value::Object(out)).unwrap(),
    )
    .unwrap();
    println!("figures written to {}", path.display());
}
