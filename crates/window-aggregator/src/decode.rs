//! Records to window changes: a reading (INSERT or MODIFY) is an upsert into its key's
//! event-time window, a REMOVE a retraction from the window its old image was in, and a
//! MODIFY that moved a reading to another key or window is both. Each change carries its
//! event time and its record's own time, which bounds how far it may move its shard's
//! progress (`streamwatch_core::progress`).

use streamwatch_core::change::EventName;
use streamwatch_core::record::UserRecord;
use streamwatch_core::time::{Micros, parse_event_time};
use streamwatch_core::window::{Change, WindowKey};
use streamwatch_core::{ChangeRecord, FieldPath, FieldValue, Fields, JsonObject};

use crate::config::{Config, InputFormat};

/// A decoded reading change, bound for one window.
#[derive(Debug, Clone)]
pub struct Op {
    pub window: WindowKey,
    pub change: Change,
    pub event_time: Micros,
    /// The record's own time: the change record's creation time, or the Kinesis arrival.
    pub record_time: Micros,
    /// Index of the Kinesis record in the batch.
    pub parent: usize,
}

impl Op {
    /// How far this change may move its shard's progress: its event time, but never past
    /// its record's own time. (Allowing the future skew here too would let one device
    /// running ahead make the current window late on its shard: a reading `s` seconds
    /// ahead makes every window ending within `s` minus the lateness of now late.)
    pub fn bounded_time(&self) -> Micros {
        self.event_time.min(self.record_time)
    }

    pub fn is_future(&self, max_future_skew: Micros) -> bool {
        self.event_time > self.record_time + max_future_skew
    }
}

fn text_key(v: FieldValue<'_>) -> Result<String, &'static str> {
    let key = match v {
        FieldValue::String(s) => s.into_owned(),
        FieldValue::Number(n) => n.into_owned(),
        _ => return Err("key is neither a string nor a number"),
    };
    if key.is_empty() {
        return Err("key is empty");
    }
    if key.len() > 1024 {
        return Err("key longer than 1024 bytes");
    }
    Ok(key)
}

fn number(v: Option<FieldValue<'_>>) -> Result<f64, &'static str> {
    let v = v.ok_or("value field missing")?;
    v.as_f64().ok_or("value is not a finite number")
}

fn time_of(
    record: &impl Fields,
    path: Option<&FieldPath>,
    fallback: Micros,
) -> Result<Micros, &'static str> {
    match path.and_then(|p| record.field(p)) {
        None | Some(FieldValue::Null) => Ok(fallback),
        Some(v) => parse_event_time(&v).ok_or("event time is not a time"),
    }
}

/// Decodes one user record into window changes.
pub fn decode(
    config: &Config,
    user: &UserRecord<'_>,
    parent: usize,
) -> Result<Vec<Op>, &'static str> {
    match config.input {
        InputFormat::Json => decode_json(config, user, parent),
        InputFormat::DynamoDb => decode_change(config, user, parent),
    }
}

fn window_of(config: &Config, key: String, t: Micros) -> WindowKey {
    WindowKey {
        rule: config.rule.name.clone(),
        key,
        start_micros: config.spec.start_of(t),
    }
}

/// A JSON reading: one upsert, identified by its Kinesis coordinates.
fn decode_json(
    config: &Config,
    user: &UserRecord<'_>,
    parent: usize,
) -> Result<Vec<Op>, &'static str> {
    let arrival = user.arrival.timestamp_micros();
    let obj = JsonObject::parse(user.data).map_err(|_| "payload is not a JSON object")?;
    let key = text_key(obj.field(&config.key).ok_or("key field missing")?)?;
    let value = number(obj.field(&config.value))?;
    let t = time_of(&obj, config.event_time.as_ref(), arrival)?;
    let id = format!(
        "{}:{}:{}",
        user.shard_id,
        user.sequence_number,
        user.sub_sequence_number.unwrap_or(0)
    );
    Ok(vec![Op {
        window: window_of(config, key, t),
        change: Change::Upsert {
            id,
            value,
            changed_micros: t,
        },
        event_time: t,
        record_time: arrival,
        parent,
    }])
}

/// A DynamoDB change record: an upsert (INSERT, MODIFY), a delete (REMOVE), and for a MODIFY
/// that moved the reading to another window, a delete from the old one. Identified by the
/// item's keys, so a change record delivered twice is one change.
fn decode_change(
    config: &Config,
    user: &UserRecord<'_>,
    parent: usize,
) -> Result<Vec<Op>, &'static str> {
    let c = ChangeRecord::from_slice(user.data).map_err(|_| "not a DynamoDB change record")?;
    let changed = c.creation_time_micros();
    let id = serde_json::to_string(&c.dynamodb.keys).map_err(|_| "keys not serialisable")?;
    let old = |c: &ChangeRecord| -> Result<(String, Micros), &'static str> {
        let (Some(kp), Some(_)) = (config.old_key.as_ref(), c.dynamodb.old_image.as_ref()) else {
            return Err("no OldImage: cannot tell which window the reading was in");
        };
        let key = text_key(c.field(kp).ok_or("key field missing in OldImage")?)?;
        let t = time_of(c, config.old_event_time.as_ref(), changed)?;
        Ok((key, t))
    };
    let op = |window: WindowKey, change: Change, event_time: Micros| Op {
        window,
        change,
        event_time,
        record_time: changed,
        parent,
    };
    match c.event_name {
        EventName::Remove => {
            let (key, t) = old(&c)?;
            Ok(vec![op(
                window_of(config, key, t),
                Change::Delete {
                    id,
                    changed_micros: changed,
                },
                t,
            )])
        }
        EventName::Insert | EventName::Modify => {
            if c.dynamodb.new_image.is_none() {
                return Err("no NewImage");
            }
            let key = text_key(c.field(&config.key).ok_or("key field missing")?)?;
            let value = number(c.field(&config.value))?;
            let t = time_of(&c, config.event_time.as_ref(), changed)?;
            let new = window_of(config, key, t);
            let mut ops = Vec::with_capacity(2);
            if c.event_name == EventName::Modify
                && let Ok((old_key, old_t)) = old(&c)
            {
                let was = window_of(config, old_key, old_t);
                if was != new {
                    ops.push(op(
                        was,
                        Change::Delete {
                            id: id.clone(),
                            changed_micros: changed,
                        },
                        old_t,
                    ));
                }
            }
            ops.push(op(
                new,
                Change::Upsert {
                    id,
                    value,
                    changed_micros: changed,
                },
                t,
            ));
            Ok(ops)
        }
    }
}
