//! CloudWatch metric datums, pure: identical series of a batch aggregated into datums with
//! `Values`/`Counts`, datums packed into PutMetricData requests, or rendered as Embedded
//! Metric Format log lines, all within CloudWatch's limits; and the `MetricSink` port.
//!
//! The limits are CloudWatch's, checked here so that a bad record can never make a whole
//! request fail: PutMetricData rejects a request as a whole when one datum in it is invalid.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use crate::ports::PortError;
use crate::time::Micros;

/// Distinct values (and counts) in one datum's `Values`/`Counts`.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// Datums in one PutMetricData request.
pub const MAX_DATUMS_PER_REQUEST: usize = 1_000;
/// Bytes of one PutMetricData HTTP request body (1 MB; 1,000,000 to stay clear of it).
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// Dimensions of one metric (PutMetricData and EMF).
pub const MAX_DIMENSIONS: usize = 30;
/// Characters of a dimension value.
pub const MAX_DIMENSION_VALUE_LEN: usize = 1_024;
/// Characters of a dimension name, metric name or namespace.
pub const MAX_NAME_LEN: usize = 255;
/// Metric definitions in one EMF log line (one metric directive).
pub const EMF_MAX_METRICS: usize = 100;
/// Values of one metric in one EMF log line.
pub const EMF_MAX_VALUES: usize = 100;
/// Bytes of one EMF log line (a CloudWatch Logs event).
pub const EMF_MAX_LINE_BYTES: usize = 256 * 1024;
/// How far back CloudWatch accepts a datum's timestamp: two weeks.
pub const MAX_AGE_MICROS: Micros = 14 * 24 * 3600 * 1_000_000;
/// How far ahead CloudWatch accepts a datum's timestamp: two hours.
pub const MAX_AHEAD_MICROS: Micros = 2 * 3600 * 1_000_000;

/// CloudWatch's `StandardUnit`s, spelled as the API spells them.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// A CloudWatch unit (one of `StandardUnit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Unit(&'static str);

impl Unit {
    pub const COUNT: Unit = Unit("Count");
    pub const NONE: Unit = Unit("None");

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl FromStr for Unit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UNITS
            .iter()
            .find(|u| **u == s)
            .map(|u| Unit(u))
            .ok_or_else(|| format!("not a CloudWatch unit (one of {})", UNITS.join(", ")))
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Storage resolution: high (1 s) or standard (60 s), the only two CloudWatch has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    High,
    Standard,
}

impl Resolution {
    pub fn seconds(self) -> i32 {
        match self {
            Self::High => 1,
            Self::Standard => 60,
        }
    }

    /// Start of the bucket holding `micros`, in milliseconds. Datums of one series in the
    /// same bucket are one datum: CloudWatch stores nothing finer than the resolution.
    pub fn bucket_millis(self, micros: Micros) -> i64 {
        let width = i64::from(self.seconds()) * 1_000_000;
        micros.div_euclid(width) * width / 1_000
    }
}

impl FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "1" => Ok(Self::High),
            "60" => Ok(Self::Standard),
            _ => Err("storage resolution is 1 or 60 (seconds)".into()),
        }
    }
}

/// One dimension of a metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

/// What identifies a series within a batch: everything but the values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<Dimension>,
    /// Bucket start (see [`Resolution::bucket_millis`]).
    pub timestamp_millis: i64,
    pub unit: Unit,
    pub resolution: Resolution,
}

/// One metric datum: a series and up to [`MAX_VALUES_PER_DATUM`] distinct values with counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub series: SeriesKey,
    pub values: Vec<f64>,
    pub counts: Vec<f64>,
}

impl Datum {
    /// A datum of one value seen `count` times.
    pub fn single(series: SeriesKey, value: f64, count: f64) -> Self {
        Self {
            series,
            values: vec![value],
            counts: vec![count],
        }
    }

    pub fn sum(&self) -> f64 {
        self.values
            .iter()
            .zip(&self.counts)
            .map(|(v, c)| v * c)
            .sum()
    }

    pub fn sample_count(&self) -> f64 {
        self.counts.iter().sum()
    }
}

/// Collapses the samples of a batch into datums, one per series (more when a series has
/// more than [`MAX_VALUES_PER_DATUM`] distinct values), remembering for each datum the
/// earliest source (e.g. the Kinesis parent record) that contributed to it.
#[derive(Debug, Default)]
pub struct SeriesAggregator {
    index: HashMap<SeriesKey, usize>,
    series: Vec<Series>,
}

#[derive(Debug)]
struct Series {
    key: SeriesKey,
    /// Distinct values in first-seen order, with their counts.
    values: Vec<(f64, f64)>,
    /// Position in `values` by the value's bits (-0.0 folded into 0.0).
    by_bits: HashMap<u64, usize>,
    first_source: usize,
}

impl SeriesAggregator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample. `source` is an ordinal (smaller = earlier) of what it came from.
    pub fn add(&mut self, key: SeriesKey, value: f64, source: usize) {
        let at = match self.index.entry(key) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let key = e.key().clone();
                self.series.push(Series {
                    key,
                    values: Vec::new(),
                    by_bits: HashMap::new(),
                    first_source: source,
                });
                *e.insert(self.series.len() - 1)
            }
        };
        let series = &mut self.series[at];
        series.first_source = series.first_source.min(source);
        let bits = if value == 0.0 { 0 } else { value.to_bits() };
        match series.by_bits.entry(bits) {
            Entry::Occupied(e) => series.values[*e.get()].1 += 1.0,
            Entry::Vacant(e) => {
                e.insert(series.values.len());
                series.values.push((value, 1.0));
            }
        }
    }

    /// Number of series so far.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The datums, in the order their series first appeared, each with its earliest source.
    pub fn finish(self) -> Vec<(Datum, usize)> {
        let mut out = Vec::with_capacity(self.series.len());
        for Series {
            key,
            values,
            first_source,
            ..
        } in self.series
        {
            for chunk in values.chunks(MAX_VALUES_PER_DATUM) {
                let datum = Datum {
                    series: key.clone(),
                    values: chunk.iter().map(|(v, _)| *v).collect(),
                    counts: chunk.iter().map(|(_, c)| *c).collect(),
                };
                out.push((datum, first_source));
            }
        }
        out
    }
}

/// Why a value cannot be a CloudWatch dimension value, if it cannot.
pub fn check_dimension_value(value: &str) -> Result<(), String> {
    let len = value.chars().count();
    if len == 0 || value.trim().is_empty() {
        return Err("is empty (CloudWatch needs a non-whitespace character)".into());
    }
    if len > MAX_DIMENSION_VALUE_LEN {
        return Err(format!(
            "is {len} characters (CloudWatch allows {MAX_DIMENSION_VALUE_LEN})"
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_control())
    {
        return Err(format!(
            "contains {c:?} (CloudWatch allows printable ASCII only)"
        ));
    }
    Ok(())
}

pub use crate::ascii::fold_to_ascii;

/// Why a name cannot be a dimension name, if it cannot.
pub fn check_dimension_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    if name.starts_with(':') {
        return Err("starts with ':'".into());
    }
    Ok(())
}

/// Why a metric name or namespace is invalid, if it is.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("is longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(format!("contains {c:?} (printable ASCII only)"));
    }
    Ok(())
}

/// Why a namespace is invalid, if it is (`AWS/` is reserved for AWS services).
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    check_name(namespace)?;
    if namespace.starts_with("AWS/") {
        return Err("starts with AWS/ (reserved for AWS services)".into());
    }
    if namespace.starts_with(':') {
        return Err("starts with ':'".into());
    }
    Ok(())
}

/// Why a value cannot be published, if it cannot: CloudWatch rejects NaN, infinities and
/// magnitudes outside 2^-260..2^360 (other than zero).
pub fn check_value(value: f64) -> Result<(), String> {
    let magnitude = value.abs();
    if !value.is_finite() || magnitude > 2f64.powi(360) {
        return Err(format!("{value} is out of CloudWatch's range (±2^360)"));
    }
    if magnitude != 0.0 && magnitude < 2f64.powi(-260) {
        return Err(format!("{value} is too small for CloudWatch (2^-260)"));
    }
    Ok(())
}

/// Why a timestamp cannot be published at `now`, if it cannot: CloudWatch takes datums
/// from two weeks back to two hours ahead.
pub fn check_timestamp(micros: Micros, now: Micros) -> Result<(), String> {
    if micros < now.saturating_sub(MAX_AGE_MICROS) {
        return Err(format!(
            "{} is more than two weeks old (CloudWatch rejects it)",
            crate::time::format_micros(micros)
        ));
    }
    if micros > now.saturating_add(MAX_AHEAD_MICROS) {
        return Err(format!(
            "{} is more than two hours ahead (CloudWatch rejects it)",
            crate::time::format_micros(micros)
        ));
    }
    Ok(())
}

/// One PutMetricData request: a namespace and the datums (indices into the slice packed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan {
    pub namespace: String,
    pub datums: Vec<usize>,
}

/// Longest key of a datum member in the query protocol, e.g.
/// `MetricData.member.1000.Dimensions.member.30.Value=` (the SDK pinned here speaks it).
const KEY_BYTES: usize = 52;

/// An upper bound of the bytes one datum adds to a form-encoded PutMetricData body: every
/// string counted as if each byte were percent-encoded, every key at its longest.
pub fn request_bytes(datum: &Datum) -> usize {
    let s = &datum.series;
    let field = |value_len: usize| KEY_BYTES + value_len + 1;
    let mut n = field(3 * s.name.len());
    for d in &s.dimensions {
        n += field(3 * d.name.len()) + field(3 * d.value.len());
    }
    n += field(3 * "2026-11-21T12:00:00.000Z".len());
    n += field(3 * s.unit.as_str().len());
    n += field(2);
    // f64 as the SDK prints it: at most 24 characters.
    n += datum.values.len() * 2 * field(24);
    n
}

/// Packs datums into PutMetricData requests: one namespace per request, at most
/// [`MAX_DATUMS_PER_REQUEST`] datums and [`MAX_REQUEST_BYTES`] each, datums kept in their
/// order (so earlier sources land in earlier requests).
pub fn pack_requests(datums: &[Datum]) -> Vec<RequestPlan> {
    // Action, Version and the namespace key, with the namespace fully percent-encoded.
    let base = |ns: &str| 64 + 3 * ns.len();
    let mut open: Vec<(RequestPlan, usize)> = Vec::new();
    let mut done = Vec::new();
    for (i, datum) in datums.iter().enumerate() {
        let ns = &datum.series.namespace;
        let bytes = request_bytes(datum);
        let slot = open.iter().position(|(p, _)| &p.namespace == ns);
        if let Some(at) = slot {
            let (plan, size) = &open[at];
            if plan.datums.len() >= MAX_DATUMS_PER_REQUEST || size + bytes > MAX_REQUEST_BYTES {
                done.push(open.remove(at).0);
            }
        }
        match open.iter_mut().find(|(p, _)| &p.namespace == ns) {
            Some((plan, size)) => {
                plan.datums.push(i);
                *size += bytes;
            }
            None => open.push((
                RequestPlan {
                    namespace: ns.clone(),
                    datums: vec![i],
                },
                base(ns) + bytes,
            )),
        }
    }
    done.extend(open.into_iter().map(|(p, _)| p));
    // Requests in the order of their first datum: the earliest sources go out first.
    done.sort_by_key(|p| p.datums[0]);
    done
}

/// One Embedded Metric Format log line and the datums it carries (indices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmfLine {
    pub text: String,
    pub datums: Vec<usize>,
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn json_number(v: f64) -> String {
    serde_json::Value::from(v).to_string()
}

/// Renders datums as EMF log lines: one line per (namespace, timestamp, dimensions) group
/// and round of values, each with at most [`EMF_MAX_METRICS`] metrics, [`EMF_MAX_VALUES`]
/// values per metric and [`EMF_MAX_LINE_BYTES`] bytes. EMF has no counts, so a value seen
/// `n` times is written `n` times.
///
/// Dimension names must not collide with metric names or `_aws` (they share the line's
/// top-level members); configuration checks that.
pub fn emf_lines(datums: &[Datum]) -> Vec<EmfLine> {
    type GroupKey<'a> = (&'a str, i64, &'a [Dimension]);
    let mut groups: Vec<(GroupKey<'_>, Vec<usize>)> = Vec::new();
    let mut group_at: HashMap<GroupKey<'_>, usize> = HashMap::new();
    for (i, d) in datums.iter().enumerate() {
        let s = &d.series;
        let key = (
            s.namespace.as_str(),
            s.timestamp_millis,
            s.dimensions.as_slice(),
        );
        let at = *group_at.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(i);
    }

    let mut lines = Vec::new();
    for ((namespace, timestamp, dimensions), members) in groups {
        // Metrics of the group by name (a series split over several datums is one metric).
        let mut metrics: Vec<(&SeriesKey, Vec<f64>, Vec<usize>)> = Vec::new();
        for &i in &members {
            let d = &datums[i];
            let at = match metrics.iter().position(|(k, _, _)| k.name == d.series.name) {
                Some(at) => at,
                None => {
                    metrics.push((&d.series, Vec::new(), Vec::new()));
                    metrics.len() - 1
                }
            };
            let (_, samples, sources) = &mut metrics[at];
            for (v, c) in d.values.iter().zip(&d.counts) {
                let n = c.round().max(0.0) as usize;
                samples.extend(std::iter::repeat_n(*v, n));
            }
            sources.push(i);
        }
        let dim_names: Vec<String> = dimensions.iter().map(|d| json_string(&d.name)).collect();
        let dim_members: String = dimensions
            .iter()
            .map(|d| format!(",{}:{}", json_string(&d.name), json_string(&d.value)))
            .collect();
        let head = |defs: &str| {
            format!(
                "{{\"_aws\":{{\"Timestamp\":{timestamp},\"CloudWatchMetrics\":[{{\"Namespace\":{},\"Dimensions\":[[{}]],\"Metrics\":[{defs}]}}]}}{dim_members}",
                json_string(namespace),
                dim_names.join(",")
            )
        };
        let fixed = head("").len() + 1;
        let rounds = metrics
            .iter()
            .map(|(_, s, _)| s.len().div_ceil(EMF_MAX_VALUES))
            .max()
            .unwrap_or(0);
        for round in 0..rounds {
            let mut defs: Vec<String> = Vec::new();
            let mut values: Vec<String> = Vec::new();
            let mut carried: Vec<usize> = Vec::new();
            let mut size = fixed;
            let mut flush =
                |defs: &mut Vec<String>, values: &mut Vec<String>, carried: &mut Vec<usize>| {
                    if defs.is_empty() {
                        return;
                    }
                    let mut text = head(&defs.join(","));
                    for v in values.iter() {
                        text.push(',');
                        text.push_str(v);
                    }
                    text.push('}');
                    carried.sort_unstable();
                    carried.dedup();
                    lines.push(EmfLine {
                        text,
                        datums: std::mem::take(carried),
                    });
                    defs.clear();
                    values.clear();
                };
            for (series, samples, sources) in &metrics {
                let start = round * EMF_MAX_VALUES;
                if start >= samples.len() {
                    continue;
                }
                let chunk = &samples[start..samples.len().min(start + EMF_MAX_VALUES)];
                let def = format!(
                    "{{\"Name\":{},\"Unit\":{},\"StorageResolution\":{}}}",
                    json_string(&series.name),
                    json_string(series.unit.as_str()),
                    series.resolution.seconds()
                );
                let nums: Vec<String> = chunk.iter().map(|v| json_number(*v)).collect();
                let value = format!("{}:[{}]", json_string(&series.name), nums.join(","));
                let grow = def.len() + value.len() + 2;
                if defs.len() == EMF_MAX_METRICS || size + grow > EMF_MAX_LINE_BYTES {
                    flush(&mut defs, &mut values, &mut carried);
                    size = fixed;
                }
                size += grow;
                defs.push(def);
                values.push(value);
                carried.extend(sources.iter().copied());
            }
            flush(&mut defs, &mut values, &mut carried);
        }
    }
    lines
}

/// What a sink did with a set of datums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Requests (PutMetricData calls, or EMF log lines) the datums needed.
    pub requests: usize,
    /// Attempts made, retries included.
    pub attempts: usize,
    /// Datums durably published.
    pub datums: usize,
}

/// One request that failed for good (after the sink's retries).
#[derive(Debug)]
pub struct RequestFailure {
    /// The datums it carried (indices into the published slice).
    pub datums: Vec<usize>,
    pub error: PortError,
}

/// Some datums could not be published; the others were.
#[derive(Debug, thiserror::Error)]
#[error("{} of {} metric requests failed; first: {}", .failures.len(), .published.requests, .failures.first().map(|f| f.error.to_string()).unwrap_or_default())]
pub struct PublishError {
    pub published: Published,
    pub failures: Vec<RequestFailure>,
}

/// Where metric datums go: CloudWatch PutMetricData, EMF log lines, or memory.
pub trait MetricSink: Send + Sync {
    /// Publishes every datum, retrying transient failures; on error, says which datums
    /// (by request) are not durable and whether retrying later could help.
    fn publish(
        &self,
        datums: &[Datum],
    ) -> impl Future<Output = Result<Published, PublishError>> + Send;
}

/// A shared sink (the local pipeline gives several functions the same one).
impl<T: MetricSink> MetricSink for std::sync::Arc<T> {
    fn publish(
        &self,
        datums: &[Datum],
    ) -> impl Future<Output = Result<Published, PublishError>> + Send {
        (**self).publish(datums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, dims: &[(&str, &str)], ts: i64) -> SeriesKey {
        SeriesKey {
            namespace: "ns".into(),
            name: name.into(),
            dimensions: dims
                .iter()
                .map(|(n, v)| Dimension {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            timestamp_millis: ts,
            unit: Unit::COUNT,
            resolution: Resolution::High,
        }
    }

    #[test]
    fn identical_series_collapse_and_keep_their_earliest_source() {
        let mut agg = SeriesAggregator::new();
        agg.add(key("m", &[("city", "Dallas")], 1000), 1.0, 3);
        agg.add(key("m", &[("city", "Austin")], 1000), 1.0, 4);
        agg.add(key("m", &[("city", "Dallas")], 1000), 1.0, 1);
        agg.add(key("m", &[("city", "Dallas")], 2000), 1.0, 5);
        agg.add(key("m", &[("city", "Dallas")], 1000), 2.5, 6);
        agg.add(key("m", &[("city", "Dallas")], 1000), -0.0, 6);
        agg.add(key("m", &[("city", "Dallas")], 1000), 0.0, 6);
        let out = agg.finish();
        assert_eq!(out.len(), 3);
        let (dallas, first) = &out[0];
        assert_eq!(*first, 1);
        assert_eq!(dallas.values, vec![1.0, 2.5, -0.0]);
        assert_eq!(dallas.counts, vec![2.0, 1.0, 2.0]);
        assert_eq!(dallas.sum(), 4.5);
        assert_eq!(dallas.sample_count(), 5.0);
        assert_eq!(out[1].1, 4);
        assert_eq!(out[2].1, 5);
    }

    #[test]
    fn more_than_150_distinct_values_spill_into_further_datums() {
        let mut agg = SeriesAggregator::new();
        for v in 0..400 {
            agg.add(key("m", &[], 0), f64::from(v % 320), v as usize);
        }
        let out = agg.finish();
        assert_eq!(out.len(), 3);
        assert!(
            out.iter()
                .all(|(d, _)| d.values.len() <= MAX_VALUES_PER_DATUM)
        );
        assert!(out.iter().all(|(d, _)| d.values.len() == d.counts.len()));
        let count: f64 = out.iter().map(|(d, _)| d.sample_count()).sum();
        let sum: f64 = out.iter().map(|(d, _)| d.sum()).sum();
        assert_eq!(count, 400.0);
        assert_eq!(sum, (0..400).map(|v| f64::from(v % 320)).sum::<f64>());
        assert!(out.iter().all(|(_, s)| *s == 0));
    }

    #[test]
    fn buckets_floor_to_the_resolution() {
        assert_eq!(Resolution::High.bucket_millis(1_999_999), 1_000);
        assert_eq!(Resolution::Standard.bucket_millis(119_000_000), 60_000);
        assert_eq!(Resolution::High.bucket_millis(-1), -1_000);
    }

    #[test]
    fn requests_hold_at_most_1000_datums_of_one_namespace() {
        let mut datums: Vec<Datum> = (0..2_500)
            .map(|i| Datum::single(key("m", &[("k", &i.to_string())], 0), 1.0, 1.0))
            .collect();
        let mut other = key("ops", &[], 0);
        other.namespace = "ops".into();
        datums.insert(10, Datum::single(other, 3.0, 1.0));
        let plans = pack_requests(&datums);
        assert_eq!(plans.len(), 4);
        assert_eq!(plans[0].datums.len(), 1_000);
        assert_eq!(plans[1].namespace, "ops");
        assert_eq!(plans[1].datums, vec![10]);
        let mut all: Vec<usize> = plans.iter().flat_map(|p| p.datums.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..datums.len()).collect::<Vec<_>>());
        for p in &plans {
            assert!(
                p.datums
                    .iter()
                    .all(|&i| datums[i].series.namespace == p.namespace)
            );
        }
    }

    #[test]
    fn requests_stay_under_one_megabyte() {
        let huge = "x".repeat(MAX_DIMENSION_VALUE_LEN);
        let dims: Vec<(String, String)> = (0..MAX_DIMENSIONS)
            .map(|i| (format!("d{i}"), huge.clone()))
            .collect();
        let dims: Vec<(&str, &str)> = dims.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let datums: Vec<Datum> = (0..40)
            .map(|i| Datum::single(key("m", &dims, i), 1.0, 1.0))
            .collect();
        let plans = pack_requests(&datums);
        assert!(plans.len() > 1);
        for p in &plans {
            let bytes: usize = p.datums.iter().map(|&i| request_bytes(&datums[i])).sum();
            assert!(bytes <= MAX_REQUEST_BYTES, "{bytes}");
        }
    }

    #[test]
    fn emf_lines_respect_the_limits_and_carry_every_sample() {
        let mut datums = vec![
            Datum {
                series: key("m", &[("city", "Dallas")], 5_000),
                values: vec![1.0, 2.0],
                counts: vec![180.0, 70.0],
            },
            Datum::single(key("n", &[("city", "Dallas")], 5_000), 7.0, 1.0),
        ];
        for i in 0..150 {
            datums.push(Datum::single(key(&format!("op{i}"), &[], 9_000), 1.0, 1.0));
        }
        let lines = emf_lines(&datums);
        let mut samples: HashMap<String, Vec<f64>> = HashMap::new();
        for line in &lines {
            assert!(line.text.len() <= EMF_MAX_LINE_BYTES);
            let v: serde_json::Value = serde_json::from_str(&line.text).unwrap();
            let directive = &v["_aws"]["CloudWatchMetrics"][0];
            let metrics = directive["Metrics"].as_array().unwrap();
            assert!(!metrics.is_empty() && metrics.len() <= EMF_MAX_METRICS);
            for m in metrics {
                let name = m["Name"].as_str().unwrap();
                let vals = v[name].as_array().unwrap();
                assert!(vals.len() <= EMF_MAX_VALUES);
                samples
                    .entry(name.to_owned())
                    .or_default()
                    .extend(vals.iter().map(|x| x.as_f64().unwrap()));
            }
            if line.datums.contains(&0) {
                assert_eq!(v["city"], "Dallas");
                assert_eq!(directive["Dimensions"], serde_json::json!([["city"]]));
                assert_eq!(v["_aws"]["Timestamp"], 5_000);
            }
        }
        assert_eq!(samples["m"].len(), 250);
        assert_eq!(samples["m"].iter().sum::<f64>(), 180.0 + 140.0);
        assert_eq!(samples["n"], vec![7.0]);
        assert_eq!(samples.len(), 152);
        // m needs three rounds of 100; the 150 ops metrics need two lines.
        assert_eq!(lines.len(), 3 + 2);
    }

    #[test]
    fn emf_lines_split_by_size() {
        let huge = "y".repeat(MAX_DIMENSION_VALUE_LEN);
        let dims: Vec<(String, String)> = (0..MAX_DIMENSIONS)
            .map(|i| (format!("d{i}"), huge.clone()))
            .collect();
        let dims: Vec<(&str, &str)> = dims.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let datums: Vec<Datum> = (0..100)
            .map(|i| Datum {
                series: key(&format!("metric-{i}-{}", "z".repeat(240)), &dims, 0),
                values: (0..100)
                    .map(|v| -f64::from(v + 1) * std::f64::consts::PI * 1e-7)
                    .collect(),
                counts: vec![1.0; 100],
            })
            .collect();
        let lines = emf_lines(&datums);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.text.len() <= EMF_MAX_LINE_BYTES));
        let carried: usize = lines.iter().map(|l| l.datums.len()).sum();
        assert_eq!(carried, 100);
    }

    #[test]
    fn checks_follow_cloudwatch_rules() {
        assert!(check_dimension_value("Dallas").is_ok());
        assert!(check_dimension_value("").is_err());
        assert!(check_dimension_value("  ").is_err());
        assert!(check_dimension_value("Cañon City").is_err());
        assert_eq!(fold_to_ascii("Cañon City"), "Canon City");
        assert_eq!(fold_to_ascii("Ærøskøbing – 東京"), "AEroskobing - ??");
        assert!(matches!(
            fold_to_ascii("Dallas"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(check_dimension_value("a\nb").is_err());
        assert!(check_dimension_value(&"x".repeat(1024)).is_ok());
        assert!(
            check_dimension_value(&"x".repeat(1025))
                .unwrap_err()
                .contains("1025 characters")
        );
        assert!(check_namespace("AWS/Lambda").is_err());
        assert!(check_namespace("streamwatch/accidents").is_ok());
        assert!(check_dimension_name(":x").is_err());
        assert!(check_value(f64::NAN).is_err());
        assert!(check_value(1e200).is_err());
        assert!(check_value(1e-200).is_err());
        assert!(check_value(0.0).is_ok() && check_value(-3.5).is_ok());
        let now = 1_795_262_400_000_000;
        assert!(check_timestamp(now - MAX_AGE_MICROS, now).is_ok());
        assert!(check_timestamp(now - MAX_AGE_MICROS - 1, now).is_err());
        assert!(check_timestamp(now + MAX_AHEAD_MICROS + 1, now).is_err());
        assert_eq!("Count".parse::<Unit>().unwrap(), Unit::COUNT);
        assert_eq!(
            "Bytes/Second".parse::<Unit>().unwrap().as_str(),
            "Bytes/Second"
        );
        assert!("count".parse::<Unit>().is_err());
        assert_eq!("60".parse::<Resolution>().unwrap(), Resolution::Standard);
        assert!("5".parse::<Resolution>().is_err());
    }
}
