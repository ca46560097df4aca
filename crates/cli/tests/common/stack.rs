//! What the `dev` end-to-end tests share: the function binaries beside the CLI under test,
//! the SDK config for the emulator, and the metrics an independent count over the CSV
//! expects against what CloudWatch holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_config::Region;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use streamwatch_tests::workspace_root;

pub async fn config(endpoint: &str) -> aws_config::SdkConfig {
    streamwatch_adapters::aws::defaults()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await
}

pub const FUNCTIONS: [&str; 3] = ["metrics-publisher", "window-aggregator", "alerter"];

fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return newest;
    };
    for e in entries.flatten() {
        let path = e.path();
        let t = if path.is_dir() {
            newest_source(&path)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// The function binaries beside the CLI under test (same profile). `cargo test
/// --workspace` builds them; they are (re)built here only when missing or older than the
/// sources, so this test alone also works after a change to a function.
pub fn function_binaries() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_streamwatch"))
        .parent()
        .expect("the binary has a directory")
        .to_path_buf();
    let root = workspace_root();
    let mut dirs = vec![
        root.join("crates/core/src"),
        root.join("crates/adapters/src"),
    ];
    dirs.extend(
        FUNCTIONS
            .iter()
            .map(|f| root.join("crates").join(f).join("src")),
    );
    let sources = dirs
        .iter()
        .map(|d| newest_source(d))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let fresh = FUNCTIONS.iter().all(|f| {
        std::fs::metadata(dir.join(f))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= sources)
    });
    if !fresh {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.arg("build").current_dir(&root);
        if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            build.arg("--release");
        }
        for f in FUNCTIONS {
            build.args(["-p", f]);
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the function binaries failed");
    }
    dir
}

pub type Series = (String, String, String);

/// CloudWatch takes ASCII dimension values only; metrics-publisher documents that it drops
/// Latin diacritics (`San José` → `San Jose`) and turns any other non-ASCII into `?`.
pub fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ñ' => 'n',
            'ç' => 'c',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect()
}

/// Severity > 2 rows counted by (Severity, City, County): the metrics-publisher defaults.
pub fn expected_metrics(csv_path: &Path) -> (BTreeMap<Series, f64>, Vec<String>) {
    let mut reader = csv::Reader::from_path(csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, severity, city, county) = (col("ID"), col("Severity"), col("City"), col("County"));
    let mut series = BTreeMap::new();
    let mut severe = Vec::new();
    for row in reader.records() {
        let row = row.unwrap();
        let sev: u32 = row[severity].parse().unwrap();
        if sev > 2 {
            *series
                .entry((
                    row[severity].to_owned(),
                    ascii(&row[city]),
                    ascii(&row[county]),
                ))
                .or_insert(0.0) += 1.0;
        }
        if sev >= 4 {
            severe.push(row[id].to_owned());
        }
    }
    severe.sort();
    (series, severe)
}

/// Every `streamwatch/accidents` series in CloudWatch with its Sum over the last hours.
pub async fn cloudwatch_sums(cw: &aws_sdk_cloudwatch::Client) -> BTreeMap<Series, f64> {
    let mut metrics = Vec::new();
    let mut token = None;
    loop {
        let page = cw
            .list_metrics()
            .namespace("streamwatch/accidents")
            .metric_name("accidents")
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        metrics.extend(page.metrics.unwrap_or_default());
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut out = BTreeMap::new();
    for m in metrics {
        let dims: BTreeMap<String, String> = m
            .dimensions()
            .iter()
            .map(|d| {
                (
                    d.name().unwrap_or_default().to_owned(),
                    d.value().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let key = (
            dims["severity_accident"].clone(),
            dims["city_accident"].clone(),
            dims["county_accident"].clone(),
        );
        if out.contains_key(&key) {
            continue;
        }
        let stats = cw
            .get_metric_statistics()
            .namespace("streamwatch/accidents")
            .metric_name("accidents")
            .set_dimensions(Some(
                dims.iter()
                    .map(|(n, v)| Dimension::builder().name(n).value(v).build())
                    .collect(),
            ))
            .start_time(DateTime::from_secs(now - 3 * 3600))
            .end_time(DateTime::from_secs(now + 3600))
            .period(3600)
            .statistics(Statistic::Sum)
            .send()
            .await
            .unwrap();
        let sum = stats
            .datapoints()
            .iter()
            .map(|p| p.sum().unwrap_or(0.0))
            .sum::<f64>();
        out.insert(key, sum);
    }
    out
}
