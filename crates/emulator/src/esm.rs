//! An embedded event source mapping: feeds a shard's records to a handler the way Lambda
//! does for Kinesis and DynamoDB streams — in order, in batches, one batch per shard at a
//! time, restarting from the lowest reported `batchItemFailures` sequence number, bisecting
//! a batch whose invocation failed, giving up after the retry limit and sending what was
//! given up to an on-failure destination (here: returned in the stats).
//!
//! Used by the local demo, the chaos tests and `streamwatch dev`, so all three exercise the
//! same retry semantics the functions meet in production.

use std::future::Future;

use aws_lambda_events::event::streams::{DynamoDbEventResponse, KinesisEventResponse};

/// The sequence numbers a partial-batch response lists (`batchItemFailures`).
fn failed_items(items: impl IntoIterator<Item = Option<String>>) -> Invocation {
    Invocation::Response {
        failed: items.into_iter().flatten().collect(),
    }
}

impl From<KinesisEventResponse> for Invocation {
    fn from(response: KinesisEventResponse) -> Self {
        failed_items(
            response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier),
        )
    }
}

impl From<DynamoDbEventResponse> for Invocation {
    fn from(response: DynamoDbEventResponse) -> Self {
        failed_items(
            response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier),
        )
    }
}

/// How Lambda polls one shard for a function (the template's event source settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingConfig {
    pub batch_size: usize,
    /// Retries of a batch after its first attempt (Lambda's `MaximumRetryAttempts`).
    pub maximum_retry_attempts: u32,
    /// Split a batch whose invocation failed and retry the halves (`BisectBatchOnFunctionError`).
    pub bisect_on_error: bool,
}

impl Default for MappingConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            maximum_retry_attempts: 10,
            bisect_on_error: true,
        }
    }
}

/// What one invocation of the function returned, as the event source mapping sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// All records done, or the sequence numbers listed as `batchItemFailures`.
    Response { failed: Vec<String> },
    /// The invocation failed as a whole (an error, a panic, a timeout).
    Error(String),
}

/// What happened while draining a shard.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MappingStats {
    pub invocations: u64,
    /// Invocations that re-delivered records already delivered before.
    pub retries: u64,
    pub bisections: u64,
    /// Records given up on (Lambda's on-failure destination), in order.
    pub given_up: Vec<String>,
}

/// Drains `records` (one shard, in order) through `invoke`. `seq` gives each record's
/// sequence number, the identifier `batchItemFailures` uses.
pub async fn drain_shard<R, F, Fut>(
    records: &[R],
    seq: impl Fn(&R) -> &str,
    config: MappingConfig,
    mut invoke: F,
) -> MappingStats
where
    R: Clone,
    F: FnMut(Vec<R>) -> Fut,
    Fut: Future<Output = Invocation>,
{
    let mut stats = MappingStats::default();
    let mut next = 0;
    while next < records.len() {
        let end = (next + config.batch_size.max(1)).min(records.len());
        next = process(records, next, end, &seq, config, &mut invoke, &mut stats, 0).await;
    }
    stats
}

/// Processes `records[start..end]` until it is done or given up on; returns where the shard
/// continues (always `end`: a batch is finished one way or the other before the next).
#[allow(clippy::too_many_arguments)]
async fn process<R, F, Fut>(
    records: &[R],
    mut start: usize,
    end: usize,
    seq: &impl Fn(&R) -> &str,
    config: MappingConfig,
    invoke: &mut F,
    stats: &mut MappingStats,
    mut attempts: u32,
) -> usize
where
    R: Clone,
    F: FnMut(Vec<R>) -> Fut,
    Fut: Future<Output = Invocation>,
{
    let mut delivered_before = attempts > 0;
    while start < end {
        stats.invocations += 1;
        if delivered_before {
            stats.retries += 1;
        }
        delivered_before = true;
        match invoke(records[start..end].to_vec()).await {
            Invocation::Response { failed } if failed.is_empty() => return end,
            Invocation::Response { failed } => {
                // Lambda resumes from the lowest failed sequence number of the batch; an
                // identifier that is not in the batch fails the whole batch.
                let lowest = records[start..end]
                    .iter()
                    .position(|r| failed.iter().any(|f| f == seq(r)));
                if let Some(i) = lowest {
                    start += i;
                }
            }
            Invocation::Error(_) if config.bisect_on_error && end - start > 1 => {
                if attempts >= config.maximum_retry_attempts {
                    break;
                }
                stats.bisections += 1;
                let mid = start + (end - start) / 2;
                // Each half carries the attempts spent so far, as Lambda counts them.
                Box::pin(process(
                    records,
                    start,
                    mid,
                    seq,
                    config,
                    invoke,
                    stats,
                    attempts + 1,
                ))
                .await;
                Box::pin(process(
                    records,
                    mid,
                    end,
                    seq,
                    config,
                    invoke,
                    stats,
                    attempts + 1,
                ))
                .await;
                return end;
            }
            Invocation::Error(_) => {}
        }
        if attempts >= config.maximum_retry_attempts {
            break;
        }
        attempts += 1;
    }
    stats
        .given_up
        .extend(records[start..end].iter().map(|r| seq(r).to_owned()));
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn recs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{:03}", i)).collect()
    }

    #[tokio::test]
    async fn batches_in_order_and_resumes_from_the_lowest_failure() {
        let records = recs(10);
        let seen = RefCell::new(Vec::new());
        let mut fail_once = true;
        let stats = drain_shard(
            &records,
            |r| r.as_str(),
            MappingConfig {
                batch_size: 4,
                ..Default::default()
            },
            |batch: Vec<String>| {
                seen.borrow_mut().push(batch.clone());
                let failed = if fail_once && batch[0] == "004" {
                    fail_once = false;
                    vec!["006".to_owned(), "005".to_owned()]
                } else {
                    vec![]
                };
                async move { Invocation::Response { failed } }
            },
        )
        .await;
        assert_eq!(
            seen.into_inner(),
            vec![
                recs(4),
                recs(8)[4..].to_vec(),
                recs(8)[5..].to_vec(),
                recs(10)[8..].to_vec()
            ]
        );
        assert_eq!(stats.retries, 1);
        assert!(stats.given_up.is_empty());
    }

    #[tokio::test]
    async fn bisects_to_isolate_a_poison_record_then_gives_it_up() {
        let records = recs(8);
        let stats = drain_shard(
            &records,
            |r| r.as_str(),
            MappingConfig {
                batch_size: 8,
                maximum_retry_attempts: 5,
                bisect_on_error: true,
            },
            |batch: Vec<String>| {
                let poisoned = batch.iter().any(|r| r == "005");
                async move {
                    if poisoned {
                        Invocation::Error("boom".into())
                    } else {
                        Invocation::Response { failed: vec![] }
                    }
                }
            },
        )
        .await;
        assert_eq!(stats.given_up, vec!["005".to_owned()]);
        assert!(stats.bisections >= 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_retry_limit() {
        let records = recs(3);
        let calls = RefCell::new(0);
        let stats = drain_shard(
            &records,
            |r| r.as_str(),
            MappingConfig {
                batch_size: 10,
                maximum_retry_attempts: 2,
                bisect_on_error: false,
            },
            |_batch: Vec<String>| {
                *calls.borrow_mut() += 1;
                async { Invocation::Error("down".into()) }
            },
        )
        .await;
        assert_eq!(calls.into_inner(), 3, "first attempt + 2 retries");
        assert_eq!(stats.given_up, records);
    }
}
