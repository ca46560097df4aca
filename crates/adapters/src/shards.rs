//! The stream probe (`streamwatch_core::progress::ShardProbe`): Kinesis, and an embedded
//! one the tests and the local pipeline steer.
//!
//! Kinesis: `ListShards` for the shards and their parents; for a shard's position, one
//! `GetShardIterator` (after the last finished sequence number, or at the trim horizon —
//! the template's starting position) and one `GetRecords` of at most one record. A record
//! means the shard is behind; none, with `MillisBehindLatest` 0, means caught up; none on
//! a closed shard (real Kinesis then returns no next iterator) means finished. Two calls
//! per shard per schedule pass: far under the 5 reads per second a shard allows.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use streamwatch_core::PortError;
use streamwatch_core::progress::{ShardInfo, ShardPosition, ShardProbe, sequence_after};

use crate::aws::classify;

/// The Kinesis probe of one stream (by ARN).
#[derive(Debug, Clone)]
pub struct KinesisShardProbe {
    client: Client,
    stream_arn: String,
}

impl KinesisShardProbe {
    pub fn new(client: Client, stream_arn: impl Into<String>) -> Self {
        Self {
            client,
            stream_arn: stream_arn.into(),
        }
    }
}

impl ShardProbe for KinesisShardProbe {
    async fn list_shards(&self) -> Result<Vec<ShardInfo>, PortError> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // ListShards takes the stream or a token, never both.
            let request = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_arn(&self.stream_arn),
            };
            let out = request
                .send()
                .await
                .map_err(|e| classify("kinesis.ListShards", e))?;
            for s in out.shards.unwrap_or_default() {
                let parents = [s.parent_shard_id, s.adjacent_parent_shard_id]
                    .into_iter()
                    .flatten()
                    .collect();
                let closed = s
                    .sequence_number_range
                    .as_ref()
                    .is_some_and(|r| r.ending_sequence_number.is_some());
                shards.push(ShardInfo {
                    shard: s.shard_id,
                    parents,
                    closed,
                });
            }
            token = out.next_token;
            if token.is_none() {
                return Ok(shards);
            }
        }
    }

    async fn position(
        &self,
        shard: &ShardInfo,
        after: Option<&str>,
    ) -> Result<ShardPosition, PortError> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&shard.shard);
        let request = match after {
            Some(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let iterator = request
            .send()
            .await
            .map_err(|e| classify("kinesis.GetShardIterator", e))?
            .shard_iterator;
        let Some(iterator) = iterator else {
            return Ok(ShardPosition::Finished);
        };
        let out = self
            .client
            .get_records()
            .stream_arn(&self.stream_arn)
            .shard_iterator(iterator)
            .limit(1)
            .send()
            .await
            .map_err(|e| classify("kinesis.GetRecords", e))?;
        Ok(if !out.records.is_empty() {
            ShardPosition::Behind
        } else if shard.closed || out.next_shard_iterator.is_none() {
            ShardPosition::Finished
        } else if out.millis_behind_latest.unwrap_or(0) == 0 {
            ShardPosition::CaughtUp
        } else {
            ShardPosition::Behind
        })
    }
}

/// A stream the caller describes: its shards, and per shard the last sequence number
/// written to it (what a reader would find).
#[derive(Debug, Default)]
pub struct EmbeddedShardProbe {
    inner: Mutex<BTreeMap<String, (ShardInfo, Option<String>)>>,
}

impl EmbeddedShardProbe {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (ShardInfo, Option<String>)>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream of `n` open shards (`shardId-000000000000` …) that nothing is known to have
    /// been written to: each is caught up whenever asked, whatever has been delivered.
    pub fn with_shards(n: usize) -> Self {
        let probe = Self::new();
        for i in 0..n {
            probe.add_shard(ShardInfo {
                shard: format!("shardId-{i:012}"),
                parents: Vec::new(),
                closed: false,
            });
        }
        probe
    }

    /// Adds a shard (or replaces its description, keeping its tip).
    pub fn add_shard(&self, info: ShardInfo) {
        let mut m = self.lock();
        let tip = m.remove(&info.shard).and_then(|(_, t)| t);
        m.insert(info.shard.clone(), (info, tip));
    }

    /// Closes a shard (a split or merge made it a parent).
    pub fn close_shard(&self, shard: &str) {
        if let Some((info, _)) = self.lock().get_mut(shard) {
            info.closed = true;
        }
    }

    /// A record with this sequence number was written to the shard.
    pub fn written(&self, shard: &str, sequence: &str) {
        let mut m = self.lock();
        let entry = m.entry(shard.to_owned()).or_insert_with(|| {
            (
                ShardInfo {
                    shard: shard.to_owned(),
                    parents: Vec::new(),
                    closed: false,
                },
                None,
            )
        });
        if entry
            .1
            .as_deref()
            .is_none_or(|t| sequence_after(sequence, t))
        {
            entry.1 = Some(sequence.to_owned());
        }
    }
}

impl ShardProbe for EmbeddedShardProbe {
    async fn list_shards(&self) -> Result<Vec<ShardInfo>, PortError> {
        Ok(self.lock().values().map(|(i, _)| i.clone()).collect())
    }

    async fn position(
        &self,
        shard: &ShardInfo,
        after: Option<&str>,
    ) -> Result<ShardPosition, PortError> {
        let m = self.lock();
        let (closed, tip) = match m.get(&shard.shard) {
            Some((info, tip)) => (info.closed, tip.clone()),
            None => (shard.closed, None),
        };
        let behind = match (tip, after) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(t), Some(a)) => sequence_after(&t, a),
        };
        Ok(if behind {
            ShardPosition::Behind
        } else if closed {
            ShardPosition::Finished
        } else {
            ShardPosition::CaughtUp
        })
    }
}
