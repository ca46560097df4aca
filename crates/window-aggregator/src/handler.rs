//! The two paths of the function: a Kinesis batch of readings (apply them to their windows,
//! raise the shard's watermark, close what the watermark passed) and the schedule (close
//! idle keys' windows by wall clock).

use std::collections::BTreeMap;

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use serde::Serialize;
use streamwatch_core::change::EventName;
use streamwatch_core::record::{self, UserRecord};
use streamwatch_core::time::{Micros, parse_event_time};
use streamwatch_core::window::{
    CLOSED_UP_TO, Change, KeyState, WindowKey, WindowState, WindowStore, Written,
    combined_watermark,
};
use streamwatch_core::{
    AlertOutbox, ChangeRecord, FieldPath, Fields, JsonObject, KinesisEvent, PortError, PutOutcome,
};
use tracing::{info, warn};

use crate::config::{Config, InputFormat};

/// Wall-clock time, injectable so the local demo can run in accelerated event time.
pub trait Clock: Send + Sync {
    fn now_micros(&self) -> Micros;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> Micros {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as Micros)
            .unwrap_or_default()
    }
}

/// What the function needs, built once per cold start.
pub struct Deps<W, A, C = SystemClock> {
    pub config: Config,
    pub store: W,
    pub outbox: A,
    pub clock: C,
}

/// What one invocation did: logged, and emitted as operational metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub records_in: usize,
    pub readings: usize,
    pub malformed: usize,
    pub late: usize,
    pub windows_written: usize,
    pub conflicts: usize,
    pub windows_closed: usize,
    pub alerts_written: usize,
    pub retry_from: Option<String>,
}

impl Report {
    /// The report as one CloudWatch Embedded Metric Format line.
    pub fn emf(&self, namespace: &str, timestamp_ms: i64) -> String {
        let metrics = [
            ("RecordsIn", self.records_in),
            ("Readings", self.readings),
            ("Malformed", self.malformed),
            ("LateRecords", self.late),
            ("WindowWrites", self.windows_written),
            ("WindowsClosed", self.windows_closed),
            ("AlertsWritten", self.alerts_written),
        ];
        let mut line = serde_json::json!({
            "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [{
                "Namespace": namespace, "Dimensions": [[]],
                "Metrics": metrics.iter().map(|(n, _)| serde_json::json!({"Name": n, "Unit": "Count"})).collect::<Vec<_>>()
            }]}
        });
        for (name, value) in metrics {
            line[name] = value.into();
        }
        line.to_string()
    }
}

/// A decoded reading change, bound for one window.
struct Op {
    window: WindowKey,
    change: Change,
    event_time: Micros,
    parent: usize,
}

/// Why a record was skipped.
fn skip(report: &mut Report, user: &UserRecord<'_>, reason: &str) {
    report.malformed += 1;
    warn!(
        shard = user.shard_id,
        sequence = user.sequence_number,
        sub_sequence = user.sub_sequence_number,
        reason,
        "skipping malformed record"
    );
}

fn text_key(v: streamwatch_core::FieldValue<'_>) -> Result<String, &'static str> {
    let key = match v {
        streamwatch_core::FieldValue::String(s) => s.into_owned(),
        streamwatch_core::FieldValue::Number(n) => n.into_owned(),
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

fn number(v: Option<streamwatch_core::FieldValue<'_>>) -> Result<f64, &'static str> {
    let v = v.ok_or("value field missing")?;
    v.as_f64().ok_or("value is not a finite number")
}

fn time_of(
    record: &impl Fields,
    path: Option<&FieldPath>,
    fallback: Micros,
) -> Result<Micros, &'static str> {
    match path.and_then(|p| record.field(p)) {
        None | Some(streamwatch_core::FieldValue::Null) => Ok(fallback),
        Some(v) => parse_event_time(&v).ok_or("event time is not a time"),
    }
}

/// Decodes one user record into window changes (a MODIFY that moved a reading to another
/// key or window is two: a retraction from the old window and the new reading).
fn decode(config: &Config, user: &UserRecord<'_>, parent: usize) -> Result<Vec<Op>, &'static str> {
    let arrival = user.arrival.timestamp_micros();
    let window = |key: String, t: Micros| WindowKey {
        rule: config.rule.name.clone(),
        key,
        start_micros: config.spec.start_of(t),
    };
    match config.input {
        InputFormat::Json => {
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
                window: window(key, t),
                change: Change::Upsert {
                    id,
                    value,
                    changed_micros: t,
                },
                event_time: t,
                parent,
            }])
        }
        InputFormat::DynamoDb => {
            let c =
                ChangeRecord::from_slice(user.data).map_err(|_| "not a DynamoDB change record")?;
            let changed = c.creation_time_micros();
            let id =
                serde_json::to_string(&c.dynamodb.keys).map_err(|_| "keys not serialisable")?;
            let old = |c: &ChangeRecord| -> Result<(String, Micros), &'static str> {
                let (Some(kp), Some(_)) = (config.old_key.as_ref(), c.dynamodb.old_image.as_ref())
                else {
                    return Err("no OldImage: cannot tell which window the reading was in");
                };
                let key = text_key(c.field(kp).ok_or("key field missing in OldImage")?)?;
                let t = time_of(c, config.old_event_time.as_ref(), changed)?;
                Ok((key, t))
            };
            match c.event_name {
                EventName::Remove => {
                    let (key, t) = old(&c)?;
                    Ok(vec![Op {
                        window: window(key, t),
                        change: Change::Delete {
                            id,
                            changed_micros: changed,
                        },
                        event_time: t,
                        parent,
                    }])
                }
                EventName::Insert | EventName::Modify => {
                    if c.dynamodb.new_image.is_none() {
                        return Err("no NewImage");
                    }
                    let key = text_key(c.field(&config.key).ok_or("key field missing")?)?;
                    let value = number(c.field(&config.value))?;
                    let t = time_of(&c, config.event_time.as_ref(), changed)?;
                    let new = window(key, t);
                    let mut ops = Vec::with_capacity(2);
                    if c.event_name == EventName::Modify
                        && let Ok((old_key, old_t)) = old(&c)
                    {
                        let was = window(old_key, old_t);
                        if was != new {
                            ops.push(Op {
                                window: was,
                                change: Change::Delete {
                                    id: id.clone(),
                                    changed_micros: changed,
                                },
                                event_time: old_t,
                                parent,
                            });
                        }
                    }
                    ops.push(Op {
                        window: new,
                        change: Change::Upsert {
                            id,
                            value,
                            changed_micros: changed,
                        },
                        event_time: t,
                        parent,
                    });
                    Ok(ops)
                }
            }
        }
    }
}

/// Conflicting writers settle within a few rounds; beyond that something is wrong.
const MAX_ROUNDS: usize = 20;

/// Processes a Kinesis batch.
#[tracing::instrument(skip_all, fields(records = event.records.len()))]
pub async fn process_batch<W: WindowStore, A: AlertOutbox, C: Clock>(
    deps: &Deps<W, A, C>,
    event: &KinesisEvent,
) -> (KinesisEventResponse, Report) {
    let config = &deps.config;
    let mut report = Report {
        records_in: event.records.len(),
        ..Report::default()
    };
    let mut ops: Vec<Op> = Vec::new();
    let mut max_time: BTreeMap<String, Micros> = BTreeMap::new();
    for parent in record::parents(event) {
        let users = match parent.user_records() {
            Ok(u) => u,
            Err(e) => {
                report.malformed += 1;
                warn!(shard = parent.shard_id, sequence = parent.sequence_number, reason = %e.error, "skipping malformed record");
                continue;
            }
        };
        for user in users {
            match decode(config, &user, parent.index) {
                Ok(decoded) => {
                    report.readings += 1;
                    for op in &decoded {
                        let m = max_time
                            .entry(user.shard_id.to_owned())
                            .or_insert(op.event_time);
                        *m = (*m).max(op.event_time);
                    }
                    ops.extend(decoded);
                }
                Err(reason) => skip(&mut report, &user, reason),
            }
        }
    }

    // The watermark before this batch decides what is already too late to open a window.
    // Without it an old record could open (and at once close and alert) a window that
    // closed long ago and expired: a failed read is retried like a failed write.
    let before = match global_watermark(deps).await {
        Ok(wm) => wm,
        Err(e) => {
            warn!(error = %e, "reading watermarks failed");
            let first = ops.iter().map(|o| o.parent).min();
            return finish(event, report, first, &e);
        }
    };
    // Records for windows the watermark has passed are judged late against it; pin it
    // (the floor) first, so a shard joining with older data cannot lower it and let a
    // replay or duplicate of those records in later.
    if let Some(wm) = before
        && ops
            .iter()
            .any(|o| config.spec.close_at(o.window.start_micros) <= wm)
        && let Err(e) = deps
            .store
            .raise_watermark(&config.rule.name, CLOSED_UP_TO, wm)
            .await
    {
        warn!(error = %e, "raising the watermark floor failed");
        let first = ops.iter().map(|o| o.parent).min();
        return finish(event, report, first, &e);
    }
    let mut groups: BTreeMap<WindowKey, (usize, Vec<Change>)> = BTreeMap::new();
    for op in ops {
        let g = groups.entry(op.window).or_insert((op.parent, Vec::new()));
        g.0 = g.0.min(op.parent);
        g.1.push(op.change);
    }
    let keys: Vec<WindowKey> = groups.keys().cloned().collect();
    let mut failed_parent: Option<usize> = None;
    let stored = match deps.store.get_windows(&keys).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "reading windows failed");
            let first = groups.values().map(|g| g.0).min();
            return finish(event, report, first, &e);
        }
    };
    let mut last_error = None;
    for ((key, (parent, changes)), current) in groups.into_iter().zip(stored) {
        match apply_group(deps, &key, &changes, current, before, &mut report).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                warn!(window = ?key, error = %e, "window write failed; the batch will be retried from its first record");
                failed_parent = Some(failed_parent.map_or(parent, |p| p.min(parent)));
                last_error = Some(e);
            }
            Err(e) => {
                warn!(window = ?key, error = %e, "window write rejected; records for it are dropped")
            }
        }
    }
    if let Some(e) = last_error {
        return finish(event, report, failed_parent, &e);
    }
    // Watermarks and closing are not effects of particular records: a failure here is
    // logged and left to the next batch or the schedule, never a reason to retry records.
    for (shard, t) in &max_time {
        if let Err(e) = deps
            .store
            .raise_watermark(&config.rule.name, shard, *t)
            .await
        {
            warn!(shard, error = %e, "raising the watermark failed");
        }
    }
    if let Ok(Some(wm)) = global_watermark(deps).await
        && let Err(e) = close_due(deps, wm, &mut report).await
    {
        warn!(error = %e, "closing windows failed; the schedule will retry");
    }
    (KinesisEventResponse::default(), report)
}

fn finish(
    event: &KinesisEvent,
    mut report: Report,
    parent: Option<usize>,
    error: &PortError,
) -> (KinesisEventResponse, Report) {
    let mut response = KinesisEventResponse::default();
    if let Some(p) = parent.and_then(|p| event.records.get(p)) {
        let mut failure = KinesisBatchItemFailure::default();
        failure.item_identifier = Some(p.kinesis.sequence_number.clone());
        report.retry_from = failure.item_identifier.clone();
        response.batch_item_failures.push(failure);
        warn!(retry_from = ?report.retry_from, error = %error, "reporting batch item failure");
    }
    (response, report)
}

/// Applies a window's changes with optimistic concurrency: read, apply, conditional write,
/// and on a conflict (another shard's invocation wrote meanwhile) read again.
async fn apply_group<W: WindowStore, A: AlertOutbox, C: Clock>(
    deps: &Deps<W, A, C>,
    key: &WindowKey,
    changes: &[Change],
    mut current: Option<WindowState>,
    watermark: Option<Micros>,
    report: &mut Report,
) -> Result<(), PortError> {
    let spec = &deps.config.spec;
    let close_at = spec.close_at(key.start_micros);
    for _ in 0..MAX_ROUNDS {
        let mut state = match current.take() {
            Some(s) => s,
            // A window the watermark passed before it ever existed closed empty: too late.
            None if watermark.is_some_and(|wm| close_at <= wm) => {
                report.late += changes.len();
                info!(window = ?key, records = changes.len(), "late records for a window that already closed");
                return Ok(());
            }
            None => WindowState::new(key, spec),
        };
        if state.closed {
            // Counted on the item (per delivery: a replay counts again) and in the metric.
            state.late += changes.len() as u64;
            report.late += changes.len();
        } else {
            let mut changed = false;
            for c in changes {
                changed |= state.apply(c);
            }
            if !changed {
                return Ok(());
            }
        }
        match deps.store.put_window(&state, close_at).await? {
            Written::Ok => {
                report.windows_written += 1;
                return Ok(());
            }
            Written::Conflict => {
                report.conflicts += 1;
                current = deps
                    .store
                    .get_windows(std::slice::from_ref(key))
                    .await?
                    .pop()
                    .flatten();
            }
        }
    }
    Err(PortError::transient(
        "windows.apply",
        "too many concurrent writers",
    ))
}

/// The watermark windows close by: every shard has passed it (never below the floor).
async fn global_watermark<W: WindowStore, A, C>(
    deps: &Deps<W, A, C>,
) -> Result<Option<Micros>, PortError> {
    let marks = deps.store.watermarks(&deps.config.rule.name).await?;
    Ok(combined_watermark(&marks))
}

/// Closes every open window whose close time is at or before `t`, per key in window order.
/// Before the first one, the watermark's floor is raised to `t` (see
/// `streamwatch_core::window::combined_watermark`): from then on no record opens a window
/// the watermark has passed, so no key's earlier window can open after a later one closed.
pub async fn close_due<W: WindowStore, A: AlertOutbox, C: Clock>(
    deps: &Deps<W, A, C>,
    t: Micros,
    report: &mut Report,
) -> Result<(), PortError> {
    let mut floor_raised = false;
    loop {
        let mut due = deps
            .store
            .due_windows(&deps.config.rule.name, t, 100)
            .await?;
        if due.is_empty() {
            return Ok(());
        }
        if !floor_raised {
            deps.store
                .raise_watermark(&deps.config.rule.name, CLOSED_UP_TO, t)
                .await?;
            floor_raised = true;
        }
        due.sort_by(|a, b| (&a.key, a.start_micros).cmp(&(&b.key, b.start_micros)));
        let n = due.len();
        for key in due {
            close_window(deps, &key, report).await?;
        }
        if n < 100 {
            return Ok(());
        }
    }
}

/// Closes one window in two steps, so the decision is made on final statistics and a
/// crash anywhere is finished identically by the next caller:
/// 1. freeze it (`closed`, a conditional write: a concurrent writer on another shard either
///    landed before, and is in the statistics, or finds the window closed and counts late);
/// 2. decide from the frozen statistics, write the alert (conditional put: once ever), the
///    key's firing state, and mark the window settled, which takes it out of the index.
///
/// Until settled the window stays in the open-window index, so whoever queries next
/// (a batch's close pass or the schedule) completes step 2.
async fn close_window<W: WindowStore, A: AlertOutbox, C: Clock>(
    deps: &Deps<W, A, C>,
    key: &WindowKey,
    report: &mut Report,
) -> Result<(), PortError> {
    let rule = &deps.config.rule;
    let close_at = deps.config.spec.close_at(key.start_micros);
    for _ in 0..MAX_ROUNDS {
        let Some(mut window) = deps
            .store
            .get_windows(std::slice::from_ref(key))
            .await?
            .pop()
            .flatten()
        else {
            return Ok(());
        };
        if window.settled {
            return Ok(());
        }
        if !window.closed {
            window.closed = true;
            match deps.store.put_window(&window, close_at).await? {
                Written::Ok => {
                    window.version += 1;
                    report.windows_closed += 1;
                }
                Written::Conflict => continue,
            }
        }
        let stats = window.stats();
        let ks = deps.store.get_key_state(&key.rule, &key.key).await?;
        let mut ks = ks.unwrap_or_else(|| KeyState {
            rule: key.rule.clone(),
            key: key.key.clone(),
            ..KeyState::default()
        });
        // Recorded already (a retry of this close), or a later window of the key closed
        // first (only under a race with the schedule): keep the key state as it is.
        let already = ks.last_closed_start.is_some_and(|s| s >= key.start_micros);
        let firing_before = if ks.last_closed_start == Some(key.start_micros) {
            ks.firing_before_last
        } else {
            ks.firing
        };
        let decision = rule.decide(firing_before, stats.as_ref());
        if let Some(kind) = decision.alert {
            let alert = rule.alert(&window, stats.as_ref(), kind);
            if deps.outbox.put_alert(&alert).await? == PutOutcome::Created {
                report.alerts_written += 1;
                info!(alert = %alert.id, summary = %alert.summary, "alert written");
            }
        }
        if !already {
            ks.firing_before_last = firing_before;
            ks.firing = decision.firing_after;
            ks.last_closed_start = Some(key.start_micros);
            if deps.store.put_key_state(&ks).await? == Written::Conflict {
                continue;
            }
        }
        window.settled = true;
        match deps.store.put_window(&window, close_at).await? {
            Written::Ok => return Ok(()),
            // A late record's counter landed in between: read again, decide the same way.
            Written::Conflict => continue,
        }
    }
    Err(PortError::transient(
        "windows.close",
        "too many concurrent writers",
    ))
}

/// The schedule: closes windows of keys that went quiet, by wall clock (now minus grace,
/// or the watermark when that is ahead). Closing raises the watermark's floor, so records
/// arriving afterwards for windows the cut passed are late, as for the shards' watermark.
pub async fn close_idle<W: WindowStore, A: AlertOutbox, C: Clock>(
    deps: &Deps<W, A, C>,
) -> Result<Report, PortError> {
    let mut report = Report::default();
    let t = deps.clock.now_micros() - deps.config.grace.as_micros() as Micros;
    let wm = global_watermark(deps).await?.map_or(t, |wm| wm.max(t));
    close_due(deps, wm, &mut report).await?;
    Ok(report)
}
