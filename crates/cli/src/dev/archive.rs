//! The raw layer on the local stack (docs/archive.md). `dev up` creates the template's
//! archive bucket in the emulator and reads each Firehose delivery stream's layout from the
//! template (source, prefix, error prefix, partition query, and for the rejects stream the
//! log subscription feeding it). moto's Firehose cannot stand in: it reads no Kinesis
//! source, ignores dynamic partitioning, prefix expressions and GZIP, and writes its own
//! `YYYY/MM/DD/HH/` keys. So `dev run` delivers in its place ([`Archiver`]): each shard of a
//! source stream is read after its own checkpoint, the records laid out as Firehose lays
//! them out (`streamwatch_local::archive`), one GZIP object per prefix per pass; the
//! function log a subscription filter watches is read from its last offset and the
//! matching lines delivered the same way. Checkpoints: `archive-checkpoints.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use streamwatch_core::archive::{PartitionQuery, object_name};
use streamwatch_emulator::stream::StreamReader;
use streamwatch_local::archive::{Layout, Objects, StreamRecord, gzip_lines};

use super::checkpoints::Checkpoints;
use super::template::{self, Context, Resource};
use super::{Stack, error_code, sdk_error};
use crate::Failure;

/// Where `dev run` keeps how far each feed has delivered.
pub const CHECKPOINTS: &str = "archive-checkpoints.json";

/// One delivery stream as `dev run` emulates it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Feed {
    /// The delivery stream's name (`DeliveryStreamName`), also its objects' name prefix.
    pub name: String,
    pub bucket: String,
    pub prefix: String,
    pub error_prefix: String,
    /// `MetadataExtractionQuery` (dynamic partitioning), if any.
    pub query: Option<String>,
    pub source: FeedSource,
}

/// What a delivery stream reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedSource {
    /// A Kinesis stream (`KinesisStreamAsSource`).
    Kinesis { stream: String },
    /// A function's log (under `dev run`'s logs directory), through a subscription filter
    /// `{ $.<key> = "<value>" }`.
    Logs {
        log_file: String,
        key: String,
        value: String,
    },
}

/// `dev up`: creates the archive buckets and returns the delivery streams to emulate.
pub async fn create(
    s3: &aws_sdk_s3::Client,
    tpl: &Value,
    ctx: &mut Context,
) -> Result<Vec<Feed>, Failure> {
    for (logical, res) in template::resources_of(tpl, "AWS::S3::Bucket") {
        if !ctx.enabled(res) {
            continue;
        }
        // Bucket names are lower case.
        let name = format!("{}-{logical}", template::STACK_NAME).to_lowercase();
        let mut req = s3.create_bucket().bucket(&name);
        if ctx.region != "us-east-1" {
            use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(ctx.region.as_str()))
                    .build(),
            );
        }
        if let Err(e) = req.send().await
            && !matches!(
                error_code(&e).as_deref(),
                Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
            )
        {
            return Err(Failure::runtime(sdk_error("S3 CreateBucket", &e)));
        }
        let arn = format!("arn:aws:s3:::{name}");
        ctx.resources.insert(
            logical.to_owned(),
            Resource {
                kind: "AWS::S3::Bucket".into(),
                reference: name,
                attributes: [("Arn".to_owned(), arn)].into(),
            },
        );
    }
    let mut feeds = Vec::new();
    for (logical, res) in template::resources_of(tpl, "AWS::KinesisFirehose::DeliveryStream") {
        if !ctx.enabled(res) {
            continue;
        }
        let feed =
            feed(tpl, ctx, logical, res).map_err(|e| Failure::usage(format!("{logical}: {e}")))?;
        ctx.resources.insert(
            logical.to_owned(),
            Resource {
                kind: "AWS::KinesisFirehose::DeliveryStream".into(),
                reference: feed.name.clone(),
                attributes: [(
                    "Arn".to_owned(),
                    format!(
                        "arn:aws:firehose:{}:{}:deliverystream/{}",
                        ctx.region,
                        template::ACCOUNT,
                        feed.name
                    ),
                )]
                .into(),
            },
        );
        feeds.push(feed);
    }
    Ok(feeds)
}

/// A delivery stream's layout and source, read from the template.
fn feed(tpl: &Value, ctx: &Context, logical: &str, res: &Value) -> Result<Feed, String> {
    let p = &res["Properties"];
    let dest = &p["ExtendedS3DestinationConfiguration"];
    if dest.is_null() {
        return Err("only ExtendedS3DestinationConfiguration is emulated".into());
    }
    let name = if p["DeliveryStreamName"].is_null() {
        format!("{}-{logical}", template::STACK_NAME)
    } else {
        ctx.string(&p["DeliveryStreamName"])?
    };
    let bucket_arn = ctx.string(&dest["BucketARN"])?;
    let bucket = bucket_arn
        .rsplit(":::")
        .next()
        .unwrap_or(&bucket_arn)
        .to_owned();
    if dest["CompressionFormat"].as_str().unwrap_or("UNCOMPRESSED") != "GZIP" {
        return Err("only CompressionFormat GZIP is emulated".into());
    }
    let processors = dest["ProcessingConfiguration"]["Processors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let query = processors
        .iter()
        .filter(|pr| pr["Type"] == "MetadataExtraction")
        .flat_map(|pr| pr["Parameters"].as_array().cloned().unwrap_or_default())
        .find(|param| param["ParameterName"] == "MetadataExtractionQuery")
        .and_then(|param| param["ParameterValue"].as_str().map(str::to_owned));
    if let Some(q) = &query {
        PartitionQuery::parse(q).map_err(|e| format!("MetadataExtractionQuery: {e}"))?;
    }
    let source = match p["DeliveryStreamType"].as_str() {
        Some("KinesisStreamAsSource") => {
            let arn = ctx.string(&p["KinesisStreamSourceConfiguration"]["KinesisStreamARN"])?;
            let stream = arn.rsplit("stream/").next().unwrap_or(&arn).to_owned();
            FeedSource::Kinesis { stream }
        }
        _ => logs_source(tpl, ctx, logical)?,
    };
    Ok(Feed {
        name,
        bucket,
        prefix: ctx.string(&dest["Prefix"])?,
        error_prefix: ctx.string(&dest["ErrorOutputPrefix"])?,
        query,
        source,
    })
}

/// The log a direct-put delivery stream is fed from: the subscription filter pointing at
/// it, the function writing to that filter's log group, and the filter's pattern.
fn logs_source(tpl: &Value, ctx: &Context, logical: &str) -> Result<FeedSource, String> {
    let (_, sub) = template::resources_of(tpl, "AWS::Logs::SubscriptionFilter")
        .into_iter()
        .find(|(_, s)| {
            ctx.enabled(s) && s["Properties"]["DestinationArn"]["Fn::GetAtt"][0] == logical
        })
        .ok_or("a direct-put stream without a log subscription has no local producer")?;
    let group = &sub["Properties"]["LogGroupName"];
    let (function, f) = template::resources_of(tpl, "AWS::Serverless::Function")
        .into_iter()
        .find(|(_, f)| &f["Properties"]["LoggingConfig"]["LogGroup"] == group)
        .ok_or("its subscription's log group belongs to no function")?;
    let name = if f["Properties"]["FunctionName"].is_null() {
        format!("{}-{function}", template::STACK_NAME)
    } else {
        ctx.string(&f["Properties"]["FunctionName"])?
    };
    let pattern = sub["Properties"]["FilterPattern"].as_str().unwrap_or("");
    let (key, value) = pattern
        .trim()
        .strip_prefix("{ $.")
        .and_then(|p| p.strip_suffix(" }"))
        .and_then(|p| p.split_once(" = "))
        .ok_or_else(|| {
            format!("FilterPattern {pattern:?}: only {{ $.key = \"value\" }} is emulated")
        })?;
    Ok(FeedSource::Logs {
        log_file: format!("{name}.log"),
        key: key.to_owned(),
        value: value.trim_matches('"').to_owned(),
    })
}

/// `dev run`'s stand-in for Firehose: delivers every feed of the stack, pass after pass.
pub struct Archiver {
    feeds: Vec<(Feed, Layout)>,
    s3: aws_sdk_s3::Client,
    kinesis: aws_sdk_kinesis::Client,
    logs: PathBuf,
    checkpoints: Checkpoints,
    records: AtomicU64,
    objects: AtomicU64,
}

impl Archiver {
    /// None when the stack has no archive (CreateArchive=false, or an older stack file).
    pub fn new(
        stack: &Stack,
        config: &aws_config::SdkConfig,
        state_dir: &Path,
    ) -> Option<Arc<Self>> {
        if stack.archives.is_empty() {
            return None;
        }
        let feeds = stack
            .archives
            .iter()
            .map(|f| {
                let layout = Layout {
                    query: f
                        .query
                        .as_deref()
                        .and_then(|q| PartitionQuery::parse(q).ok()),
                    prefix: f.prefix.clone(),
                    error_prefix: f.error_prefix.clone(),
                };
                (f.clone(), layout)
            })
            .collect();
        Some(Arc::new(Self {
            feeds,
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(config)
                    .force_path_style(true)
                    .build(),
            ),
            kinesis: aws_sdk_kinesis::Client::new(config),
            logs: state_dir.join("logs"),
            checkpoints: Checkpoints::load(state_dir.join(CHECKPOINTS)),
            records: AtomicU64::new(0),
            objects: AtomicU64::new(0),
        }))
    }

    /// What `dev run` prints at start.
    pub fn describe(&self) -> Vec<String> {
        self.feeds
            .iter()
            .map(|(f, _)| {
                let from = match &f.source {
                    FeedSource::Kinesis { stream } => format!("Kinesis stream {stream}"),
                    FeedSource::Logs {
                        log_file,
                        key,
                        value,
                    } => {
                        format!("lines of {log_file} with {key} = {value:?}")
                    }
                };
                format!(
                    "dev run: archiving {from} to s3://{}/{} (as delivery stream {})",
                    f.bucket, f.prefix, f.name
                )
            })
            .collect()
    }

    /// Delivers every `every` until `stop`, then once more, so what was written before the
    /// functions stopped is in S3 when `dev run` returns.
    pub async fn run(self: Arc<Self>, stop: Arc<AtomicBool>, every: Duration) {
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            self.pass().await;
            if stopping {
                return;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The summary line `dev run` prints at the end.
    pub fn summary(&self) -> String {
        format!(
            "archived {} records in {} objects (emulated Firehose)",
            self.records.load(Ordering::Relaxed),
            self.objects.load(Ordering::Relaxed)
        )
    }

    async fn pass(&self) {
        for (feed, layout) in &self.feeds {
            let result = match &feed.source {
                FeedSource::Kinesis { stream } => self.pass_stream(feed, layout, stream).await,
                FeedSource::Logs {
                    log_file,
                    key,
                    value,
                } => self.pass_log(feed, layout, log_file, key, value).await,
            };
            if let Err(e) = result {
                eprintln!(
                    "dev run: archive {}: {e}; retried on the next pass",
                    feed.name
                );
            }
        }
    }

    async fn pass_stream(&self, feed: &Feed, layout: &Layout, stream: &str) -> Result<(), String> {
        let reader = StreamReader::Kinesis {
            client: self.kinesis.clone(),
            stream_name: stream.to_owned(),
            stream_arn: String::new(),
        };
        for shard in reader.shards().await? {
            let key = format!("{}|{}", feed.name, shard);
            let (records, last) = self.read_shard(&reader, &shard, &key).await?;
            if records.is_empty() {
                continue;
            }
            let now = Utc::now();
            self.put(feed, layout.place(&records, now), now).await?;
            self.records
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            if let Some(seq) = last {
                self.checkpoints.set(&key, &seq);
            }
        }
        Ok(())
    }

    /// Every record of a shard after its checkpoint, and the last one's sequence number.
    async fn read_shard(
        &self,
        reader: &StreamReader,
        shard: &str,
        key: &str,
    ) -> Result<(Vec<StreamRecord>, Option<String>), String> {
        let after = self.checkpoints.get(key);
        let mut iterator = reader.iterator(shard, after.as_deref()).await?;
        let (mut records, mut last) = (Vec::new(), None);
        while let Some(it) = iterator {
            let (polled, next) = reader.read(shard, &it, 10_000, "", "").await?;
            if polled.is_empty() {
                break;
            }
            for r in polled {
                let arrival = Some(r.arrival)
                    .filter(|secs| *secs > 0.0)
                    .and_then(|secs| {
                        DateTime::<Utc>::from_timestamp_micros((secs * 1e6).round() as i64)
                    })
                    .unwrap_or_else(Utc::now);
                records.push(StreamRecord {
                    data: r.kinesis_data().unwrap_or_default(),
                    arrival,
                });
                last = Some(r.seq);
            }
            iterator = next;
        }
        Ok((records, last))
    }

    /// The complete lines appended to a function's log since the last pass, filtered as the
    /// subscription filter does, delivered by arrival time.
    async fn pass_log(
        &self,
        feed: &Feed,
        layout: &Layout,
        log_file: &str,
        key: &str,
        value: &str,
    ) -> Result<(), String> {
        let path = self.logs.join(log_file);
        let Ok(text) = std::fs::read(&path) else {
            return Ok(()); // The function has not run yet.
        };
        let ck = format!("{}|{log_file}", feed.name);
        let from: usize = self
            .checkpoints
            .get(&ck)
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        // Only whole lines: a sandbox may be writing the next one.
        let end = match text[from.min(text.len())..]
            .iter()
            .rposition(|b| *b == b'\n')
        {
            Some(i) => from + i + 1,
            None => return Ok(()),
        };
        let now = Utc::now();
        let mut objects = Objects::new();
        let mut n = 0;
        for line in text[from..end].split(|b| *b == b'\n') {
            let matches = serde_json::from_slice::<Value>(line)
                .is_ok_and(|v| v.get(key).and_then(Value::as_str) == Some(value));
            if matches {
                layout.place_one(&mut objects, line, now, now);
                n += 1;
            }
        }
        self.put(feed, objects, now).await?;
        self.records.fetch_add(n, Ordering::Relaxed);
        self.checkpoints.set(&ck, &end.to_string());
        Ok(())
    }

    async fn put(&self, feed: &Feed, objects: Objects, now: DateTime<Utc>) -> Result<(), String> {
        for (prefix, lines) in objects {
            let key = format!(
                "{prefix}{}",
                object_name(&feed.name, now, &uuid::Uuid::new_v4().to_string(), true)
            );
            self.s3
                .put_object()
                .bucket(&feed.bucket)
                .key(&key)
                .body(ByteStream::from(gzip_lines(&lines)))
                .send()
                .await
                .map_err(|e| sdk_error("S3 PutObject", &e))?;
            self.objects.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
