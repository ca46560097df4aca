//! Reading Kinesis and DynamoDB stream shards from the emulator, and the JSON the records
//! turn into: the records of Lambda's Kinesis and DynamoDB Streams events, and the change
//! records Kinesis Data Streams for DynamoDB writes (for the readings-table forward).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue as ItemValue;
use aws_sdk_dynamodbstreams::types::AttributeValue as StreamValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use crate::sdk_error;

/// One record read from a shard, as the function will see it.
#[derive(Debug, Clone)]
pub struct Polled {
    /// The identifier `batchItemFailures` uses (Kinesis or DynamoDB sequence number).
    pub seq: String,
    /// Arrival (Kinesis) or creation (DynamoDB) time, seconds since the epoch.
    pub arrival: f64,
    /// The record of the Lambda event.
    pub record: Value,
    /// For a DynamoDB stream record: the parts the readings forward needs.
    pub change: Option<Change>,
}

impl Polled {
    /// A Kinesis record's data bytes (None for a DynamoDB stream record).
    pub fn kinesis_data(&self) -> Option<Vec<u8>> {
        let data = self.record["kinesis"]["data"].as_str()?;
        B64.decode(data).ok()
    }
}

/// A DynamoDB stream record's content, kept for the Kinesis Data Streams for DynamoDB form.
#[derive(Debug, Clone)]
pub struct Change {
    pub event_id: String,
    pub event_name: String,
    pub created_micros: i64,
    pub keys: Value,
    pub new_image: Option<Value>,
    pub old_image: Option<Value>,
    pub size_bytes: i64,
    /// The item key as one string: the Kinesis partition key.
    pub partition_key: String,
}

/// Where a shard's records come from.
#[derive(Clone)]
pub enum StreamReader {
    Kinesis {
        client: aws_sdk_kinesis::Client,
        stream_name: String,
        stream_arn: String,
    },
    DynamoDb {
        client: aws_sdk_dynamodbstreams::Client,
        stream_arn: String,
    },
}

impl StreamReader {
    pub fn arn(&self) -> &str {
        match self {
            Self::Kinesis { stream_arn, .. } | Self::DynamoDb { stream_arn, .. } => stream_arn,
        }
    }

    pub fn is_kinesis(&self) -> bool {
        matches!(self, Self::Kinesis { .. })
    }

    /// The shard ids of the stream (open and closed).
    pub async fn shards(&self) -> Result<Vec<String>, String> {
        match self {
            Self::Kinesis {
                client,
                stream_name,
                ..
            } => {
                let mut out = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let mut req = client.list_shards();
                    req = match &token {
                        Some(t) => req.next_token(t),
                        None => req.stream_name(stream_name),
                    };
                    let page = req
                        .send()
                        .await
                        .map_err(|e| sdk_error("Kinesis ListShards", &e))?;
                    out.extend(page.shards().iter().map(|s| s.shard_id().to_owned()));
                    token = page.next_token().map(str::to_owned);
                    if token.is_none() {
                        return Ok(out);
                    }
                }
            }
            Self::DynamoDb { client, stream_arn } => {
                let mut out = Vec::new();
                let mut start: Option<String> = None;
                loop {
                    let page = client
                        .describe_stream()
                        .stream_arn(stream_arn)
                        .set_exclusive_start_shard_id(start.clone())
                        .send()
                        .await
                        .map_err(|e| sdk_error("DynamoDB Streams DescribeStream", &e))?;
                    let Some(d) = page.stream_description() else {
                        return Ok(out);
                    };
                    out.extend(
                        d.shards()
                            .iter()
                            .filter_map(|s| s.shard_id().map(str::to_owned)),
                    );
                    start = d.last_evaluated_shard_id().map(str::to_owned);
                    if start.is_none() {
                        return Ok(out);
                    }
                }
            }
        }
    }

    /// An iterator after `after` (a checkpoint), else at the shard's start.
    pub async fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
    ) -> Result<Option<String>, String> {
        match self {
            Self::Kinesis {
                client,
                stream_name,
                ..
            } => {
                use aws_sdk_kinesis::types::ShardIteratorType as T;
                let req = client
                    .get_shard_iterator()
                    .stream_name(stream_name)
                    .shard_id(shard);
                let req = match after {
                    Some(seq) => req
                        .shard_iterator_type(T::AfterSequenceNumber)
                        .starting_sequence_number(seq),
                    None => req.shard_iterator_type(T::TrimHorizon),
                };
                let out = req
                    .send()
                    .await
                    .map_err(|e| sdk_error("Kinesis GetShardIterator", &e))?;
                Ok(out.shard_iterator().map(str::to_owned))
            }
            Self::DynamoDb { client, stream_arn } => {
                use aws_sdk_dynamodbstreams::types::ShardIteratorType as T;
                let req = client
                    .get_shard_iterator()
                    .stream_arn(stream_arn)
                    .shard_id(shard);
                let req = match after {
                    Some(seq) => req
                        .shard_iterator_type(T::AfterSequenceNumber)
                        .sequence_number(seq),
                    None => req.shard_iterator_type(T::TrimHorizon),
                };
                let out = req
                    .send()
                    .await
                    .map_err(|e| sdk_error("DynamoDB Streams GetShardIterator", &e))?;
                Ok(out.shard_iterator().map(str::to_owned))
            }
        }
    }

    /// One GetRecords call: the records and the next iterator (None: the shard is closed
    /// and read to its end).
    pub async fn read(
        &self,
        shard: &str,
        iterator: &str,
        limit: i32,
        region: &str,
        role_arn: &str,
    ) -> Result<(Vec<Polled>, Option<String>), String> {
        match self {
            Self::Kinesis {
                client, stream_arn, ..
            } => {
                let out = client
                    .get_records()
                    .shard_iterator(iterator)
                    .limit(limit.clamp(1, 10_000))
                    .send()
                    .await
                    .map_err(|e| sdk_error("Kinesis GetRecords", &e))?;
                let records = out
                    .records()
                    .iter()
                    .map(|r| {
                        let arrival = r
                            .approximate_arrival_timestamp()
                            .map(|t| t.as_secs_f64())
                            .unwrap_or_default();
                        let seq = r.sequence_number().to_owned();
                        let record = json!({
                            "kinesis": {
                                "kinesisSchemaVersion": "1.0",
                                "partitionKey": r.partition_key(),
                                "sequenceNumber": seq,
                                "data": B64.encode(r.data().as_ref()),
                                "approximateArrivalTimestamp": arrival,
                            },
                            "eventSource": "aws:kinesis",
                            "eventVersion": "1.0",
                            "eventID": format!("{shard}:{seq}"),
                            "eventName": "aws:kinesis:record",
                            "invokeIdentityArn": role_arn,
                            "awsRegion": region,
                            "eventSourceARN": stream_arn,
                        });
                        Polled {
                            seq,
                            arrival,
                            record,
                            change: None,
                        }
                    })
                    .collect();
                Ok((records, out.next_shard_iterator().map(str::to_owned)))
            }
            Self::DynamoDb { client, stream_arn } => {
                let out = client
                    .get_records()
                    .shard_iterator(iterator)
                    .limit(limit.clamp(1, 1_000))
                    .send()
                    .await
                    .map_err(|e| sdk_error("DynamoDB Streams GetRecords", &e))?;
                let records = out
                    .records()
                    .iter()
                    .filter_map(|r| dynamodb_record(r, region, stream_arn))
                    .collect();
                Ok((records, out.next_shard_iterator().map(str::to_owned)))
            }
        }
    }
}

/// A DynamoDB stream record as Lambda's DynamoDB event carries it (None without the
/// `dynamodb` member, which every real record has).
fn dynamodb_record(
    r: &aws_sdk_dynamodbstreams::types::Record,
    region: &str,
    stream_arn: &str,
) -> Option<Polled> {
    let d = r.dynamodb()?;
    let seq = d.sequence_number()?.to_owned();
    let created_micros = d
        .approximate_creation_date_time()
        .map(|t| t.secs() * 1_000_000 + i64::from(t.subsec_nanos() / 1000))
        .unwrap_or_default();
    let keys = image(d.keys());
    let new_image = d.new_image().map(|i| image(Some(i)));
    let old_image = d.old_image().map(|i| image(Some(i)));
    let mut inner = Map::new();
    // Lambda's DynamoDB event has whole seconds here (unlike the Kinesis form's ms/µs).
    inner.insert(
        "ApproximateCreationDateTime".into(),
        json!(created_micros / 1_000_000),
    );
    inner.insert("Keys".into(), keys.clone());
    if let Some(i) = &new_image {
        inner.insert("NewImage".into(), i.clone());
    }
    if let Some(i) = &old_image {
        inner.insert("OldImage".into(), i.clone());
    }
    inner.insert("SequenceNumber".into(), json!(seq));
    inner.insert(
        "SizeBytes".into(),
        json!(d.size_bytes().unwrap_or_default()),
    );
    if let Some(v) = d.stream_view_type() {
        inner.insert("StreamViewType".into(), json!(v.as_str()));
    }
    let event_name = r
        .event_name()
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    let event_id = r.event_id().unwrap_or_default().to_owned();
    let record = json!({
        "eventID": event_id,
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": Value::Object(inner),
        "eventSourceARN": stream_arn,
    });
    let partition_key = partition_key(d.keys());
    Some(Polled {
        seq,
        arrival: created_micros as f64 / 1e6,
        record,
        change: Some(Change {
            event_id,
            event_name,
            created_micros,
            keys,
            new_image,
            old_image,
            size_bytes: d.size_bytes().unwrap_or_default(),
            partition_key,
        }),
    })
}

/// The change record Kinesis Data Streams for DynamoDB writes for `change` (DESIGN.md's
/// layout; `ApproximateCreationDateTime` in milliseconds or microseconds per `precision`).
pub fn kinesis_change_record(change: &Change, table: &str, region: &str, precision: &str) -> Value {
    let micro = precision == "MICROSECOND";
    let mut inner = Map::new();
    inner.insert(
        "ApproximateCreationDateTime".into(),
        json!(if micro {
            change.created_micros
        } else {
            change.created_micros / 1000
        }),
    );
    inner.insert(
        "ApproximateCreationDateTimePrecision".into(),
        json!(if micro { "MICROSECOND" } else { "MILLISECOND" }),
    );
    inner.insert("Keys".into(), change.keys.clone());
    if let Some(i) = &change.new_image {
        inner.insert("NewImage".into(), i.clone());
    }
    if let Some(i) = &change.old_image {
        inner.insert("OldImage".into(), i.clone());
    }
    inner.insert("SizeBytes".into(), json!(change.size_bytes));
    json!({
        "awsRegion": region,
        "eventID": change.event_id,
        "eventName": change.event_name,
        "userIdentity": null,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": Value::Object(inner),
        "eventSource": "aws:dynamodb",
    })
}

fn image(item: Option<&HashMap<String, StreamValue>>) -> Value {
    let mut out = Map::new();
    for (k, v) in item.into_iter().flatten() {
        out.insert(k.clone(), attribute(v));
    }
    Value::Object(out)
}

/// The item key's values, by attribute name, joined: one string per item.
fn partition_key(keys: Option<&HashMap<String, StreamValue>>) -> String {
    let mut parts: Vec<(&String, &StreamValue)> = keys.into_iter().flatten().collect();
    parts.sort_by(|a, b| a.0.cmp(b.0));
    parts
        .iter()
        .map(|(_, v)| match v {
            StreamValue::S(s) | StreamValue::N(s) => s.clone(),
            StreamValue::B(b) => B64.encode(b.as_ref()),
            other => attribute(other).to_string(),
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Where an INSERT stands on its table's stream: what [`insert_record`] stamps on it.
#[derive(Debug, Clone)]
pub struct StreamPosition<'a> {
    /// The stream's ARN (`arn:aws:dynamodb:<region>:<account>:table/<t>/stream/<label>`).
    pub stream_arn: &'a str,
    /// The record's sequence number; its event id is the number in 32 hex digits.
    pub sequence: u128,
    /// `ApproximateCreationDateTime`: whole seconds in Lambda's DynamoDB event.
    pub created_secs: i64,
}

/// The INSERT of `item` (key attribute `key`) as Lambda's DynamoDB event carries it from a
/// NEW_IMAGE stream: what the alerts table's stream delivers for an item the outbox wrote.
/// The one builder of such records for the demo's embedded stream and the tests.
pub fn insert_record<'a>(
    item: impl IntoIterator<Item = (&'a String, &'a ItemValue)>,
    key: &str,
    at: &StreamPosition<'_>,
) -> Value {
    let image: Map<String, Value> = item
        .into_iter()
        .map(|(k, v)| (k.clone(), item_attribute(v)))
        .collect();
    let keys: Map<String, Value> = image
        .get(key)
        .map(|v| (key.to_owned(), v.clone()))
        .into_iter()
        .collect();
    json!({
        "eventID": format!("{:032x}", at.sequence),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": at.stream_arn.split(':').nth(3).unwrap_or("us-east-1"),
        "dynamodb": {
            "ApproximateCreationDateTime": at.created_secs,
            "Keys": keys,
            "NewImage": image,
            "SequenceNumber": at.sequence.to_string(),
            "SizeBytes": 900,
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": at.stream_arn,
    })
}

/// DynamoDB JSON of an item's attribute value (the table API's type; [`attribute`] is the
/// streams API's).
pub fn item_attribute(v: &ItemValue) -> Value {
    match v {
        ItemValue::S(s) => json!({"S": s}),
        ItemValue::N(n) => json!({"N": n}),
        ItemValue::B(b) => json!({"B": B64.encode(b.as_ref())}),
        ItemValue::Bool(b) => json!({"BOOL": b}),
        ItemValue::Null(b) => json!({"NULL": b}),
        ItemValue::Ss(v) => json!({"SS": v}),
        ItemValue::Ns(v) => json!({"NS": v}),
        ItemValue::Bs(v) => {
            json!({"BS": v.iter().map(|b| B64.encode(b.as_ref())).collect::<Vec<_>>()})
        }
        ItemValue::L(l) => json!({"L": l.iter().map(item_attribute).collect::<Vec<_>>()}),
        ItemValue::M(m) => {
            let inner: Map<String, Value> = m
                .iter()
                .map(|(k, v)| (k.clone(), item_attribute(v)))
                .collect();
            json!({"M": inner})
        }
        _ => json!({"NULL": true}),
    }
}

/// DynamoDB JSON (`{"S": "…"}`) of one attribute value.
pub fn attribute(v: &StreamValue) -> Value {
    match v {
        StreamValue::S(s) => json!({"S": s}),
        StreamValue::N(n) => json!({"N": n}),
        StreamValue::B(b) => json!({"B": B64.encode(b.as_ref())}),
        StreamValue::Bool(b) => json!({"BOOL": b}),
        StreamValue::Null(b) => json!({"NULL": b}),
        StreamValue::Ss(v) => json!({"SS": v}),
        StreamValue::Ns(v) => json!({"NS": v}),
        StreamValue::Bs(v) => {
            json!({"BS": v.iter().map(|b| B64.encode(b.as_ref())).collect::<Vec<_>>()})
        }
        StreamValue::L(l) => json!({"L": l.iter().map(attribute).collect::<Vec<_>>()}),
        StreamValue::M(m) => json!({"M": image(Some(m))}),
        _ => json!({"NULL": true}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamwatch_core::ChangeRecord;

    fn change() -> Change {
        Change {
            event_id: "e1".into(),
            event_name: "INSERT".into(),
            created_micros: 1_795_262_400_542_892,
            keys: json!({"id": {"S": "k1"}}),
            new_image: Some(
                json!({"id": {"S": "k1"}, "deviceID": {"S": "device1"}, "value": {"N": "72"}}),
            ),
            old_image: None,
            size_bytes: 99,
            partition_key: "k1".into(),
        }
    }

    #[test]
    fn forwarded_changes_read_back_as_kinesis_data_streams_for_dynamodb_records() {
        for (precision, micros) in [
            ("MILLISECOND", 1_795_262_400_542_000),
            ("MICROSECOND", 1_795_262_400_542_892),
        ] {
            let v = kinesis_change_record(
                &change(),
                "streamwatch-ReadingsTable",
                "us-east-1",
                precision,
            );
            assert_eq!(
                v["dynamodb"]["ApproximateCreationDateTimePrecision"],
                precision
            );
            let parsed = ChangeRecord::from_slice(v.to_string().as_bytes()).unwrap();
            assert_eq!(parsed.creation_time_micros(), micros);
            assert_eq!(parsed.event_id, "e1");
            assert_eq!(
                parsed.table_name.as_deref(),
                Some("streamwatch-ReadingsTable")
            );
            assert_eq!(parsed.record_format.as_deref(), Some("application/json"));
            assert!(parsed.dynamodb.new_image.is_some() && parsed.dynamodb.old_image.is_none());
        }
    }

    #[test]
    fn attribute_values_are_dynamodb_json() {
        let m = StreamValue::M(
            [
                ("n".to_owned(), StreamValue::N("1.5".into())),
                (
                    "l".to_owned(),
                    StreamValue::L(vec![StreamValue::Bool(true), StreamValue::Null(true)]),
                ),
                ("ss".to_owned(), StreamValue::Ss(vec!["a".into()])),
                (
                    "b".to_owned(),
                    StreamValue::B(aws_sdk_dynamodbstreams::primitives::Blob::new(vec![1, 2])),
                ),
            ]
            .into(),
        );
        assert_eq!(
            attribute(&m),
            json!({"M": {"n": {"N": "1.5"}, "l": {"L": [{"BOOL": true}, {"NULL": true}]}, "ss": {"SS": ["a"]}, "b": {"B": "AQI="}}})
        );
        let keys: HashMap<String, StreamValue> = [
            ("sk".to_owned(), StreamValue::N("7".into())),
            ("pk".to_owned(), StreamValue::S("a".into())),
        ]
        .into();
        assert_eq!(partition_key(Some(&keys)), "a|7");
    }
}
