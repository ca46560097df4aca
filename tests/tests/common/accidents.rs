//! The accident scenario of the metrics-publisher tests: rows on a KPL-aggregated shard and
//! a plain one, with the metric sums and alerts they must produce, and the readers of what
//! CloudWatch holds afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_cloudwatch::types::{Dimension as SdkDimension, Statistic};
use aws_smithy_types::DateTime;
use streamwatch_core::alert::keyed_event_alert_id;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};
use streamwatch_core::kpl::Aggregator;
use streamwatch_core::time::format_micros;

use super::Rng;

/// 2026-11-21T12:30:00Z: "now" for the handler (CloudWatch's timestamp window).
pub const NOW: i64 = 1_795_264_200_000_000;
/// The minute the records' `Txn_Timestamp`s fall in.
pub const MINUTE: i64 = NOW - 120_000_000;
pub const NAMESPACE: &str = "streamwatch/accidents";
pub const RULE: &str = "accident-severity";
pub const CITIES: [(&str, &str); 6] = [
    ("Dallas", "Dallas"),
    ("Houston", "Harris"),
    ("Austin", "Travis"),
    ("San José", "Santa Clara"),
    ("Miami", "Miami-Dade"),
    ("Columbus", "Franklin"),
];

/// The input and what it must produce.
pub struct Input {
    pub shards: Vec<Vec<KinesisEventRecord>>,
    /// (severity, city as published, county) -> number of selected records.
    pub truth: BTreeMap<(String, String, String), f64>,
    pub alert_ids: BTreeSet<String>,
    /// Selected user records per parent sequence number.
    pub selected: HashMap<String, u64>,
    pub user_records: usize,
}

pub fn kinesis_record(shard: usize, seq: u64, key: &str, data: Vec<u8>) -> KinesisEventRecord {
    let sequence_number = format!("4959033827149025660855969253836157109592157{seq:013}");
    KinesisEventRecord {
        kinesis: KinesisRecord {
            partition_key: key.to_owned(),
            sequence_number: sequence_number.clone(),
            data: data.into(),
            approximate_arrival_timestamp: (MINUTE / 1_000_000) as f64,
            ..Default::default()
        },
        event_id: Some(format!("{}:{sequence_number}", shard_name(shard))),
        ..Default::default()
    }
}

pub fn shard_name(shard: usize) -> String {
    format!("shardId-{shard:012}")
}

/// `n` accident rows, half on a KPL-aggregated shard, half on a plain one.
pub fn accidents(rng: &mut Rng, n: usize) -> Input {
    let mut input = Input {
        shards: vec![Vec::new(), Vec::new()],
        truth: BTreeMap::new(),
        alert_ids: BTreeSet::new(),
        selected: HashMap::new(),
        user_records: n,
    };
    let mut aggregator = Aggregator::new(2_000);
    // User records waiting in the aggregator: (severity, city index, sub-sequence).
    let mut pending: Vec<(u64, usize, usize)> = Vec::new();
    let mut seqs = [0u64; 2];
    let flush = |input: &mut Input,
                 seqs: &mut [u64; 2],
                 pending: &mut Vec<(u64, usize, usize)>,
                 data: Vec<u8>,
                 key: &str| {
        seqs[0] += 1;
        let record = kinesis_record(0, seqs[0], key, data);
        let seq = record.kinesis.sequence_number.clone();
        for (severity, city, row) in pending.drain(..) {
            account(input, &seq, row, severity, city);
        }
        input.shards[0].push(record);
    };
    for i in 0..n {
        let severity = 1 + rng.below(4);
        let city = rng.below(CITIES.len() as u64) as usize;
        let (name, county) = CITIES[city];
        let row = serde_json::json!({
            "ID": format!("A-{i}"), "Source": "chaos", "Severity": severity,
            "Start_Time": "2026-11-21T12:27:00", "City": name, "County": county, "State": "TX",
            "Description": format!("accident {i} on I-{}", rng.below(99)),
            "Txn_Timestamp": format_micros(MINUTE + rng.below(60) as i64 * 1_000_000),
        })
        .to_string()
        .into_bytes();
        let key = format!("A-{i}");
        if i % 2 == 0 {
            if let Some(done) = aggregator.add(&key, None, &row).expect("row fits") {
                flush(
                    &mut input,
                    &mut seqs,
                    &mut pending,
                    done.data,
                    &done.partition_key,
                );
            }
            pending.push((severity, city, i));
        } else {
            seqs[1] += 1;
            let record = kinesis_record(1, seqs[1], &key, row);
            let seq = record.kinesis.sequence_number.clone();
            account(&mut input, &seq, i, severity, city);
            input.shards[1].push(record);
        }
    }
    if let Some(done) = aggregator.finish() {
        flush(
            &mut input,
            &mut seqs,
            &mut pending,
            done.data,
            &done.partition_key,
        );
    }
    input
}

/// What one user record must leave behind.
pub fn account(input: &mut Input, seq: &str, row: usize, severity: u64, city: usize) {
    let (name, county) = CITIES[city];
    if severity > 2 {
        let published = name.replace('é', "e");
        *input
            .truth
            .entry((severity.to_string(), published, county.to_owned()))
            .or_insert(0.0) += 1.0;
        *input.selected.entry(seq.to_owned()).or_insert(0) += 1;
    }
    if severity >= 4 {
        input
            .alert_ids
            .insert(keyed_event_alert_id(RULE, &format!("A-{row}")));
    }
}

/// Samples of the accidents namespace in a PutMetricData request body (query protocol):
/// per datum the sum of its `Counts`, else the number of its `Values`, else 1.
pub fn samples_in_request(body: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(body);
    let pairs: Vec<(&str, &str)> = text
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let namespace = NAMESPACE.replace('/', "%2F");
    if !pairs
        .iter()
        .any(|(k, v)| *k == "Namespace" && *v == namespace)
    {
        return 0.0;
    }
    // datum index -> (sum of counts, number of values, has a single value)
    let mut datums: BTreeMap<&str, (f64, f64, bool)> = BTreeMap::new();
    for (k, v) in &pairs {
        let Some(rest) = k.strip_prefix("MetricData.member.") else {
            continue;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        let d = datums.entry(index).or_default();
        if field.starts_with("Counts.member.") {
            d.0 += v.parse::<f64>().unwrap_or(0.0);
        } else if field.starts_with("Values.member.") {
            d.1 += 1.0;
        } else if field == "Value" {
            d.2 = true;
        }
    }
    datums
        .values()
        .map(|&(counts, values, single)| {
            if counts > 0.0 {
                counts
            } else if values > 0.0 {
                values
            } else if single {
                1.0
            } else {
                0.0
            }
        })
        .sum()
}

pub async fn series_sum(cw: &aws_sdk_cloudwatch::Client, dims: &(String, String, String)) -> f64 {
    let dimension = |n: &str, v: &str| SdkDimension::builder().name(n).value(v).build();
    let out = cw
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("accidents")
        .dimensions(dimension("severity_accident", &dims.0))
        .dimensions(dimension("city_accident", &dims.1))
        .dimensions(dimension("county_accident", &dims.2))
        .start_time(DateTime::from_millis(MINUTE / 1_000))
        .end_time(DateTime::from_millis((MINUTE + 60_000_000) / 1_000))
        .period(60)
        .statistics(Statistic::Sum)
        .send()
        .await
        .expect("GetMetricStatistics from moto");
    out.datapoints
        .unwrap_or_default()
        .iter()
        .map(|p| p.sum.unwrap_or(0.0))
        .sum()
}
