//! CloudWatch PutMetricData sink: the datums of a batch packed into as few requests as the
//! API's limits allow (core `metrics::pack_requests`), sent concurrently with a small bound,
//! each retried with exponential backoff and full jitter while the failure is transient.
//!
//! The SDK's own retries are turned off for the client built by [`CloudWatchSink::new`], so
//! this module's policy is the only one (3 SDK attempts x 4 of ours would be 12 calls per
//! request under throttling, and no test could see them).
//!
//! `aws-sdk-cloudwatch` is pinned to 1.99, the last release on the query protocol: 1.100+
//! speaks RPCv2-CBOR, which moto (the test emulator) does not understand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use futures::StreamExt;
use streamwatch_core::PortError;
pub use streamwatch_core::backoff::Backoff;
use streamwatch_core::metrics::{
    Datum, MetricSink, PublishError, Published, RequestFailure, RequestPlan, pack_requests,
};

use crate::aws::classify;

/// How a failed request is retried by default: 4 attempts, pauses of up to 0.1, 0.2 and
/// 0.4 s.
pub const DEFAULT_RETRY: Backoff =
    Backoff::new(4, Duration::from_millis(100), Duration::from_secs(2));

/// Default deadline of one PutMetricData attempt. A request is at most 1 MB (the API's
/// limit, which `pack_requests` keeps); CloudWatch answers one in well under a second, and
/// 1 MB crosses even a 1 MB/s link in a second. Without a deadline a hung connection would
/// hold the invocation until the function's timeout and the whole batch would be delivered
/// again; with it the request is retried, and one request's worst case under the default
/// policy (4 x 10 s + backoffs of at most 0.1 + 0.2 + 0.4 s) stays inside the template's
/// 60 s. Emulators are slower: moto takes 3-9 s for one 1,000-datum request here, so
/// `streamwatch dev run` raises it to the function's timeout.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests of one batch in flight at once. CloudWatch's PutMetricData quota is per
/// account and region (thousands of TPS); a small bound keeps one invocation from
/// throttling its neighbours while still overlapping the round trips.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// CloudWatch PutMetricData sink.
#[derive(Debug)]
pub struct CloudWatchSink {
    client: Client,
    concurrency: usize,
    retry: Backoff,
    requests: AtomicUsize,
    calls: AtomicUsize,
}

impl CloudWatchSink {
    /// Builds the client from the shared SDK config, with the SDK's retries off (this
    /// sink retries, see the module docs) and the config's timeouts as they are.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self::from_client(Client::from_conf(Self::client_config(config).build()))
    }

    /// As [`Self::new`], with a deadline on each attempt: what the function runs, with
    /// [`ATTEMPT_TIMEOUT`] unless configured otherwise.
    pub fn with_attempt_timeout(config: &aws_config::SdkConfig, timeout: Duration) -> Self {
        let conf = Self::client_config(config)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(timeout)
                    .build(),
            )
            .build();
        Self::from_client(Client::from_conf(conf))
    }

    fn client_config(config: &aws_config::SdkConfig) -> aws_sdk_cloudwatch::config::Builder {
        aws_sdk_cloudwatch::config::Builder::from(config).retry_config(RetryConfig::disabled())
    }

    /// Uses a client as given (its own retry settings stay in force).
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            concurrency: DEFAULT_CONCURRENCY,
            retry: DEFAULT_RETRY,
            requests: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        }
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn with_retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// PutMetricData requests this sink has made so far (a retried request counts once).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// PutMetricData HTTP calls this sink has made so far, retries included.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    async fn send(&self, plan: &RequestPlan, datums: &[Datum]) -> (usize, Result<(), PortError>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let data: Vec<MetricDatum> = plan.datums.iter().map(|&i| sdk_datum(&datums[i])).collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let result = self
                .client
                .put_metric_data()
                .namespace(&plan.namespace)
                .set_metric_data(Some(data.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return (attempt as usize, Ok(())),
                Err(err) => classify("cloudwatch.PutMetricData", err),
            };
            if !err.is_transient() || !self.retry.retries_after(attempt) {
                return (attempt as usize, Err(err));
            }
            let delay = self.retry.delay(attempt);
            tracing::warn!(
                attempt,
                datums = plan.datums.len(),
                delay_ms = delay.as_millis() as u64,
                error = %err,
                "PutMetricData failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

/// The SDK datum for one of ours: always `Values`/`Counts`, which also carries a single value.
pub fn sdk_datum(datum: &Datum) -> MetricDatum {
    let s = &datum.series;
    let dimensions = s
        .dimensions
        .iter()
        .map(|d| Dimension::builder().name(&d.name).value(&d.value).build())
        .collect();
    MetricDatum::builder()
        .metric_name(&s.name)
        .set_dimensions(Some(dimensions))
        .timestamp(aws_smithy_types::DateTime::from_millis(s.timestamp_millis))
        .unit(StandardUnit::from(s.unit.as_str()))
        .storage_resolution(s.resolution.seconds())
        .set_values(Some(datum.values.clone()))
        .set_counts(Some(datum.counts.clone()))
        .build()
}

impl MetricSink for CloudWatchSink {
    async fn publish(&self, datums: &[Datum]) -> Result<Published, PublishError> {
        let plans = pack_requests(datums);
        // The futures are built up front (they do nothing until polled): a `map` closure
        // over borrowed plans trips the compiler's higher-ranked `Send` check here.
        let sends: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                let send = self.send(plan, datums);
                async move {
                    let (attempts, result) = send.await;
                    (i, attempts, result)
                }
            })
            .collect();
        let results: Vec<(usize, usize, Result<(), PortError>)> = futures::stream::iter(sends)
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut published = Published {
            requests: plans.len(),
            ..Published::default()
        };
        let mut failures = Vec::new();
        for (i, attempts, result) in results {
            published.attempts += attempts;
            match result {
                Ok(()) => published.datums += plans[i].datums.len(),
                Err(error) => failures.push(RequestFailure {
                    datums: plans[i].datums.clone(),
                    error,
                }),
            }
        }
        if failures.is_empty() {
            Ok(published)
        } else {
            failures.sort_by_key(|f| f.datums.first().copied());
            Err(PublishError {
                published,
                failures,
            })
        }
    }
}
