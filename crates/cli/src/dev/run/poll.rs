//! The emulated event source mappings of `dev run`: one poller per shard per mapping reads
//! the stream, applies the filters, gathers batches (batch size, batching window, Lambda's
//! payload limit) and hands each to `streamwatch_emulator::esm` for Lambda's retry
//! semantics; what is given up goes to the on-failure queue as Lambda's invocation record.
//! Checkpoints move past each delivered batch, so a second `dev run` continues.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamwatch_emulator::esm::{self, Invocation, MappingConfig};
use streamwatch_emulator::filter::Filters;
use streamwatch_emulator::stream::{Polled, StreamReader};

use super::sandbox::Function;
use super::{Holding, Shared, now_text, resume};
use crate::Failure;
use crate::dev::template::Context;
use crate::dev::{Stack, sdk_error};

/// Lambda's synchronous invocation payload limit.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// One emulated event source mapping.
pub(super) struct Mapping {
    pub function: Arc<Function>,
    event: String,
    pub source: StreamReader,
    pub config: MappingConfig,
    pub window: Duration,
    pub filters: Filters,
    /// On-failure SQS queue URL.
    on_failure: Option<String>,
    /// `FunctionResponseTypes` has `ReportBatchItemFailures`.
    report_failures: bool,
    /// `MaximumRecordAgeInSeconds` (None: -1 or unset, records never expire).
    max_record_age: Option<Duration>,
}

/// The mapping of a `Kinesis` or `DynamoDB` event (`kind`) of `function`, from the event's
/// properties `p`.
pub(super) fn mapping(
    ctx: &Context,
    stack: &Stack,
    config: &aws_config::SdkConfig,
    function: &Arc<Function>,
    event: &str,
    kind: &str,
    p: &Value,
) -> Result<Mapping, Failure> {
    let what = format!("{} event {event}", function.name);
    let arn = ctx
        .string(&p["Stream"])
        .map_err(|e| Failure::usage(format!("{what}: Stream: {e}")))?;
    let source = if kind == "Kinesis" {
        let name = stack
            .resources
            .values()
            .find(|r| r.attributes.get("Arn") == Some(&arn))
            .map(|r| r.reference.clone())
            .ok_or_else(|| Failure::usage(format!("{what}: {arn} is no local stream")))?;
        StreamReader::Kinesis {
            client: aws_sdk_kinesis::Client::new(config),
            stream_name: name,
            stream_arn: arn,
        }
    } else {
        StreamReader::DynamoDb {
            client: aws_sdk_dynamodbstreams::Client::new(config),
            stream_arn: arn,
        }
    };
    if p["ParallelizationFactor"].as_u64().is_some_and(|n| n > 1) {
        eprintln!(
            "dev run: {what}: ParallelizationFactor > 1 is emulated as 1 (one batch per shard at a time)"
        );
    }
    let on_failure = on_failure_queue(ctx, stack, &what, p)?;
    Ok(Mapping {
        function: function.clone(),
        event: event.to_owned(),
        source,
        config: MappingConfig {
            // Lambda's default batch size for both stream types.
            batch_size: p["BatchSize"].as_u64().unwrap_or(100) as usize,
            // Lambda's default is -1 (retry until the record expires); a local run needs an end.
            maximum_retry_attempts: p["MaximumRetryAttempts"]
                .as_u64()
                .map_or(10_000, |n| n as u32),
            bisect_on_error: p["BisectBatchOnFunctionError"].as_bool().unwrap_or(false),
        },
        window: Duration::from_secs(p["MaximumBatchingWindowInSeconds"].as_u64().unwrap_or(0)),
        filters: Filters::from_criteria(&p["FilterCriteria"])
            .map_err(|e| Failure::usage(format!("{what}: FilterCriteria: {e}")))?,
        on_failure,
        report_failures: p["FunctionResponseTypes"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures")),
        max_record_age: p["MaximumRecordAgeInSeconds"]
            .as_u64()
            .map(Duration::from_secs),
    })
}

/// The local queue URL of the event's `OnFailure` destination (None: none, or not local).
fn on_failure_queue(
    ctx: &Context,
    stack: &Stack,
    what: &str,
    p: &Value,
) -> Result<Option<String>, Failure> {
    let d = &p["DestinationConfig"]["OnFailure"]["Destination"];
    if d.is_null() {
        return Ok(None);
    }
    let arn = ctx
        .string(d)
        .map_err(|e| Failure::usage(format!("{what}: OnFailure: {e}")))?;
    let url = stack
        .resources
        .values()
        .find(|r| r.kind == "AWS::SQS::Queue" && r.attributes.get("Arn") == Some(&arn))
        .map(|r| r.reference.clone());
    if url.is_none() {
        eprintln!(
            "dev run: {what}: on-failure destination {arn} is no local queue; given-up batches are only logged"
        );
    }
    Ok(url)
}

/// Starts a poller on every shard of every mapping.
pub(super) async fn start(
    tasks: &mut tokio::task::JoinSet<()>,
    shared: &Arc<Shared>,
    mappings: &[Arc<Mapping>],
) -> Result<(), Failure> {
    for m in mappings {
        let shards = m.source.shards().await.map_err(Failure::runtime)?;
        println!(
            "dev run: {} <- {} ({} shards, batch {}, window {} s{})",
            m.function.name,
            m.source.arn(),
            shards.len(),
            m.config.batch_size,
            m.window.as_secs_f64(),
            if m.filters.is_empty() {
                ""
            } else {
                ", filtered"
            }
        );
        for shard in shards {
            tasks.spawn(poll_shard(shared.clone(), m.clone(), shard));
        }
    }
    Ok(())
}

/// One shard's poller: where it reads, what it holds, and how far it has read.
struct Poller<'a> {
    shared: &'a Shared,
    m: &'a Arc<Mapping>,
    shard: &'a str,
    /// The checkpoint's key.
    key: String,
    /// The `invokeIdentityArn` of the Kinesis records.
    role: String,
    iterator: Option<String>,
    pending: VecDeque<Polled>,
    /// When the oldest pending record was read (the batching window runs from then).
    first_at: Option<Instant>,
    /// The last record read, filtered out or not: where the checkpoint goes once nothing
    /// is pending.
    last_read: Option<String>,
}

/// What one read came to.
enum Read {
    /// This many records (0 also when the batch is full or the shard closed).
    Got(usize),
    /// The read failed and the shard was reopened at its checkpoint.
    Reopened,
    /// Stopping, or a closed shard read to its end and delivered.
    Done,
}

/// Reads a shard forever, gathering batches as the mapping says and delivering them.
async fn poll_shard(shared: Arc<Shared>, m: Arc<Mapping>, shard: String) {
    let key = format!("{}|{}|{}", m.function.name, m.source.arn(), shard);
    let role = format!(
        "arn:aws:iam::{}:role/{}-role",
        shared.account, m.function.name
    );
    let Ok(iterator) = resume(&shared, &m.source, &shard, &key).await else {
        return;
    };
    let mut p = Poller {
        shared: &shared,
        m: &m,
        shard: &shard,
        key,
        role,
        iterator,
        pending: VecDeque::new(),
        first_at: None,
        last_read: None,
    };
    let mut holding = Holding::new(&shared);
    loop {
        if shared.stopping() {
            return;
        }
        let got = match p.read().await {
            Read::Got(n) => n,
            Read::Reopened => continue,
            Read::Done => return,
        };
        holding.set(!p.pending.is_empty());
        if p.deliver_due().await {
            holding.set(!p.pending.is_empty());
            shared.touch();
            continue;
        }
        if got == 0 {
            tokio::time::sleep(shared.poll).await;
        }
    }
}

impl Poller<'_> {
    /// Reads up to what the batch still has room for; filtered-out records are only noted.
    async fn read(&mut self) -> Read {
        let room = self.m.config.batch_size.saturating_sub(self.pending.len());
        let Some(it) = self.iterator.clone().filter(|_| room > 0) else {
            return if self.iterator.is_none() && self.pending.is_empty() {
                Read::Done
            } else {
                Read::Got(0)
            };
        };
        let limit = room.min(10_000) as i32;
        let (region, role) = (&self.shared.region, &self.role);
        match self
            .m
            .source
            .read(self.shard, &it, limit, region, role)
            .await
        {
            Ok((records, next)) => {
                self.iterator = next;
                let got = records.len();
                for r in records {
                    self.last_read = Some(r.seq.clone());
                    if self.m.filters.matches(&r.record) {
                        self.pending.push_back(r);
                    }
                }
                if got > 0 {
                    self.shared.touch();
                }
                Read::Got(got)
            }
            Err(e) => {
                eprintln!(
                    "dev run: {} {}: {e}; reopening the shard",
                    self.m.function.name, self.shard
                );
                tokio::time::sleep(self.shared.poll).await;
                // The reopened iterator starts after the checkpoint: what is pending
                // will be read again.
                self.pending.clear();
                self.last_read = None;
                self.first_at = None;
                match resume(self.shared, &self.m.source, self.shard, &self.key).await {
                    Ok(it) => {
                        self.iterator = it;
                        Read::Reopened
                    }
                    Err(_) => Read::Done,
                }
            }
        }
    }

    /// Delivers a batch when one is due (full, its batching window passed, or the shard
    /// ended) and moves the checkpoint; true when it delivered.
    async fn deliver_due(&mut self) -> bool {
        if self.pending.is_empty() {
            // Everything read was filtered out: the mapping moves past it all the same.
            if let Some(seq) = self.last_read.take() {
                self.shared.checkpoints.set(&self.key, &seq);
            }
            return false;
        }
        let first = *self.first_at.get_or_insert_with(Instant::now);
        let full = self.pending.len() >= self.m.config.batch_size;
        if !(full || first.elapsed() >= self.m.window || self.iterator.is_none()) {
            return false;
        }
        let batch = take_batch(&mut self.pending, self.m.config.batch_size);
        let batch_end = batch.last().map(|r| r.seq.clone());
        deliver(self.shared, self.m, self.shard, batch).await;
        self.first_at = (!self.pending.is_empty()).then(Instant::now);
        // Past the batch, or past everything read when nothing is left (records
        // filtered out after the batch count as done).
        let done = if self.pending.is_empty() {
            self.last_read.take().or(batch_end)
        } else {
            batch_end
        };
        if let Some(seq) = done {
            self.shared.checkpoints.set(&self.key, &seq);
        }
        true
    }
}

/// Up to `max` records from the front, within Lambda's payload limit (at least one).
fn take_batch(pending: &mut VecDeque<Polled>, max: usize) -> Vec<Polled> {
    let mut batch = Vec::new();
    let mut bytes = 16;
    while let Some(r) = pending.front() {
        let size = r.record.to_string().len() + 1;
        if batch.len() >= max || (!batch.is_empty() && bytes + size > MAX_PAYLOAD_BYTES) {
            break;
        }
        bytes += size;
        if let Some(r) = pending.pop_front() {
            batch.push(r);
        }
    }
    batch
}

/// One batch through the function with Lambda's retry semantics; what is given up goes to
/// the on-failure queue as Lambda's invocation record. Records older than
/// `MaximumRecordAgeInSeconds` are given up without an invocation, as Lambda does.
async fn deliver(shared: &Shared, m: &Arc<Mapping>, shard: &str, batch: Vec<Polled>) {
    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    let (expired, batch): (Vec<Polled>, Vec<Polled>) = batch.into_iter().partition(|r| {
        m.max_record_age
            .is_some_and(|age| r.arrival > 0.0 && now - r.arrival > age.as_secs_f64())
    });
    if !expired.is_empty() {
        let expired: Vec<&Polled> = expired.iter().collect();
        give_up(shared, m, shard, &expired, "RecordAgeExceeded", 0).await;
    }
    let stats = esm::drain_shard(
        &batch,
        |r: &Polled| r.seq.as_str(),
        m.config,
        |records: Vec<Polled>| invoke(m.clone(), shard.to_owned(), records),
    )
    .await;
    if stats.given_up.is_empty() {
        return;
    }
    let given: Vec<&Polled> = batch
        .iter()
        .filter(|r| stats.given_up.contains(&r.seq))
        .collect();
    let attempts = m.config.maximum_retry_attempts + 1;
    give_up(shared, m, shard, &given, "RetryAttemptsExhausted", attempts).await;
}

/// One invocation with `records` as Lambda's stream event, printed as one line.
async fn invoke(m: Arc<Mapping>, shard: String, records: Vec<Polled>) -> Invocation {
    let n = records.len();
    let payload = json!({
        "Records": records.iter().map(|r| &r.record).collect::<Vec<_>>()
    });
    let bytes = serde_json::to_vec(&payload).unwrap_or_default();
    m.function
        .stats
        .records
        .fetch_add(n as u64, Ordering::Relaxed);
    let invoked = m.function.invoke(bytes).await;
    println!(
        "{}  {:<30} {:<40} {:>6} {:<7}{:<20}  {:<24} {:>8.1} ms",
        now_text(),
        m.function.name,
        shard,
        n,
        crate::plural(n as u64, "record"),
        user_records(&records, n),
        invoked.text,
        invoked.ms
    );
    match invoked.outcome {
        // Without ReportBatchItemFailures Lambda reads any response as success.
        Invocation::Response { .. } if !m.report_failures => {
            Invocation::Response { failed: Vec::new() }
        }
        other => other,
    }
}

/// ` (500 user records)` when KPL aggregates are among the records (one Kinesis record can
/// carry hundreds of rows), else nothing.
fn user_records(records: &[Polled], kinesis_records: usize) -> String {
    let mut users = 0usize;
    let mut aggregated = false;
    for r in records {
        match r
            .kinesis_data()
            .as_deref()
            .map(streamwatch_core::kpl::deaggregate)
        {
            Some(Ok(streamwatch_core::kpl::Payload::Aggregated(subs))) => {
                aggregated = true;
                users += subs.len();
            }
            _ => users += 1,
        }
    }
    if aggregated {
        format!(" ({users} user {})", crate::plural(users as u64, "record"))
    } else {
        debug_assert_eq!(users, kinesis_records);
        String::new()
    }
}

/// Sends Lambda's on-failure invocation record for `given` (one shard's records, in order).
async fn give_up(
    shared: &Shared,
    m: &Mapping,
    shard: &str,
    given: &[&Polled],
    condition: &str,
    attempts: u32,
) {
    let (Some(first), Some(last)) = (given.first(), given.last()) else {
        return;
    };
    m.function
        .stats
        .given_up
        .fetch_add(given.len() as u64, Ordering::Relaxed);
    let record = invocation_record(m, shard, given, (first, last), condition, attempts);
    println!(
        "{}  {:<30} {:<40} {:>6} {:<7} given up ({condition}) -> {}",
        now_text(),
        m.function.name,
        shard,
        given.len(),
        crate::plural(given.len() as u64, "record"),
        m.on_failure.as_deref().unwrap_or("(no on-failure queue)")
    );
    if let Some(url) = &m.on_failure
        && let Err(e) = shared
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(record.to_string())
            .send()
            .await
    {
        eprintln!(
            "dev run: {} event {}: cannot send the on-failure record: {}",
            m.function.name,
            m.event,
            sdk_error("SQS SendMessage", &e)
        );
    }
}

/// Lambda's on-failure invocation record for a stream batch.
fn invocation_record(
    m: &Mapping,
    shard: &str,
    given: &[&Polled],
    (first, last): (&Polled, &Polled),
    condition: &str,
    attempts: u32,
) -> Value {
    let iso = |secs: f64| {
        chrono::DateTime::from_timestamp_micros((secs * 1e6) as i64)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default()
    };
    let info = json!({
        "shardId": shard,
        "startSequenceNumber": first.seq,
        "endSequenceNumber": last.seq,
        "approximateArrivalOfFirstRecord": iso(first.arrival),
        "approximateArrivalOfLastRecord": iso(last.arrival),
        "batchSize": given.len(),
        "streamArn": m.source.arn(),
    });
    json!({
        "requestContext": {
            "requestId": uuid::Uuid::new_v4().to_string(),
            "functionArn": m.function.arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        (if m.source.is_kinesis() { "KinesisBatchInfo" } else { "DDBStreamBatchInfo" }): info,
    })
}
