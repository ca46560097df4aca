//! Guarantees 2–5 over the embedded store: the model-based property test (random changes,
//! Lambda's retries, bisections and duplicates, out-of-order and late records, scheduled
//! closes in between) and a close racing a write from another shard.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use common::{HOUR, MIN, T0, TestClock};
use proptest::prelude::*;
use streamwatch_adapters::EmbeddedAlertOutbox;
use streamwatch_adapters::shards::EmbeddedShardProbe;
use streamwatch_adapters::windows::EmbeddedWindowStore;
use streamwatch_core::PortError;
use streamwatch_core::progress::{Ledger, ShardLedger, ShardProgress};
use streamwatch_core::time::Micros;
use streamwatch_core::window::{Chunk, Entry, Head, Mark, WindowStore, Written, reading_key};
use streamwatch_core::{AlertKind, KinesisEvent};
use window_aggregator::{Deps, close_idle, process_batch};

fn deps<W>(store: W) -> common::TestDeps<W, EmbeddedAlertOutbox> {
    Deps {
        config: common::config("w", "a"),
        store,
        outbox: EmbeddedAlertOutbox::new(),
        probe: EmbeddedShardProbe::new(),
        clock: TestClock(AtomicI64::new(T0)),
    }
}

/// The test stores keep their shard ledger in the embedded store they wrap.
macro_rules! ledger_of_inner {
    ($t:ty) => {
        impl ShardLedger for $t {
            async fn ledger(&self, rule: &str) -> Result<Ledger, PortError> {
                self.inner.ledger(rule).await
            }
            async fn register(
                &self,
                rule: &str,
                shards: &[ShardProgress],
            ) -> Result<(), PortError> {
                self.inner.register(rule, shards).await
            }
            async fn advance(
                &self,
                rule: &str,
                shard: &str,
                records: Option<Micros>,
                sequence: &str,
            ) -> Result<(), PortError> {
                self.inner.advance(rule, shard, records, sequence).await
            }
            async fn caught_up(
                &self,
                rule: &str,
                shard: &str,
                micros: Micros,
            ) -> Result<(), PortError> {
                self.inner.caught_up(rule, shard, micros).await
            }
            async fn retire(&self, rule: &str, shard: &str) -> Result<(), PortError> {
                self.inner.retire(rule, shard).await
            }
        }
    };
}
ledger_of_inner!(Racing);
ledger_of_inner!(Flaky);

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Final windows (all closed and settled) and alerts equal the reference model's.
    #[test]
    fn windows_and_alerts_equal_the_model_under_any_delivery(
        steps in common::steps(90),
        seed in any::<u64>(),
    ) {
        let actions = common::plan(&steps, seed);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let d = deps(EmbeddedWindowStore::new());
            let (model, counted) = common::run(&d, &actions).await;
            let want = model.windows();
            prop_assert_eq!(common::observed_windows(&d.store.windows()), want.clone());
            prop_assert_eq!(common::observed_alerts(&d.outbox.alerts(), &want), model.alerts());
            prop_assert_eq!((counted.late, counted.future), (model.late, model.future), "each late and future reading counted once");
            Ok(())
        })?;
    }
}

/// The plans exercise what they claim to: stragglers that are late, closes mid-stream,
/// resolved alerts. (Over a fixed set of seeds, so it is deterministic.)
#[tokio::test]
async fn the_scenarios_reach_late_records_mid_stream_closes_and_resolutions() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config as RunnerConfig, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let (mut late, mut resolved, mut firing, mut future, mut reshards, mut lagging) =
        (0, 0, 0, 0, 0, 0);
    for seed in 0..40u64 {
        let steps = common::steps(90).new_tree(&mut runner).unwrap().current();
        let d = deps(EmbeddedWindowStore::new());
        let plan = common::plan(&steps, seed);
        let (model, _) = common::run(&d, &plan).await;
        late += model.late;
        future += model.future;
        reshards += plan.shards.len() - common::BASE_SHARDS;
        // Schedule passes with records waiting on the stream: a backlog.
        let mut seen = 0;
        for a in &plan.actions {
            match a {
                common::Action::Deliver { batch, .. } => seen += batch.len(),
                common::Action::Schedule(w) => {
                    lagging += usize::from(
                        plan.logs
                            .iter()
                            .flatten()
                            .filter(|r| r.arrival <= *w)
                            .count()
                            > seen,
                    )
                }
            }
        }
        resolved += model
            .alerts()
            .iter()
            .filter(|a| a.2 == AlertKind::Resolved.as_str())
            .count();
        firing += model
            .alerts()
            .iter()
            .filter(|a| a.2 == AlertKind::Firing.as_str())
            .count();
    }
    assert!(
        late > 10 && resolved > 5 && firing > 10 && future > 3 && reshards > 3 && lagging > 10,
        "late {late}, resolved {resolved}, firing {firing}, future {future}, new shards {reshards}, schedules during a backlog {lagging}"
    );
}

/// The embedded store's answers for everything a wrapper does not change.
macro_rules! delegate {
    () => {
        delegate!(@one starts(rule: &str, starts: &[Micros]) -> Vec<Option<bool>>);
        delegate!(@one open_start(rule: &str, start: Micros, end: Micros, close_at: Micros) -> ());
        delegate!(@one chunks(rule: &str, start: Micros, shards: Option<&[String]>) -> Vec<Chunk>);
        delegate!(@one mark_once(rule: &str, start: Micros, mark: &Mark) -> bool);
        delegate!(@one due_starts(rule: &str, t: Micros, limit: usize) -> Vec<Micros>);
        delegate!(@one head(rule: &str) -> Head);
        delegate!(@one settle_start(rule: &str, start: Micros) -> ());
    };
    (@one $name:ident($($a:ident: $t:ty),*) -> $r:ty) => {
        async fn $name(&self, $($a: $t),*) -> Result<$r, PortError> {
            self.inner.$name($($a),*).await
        }
    };
}

/// A store where another shard's invocation writes a chunk to a window start just as it
/// is being closed: right before the closer freezes it (in the decision), and after the
/// closer read the chunks (refused: late).
struct Racing {
    inner: EmbeddedWindowStore,
    raced: AtomicBool,
    late: AtomicBool,
}

fn racer(seq: &str, id: &str, value: f64, t: Micros) -> Chunk {
    Chunk::with_changes(
        "shardId-000000000002",
        seq,
        seq,
        [(
            "device1",
            reading_key(id),
            Entry {
                value,
                changed_micros: t,
                deleted: false,
            },
        )],
    )
}

impl WindowStore for Racing {
    delegate!();
    async fn put_chunk(
        &self,
        rule: &str,
        start: Micros,
        chunk: &Chunk,
    ) -> Result<Written, PortError> {
        self.inner.put_chunk(rule, start, chunk).await
    }
    async fn close_start(&self, rule: &str, start: Micros) -> Result<bool, PortError> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            let chunk = racer("1", "racer", 10.0, T0 + 30_000_000);
            assert_eq!(
                self.inner.put_chunk(rule, start, &chunk).await?,
                Written::Ok
            );
        }
        self.inner.close_start(rule, start).await
    }
    async fn put_head(&self, rule: &str, head: &Head) -> Result<Written, PortError> {
        if !self.late.swap(true, Ordering::SeqCst) {
            let start = head.last_closed.expect("closing a start");
            let chunk = racer("2", "too-late", 99.0, T0 + 31_000_000);
            assert_eq!(
                self.inner.put_chunk(rule, start, &chunk).await?,
                Written::Conflict,
                "a frozen start: the writer counts its readings late"
            );
        }
        self.inner.put_head(rule, head).await
    }
}

#[tokio::test]
async fn a_close_racing_another_shard_decides_on_the_final_statistics() {
    let d = deps(Racing {
        inner: EmbeddedWindowStore::new(),
        raced: AtomicBool::new(false),
        late: AtomicBool::new(false),
    });
    // Two readings of 70 (avg 70 would fire) ...
    let steps = [
        common::Step::Put {
            item: 0,
            device: 1,
            value: 70,
            advance_ms: 1_000,
            back_ms: 0,
            ahead: false,
        },
        common::Step::Put {
            item: 3,
            device: 1,
            value: 70,
            advance_ms: 1_000,
            back_ms: 0,
            ahead: false,
        },
    ];
    let plan = common::plan(&steps, 7);
    let mut stream = common::StreamView::default();
    for action in &plan.actions {
        if let common::Action::Deliver { wall, batch } = action {
            stream.show(&d.probe, &plan, *wall);
            let event = KinesisEvent {
                records: batch.iter().map(|r| r.record.clone()).collect(),
            };
            process_batch(&d, &event).await;
        }
    }
    // ... and a reading of 10 lands from another shard while the schedule closes it.
    d.clock.0.store(T0 + 2 * MIN, Ordering::SeqCst);
    stream.show(&d.probe, &plan, T0 + 2 * MIN);
    let report = close_idle(&d).await.unwrap();
    assert_eq!(report.windows_closed, 1);
    let w = d.store.inner.windows().pop().unwrap();
    assert!(w.closed && w.settled);
    // Decided on the two 70s and the 10 (avg 50): without the 10 (avg 70), or with the
    // refused 99 (avg 62), it would have fired.
    assert!(
        d.outbox.alerts().is_empty(),
        "no alert from statistics the window does not end with: {:?}",
        d.outbox.alerts()
    );
}

/// A store whose chunk writes fail transiently (throttling) a given number of times.
struct Flaky {
    inner: EmbeddedWindowStore,
    failures: std::sync::atomic::AtomicUsize,
}

impl WindowStore for Flaky {
    delegate!();
    async fn put_chunk(
        &self,
        rule: &str,
        start: Micros,
        chunk: &Chunk,
    ) -> Result<Written, PortError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 && chunk.entries.iter().any(|e| e.entry.value > 80.0) {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(PortError::transient("dynamodb.PutItem", "throttled"));
        }
        self.inner.put_chunk(rule, start, chunk).await
    }
    async fn close_start(&self, rule: &str, start: Micros) -> Result<bool, PortError> {
        self.inner.close_start(rule, start).await
    }
    async fn put_head(&self, rule: &str, head: &Head) -> Result<Written, PortError> {
        self.inner.put_head(rule, head).await
    }
}

/// Guarantee 1's other half: a throttled chunk write reports the first record of that
/// window start as the batch item failure; Lambda's retry from there completes the windows
/// exactly (what was written before is not counted twice).
#[tokio::test]
async fn a_transient_failure_retries_from_the_first_record_not_durable() {
    let d = deps(Flaky {
        inner: EmbeddedWindowStore::new(),
        failures: std::sync::atomic::AtomicUsize::new(1),
    });
    let steps: Vec<common::Step> = [
        (0, 0, 50),
        (1, 1, 55),
        (3, 0, 60),
        (6, 1, 90),
        (9, 0, 65),
        (12, 1, 45),
    ]
    .into_iter()
    .map(|(item, device, value)| common::Step::Put {
        item,
        device,
        value,
        advance_ms: 1_000,
        back_ms: 0,
        ahead: false,
    })
    .collect();
    // Items 0, 3, 6, 9, 12 and 1... are on shards by item % 3: take shard 0's records.
    let shard0: Vec<common::Rec> = common::plan(&steps, 1)
        .actions
        .into_iter()
        .flat_map(|a| match a {
            common::Action::Deliver { batch, .. } => batch,
            common::Action::Schedule(_) => Vec::new(),
        })
        .filter(|r| {
            r.record
                .event_id
                .as_deref()
                .is_some_and(|e| e.starts_with("shardId-000000000000"))
        })
        .fold(Vec::<common::Rec>::new(), |mut acc, r| {
            if !acc
                .iter()
                .any(|x| x.record.kinesis.sequence_number == r.record.kinesis.sequence_number)
            {
                acc.push(r);
            }
            acc
        });
    let event = KinesisEvent {
        records: shard0.iter().map(|r| r.record.clone()).collect(),
    };
    let (response, _) = process_batch(&d, &event).await;
    // The chunk of the window start holding the 90 failed: the batch is retried from the
    // first record of that start (all readings here are in one minute: the first record).
    let first_of_start = 0;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some(
            shard0[first_of_start]
                .record
                .kinesis
                .sequence_number
                .as_str()
        )
    );
    let retry = KinesisEvent {
        records: event.records[first_of_start..].to_vec(),
    };
    let (response, _) = process_batch(&d, &retry).await;
    assert!(response.batch_item_failures.is_empty());
    let plan = common::plan(&steps, 1);
    let mut model = common::Model::new();
    model.deliver(&plan, &shard0);
    let got = common::observed_windows_open(&d.store.inner.windows());
    assert_eq!(got, model.windows());
}

/// A store where the first closer to read the head after freezing a start (once armed)
/// stalls there until another closer has decided that start and the next one and settled
/// both, as a schedule invocation descheduled between two requests would; it counts the
/// late markers put.
struct Overtaken {
    inner: EmbeddedWindowStore,
    /// Whether the next head read stalls.
    armed: AtomicBool,
    /// The start the other closer must have settled before the stalled one goes on.
    until: AtomicI64,
    marks: std::sync::atomic::AtomicUsize,
}
ledger_of_inner!(Overtaken);

impl WindowStore for Overtaken {
    delegate!(@one starts(rule: &str, starts: &[Micros]) -> Vec<Option<bool>>);
    delegate!(@one open_start(rule: &str, start: Micros, end: Micros, close_at: Micros) -> ());
    delegate!(@one chunks(rule: &str, start: Micros, shards: Option<&[String]>) -> Vec<Chunk>);
    delegate!(@one due_starts(rule: &str, t: Micros, limit: usize) -> Vec<Micros>);
    delegate!(@one settle_start(rule: &str, start: Micros) -> ());
    delegate!(@one put_chunk(rule: &str, start: Micros, chunk: &Chunk) -> Written);
    delegate!(@one close_start(rule: &str, start: Micros) -> bool);
    delegate!(@one put_head(rule: &str, head: &Head) -> Written);
    async fn head(&self, rule: &str) -> Result<Head, PortError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let until = self.until.load(Ordering::SeqCst);
            // Yields to the other closer (no timer: it runs whenever this task yields).
            for _ in 0..10_000 {
                let settled = !self
                    .inner
                    .due_starts(rule, Micros::MAX, 100)
                    .await?
                    .contains(&until);
                if self.inner.head(rule).await?.last_closed >= Some(until) && settled {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        self.inner.head(rule).await
    }
    async fn mark_once(&self, rule: &str, start: Micros, mark: &Mark) -> Result<bool, PortError> {
        let created = self.inner.mark_once(rule, start, mark).await?;
        self.marks.fetch_add(usize::from(created), Ordering::SeqCst);
        Ok(created)
    }
}

/// Two schedule invocations closing the same starts: one freezes the oldest start, then
/// pauses before reading the head while the other decides that start and the next. The
/// paused one finds the head past its start — settled by the other, not a start opened
/// after its turn — and counts nothing late. (The concurrency test through moto found it:
/// the ~100 readings of one start counted late, in 2 runs of 42.)
#[tokio::test]
async fn a_closer_overtaken_by_another_counts_nothing_late() {
    // Readings of two devices over three minutes, with an hour of lateness: nothing closes
    // before the schedule.
    let steps: Vec<common::Step> = (0..9)
        .map(|i| common::Step::Put {
            item: i % 2,
            device: i % 2,
            value: 40 + 5 * i as u32,
            advance_ms: 20_000,
            back_ms: 0,
            ahead: false,
        })
        .collect();
    let plan = common::plan(&steps, 3);
    let mut model = common::Model::with_window(MIN, HOUR);
    let d = Deps {
        config: common::config_with("w", "a", &[("ALLOWED_LATENESS_SECONDS", "3600")]),
        ..deps(Overtaken {
            inner: EmbeddedWindowStore::new(),
            armed: AtomicBool::new(false),
            until: AtomicI64::new(0),
            marks: Default::default(),
        })
    };
    for action in &plan.actions {
        if let common::Action::Deliver { batch, .. } = action {
            model.deliver(&plan, batch);
            let event = KinesisEvent {
                records: batch.iter().map(|r| r.record.clone()).collect(),
            };
            let (response, report) = process_batch(&d, &event).await;
            assert!(response.batch_item_failures.is_empty());
            assert_eq!(
                report.windows_closed, 0,
                "nothing closes before the schedule"
            );
        }
    }
    let starts: std::collections::BTreeSet<Micros> = d
        .store
        .inner
        .windows()
        .iter()
        .map(|w| w.start_micros)
        .collect();
    assert!(starts.len() >= 3, "readings in three minutes: {starts:?}");
    d.store
        .until
        .store(*starts.iter().nth(1).unwrap(), Ordering::SeqCst);
    d.store.armed.store(true, Ordering::SeqCst);

    d.clock.0.store(T0 + 2 * HOUR, Ordering::SeqCst);
    common::StreamView::default().show(&d.probe, &plan, T0 + 2 * HOUR);
    let (a, b) = tokio::join!(close_idle(&d), close_idle(&d));
    let (a, b) = (a.unwrap(), b.unwrap());

    assert!(!d.store.armed.load(Ordering::SeqCst), "a closer paused");
    assert_eq!((a.late, b.late), (0, 0), "nothing counted late");
    assert_eq!(
        d.store.marks.load(Ordering::SeqCst),
        0,
        "no late marker put"
    );
    let windows = d.store.inner.windows();
    assert_eq!(
        a.windows_closed + b.windows_closed,
        windows.len(),
        "every window decided once"
    );
    assert!(windows.iter().all(|w| w.closed && w.settled));
    assert_eq!(common::observed_windows(&windows), model.windows());
}

/// The other side of the same check: a start opened after the head passed it (which the
/// watermark rules out) and never settled has its readings counted late, once each, by
/// whichever closers find it.
#[tokio::test]
async fn a_start_opened_after_its_turn_has_its_readings_counted_late_once() {
    let d = deps(EmbeddedWindowStore::new());
    let rule = d.config.rule.name.clone();
    let head = Head {
        last_closed: Some(T0 + 5 * MIN),
        ..Head::default()
    };
    assert_eq!(d.store.put_head(&rule, &head).await.unwrap(), Written::Ok);
    let start = T0 + MIN;
    d.store
        .open_start(&rule, start, start + MIN, start + MIN + 5_000_000)
        .await
        .unwrap();
    let mut chunk = racer("1", "a", 70.0, start + 1_000_000);
    chunk.push(
        "device2",
        reading_key("b"),
        Entry {
            value: 71.0,
            changed_micros: start + 2_000_000,
            deleted: false,
        },
    );
    assert_eq!(
        d.store.put_chunk(&rule, start, &chunk).await.unwrap(),
        Written::Ok
    );

    // Two closers at a watermark past it (the stream's, as a batch or the schedule has it).
    let close = || async {
        let mut r = window_aggregator::BatchReport::default();
        window_aggregator::close_due(&d, T0 + HOUR, None, &mut r)
            .await
            .unwrap();
        r
    };
    let (a, b) = tokio::join!(close(), close());
    assert_eq!(a.late + b.late, 2, "both readings counted late, once");
    assert_eq!(
        a.windows_closed + b.windows_closed,
        0,
        "not decided: its turn passed"
    );
    assert_eq!(close().await.late, 0, "settled: not counted again");
    assert!(
        d.store
            .due_starts(&rule, Micros::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(d.outbox.alerts().is_empty());
}
