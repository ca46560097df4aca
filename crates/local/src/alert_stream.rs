//! The alerts table's DynamoDB stream, embedded: alert records the outbox took become
//! INSERT stream records with the item exactly as `DynamoDbAlertOutbox` writes it, so the
//! alerter reads the same bytes it reads in production.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use streamwatch_adapters::alerts::{alert_item, sequenced_alert_item};
use streamwatch_core::AlertRecord;
use streamwatch_emulator::stream::{StreamPosition, insert_record};

const STREAM_ARN: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/streamwatch-alerts/stream/2026-11-21T00:00:00.000";

/// The stream of the alerts table: hands out INSERT records with increasing sequence numbers.
#[derive(Debug, Default)]
pub struct AlertStream {
    next: u64,
}

impl AlertStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stream records for alerts just written (in write order), with the per-key sequence
    /// number the outbox gave each (`seq_of`), as the table's items carry it.
    pub fn records(
        &mut self,
        alerts: &[AlertRecord],
        seq_of: impl Fn(&AlertRecord) -> Option<u64>,
    ) -> Vec<EventRecord> {
        alerts
            .iter()
            .filter_map(|alert| {
                self.next += 1;
                let ttl = Duration::from_secs(30 * 24 * 3600);
                let item = match seq_of(alert) {
                    Some(seq) => sequenced_alert_item(alert, seq, SystemTime::now(), ttl).ok()?,
                    None => alert_item(alert, SystemTime::now(), ttl).ok()?,
                };
                let record = insert_record(
                    &item,
                    "alert_id",
                    &StreamPosition {
                        stream_arn: STREAM_ARN,
                        sequence: 100_000_000_000_000_000_000 + u128::from(self.next),
                        created_secs: alert.event_time_micros / 1_000_000,
                    },
                );
                serde_json::from_value(record).ok()
            })
            .collect()
    }
}

/// A stream event of `records`.
pub fn event(records: Vec<EventRecord>) -> Event {
    let mut event = Event::default();
    event.records = records;
    event
}
