//! Reading alert records out of the alerts table's DynamoDB stream records. Only INSERTs of
//! items with `record_type = "alert"` are alerts; everything else (MODIFY, REMOVE by TTL,
//! the alerter's own state and notification items, a keys-only image as some emulators
//! emit first) is ignored, and an alert item that cannot be decoded is malformed.

use aws_lambda_events::event::dynamodb::EventRecord;
use serde_json::Value;
use streamwatch_core::AlertRecord;

/// What one stream record holds.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// An alert, with its per-key sequence number when the outbox gave it one.
    Alert(Box<AlertRecord>, Option<u64>),
    /// Not an alert record; the reason is for the debug log.
    Ignored(String),
    /// An alert record that cannot be used: skipped, counted, logged.
    Malformed(String),
}

/// The string value of an attribute in DynamoDB JSON (`{"S": "..."}`).
fn string_attr<'a>(image: &'a Value, name: &str) -> Option<&'a str> {
    image.get(name)?.get("S")?.as_str()
}

/// Classifies one stream record.
pub fn classify(record: &EventRecord) -> StreamItem {
    if record.event_name != "INSERT" {
        return StreamItem::Ignored(format!("{} event", record.event_name));
    }
    // serde_dynamo's item serialises back to DynamoDB JSON; reading that avoids depending
    // on serde_dynamo's types directly.
    let image = match serde_json::to_value(&record.change.new_image) {
        Ok(image) => image,
        Err(e) => {
            return StreamItem::Malformed(format!(
                "new image: {}",
                streamwatch_core::json::redacted_error(&e)
            ));
        }
    };
    let Some(record_type) = string_attr(&image, "record_type") else {
        return StreamItem::Ignored("no record_type in the new image (keys-only image?)".into());
    };
    if record_type != "alert" {
        return StreamItem::Ignored(format!("record_type {record_type}"));
    }
    let Some(json) = string_attr(&image, "alert") else {
        return StreamItem::Malformed("alert record without an `alert` string attribute".into());
    };
    let alert: AlertRecord = match serde_json::from_str(json) {
        Ok(alert) => alert,
        Err(e) => {
            return StreamItem::Malformed(format!(
                "alert attribute: {}",
                streamwatch_core::json::redacted_error(&e)
            ));
        }
    };
    if alert.id.is_empty() || alert.rule.is_empty() || alert.key.is_empty() {
        return StreamItem::Malformed("alert with an empty id, rule or key".into());
    }
    match string_attr(&image, "alert_id") {
        Some(id) if id == alert.id => {
            let seq = image
                .get("key_seq")
                .and_then(|v| v.get("N"))
                .and_then(Value::as_str)
                .and_then(|n| n.parse().ok());
            StreamItem::Alert(Box::new(alert), seq)
        }
        Some(id) => StreamItem::Malformed(format!(
            "alert_id {id} does not match the alert's id {}",
            alert.id
        )),
        None => StreamItem::Malformed("alert record without alert_id".into()),
    }
}
