//! Kinesis Data Streams for DynamoDB, where the emulator lacks it: `dev up` lists the tables
//! whose streaming destination could not be enabled, and `dev run` copies each one's
//! DynamoDB stream into its Kinesis stream in that service's record layout.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use streamwatch_emulator::stream::{StreamReader, kinesis_change_record};

use super::{Holding, Shared, resume};
use crate::Failure;
use crate::dev::{Forward, sdk_error};

/// Starts a forward on every shard of every listed table's DynamoDB stream.
pub(super) async fn start(
    tasks: &mut tokio::task::JoinSet<()>,
    shared: &Arc<Shared>,
    forwards: &[Forward],
    config: &aws_config::SdkConfig,
) -> Result<(), Failure> {
    for f in forwards {
        let source = StreamReader::DynamoDb {
            client: aws_sdk_dynamodbstreams::Client::new(config),
            stream_arn: f.table_stream_arn.clone(),
        };
        let shards = source.shards().await.map_err(Failure::runtime)?;
        println!(
            "dev run: forwarding {}'s DynamoDB stream to Kinesis stream {} (Kinesis Data Streams for DynamoDB layout)",
            f.table, f.kinesis_stream
        );
        let kinesis = aws_sdk_kinesis::Client::new(config);
        for shard in shards {
            tasks.spawn(forward_shard(
                shared.clone(),
                f.clone(),
                source.clone(),
                kinesis.clone(),
                shard,
            ));
        }
    }
    Ok(())
}

/// Copies a table's DynamoDB stream shard into its Kinesis stream, each change in the
/// Kinesis Data Streams for DynamoDB layout, partition key = the item's key.
async fn forward_shard(
    shared: Arc<Shared>,
    f: Forward,
    source: StreamReader,
    kinesis: aws_sdk_kinesis::Client,
    shard: String,
) {
    let key = format!("forward|{}|{}", source.arn(), shard);
    let Ok(mut iterator) = resume(&shared, &source, &shard, &key).await else {
        return;
    };
    let mut holding = Holding::new(&shared);
    while let Some(it) = iterator.clone() {
        if shared.stopping() {
            return;
        }
        let (records, next) = match source.read(&shard, &it, 1000, &shared.region, "").await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dev run: forward {shard}: {e}; reopening the shard");
                tokio::time::sleep(shared.poll).await;
                match resume(&shared, &source, &shard, &key).await {
                    Ok(it) => iterator = it,
                    Err(_) => return,
                }
                continue;
            }
        };
        iterator = next;
        if records.is_empty() {
            tokio::time::sleep(shared.poll).await;
            continue;
        }
        holding.set(true);
        shared.touch();
        let entries: Vec<(String, Vec<u8>)> = records
            .iter()
            .filter_map(|r| r.change.as_ref())
            .map(|c| {
                let payload = kinesis_change_record(c, &f.table, &shared.region, &f.precision);
                (c.partition_key.clone(), payload.to_string().into_bytes())
            })
            .collect();
        for chunk in entries.chunks(500) {
            put_all(&kinesis, &f.kinesis_stream, chunk).await;
        }
        shared
            .forwarded
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        if let Some(last) = records.last() {
            shared.checkpoints.set(&key, &last.seq);
        }
        shared.touch();
        holding.set(false);
    }
}

/// PutRecords with the failed entries retried (order within a partition key is kept: a
/// retry only ever re-sends a suffix of each key's records).
async fn put_all(kinesis: &aws_sdk_kinesis::Client, stream: &str, entries: &[(String, Vec<u8>)]) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let mut left: Vec<&(String, Vec<u8>)> = entries.iter().collect();
    let mut backoff = crate::backoff::producer(10);
    use crate::backoff::Wait as _;
    while !left.is_empty() {
        let request: Vec<PutRecordsRequestEntry> = left
            .iter()
            .filter_map(|(pk, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(pk)
                    .data(Blob::new(data.clone()))
                    .build()
                    .ok()
            })
            .collect();
        match kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(request))
            .send()
            .await
        {
            Ok(out) => {
                let failed: Vec<&(String, Vec<u8>)> = out
                    .records()
                    .iter()
                    .zip(&left)
                    .filter(|(r, _)| r.error_code().is_some())
                    .map(|(_, e)| *e)
                    .collect();
                left = failed;
            }
            Err(e) => eprintln!("dev run: forward: {}", sdk_error("Kinesis PutRecords", &e)),
        }
        if !left.is_empty() && !backoff.wait().await {
            eprintln!(
                "dev run: forward: {} changes not put on {stream} after 10 attempts; dropped",
                left.len()
            );
            return;
        }
    }
}
