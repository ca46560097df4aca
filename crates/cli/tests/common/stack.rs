//! What the `dev` end-to-end tests share: `dev up` and `dev run` as the tests run them, the
//! SDK config for the emulator, and the metrics an independent count over the CSV expects
//! against what CloudWatch holds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_config::Region;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};

use super::{streamwatch, text};

/// `dev up` on `endpoint` from the workspace's template.yaml with `parameters`
/// (`NAME=VALUE`), its state in `state`; the test fails unless it exits 0.
pub async fn dev_up(endpoint: &str, state: &Path, parameters: &[&str]) {
    let template = streamwatch_tests::workspace_root().join("template.yaml");
    let mut args = vec![
        "dev",
        "up",
        "--endpoint-url",
        endpoint,
        "--template",
        template.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    for p in parameters {
        args.extend(["--parameter", p]);
    }
    let up = streamwatch(&args).await;
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
}

/// `dev run` with the binaries in `bin_dir` until idle for `until_idle` seconds (never
/// before the last window can close), schedules every 2 s and shards polled every 250 ms;
/// the test fails unless it exits 0 within `limit`. Its output, for the assertions.
pub async fn dev_run(
    state: &Path,
    bin_dir: &Path,
    until_idle: &str,
    limit: Duration,
) -> std::process::Output {
    let run = tokio::time::timeout(
        limit,
        streamwatch(&[
            "dev",
            "run",
            "--state-dir",
            state.to_str().unwrap(),
            "--bin-dir",
            bin_dir.to_str().unwrap(),
            "--until-idle",
            until_idle,
            "--schedule-every",
            "2",
            "--poll-ms",
            "250",
        ]),
    )
    .await
    .expect("dev run stops when idle");
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    run
}

pub async fn config(endpoint: &str) -> aws_config::SdkConfig {
    streamwatch_adapters::aws::defaults()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await
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
