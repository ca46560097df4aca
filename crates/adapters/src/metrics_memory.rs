//! Embedded (in-memory) metric sink for tests and the local pipeline: packs datums into the
//! very requests the CloudWatch sink would send, so its request count is the number of
//! PutMetricData calls the batch would cost, and keeps what it "published" for reading
//! back. Failures can be injected to exercise a handler's retry semantics.

use std::collections::BTreeMap;
use std::sync::Mutex;

use streamwatch_core::metrics::{
    Datum, Dimension, MetricSink, PublishError, Published, RequestFailure, pack_requests,
};
use streamwatch_core::{PortError, Retry};

/// In-memory metric sink.
#[derive(Debug, Default)]
pub struct EmbeddedMetricSink {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Requests accepted: namespace and datums.
    accepted: Vec<(String, Vec<Datum>)>,
    /// Requests made, accepted or not.
    requests: usize,
    /// Injected failure: skip this many requests, then fail this many.
    fail: Option<(usize, usize, Retry)>,
}

/// Sum and sample count of one series at one timestamp, as CloudWatch would report them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub sum: f64,
    pub sample_count: f64,
}

impl EmbeddedMetricSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// From the next request on, lets `skip` requests through, then fails `count` with the
    /// given retry class (the failure a real sink reports after its own retries).
    pub fn fail_requests(&self, skip: usize, count: usize, retry: Retry) {
        self.lock().fail = Some((skip, count, retry));
    }

    /// PutMetricData requests made so far (accepted or failed).
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// Every datum accepted, in order.
    pub fn datums(&self) -> Vec<Datum> {
        self.lock()
            .accepted
            .iter()
            .flat_map(|(_, d)| d.iter().cloned())
            .collect()
    }

    /// Accepted requests: namespace and number of datums.
    pub fn accepted_requests(&self) -> Vec<(String, usize)> {
        self.lock()
            .accepted
            .iter()
            .map(|(ns, d)| (ns.clone(), d.len()))
            .collect()
    }

    /// Statistics of every series (namespace, name, dimensions, timestamp in ms), summed
    /// over every datum accepted, as GetMetricStatistics at the storage resolution would.
    pub fn series(&self) -> BTreeMap<(String, String, Vec<Dimension>, i64), Stats> {
        let mut out: BTreeMap<_, Stats> = BTreeMap::new();
        for (ns, datums) in &self.lock().accepted {
            for d in datums {
                let s = &d.series;
                let key = (
                    ns.clone(),
                    s.name.clone(),
                    s.dimensions.clone(),
                    s.timestamp_millis,
                );
                let stats = out.entry(key).or_default();
                stats.sum += d.sum();
                stats.sample_count += d.sample_count();
            }
        }
        out
    }

    /// Sum and sample count of a metric over every timestamp, for the given dimensions
    /// exactly (`[]` for a metric without dimensions).
    pub fn stats(&self, namespace: &str, name: &str, dimensions: &[(&str, &str)]) -> Stats {
        let mut want: Vec<Dimension> = dimensions
            .iter()
            .map(|(n, v)| Dimension {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect();
        want.sort();
        let mut out = Stats::default();
        for (ns, datums) in &self.lock().accepted {
            for d in datums
                .iter()
                .filter(|d| ns == namespace && d.series.name == name)
            {
                let mut dims = d.series.dimensions.clone();
                dims.sort();
                if dims == want {
                    out.sum += d.sum();
                    out.sample_count += d.sample_count();
                }
            }
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An injected failure.
#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

impl MetricSink for EmbeddedMetricSink {
    async fn publish(&self, datums: &[Datum]) -> Result<Published, PublishError> {
        let plans = pack_requests(datums);
        let mut state = self.lock();
        let mut published = Published {
            requests: plans.len(),
            attempts: plans.len(),
            datums: 0,
        };
        let mut failures = Vec::new();
        for plan in plans {
            state.requests += 1;
            let fail = match &mut state.fail {
                Some((skip, _, _)) if *skip > 0 => {
                    *skip -= 1;
                    None
                }
                Some((_, count, retry)) if *count > 0 => {
                    *count -= 1;
                    Some(*retry)
                }
                _ => None,
            };
            match fail {
                Some(retry) => failures.push(RequestFailure {
                    datums: plan.datums,
                    error: PortError {
                        operation: "embedded.PutMetricData",
                        retry,
                        source: Box::new(Injected),
                    },
                }),
                None => {
                    published.datums += plan.datums.len();
                    let taken = plan.datums.iter().map(|&i| datums[i].clone()).collect();
                    state.accepted.push((plan.namespace, taken));
                }
            }
        }
        if failures.is_empty() {
            Ok(published)
        } else {
            Err(PublishError {
                published,
                failures,
            })
        }
    }
}
