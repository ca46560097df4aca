//! An embedded turbine readings table with Kinesis Data Streams for DynamoDB switched on:
//! every put becomes an INSERT change record on the shard its `id` hashes to, with the
//! feature's real imperfections — some records delivered twice (same `eventID`, new
//! sequence number) and some out of order within their shard.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::json;
use streamwatch_core::kinesis::{KinesisEventRecord, KinesisRecord};

use crate::rng::Rng;
use crate::scenario::Reading;

/// Imperfections to inject, as probabilities per record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Imperfections {
    pub duplicate: f64,
    pub reorder: f64,
}

impl Default for Imperfections {
    fn default() -> Self {
        Self {
            duplicate: 0.02,
            reorder: 0.02,
        }
    }
}

/// One shard of the readings stream: its records in delivery order.
#[derive(Debug, Clone, Default)]
pub struct Shard {
    pub id: String,
    pub records: Vec<KinesisEventRecord>,
    /// Kinesis sequence numbers are 56-digit decimals: a fixed prefix and a counter.
    next_sequence: u64,
}

/// The readings table and the stream its changes go to.
#[derive(Debug)]
pub struct ReadingsStream {
    pub table_name: String,
    pub stream_arn: String,
    pub shards: Vec<Shard>,
    imperfections: Imperfections,
    rng: Rng,
    pub duplicates_injected: u64,
    pub reorders_injected: u64,
}

impl ReadingsStream {
    pub fn new(shards: usize, imperfections: Imperfections, seed: u64) -> Self {
        Self {
            table_name: "windspeed-demo".into(),
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/streamwatch-readings".into(),
            shards: (0..shards.max(1))
                .map(|i| Shard {
                    id: format!("shardId-{i:012}"),
                    records: Vec::new(),
                    next_sequence: 1_000_000_000_000 * (i as u64 + 1),
                })
                .collect(),
            imperfections,
            rng: Rng::new(seed ^ 0x5EED),
            duplicates_injected: 0,
            reorders_injected: 0,
        }
    }

    /// Writes a reading: its INSERT change record goes to the shard of its `id`.
    pub fn put(&mut self, reading: &Reading) {
        let payload = change_record(&self.table_name, reading, &mut self.rng);
        let shard = shard_of(&reading.id, self.shards.len());
        let arrival = reading.event_time_micros as f64 / 1e6 + 0.4;
        self.append(shard, &reading.id, &payload, arrival);
        if self.rng.chance(self.imperfections.duplicate) {
            self.duplicates_injected += 1;
            self.append(shard, &reading.id, &payload, arrival + 0.2);
        }
        if self.rng.chance(self.imperfections.reorder) {
            let records = &mut self.shards[shard].records;
            let n = records.len();
            if n >= 2 {
                // Swap the payloads, not the sequence numbers: a shard's sequence numbers
                // always increase; what can be out of order is the changes they carry.
                let (a, b) = records.split_at_mut(n - 1);
                std::mem::swap(&mut a[n - 2].kinesis.data, &mut b[0].kinesis.data);
                std::mem::swap(
                    &mut a[n - 2].kinesis.partition_key,
                    &mut b[0].kinesis.partition_key,
                );
                self.reorders_injected += 1;
            }
        }
    }

    fn append(&mut self, shard: usize, partition_key: &str, payload: &[u8], arrival: f64) {
        let s = &mut self.shards[shard];
        s.next_sequence += 1_000_003;
        let sequence_number = format!(
            "4959033827149025660855969253836157109592157{:013}",
            s.next_sequence
        );
        s.records.push(KinesisEventRecord {
            kinesis: KinesisRecord {
                kinesis_schema_version: Some("1.0".into()),
                partition_key: partition_key.to_owned(),
                sequence_number: sequence_number.clone(),
                data: payload.to_vec().into(),
                approximate_arrival_timestamp: arrival,
                encryption_type: None,
            },
            event_id: Some(format!("{}:{sequence_number}", s.id)),
            event_source: Some("aws:kinesis".into()),
            event_version: Some("1.0".into()),
            event_name: Some("aws:kinesis:record".into()),
            invoke_identity_arn: Some(
                "arn:aws:iam::000000000000:role/streamwatch-window-aggregator".into(),
            ),
            aws_region: Some("us-east-1".into()),
            event_source_arn: Some(self.stream_arn.clone()),
        });
    }

    /// Takes every shard's records delivered so far.
    pub fn take(&mut self) -> Vec<(String, Vec<KinesisEventRecord>)> {
        self.shards
            .iter_mut()
            .map(|s| (s.id.clone(), std::mem::take(&mut s.records)))
            .collect()
    }
}

fn shard_of(id: &str, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// The change record Kinesis Data Streams for DynamoDB writes for a reading's PutItem.
pub fn change_record(table: &str, r: &Reading, rng: &mut Rng) -> Vec<u8> {
    let created = streamwatch_core::time::format_micros(r.event_time_micros);
    json!({
        "awsRegion": "us-east-1",
        "eventID": rng.uuid(),
        "eventName": "INSERT",
        "userIdentity": null,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": {
            "ApproximateCreationDateTime": r.event_time_micros + 150_000,
            "ApproximateCreationDateTimePrecision": "MICROSECOND",
            "Keys": {"id": {"S": r.id}},
            "NewImage": {
                "id": {"S": r.id},
                "deviceID": {"S": r.device},
                "value": {"N": r.value.to_string()},
                "index": {"N": r.index.to_string()},
                "createdAt": {"S": created},
                "updatedAt": {"S": created},
                "__typename": {"S": "windspeed"}
            },
            "SizeBytes": 180
        },
        "eventSource": "aws:dynamodb"
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamwatch_core::{ChangeRecord, record};

    #[test]
    fn changes_decode_and_carry_duplicates_with_the_same_event_id() {
        let scenario = crate::scenario::TurbineScenario::default_story(
            5,
            2,
            25,
            70,
            60.0,
            1,
            1_795_262_400_000_000,
        );
        let mut stream = ReadingsStream::new(
            4,
            Imperfections {
                duplicate: 0.1,
                reorder: 0.1,
            },
            1,
        );
        for r in scenario.readings() {
            stream.put(&r);
        }
        assert!(stream.duplicates_injected > 0 && stream.reorders_injected > 0);
        let mut ids = std::collections::HashMap::new();
        let mut total = 0;
        for (_, records) in stream.take() {
            let event = streamwatch_core::KinesisEvent { records };
            let mut last = String::new();
            for p in record::parents(&event) {
                assert!(record::cmp_sequence(&last, p.sequence_number).is_lt());
                last = p.sequence_number.to_owned();
                for u in p.user_records().unwrap() {
                    let c = ChangeRecord::from_slice(u.data).unwrap();
                    *ids.entry(c.event_id).or_insert(0) += 1;
                    total += 1;
                }
            }
        }
        assert_eq!(ids.len(), 5 * 120);
        assert_eq!(total as u64, 5 * 120 + stream.duplicates_injected);
    }
}
