//! `streamwatch alerts redrive --queue`: drains the metrics-publisher's on-failure queue.
//!
//! A batch that failed all of Lambda's retries leaves only a pointer there (stream ARN,
//! shard, first and last sequence number), so the accident alerts of a batch whose alerts
//! table writes failed exist nowhere else. For each message this re-reads the pointed
//! records from the stream, runs them through the metrics-publisher's own `process` (its
//! rule, its alert ids, its conditional outbox writes: a redrive is idempotent), and deletes
//! the message only when every record was read and every alert is durable. Metrics are not
//! re-published (docs/alerts.md, "Draining the on-failure queue", says why).

use std::cmp::Ordering;

use aws_sdk_kinesis::types::ShardIteratorType;
use metrics_publisher::{Config, Deps};
use serde::Serialize;
use serde_json::Value;
use streamwatch_adapters::DynamoDbAlertOutbox;
use streamwatch_core::kinesis::{KinesisEvent, KinesisEventRecord, KinesisRecord};
use streamwatch_core::metrics::{Datum, MetricSink, PublishError, Published};

use crate::Failure;

/// Messages asked for per ReceiveMessage (SQS's maximum).
const RECEIVE_BATCH: i32 = 10;
/// How long a received message stays invisible while its batch is redone.
const VISIBILITY_SECONDS: i32 = 300;
/// Empty GetRecords answers tolerated before the range's end (Kinesis may return none
/// while records exist further on).
const MAX_EMPTY_READS: usize = 5;

/// What draining a queue did: one JSON line on stdout.
#[derive(Debug, Default, Serialize)]
pub struct QueueReport {
    /// Messages received.
    pub messages: usize,
    /// Batches redone and their messages deleted.
    pub drained: usize,
    /// Messages kept: their records are no longer on the stream (past its retention, or the
    /// stream or shard is gone). Nothing can redo them.
    pub expired: usize,
    /// Messages kept: redoing the batch failed (the alerts table refused); run again later.
    pub failed: usize,
    /// Messages kept: not a Kinesis batch record (another function's queue, a test message).
    pub unreadable: usize,
    /// Stream records re-read.
    pub records: usize,
    /// Alerts written now (undecided before: the alerter sends them).
    pub alerts_written: usize,
    /// Alerts that already existed (written by an earlier attempt or redrive).
    pub alerts_existing: usize,
    /// Records the metric filter selected whose samples were not re-published.
    pub metrics_not_republished: usize,
}

impl QueueReport {
    pub fn kept(&self) -> usize {
        self.expired + self.failed + self.unreadable
    }
}

/// Lambda's on-failure record for a Kinesis batch (`KinesisBatchInfo`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPointer {
    pub stream_arn: String,
    pub shard_id: String,
    pub start: String,
    pub end: String,
}

impl BatchPointer {
    /// Reads a message body; `Err` says why it is not a Kinesis batch pointer.
    pub fn parse(body: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        if v.get("DDBStreamBatchInfo").is_some() {
            return Err("a DynamoDB stream batch (the alerter's queue): not a metrics-publisher batch; its notifications are recovered from the alerts table".into());
        }
        let info = v
            .get("KinesisBatchInfo")
            .ok_or("no KinesisBatchInfo: not a Lambda on-failure record of a Kinesis batch")?;
        let field = |name: &str| {
            info.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or(format!("KinesisBatchInfo without {name}"))
        };
        Ok(Self {
            stream_arn: field("streamArn")?,
            shard_id: field("shardId")?,
            start: field("startSequenceNumber")?,
            end: field("endSequenceNumber")?,
        })
    }

    fn stream_name(&self) -> Result<&str, String> {
        self.stream_arn
            .rsplit_once(":stream/")
            .map(|(_, name)| name)
            .filter(|n| !n.is_empty())
            .ok_or(format!("{}: not a Kinesis stream ARN", self.stream_arn))
    }
}

/// Orders Kinesis sequence numbers: decimal strings of up to 128 bits or more, without
/// leading zeros, so the longer one is the greater.
pub fn compare_sequence(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Why a batch's records could not be read back.
pub enum ReadError {
    /// The records are gone (trimmed past retention, shard or stream deleted).
    Expired(String),
    /// A call failed for another reason (throttling, network): try again later.
    Failed(String),
}

/// Reads `pointer`'s records, first to last, as Lambda would deliver them.
pub async fn read_batch(
    kinesis: &aws_sdk_kinesis::Client,
    pointer: &BatchPointer,
) -> Result<KinesisEvent, ReadError> {
    let stream = pointer.stream_name().map_err(ReadError::Expired)?;
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(&pointer.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&pointer.start)
        .send()
        .await
        .map_err(|e| {
            let code = aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&e)
                .unwrap_or("")
                .to_owned();
            let text = format!("GetShardIterator: {}", sdk_text(&e));
            // Trimmed sequence numbers, deleted shards and streams answer these.
            if matches!(
                code.as_str(),
                "ResourceNotFoundException" | "InvalidArgumentException"
            ) {
                ReadError::Expired(text)
            } else {
                ReadError::Failed(text)
            }
        })?;
    let mut next = iterator.shard_iterator;
    let mut records = Vec::new();
    let mut empty = 0;
    while let Some(it) = next {
        let page = kinesis
            .get_records()
            .shard_iterator(it)
            .limit(10_000)
            .send()
            .await
            .map_err(|e| ReadError::Failed(format!("GetRecords: {}", sdk_text(&e))))?;
        if page.records().is_empty() {
            empty += 1;
            if empty > MAX_EMPTY_READS || page.millis_behind_latest() == Some(0) {
                break;
            }
        }
        for r in page.records() {
            if compare_sequence(r.sequence_number(), &pointer.end) == Ordering::Greater {
                return finish(pointer, records);
            }
            records.push(event_record(pointer, r));
        }
        if records
            .last()
            .is_some_and(|r| r.kinesis.sequence_number == pointer.end)
        {
            return finish(pointer, records);
        }
        next = page.next_shard_iterator;
    }
    finish(pointer, records)
}

/// The range is complete only if it starts at the first and ends at the last record named.
fn finish(
    pointer: &BatchPointer,
    records: Vec<KinesisEventRecord>,
) -> Result<KinesisEvent, ReadError> {
    let first = records.first().map(|r| r.kinesis.sequence_number.as_str());
    let last = records.last().map(|r| r.kinesis.sequence_number.as_str());
    if first != Some(pointer.start.as_str()) || last != Some(pointer.end.as_str()) {
        return Err(ReadError::Expired(format!(
            "shard {} holds {} of the batch's records from {} to {} (first {}, last {}): past the stream's retention",
            pointer.shard_id,
            records.len(),
            pointer.start,
            pointer.end,
            first.unwrap_or("none"),
            last.unwrap_or("none"),
        )));
    }
    Ok(KinesisEvent { records })
}

/// One record as the Lambda Kinesis event carries it.
fn event_record(pointer: &BatchPointer, r: &aws_sdk_kinesis::types::Record) -> KinesisEventRecord {
    let arrival = r
        .approximate_arrival_timestamp()
        .map(|t| t.as_secs_f64())
        .unwrap_or_default();
    KinesisEventRecord {
        kinesis: KinesisRecord {
            kinesis_schema_version: Some("1.0".into()),
            partition_key: r.partition_key().unwrap_or_default().to_owned(),
            sequence_number: r.sequence_number().to_owned(),
            data: r.data().as_ref().to_vec().into(),
            approximate_arrival_timestamp: arrival,
            encryption_type: None,
        },
        event_id: Some(format!("{}:{}", pointer.shard_id, r.sequence_number())),
        event_source: Some("aws:kinesis".into()),
        event_version: Some("1.0".into()),
        event_name: Some("aws:kinesis:record".into()),
        invoke_identity_arn: None,
        aws_region: None,
        event_source_arn: Some(pointer.stream_arn.clone()),
    }
}

fn sdk_text<E: std::error::Error + 'static>(e: &E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// A sink that publishes nothing: a redrive does not re-publish metrics (CloudWatch has no
/// idempotent write and the on-failure record does not say which requests succeeded).
pub struct NotRepublished;

impl MetricSink for NotRepublished {
    async fn publish(&self, _datums: &[Datum]) -> Result<Published, PublishError> {
        Ok(Published::default())
    }
}

/// Everything a queue redrive uses.
pub struct Drain {
    pub sqs: aws_sdk_sqs::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub queue_url: String,
    pub deps: Deps<NotRepublished, DynamoDbAlertOutbox>,
}

impl Drain {
    pub fn new(
        config: &aws_config::SdkConfig,
        queue_url: String,
        function: Config,
        table: String,
    ) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(config),
            kinesis: aws_sdk_kinesis::Client::new(config),
            queue_url,
            deps: Deps {
                config: function,
                sink: NotRepublished,
                outbox: DynamoDbAlertOutbox::new(aws_sdk_dynamodb::Client::new(config), table),
            },
        }
    }

    /// Receives every visible message once, redoes its batch, deletes it on success; kept
    /// messages are made visible again at the end, for the next redrive.
    pub async fn run(&self) -> Result<QueueReport, Failure> {
        let mut report = QueueReport::default();
        let mut kept = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(RECEIVE_BATCH)
                .visibility_timeout(VISIBILITY_SECONDS)
                .send()
                .await
                .map_err(|e| {
                    Failure::runtime(format!(
                        "cannot read queue {}: {}",
                        self.queue_url,
                        sdk_text(&e)
                    ))
                })?;
            if got.messages().is_empty() {
                break;
            }
            for message in got.messages() {
                report.messages += 1;
                let handle = message.receipt_handle().unwrap_or_default().to_owned();
                if self
                    .redo(message.body().unwrap_or_default(), &mut report)
                    .await
                {
                    self.delete(&handle).await?;
                    report.drained += 1;
                } else {
                    kept.push(handle);
                }
            }
        }
        for handle in kept {
            // Best effort: a message left invisible reappears after VISIBILITY_SECONDS anyway.
            let _ = self
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await;
        }
        Ok(report)
    }

    /// Redoes one message's batch; true when every alert of it is durable.
    async fn redo(&self, body: &str, report: &mut QueueReport) -> bool {
        let pointer = match BatchPointer::parse(body) {
            Ok(p) => p,
            Err(why) => {
                eprintln!("alerts redrive: kept a message: {why}");
                report.unreadable += 1;
                return false;
            }
        };
        let event = match read_batch(&self.kinesis, &pointer).await {
            Ok(event) => event,
            Err(ReadError::Expired(why)) => {
                eprintln!("alerts redrive: kept a message: {why}");
                report.expired += 1;
                return false;
            }
            Err(ReadError::Failed(why)) => {
                eprintln!("alerts redrive: kept a message: {why}");
                report.failed += 1;
                return false;
            }
        };
        report.records += event.records.len();
        let now = chrono::Utc::now().timestamp_micros();
        let (_, batch) = metrics_publisher::process(&self.deps, &event, now).await;
        report.alerts_written += batch.alerts_written;
        report.alerts_existing += batch.alerts_existing;
        report.metrics_not_republished += batch.selected;
        if batch.retry_from.is_some() || batch.alerts_rejected > 0 {
            eprintln!(
                "alerts redrive: kept a message: shard {} from {}: {} alert(s) not written ({} refused for good)",
                pointer.shard_id,
                pointer.start,
                batch
                    .alerts_rejected
                    .max(usize::from(batch.retry_from.is_some())),
                batch.alerts_rejected
            );
            report.failed += 1;
            return false;
        }
        true
    }

    async fn delete(&self, handle: &str) -> Result<(), Failure> {
        self.sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                Failure::runtime(format!(
                    "redone, but cannot delete the message from {}: {} (a second redrive finds its alerts written)",
                    self.queue_url,
                    sdk_text(&e)
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_order_by_value_not_by_text() {
        assert_eq!(compare_sequence("9", "10"), Ordering::Less);
        assert_eq!(
            compare_sequence(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
        assert_eq!(compare_sequence("42", "42"), Ordering::Equal);
    }

    #[test]
    fn a_kinesis_batch_record_is_read_and_others_are_refused_with_a_reason() {
        let body = r#"{"requestContext":{"condition":"RetryAttemptsExhausted"},
            "KinesisBatchInfo":{"shardId":"shardId-000000000000","startSequenceNumber":"1",
            "endSequenceNumber":"5","batchSize":3,
            "streamArn":"arn:aws:kinesis:us-east-1:123456789012:stream/acc"}}"#;
        let p = BatchPointer::parse(body).unwrap();
        assert_eq!(p.stream_name().unwrap(), "acc");
        assert_eq!((p.start.as_str(), p.end.as_str()), ("1", "5"));
        let ddb = r#"{"DDBStreamBatchInfo":{"shardId":"s"}}"#;
        assert!(BatchPointer::parse(ddb).unwrap_err().contains("alerter"));
        assert!(
            BatchPointer::parse("hello")
                .unwrap_err()
                .contains("not JSON")
        );
        let partial =
            r#"{"KinesisBatchInfo":{"shardId":"s","streamArn":"arn:aws:kinesis:r:1:stream/a"}}"#;
        assert!(
            BatchPointer::parse(partial)
                .unwrap_err()
                .contains("startSequenceNumber")
        );
    }
}
