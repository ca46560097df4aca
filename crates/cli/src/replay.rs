//! `streamwatch replay accidents`: the reference raw layer. Streams a US-Accidents CSV
//! (constant memory: the full dataset is ~500 MB), converts each row to the reference
//! producer's JSON (`streamwatch_core::accident`) with a `Txn_Timestamp`, KPL-aggregates the
//! rows (on by default) and puts them with PutRecords, retrying failed records.
//!
//! A reader thread parses and converts rows into a bounded channel; the async sender packs
//! them into aggregates and PutRecords batches. Memory is bounded by the channel, one open
//! aggregate and one batch (≤ 5 MiB), whatever the file's size.
//!
//! Resuming: the sender sends batches one at a time, in row order, so every row before the
//! first row still buffered is in the stream; an interrupted or failed replay prints that
//! row count for `--start-row`. A record that failed and was retried may land after records
//! of later rows (as with the KPL): consumers must not rely on CSV order.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use indicatif::{ProgressBar, ProgressStyle};
use streamwatch_core::accident::row_to_json;
use streamwatch_core::kpl::{self, Aggregator};
use tokio::sync::mpsc;

use crate::aws_args::AwsArgs;
use crate::backoff::{self, Wait as _};
use crate::failure::{CallKind, SdkCall};
use crate::{Failure, plural};

/// PutRecords limits: records per call, bytes per call (data plus partition keys).
pub const MAX_BATCH_RECORDS: usize = 500;
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// A partition key is 1 to 256 Unicode characters.
pub(crate) const MAX_PARTITION_KEY_CHARS: usize = 256;
/// Rows the reader may run ahead of the sender.
const CHANNEL_ROWS: usize = 1024;

#[derive(clap::Args, Debug)]
pub struct AccidentsArgs {
    /// The CSV in the US-Accidents layout (`-` for standard input).
    #[arg(long, required_unless_present = "from_archive")]
    pub csv: Option<PathBuf>,
    /// Re-send archived records instead (a backfill): every object under an S3 prefix of
    /// the raw layer, e.g. `s3://BUCKET/accidents/dt=2026-11-30/` (docs/archive.md).
    /// Records keep their bytes (and `Txn_Timestamp`); lines of `rejected/` and `errors/`
    /// objects are sent as the bytes they hold.
    #[arg(long, value_name = "S3_URI", conflicts_with = "csv")]
    pub from_archive: Option<String>,
    /// The Kinesis stream (default: the stack's `AccidentsStreamName` output).
    #[arg(long)]
    pub stream: Option<String>,
    /// The column whose value is each row's partition key.
    #[arg(long, default_value = "ID")]
    pub partition_key: String,
    /// Put one Kinesis record per row instead of KPL aggregates.
    #[arg(long)]
    pub no_aggregate: bool,
    /// KPL-aggregate the rows (the default).
    #[arg(long, conflicts_with = "no_aggregate")]
    pub aggregate: bool,
    /// Largest aggregated record, partition key included (Kinesis allows 1 MiB).
    #[arg(long, default_value_t = kpl::KINESIS_MAX_RECORD_BYTES)]
    pub aggregate_max_bytes: usize,
    /// Rows per second at most (default: as fast as the stream takes them).
    #[arg(long, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Skip the first N data rows (an interrupted replay prints N to resume with).
    #[arg(long, default_value_t = 0)]
    pub start_row: u64,
    /// Put buffered rows after this many milliseconds even if the batch is not full.
    #[arg(long, default_value_t = 100)]
    pub linger_ms: u64,
    /// Attempts per batch before giving up (failed records and throttling are retried).
    #[arg(long, default_value_t = 10)]
    pub max_attempts: u32,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// What the reader (CSV or archive) hands the sender.
pub(crate) enum Row {
    Good {
        row: u64,
        key: String,
        json: Vec<u8>,
        offset: u64,
    },
    Bad {
        row: u64,
        line: u64,
        reason: String,
    },
}

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Rows read after `--start-row` (good and bad).
    pub rows: u64,
    pub bad_rows: u64,
    pub user_records: u64,
    pub kinesis_records: u64,
    pub calls: u64,
    pub records_retried: u64,
    /// Calls the service throttled (retried).
    pub calls_throttled: u64,
    /// Calls that failed otherwise: 5xx, timeouts, resets (retried). A refused connection
    /// is neither: the replay stops at once.
    pub calls_retried: u64,
    /// Data and partition-key bytes the stream accepted.
    pub bytes: u64,
}

/// One Kinesis record waiting in the batch.
struct Entry {
    partition_key: String,
    explicit_hash_key: Option<String>,
    data: Vec<u8>,
    user_records: usize,
}

impl Entry {
    fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Runs the replay: the final totals line goes to stdout, bad rows to stderr.
pub async fn run(args: AccidentsArgs) -> Result<(), Failure> {
    validate(&args)?;
    let source = match (&args.csv, &args.from_archive) {
        (Some(csv), _) => open_csv(csv, &args.partition_key)?,
        (None, Some(uri)) => RowSource::Archive(crate::archive_source::S3Uri::parse(uri)?),
        (None, None) => return Err(Failure::usage("give --csv or --from-archive")),
    };
    let label = match (&args.csv, &args.from_archive) {
        (Some(csv), _) => csv.display().to_string(),
        (None, uri) => uri.clone().unwrap_or_default(),
    };
    let aws = args.aws.load().await?;
    let stream = aws
        .resolve(args.stream.as_deref(), "--stream", "AccidentsStreamName")
        .await?;
    let client = aws_sdk_kinesis::Client::new(&aws.config);

    let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
    let (reader_task, size) = spawn_reader(source, &args, &aws.config, tx);
    let bar = progress_bar(size);
    let started = Instant::now();
    let mut sender = Sender {
        client,
        endpoint: aws.endpoint.clone(),
        stream: stream.clone(),
        aggregator: (!args.no_aggregate).then(|| Aggregator::new(args.aggregate_max_bytes)),
        open_first_row: None,
        batch: Vec::new(),
        batch_bytes: 0,
        batch_first_row: None,
        rows_seen: args.start_row,
        totals: Totals::default(),
        max_attempts: args.max_attempts,
    };
    let outcome = sender
        .run(rx, Duration::from_millis(args.linger_ms), &bar, started)
        .await;
    bar.finish_and_clear();
    // The reader ends when the channel closes; it only ever fails on I/O, reported below.
    let (read_error, data_rows) = match reader_task.await {
        Ok(Ok(rows)) => (None, Some(rows)),
        Ok(Err(e)) => (Some(e), None),
        Err(_) => (Some("the reader panicked".to_owned()), None),
    };
    if let Some(rows) = data_rows
        && args.start_row > 0
        && args.start_row >= rows
    {
        eprintln!(
            "streamwatch: warning: --start-row {} is past the end of {label} ({rows} data {}): nothing to send",
            args.start_row,
            plural(rows, "row")
        );
    }
    let t = &sender.totals;
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    println!("{}", totals_line(t, &stream, args.no_aggregate, seconds));
    let resume = sender.resume_point();
    exit_status(
        outcome,
        read_error,
        resume,
        args.start_row,
        t.bad_rows,
        &label,
    )
}

/// Starts the task that reads rows (a CSV file on a thread, or the raw archive in S3) into
/// `tx`; with the input's size in bytes when known (the progress bar's length).
fn spawn_reader(
    source: RowSource,
    args: &AccidentsArgs,
    config: &aws_config::SdkConfig,
    tx: mpsc::Sender<Row>,
) -> (tokio::task::JoinHandle<Result<u64, String>>, Option<u64>) {
    let (start_row, rate) = (args.start_row, args.rate);
    match source {
        RowSource::Csv {
            reader,
            headers,
            key_column,
            size,
        } => (
            tokio::task::spawn_blocking(move || {
                read_rows(reader, headers, key_column, start_row, rate, tx)
            }),
            size,
        ),
        RowSource::Archive(uri) => {
            let s3 = crate::archive_source::client(config);
            let key = args.partition_key.clone();
            (
                tokio::spawn(crate::archive_source::read(
                    s3, uri, key, start_row, rate, tx,
                )),
                None,
            )
        }
    }
}

/// The final totals line. Only what Kinesis acknowledged counts as replayed; rows read but
/// never accepted (the run failed or was interrupted with them buffered) are named apart.
fn totals_line(t: &Totals, stream: &str, no_aggregate: bool, seconds: f64) -> String {
    let unsent = (t.rows - t.bad_rows).saturating_sub(t.user_records);
    format!(
        "replayed {} {} to {stream} ({} bad{}): {} user {} in {} Kinesis {}{}, {} PutRecords {}, {} {} retried, {} throttled and {} failed calls retried; {:.1} MB in {:.1} s: {:.0} rows/s, {:.2} MB/s",
        t.user_records,
        plural(t.user_records, "row"),
        t.bad_rows,
        if unsent > 0 {
            format!(", {unsent} not sent")
        } else {
            String::new()
        },
        t.user_records,
        plural(t.user_records, "record"),
        t.kinesis_records,
        plural(t.kinesis_records, "record"),
        if no_aggregate {
            ""
        } else {
            " (KPL-aggregated)"
        },
        t.calls,
        plural(t.calls, "call"),
        t.records_retried,
        plural(t.records_retried, "record"),
        t.calls_throttled,
        t.calls_retried,
        t.bytes as f64 / 1e6,
        seconds,
        t.user_records as f64 / seconds,
        t.bytes as f64 / 1e6 / seconds,
    )
}

/// The run's exit: interrupted (130, with where to resume), failed (with where to resume),
/// bad rows skipped (2), or success.
fn exit_status(
    outcome: Result<(), SendError>,
    read_error: Option<String>,
    resume: u64,
    start_row: u64,
    bad_rows: u64,
    label: &str,
) -> Result<(), Failure> {
    match (outcome, read_error) {
        (Err(SendError::Interrupted), _) => Err(Failure::with_code(
            130,
            format!(
                "interrupted: rows before {resume} are in the stream; resume with --start-row {resume}"
            ),
        )),
        // Nothing in the stream and a hint of its own (the endpoint is down): that hint.
        (Err(SendError::Failed(failure)), _) if resume == start_row && failure.hint.is_some() => {
            Err(failure)
        }
        (Err(SendError::Failed(failure)), _) => Err(failure.hint(format!(
            "rows before {resume} are in the stream: resume with --start-row {resume}"
        ))),
        (Ok(()), Some(e)) => Err(Failure::runtime(format!("{label}: {e}")).hint(format!(
            "rows before {resume} are in the stream: resume with --start-row {resume}"
        ))),
        (Ok(()), None) if bad_rows > 0 => Err(Failure::with_code(
            2,
            format!(
                "{} bad {} skipped (see above)",
                bad_rows,
                plural(bad_rows, "row")
            ),
        )),
        (Ok(()), None) => Ok(()),
    }
}

/// Where the rows come from.
enum RowSource {
    Csv {
        reader: csv::Reader<Box<dyn Read + Send>>,
        headers: Vec<String>,
        key_column: usize,
        size: Option<u64>,
    },
    Archive(crate::archive_source::S3Uri),
}

/// Opens the CSV and checks its header: the columns the rules read, the key column.
fn open_csv(path: &PathBuf, partition_key: &str) -> Result<RowSource, Failure> {
    let (input, size) = open(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(1 << 16)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Failure::runtime(format!("{}: no CSV header: {e}", path.display())))?
        .iter()
        .map(str::to_owned)
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(Failure::runtime(format!(
            "{} is empty: no header row (US-Accidents columns expected)",
            path.display()
        )));
    }
    streamwatch_core::accident::check_columns(headers.iter().map(String::as_str))
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let Some(key_column) = headers.iter().position(|h| *h == partition_key) else {
        return Err(Failure::usage(format!(
            "--partition-key {partition_key}: no such column in {}",
            path.display()
        )));
    };
    Ok(RowSource::Csv {
        reader,
        headers,
        key_column,
        size,
    })
}

fn validate(args: &AccidentsArgs) -> Result<(), Failure> {
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(Failure::usage("--rate must be a positive number"));
    }
    if args.aggregate_max_bytes < 1024 || args.aggregate_max_bytes > kpl::KINESIS_MAX_RECORD_BYTES {
        return Err(Failure::usage(format!(
            "--aggregate-max-bytes must be between 1024 and {}",
            kpl::KINESIS_MAX_RECORD_BYTES
        )));
    }
    Ok(())
}

fn open(path: &PathBuf) -> Result<(Box<dyn Read + Send>, Option<u64>), Failure> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let file = File::open(path)
        .map_err(|e| Failure::runtime(format!("cannot read {}: {e}", path.display())))?;
    let size = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), size))
}

/// The reader thread: parses, converts and paces rows; returns the data rows read (all of
/// them when the sender took every row). Fails only when the input cannot be read; a row
/// that cannot be converted is a `Row::Bad`.
fn read_rows(
    mut reader: csv::Reader<Box<dyn Read + Send>>,
    headers: Vec<String>,
    key_column: usize,
    start_row: u64,
    rate: Option<f64>,
    tx: mpsc::Sender<Row>,
) -> Result<u64, String> {
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut record = csv::StringRecord::new();
    let mut row: u64 = 0;
    let paced_from = Instant::now();
    loop {
        let read = reader.read_record(&mut record);
        let outcome = match read {
            Ok(false) => return Ok(row),
            Ok(true) if row < start_row => {
                row += 1;
                continue;
            }
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                let fields: Vec<&str> = record.iter().collect();
                let key = fields.get(key_column).copied().unwrap_or("");
                if let Some(rate) = rate {
                    let due = paced_from + Duration::from_secs_f64((row - start_row) as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                if key.is_empty() || key.chars().count() > MAX_PARTITION_KEY_CHARS {
                    Row::Bad {
                        row,
                        line,
                        reason: format!(
                            "partition key column {} must hold 1 to {MAX_PARTITION_KEY_CHARS} characters",
                            header_refs[key_column]
                        ),
                    }
                } else {
                    match row_to_json(&header_refs, &fields, &txn_timestamp()) {
                        Ok(json) => Row::Good {
                            row,
                            key: key.to_owned(),
                            json: json.into_bytes(),
                            offset: record.position().map_or(0, |p| p.byte()),
                        },
                        Err(e) => Row::Bad {
                            row,
                            line,
                            reason: e.to_string(),
                        },
                    }
                }
            }
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(e.to_string()),
            // Not UTF-8, or similar: that row is bad, the next one may be fine.
            Err(_) if row < start_row => {
                row += 1;
                continue;
            }
            Err(e) => Row::Bad {
                row,
                line: e.position().map_or(0, |p| p.line()),
                reason: e.to_string(),
            },
        };
        row += 1;
        if tx.blocking_send(outcome).is_err() {
            // The sender stopped (interrupted or failed): nothing more to read for.
            return Ok(row);
        }
    }
}

/// The send time, as the reference producer wrote it: naive UTC with microseconds.
fn txn_timestamp() -> String {
    chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

enum SendError {
    Interrupted,
    Failed(Failure),
}

struct Sender {
    client: aws_sdk_kinesis::Client,
    /// Where the calls go, for messages.
    endpoint: String,
    stream: String,
    aggregator: Option<Aggregator>,
    /// First row held by the open aggregate.
    open_first_row: Option<u64>,
    batch: Vec<Entry>,
    batch_bytes: usize,
    /// First row held by the batch.
    batch_first_row: Option<u64>,
    /// Rows received so far, counted from the file's first data row.
    rows_seen: u64,
    totals: Totals,
    max_attempts: u32,
}

impl Sender {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Row>,
        linger: Duration,
        bar: &ProgressBar,
        started: Instant,
    ) -> Result<(), SendError> {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut pending_since: Option<Instant> = None;
        let mut last_draw = Instant::now();
        loop {
            let deadline = pending_since.map(|t| tokio::time::Instant::from(t + linger));
            let next = tokio::select! {
                biased;
                _ = &mut ctrl_c => {
                    rx.close();
                    // Rows already converted are sent: the resume point then covers them.
                    self.flush().await?;
                    return Err(SendError::Interrupted);
                }
                row = rx.recv() => row,
                () = sleep_until_opt(deadline) => {
                    self.flush().await?;
                    pending_since = None;
                    continue;
                }
            };
            let Some(row) = next else { break };
            self.totals.rows += 1;
            match row {
                Row::Good {
                    row,
                    key,
                    json,
                    offset,
                } => {
                    self.rows_seen = row + 1;
                    if let Err(reason) = self.add(row, key, json).await? {
                        self.bad(bar, row, None, &reason);
                    }
                    bar.set_position(offset);
                }
                Row::Bad { row, line, reason } => {
                    self.rows_seen = row + 1;
                    self.bad(bar, row, Some(line), &reason);
                }
            }
            if self.is_empty() {
                pending_since = None;
            } else if pending_since.is_none() {
                pending_since = Some(Instant::now());
            }
            if last_draw.elapsed() >= Duration::from_millis(250) {
                last_draw = Instant::now();
                let s = started.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "{} rows ({:.0}/s), {:.1} MB put ({:.2} MB/s), {} bad",
                    self.totals.rows,
                    self.totals.rows as f64 / s,
                    self.totals.bytes as f64 / 1e6,
                    self.totals.bytes as f64 / 1e6 / s,
                    self.totals.bad_rows
                ));
            }
        }
        self.flush().await
    }

    /// Rows before this one are all in the stream (or were bad): what `--start-row` resumes
    /// from. The batch holds earlier rows than the open aggregate.
    fn resume_point(&self) -> u64 {
        self.batch_first_row
            .or(self.open_first_row)
            .unwrap_or(self.rows_seen)
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.aggregator.as_ref().is_none_or(Aggregator::is_empty)
    }

    fn bad(&mut self, bar: &ProgressBar, row: u64, line: Option<u64>, reason: &str) {
        self.totals.bad_rows += 1;
        let place = line.map_or_else(|| format!("row {row}"), |l| format!("line {l}"));
        bar.suspend(|| eprintln!("streamwatch: {place}: {reason} (row skipped)"));
    }

    /// Adds a converted row; `Ok(Err(reason))` when the row is too large to send.
    async fn add(
        &mut self,
        row: u64,
        key: String,
        json: Vec<u8>,
    ) -> Result<Result<(), String>, SendError> {
        let entry = match &mut self.aggregator {
            Some(aggregator) => match aggregator.add(&key, None, &json) {
                Err(e) => return Ok(Err(e.to_string())),
                Ok(None) => {
                    self.open_first_row.get_or_insert(row);
                    return Ok(Ok(()));
                }
                Ok(Some(full)) => {
                    // The row opened the next aggregate; the full one joins the batch.
                    let first = self.open_first_row.replace(row).unwrap_or(row);
                    (
                        Entry {
                            partition_key: full.partition_key,
                            explicit_hash_key: full.explicit_hash_key,
                            data: full.data,
                            user_records: full.user_records,
                        },
                        first,
                    )
                }
            },
            None => {
                if json.len() + key.len() > kpl::KINESIS_MAX_RECORD_BYTES {
                    return Ok(Err(format!(
                        "{} bytes, more than a Kinesis record holds",
                        json.len() + key.len()
                    )));
                }
                (
                    Entry {
                        partition_key: key,
                        explicit_hash_key: None,
                        data: json,
                        user_records: 1,
                    },
                    row,
                )
            }
        };
        self.push(entry.0, entry.1).await?;
        Ok(Ok(()))
    }

    /// Adds a Kinesis record holding rows from `first_row` on to the batch, sending the
    /// batch first when it would overflow.
    async fn push(&mut self, entry: Entry, first_row: u64) -> Result<(), SendError> {
        if !self.batch.is_empty()
            && (self.batch.len() == MAX_BATCH_RECORDS
                || self.batch_bytes + entry.size() > MAX_BATCH_BYTES)
        {
            self.send_batch().await?;
        }
        self.batch_first_row.get_or_insert(first_row);
        self.batch_bytes += entry.size();
        self.batch.push(entry);
        Ok(())
    }

    /// Sends everything buffered: the open aggregate and the batch.
    async fn flush(&mut self) -> Result<(), SendError> {
        if let Some(full) = self.aggregator.as_mut().and_then(Aggregator::finish) {
            let first = self.open_first_row.take().unwrap_or(self.rows_seen);
            let entry = Entry {
                partition_key: full.partition_key,
                explicit_hash_key: full.explicit_hash_key,
                data: full.data,
                user_records: full.user_records,
            };
            self.push(entry, first).await?;
        }
        self.send_batch().await
    }

    /// Puts the batch, retrying failed records with backoff until all are in the stream.
    async fn send_batch(&mut self) -> Result<(), SendError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let mut user_records: Vec<usize> = entries.iter().map(|e| e.user_records).collect();
        let mut sizes: Vec<usize> = entries.iter().map(Entry::size).collect();
        let mut pending: Vec<PutRecordsRequestEntry> = Vec::with_capacity(entries.len());
        for e in entries {
            let built = PutRecordsRequestEntry::builder()
                .partition_key(e.partition_key)
                .set_explicit_hash_key(e.explicit_hash_key)
                .data(Blob::new(e.data))
                .build()
                .map_err(|e| {
                    SendError::Failed(Failure::runtime(format!("cannot build a record: {e}")))
                })?;
            pending.push(built);
        }
        let mut backoff = backoff::producer(self.max_attempts);
        loop {
            self.totals.calls += 1;
            let result = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(pending.clone()))
                .send()
                .await;
            let failure = match result {
                Ok(out) if out.records().len() != pending.len() => {
                    return Err(SendError::Failed(Failure::runtime(format!(
                        "PutRecords to {}: {} results for {} records",
                        self.stream,
                        out.records().len(),
                        pending.len()
                    ))));
                }
                Ok(out) => {
                    let mut retry = Vec::new();
                    let (mut retry_users, mut retry_sizes) = (Vec::new(), Vec::new());
                    let mut permanent = None;
                    for (i, (result, entry)) in out.records().iter().zip(pending).enumerate() {
                        match result.error_code() {
                            None => {
                                self.totals.kinesis_records += 1;
                                self.totals.user_records += user_records[i] as u64;
                                self.totals.bytes += sizes[i] as u64;
                            }
                            Some(code) => {
                                // Per-record failures are throttling or InternalFailure;
                                // anything else (KMS access denied, …) will not go away.
                                if !streamwatch_adapters::aws::is_transient_code(Some(code)) {
                                    permanent = Some(format!(
                                        "{code}: {}",
                                        result.error_message().unwrap_or("")
                                    ));
                                }
                                retry.push(entry);
                                retry_users.push(user_records[i]);
                                retry_sizes.push(sizes[i]);
                            }
                        }
                    }
                    if retry.is_empty() {
                        self.batch_first_row = None;
                        return Ok(());
                    }
                    if let Some(p) = permanent {
                        return Err(SendError::Failed(Failure::runtime(format!(
                            "PutRecords to {}: {p}",
                            self.stream
                        ))));
                    }
                    self.totals.records_retried += retry.len() as u64;
                    pending = retry;
                    user_records = retry_users;
                    sizes = retry_sizes;
                    format!("{} records failed", pending.len())
                }
                Err(e) => {
                    let call = SdkCall::read(
                        &format!("PutRecords to {}", self.stream),
                        &e,
                        &self.endpoint,
                    );
                    if !call.is_retryable() {
                        // A closed port or a missing stream: the next attempt fares no better.
                        return Err(SendError::Failed(Failure::from(call)));
                    }
                    if call.kind == CallKind::Throttled {
                        self.totals.calls_throttled += 1;
                    } else {
                        self.totals.calls_retried += 1;
                    }
                    call.line
                }
            };
            if !backoff.wait().await {
                return Err(SendError::Failed(Failure::runtime(format!(
                    "still failing after {} attempts: {failure}",
                    backoff.attempts()
                ))));
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn progress_bar(size: Option<u64>) -> ProgressBar {
    let bar = match size {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    bar
}
