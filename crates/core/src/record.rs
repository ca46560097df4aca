//! User records of a Lambda Kinesis event, with the coordinates (shard, sequence number,
//! sub-sequence number) every log line and every exactly-once check needs.
//!
//! A Kinesis record (the "parent") is what Lambda checkpoints and what `batchItemFailures`
//! names; a KPL-aggregated parent holds several user records sharing its sequence number.

use crate::kinesis::{KinesisEvent, KinesisEventRecord};
use chrono::{DateTime, Utc};

use crate::kpl::{self, KplError, Payload};

/// One user record: a plain Kinesis record, or one sub-record of an aggregated one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserRecord<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    /// `None` for a plain record, `Some(i)` for the i-th sub-record of an aggregate.
    pub sub_sequence_number: Option<u64>,
    pub partition_key: &'a str,
    pub explicit_hash_key: Option<&'a str>,
    pub data: &'a [u8],
    pub arrival: DateTime<Utc>,
}

/// A Kinesis record as Lambda delivered it, before de-aggregation.
#[derive(Debug, Clone, Copy)]
pub struct ParentRecord<'a> {
    /// Position in the event's `Records`.
    pub index: usize,
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub partition_key: &'a str,
    /// The decoded bytes, or why the base64 was broken.
    pub data: Result<&'a [u8], &'a str>,
    pub arrival: DateTime<Utc>,
    /// Whether the KPL digest matched, when [`parents`] checked the batch's digests together;
    /// None: checked by [`ParentRecord::user_records`] itself.
    digest_matches: Option<bool>,
}

/// Why a parent record is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParentError {
    #[error("{0}")]
    Base64(String),
    #[error(transparent)]
    Kpl(#[from] KplError),
}

/// A parent record that could not be de-aggregated, with its coordinates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard {shard_id} sequence {sequence_number}: {error}")]
pub struct MalformedParent {
    pub shard_id: String,
    pub sequence_number: String,
    #[source]
    pub error: ParentError,
}

impl<'a> ParentRecord<'a> {
    pub fn new(index: usize, record: &'a KinesisEventRecord) -> Self {
        Self {
            index,
            shard_id: shard_id(record),
            sequence_number: &record.kinesis.sequence_number,
            partition_key: &record.kinesis.partition_key,
            data: record.kinesis.data.0.as_deref().map_err(String::as_str),
            arrival: record.kinesis.arrival(),
            digest_matches: None,
        }
    }

    /// The user records this parent carries, in order.
    pub fn user_records(&self) -> Result<Vec<UserRecord<'a>>, MalformedParent> {
        let malformed = |error| MalformedParent {
            shard_id: self.shard_id.to_owned(),
            sequence_number: self.sequence_number.to_owned(),
            error,
        };
        let data = self
            .data
            .map_err(|e| malformed(ParentError::Base64(e.to_owned())))?;
        let payload = match self.digest_matches {
            Some(matches) => kpl::deaggregate_checked(data, matches),
            None => kpl::deaggregate(data),
        };
        match payload {
            Ok(Payload::Plain(data)) => Ok(vec![UserRecord {
                shard_id: self.shard_id,
                sequence_number: self.sequence_number,
                sub_sequence_number: None,
                partition_key: self.partition_key,
                explicit_hash_key: None,
                data,
                arrival: self.arrival,
            }]),
            Ok(Payload::Aggregated(subs)) => Ok(subs
                .into_iter()
                .enumerate()
                .map(|(i, sub)| UserRecord {
                    shard_id: self.shard_id,
                    sequence_number: self.sequence_number,
                    sub_sequence_number: Some(i as u64),
                    partition_key: sub.partition_key,
                    explicit_hash_key: sub.explicit_hash_key,
                    data: sub.data,
                    arrival: self.arrival,
                })
                .collect()),
            Err(error) => Err(malformed(ParentError::Kpl(error))),
        }
    }
}

/// The parents of an event, in delivery order. The KPL digests of the whole batch are
/// checked here, together (see `kpl::check_digests`).
pub fn parents(event: &KinesisEvent) -> impl Iterator<Item = ParentRecord<'_>> {
    let verdicts = kpl::check_digests(
        event
            .records
            .iter()
            .map(|r| r.kinesis.data.0.as_deref().ok()),
    );
    event
        .records
        .iter()
        .zip(verdicts)
        .enumerate()
        .map(|(i, (r, verdict))| ParentRecord {
            digest_matches: Some(verdict.unwrap_or(false)),
            ..ParentRecord::new(i, r)
        })
}

/// Shard id of a record: the part of `eventID` before the colon
/// (`shardId-000000000000:4959…`). Falls back to "unknown" rather than failing: the shard
/// is a coordinate for logs and checkpoints, not something worth dropping a record over.
pub fn shard_id(record: &KinesisEventRecord) -> &str {
    record
        .event_id
        .as_deref()
        .and_then(|id| id.split_once(':').map(|(shard, _)| shard))
        .unwrap_or("unknown")
}

/// Parses a Lambda Kinesis event from JSON bytes.
pub fn parse_event(bytes: &[u8]) -> Result<KinesisEvent, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Compares Kinesis sequence numbers, which are decimal strings longer than any integer
/// type (and than DynamoDB's 38-digit numbers): shorter is smaller, then lexicographic.
pub fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A fixed-width, string-comparable position of a user record within its shard:
/// the sequence number left-padded to 64 digits, a dot, the sub-sequence number padded to
/// 10 digits (a plain record sorts as sub-sequence 0).
pub fn position(sequence_number: &str, sub_sequence_number: Option<u64>) -> String {
    format!(
        "{:0>64}.{:010}",
        sequence_number,
        sub_sequence_number.unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(cmp_sequence("9", "10"), Less);
        assert_eq!(
            cmp_sequence(
                "49590338271490256608559692538361571095921576739869136327",
                "49590338271490256608559692538361571095921576739869136328"
            ),
            Less
        );
        assert!(position("9", Some(3)) < position("10", None));
        assert!(position("10", Some(2)) < position("10", Some(10)));
        assert_eq!(position("1", None).len(), 75);
    }

    #[test]
    fn edge_case_fixture_yields_every_user_record() {
        let event = parse_event(include_bytes!(
            "../../../tests/fixtures/kinesis-kpl-edge-cases.json"
        ))
        .unwrap();
        let mut n = 0;
        for parent in parents(&event) {
            n += parent.user_records().unwrap().len();
        }
        assert_eq!(n, 25);
    }

    #[test]
    fn batch_digest_check_agrees_with_one_by_one() {
        // GIVEN the edge-case and accidents fixtures (plain records, aggregates, a bad digest)
        for bytes in [
            &include_bytes!("../../../tests/fixtures/kinesis-kpl-edge-cases.json")[..],
            &include_bytes!("../../../tests/fixtures/kinesis-accidents-kpl.json")[..],
        ] {
            let event = parse_event(bytes).unwrap();
            // WHEN parents() checks the digests together, THEN each parent de-aggregates
            // exactly as it does when it checks its own digest.
            for (i, batched) in parents(&event).enumerate() {
                let alone = ParentRecord::new(i, &event.records[i]);
                assert_eq!(batched.user_records(), alone.user_records(), "record {i}");
            }
        }
    }
}
