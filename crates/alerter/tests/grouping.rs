//! Alert grouping (#19) under any interleaving: accident alerts of a few (county, state)
//! groups are delivered in random order, some twice, some joined twice (a retry after a
//! lost response), while two schedule invocations flush concurrently at every tick and
//! every store call may yield to the others. Checked against the input, not the rules:
//! every alert delivered is in exactly one batch; a group's batches are numbered 1, 2, …;
//! its first batch is sealed no sooner than `group_wait` after its first alert arrived and
//! the next ones at least `group_interval` apart; nothing is left waiting at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use alerter::group::{flush_due, join};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use streamwatch_adapters::groups::{DynamoDbGroupStore, EmbeddedGroupStore};
use streamwatch_core::notify::group::{
    GroupBatch, GroupKey, GroupPolicy, GroupState, GroupStore, Joined,
};
use streamwatch_core::time::Micros;
use streamwatch_core::{AlertKind, AlertRecord, PortError};

const SEC: Micros = 1_000_000;
const T0: Micros = 1_795_262_400_000_000;
const WAIT: Micros = 30 * SEC;
const INTERVAL: Micros = 300 * SEC;
const TICK: Micros = 60 * SEC;

/// The store, with a seeded number of yields before every call, so concurrent joins and
/// flushes interleave at every await point.
struct Yielding {
    inner: EmbeddedGroupStore,
    rng: AtomicU64,
}

impl Yielding {
    async fn pause(&self) {
        let mut x = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x ^= x >> 29;
        for _ in 0..(x % 8) {
            tokio::task::yield_now().await;
        }
    }
}

impl GroupStore for Yielding {
    async fn put_member(&self, g: &GroupKey, a: &AlertRecord) -> Result<Joined, PortError> {
        self.pause().await;
        self.inner.put_member(g, a).await
    }
    async fn group(&self, g: &GroupKey) -> Result<Option<GroupState>, PortError> {
        self.pause().await;
        self.inner.group(g).await
    }
    async fn put_group(
        &self,
        g: &GroupKey,
        expected: Option<u64>,
        next: &GroupState,
    ) -> Result<bool, PortError> {
        self.pause().await;
        self.inner.put_group(g, expected, next).await
    }
    async fn waiting(&self, g: &GroupKey) -> Result<Vec<AlertRecord>, PortError> {
        self.pause().await;
        self.inner.waiting(g).await
    }
    async fn seal(&self, v: u64, next: &GroupState, b: &GroupBatch) -> Result<bool, PortError> {
        self.pause().await;
        self.inner.seal(v, next, b).await
    }
    async fn batch(&self, id: &str) -> Result<Option<GroupBatch>, PortError> {
        self.pause().await;
        self.inner.batch(id).await
    }
    async fn due(&self, now: Micros, limit: usize) -> Result<Vec<GroupKey>, PortError> {
        self.pause().await;
        self.inner.due(now, limit).await
    }
}

const COUNTIES: [&str; 3] = ["Harris", "Travis", "Dallas"];

fn accident(i: usize, county: usize, severity: u8) -> AlertRecord {
    AlertRecord {
        id: format!("accident-severity#id#A-{i}"),
        rule: "accident-severity".into(),
        key: format!("A-{i}"),
        kind: AlertKind::Event,
        severity: severity.to_string(),
        summary: format!("Severity {severity} accident in {}", COUNTIES[county]),
        event_time_micros: T0 + i as i64,
        window: None,
        details: [
            ("County".to_owned(), COUNTIES[county].to_owned()),
            ("State".to_owned(), "TX".to_owned()),
        ]
        .into(),
        source: vec![],
    }
}

/// One delivery: which alert, at which second after T0, joined how many times.
#[derive(Debug, Clone)]
struct Delivery {
    alert: usize,
    at_secs: i64,
    joins: usize,
}

fn scenario() -> impl Strategy<Value = (Vec<(usize, u8)>, Vec<Delivery>, u64)> {
    prop::collection::vec((0..COUNTIES.len(), 3u8..=4), 1..25)
        .prop_flat_map(|alerts| {
            let n = alerts.len();
            // Every alert delivered once, some again (a producer or stream duplicate).
            let deliveries =
                prop::collection::vec((0..900i64, 1..3usize), n).prop_flat_map(move |first| {
                    let dups = prop::collection::vec((0..n, 0..900i64), 0..n);
                    (Just(first.clone()), dups)
                });
            (Just(alerts), deliveries, any::<u64>())
        })
        .prop_map(|(alerts, (first, dups), seed)| {
            let mut deliveries: Vec<Delivery> = first
                .into_iter()
                .enumerate()
                .map(|(alert, (at_secs, joins))| Delivery {
                    alert,
                    at_secs,
                    joins,
                })
                .collect();
            deliveries.extend(dups.into_iter().map(|(alert, at_secs)| Delivery {
                alert,
                at_secs,
                joins: 1,
            }));
            (alerts, deliveries, seed)
        })
}

/// The batches sealed, with the tick that sealed each.
type Sealed = Vec<(GroupBatch, Micros)>;

/// Delivers `deliveries` tick by tick through `store`; with `concurrent`, each tick's joins
/// and two schedule flushes run at once, else one after the other in delivery order (moto:
/// its transactions are not isolated from concurrent writes). Also gives each group's
/// first arrival.
async fn drive<S: GroupStore>(
    store: &S,
    records: &[AlertRecord],
    deliveries: &[Delivery],
    concurrent: bool,
) -> (Sealed, BTreeMap<GroupKey, Micros>) {
    let policy = GroupPolicy {
        by: vec!["County".into(), "State".into()],
        wait_micros: WAIT,
        interval_micros: INTERVAL,
    };
    let mut sealed: Sealed = Vec::new();
    let mut first_arrival: BTreeMap<GroupKey, Micros> = BTreeMap::new();
    let last = deliveries.iter().map(|d| d.at_secs).max().unwrap_or(0) * SEC;
    let mut tick = T0;
    while tick <= T0 + last + WAIT + 2 * INTERVAL {
        let now_deliveries: Vec<&Delivery> = deliveries
            .iter()
            .filter(|d| (tick - TICK..tick).contains(&(T0 + d.at_secs * SEC)))
            .collect();
        for d in &now_deliveries {
            let g = policy.group_of(&records[d.alert]);
            let at = T0 + d.at_secs * SEC;
            first_arrival
                .entry(g)
                .and_modify(|t| *t = (*t).min(at))
                .or_insert(at);
        }
        let joins = now_deliveries.iter().flat_map(|d| {
            let (policy, alert) = (&policy, &records[d.alert]);
            (0..d.joins).map(move |_| join(store, policy, alert, T0 + d.at_secs * SEC))
        });
        let batches = if concurrent {
            let (joined, a, b) = tokio::join!(
                futures::future::join_all(joins),
                flush_due(store, tick, 100),
                flush_due(store, tick, 100)
            );
            assert!(joined.iter().all(Result::is_ok), "{joined:?}");
            a.unwrap().into_iter().chain(b.unwrap()).collect::<Vec<_>>()
        } else {
            for j in joins {
                j.await.unwrap();
            }
            flush_due(store, tick, 100).await.unwrap()
        };
        sealed.extend(batches.into_iter().map(|b| (b, tick)));
        tick += TICK;
    }
    (sealed, first_arrival)
}

fn records_of(alerts: &[(usize, u8)]) -> Vec<AlertRecord> {
    alerts
        .iter()
        .enumerate()
        .map(|(i, &(county, severity))| accident(i, county, severity))
        .collect()
}

async fn run(alerts: &[(usize, u8)], deliveries: &[Delivery], seed: u64) -> Sealed {
    let store = Yielding {
        inner: EmbeddedGroupStore::new(),
        rng: AtomicU64::new(seed),
    };
    let records = records_of(alerts);
    let (sealed, first_arrival) = drive(&store, &records, deliveries, true).await;
    check(&records, deliveries, &sealed, &first_arrival);
    assert_eq!(
        store.inner.batches().len(),
        sealed.len(),
        "a seal nobody returned"
    );
    assert!(store.inner.unsealed().values().all(Vec::is_empty));
    sealed
}

fn check(
    records: &[AlertRecord],
    deliveries: &[Delivery],
    sealed: &[(GroupBatch, Micros)],
    first_arrival: &BTreeMap<GroupKey, Micros>,
) {
    // Every delivered alert in exactly one batch.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (batch, _) in sealed {
        assert!(!batch.alerts.is_empty(), "empty batch {batch:?}");
        for a in &batch.alerts {
            *seen.entry(a.id.as_str()).or_default() += 1;
        }
    }
    let delivered: BTreeSet<&str> = deliveries
        .iter()
        .map(|d| records[d.alert].id.as_str())
        .collect();
    assert_eq!(seen.keys().copied().collect::<BTreeSet<_>>(), delivered);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    // Per group: numbered 1..n, paced by group_wait then group_interval.
    let mut by_group: BTreeMap<&GroupKey, Vec<(u64, Micros)>> = BTreeMap::new();
    for (batch, at) in sealed {
        assert!(
            batch
                .alerts
                .iter()
                .all(|a| { a.details.get("County") == batch.group.values.first().map(|(_, v)| v) })
        );
        by_group
            .entry(&batch.group)
            .or_default()
            .push((batch.number, *at));
    }
    for (group, batches) in by_group {
        let numbers: Vec<u64> = batches.iter().map(|b| b.0).collect();
        assert_eq!(numbers, (1..=batches.len() as u64).collect::<Vec<_>>());
        assert!(batches[0].1 >= first_arrival[group] + WAIT, "{batches:?}");
        for w in batches.windows(2) {
            assert!(w[1].1 - w[0].1 >= INTERVAL, "{group:?}: {batches:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn every_alert_is_in_exactly_one_group_notification((alerts, deliveries, seed) in scenario()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(&alerts, &deliveries, seed));
    }
}

#[tokio::test]
async fn the_first_alert_waits_for_company_and_later_ones_for_the_interval() {
    // GIVEN three Harris accidents 10 s apart and a fourth 2 min after the first batch
    let deliveries: Vec<Delivery> = [0, 10, 20, 150]
        .iter()
        .enumerate()
        .map(|(alert, &at_secs)| Delivery {
            alert,
            at_secs,
            joins: 1,
        })
        .collect();
    let alerts = vec![(0, 3), (0, 4), (0, 3), (0, 4)];
    let sealed = run(&alerts, &deliveries, 7).await;
    // THEN two notifications: the first three together, worst first, then the fourth alone
    let ids: Vec<Vec<&str>> = sealed
        .iter()
        .map(|(b, _)| b.alerts.iter().map(|a| a.key.as_str()).collect())
        .collect();
    assert_eq!(ids, [vec!["A-1", "A-0", "A-2"], vec!["A-3"]]);
    assert_eq!(
        sealed[0].0.notification_id(),
        "accident-severity#group#County=Harris&State=TX#1"
    );
}

fn record_type(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> String {
    item.get("record_type")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// The same on the alerts table in moto (`DynamoDbGroupStore`): a few random scenarios,
/// drained one call at a time; afterwards the table holds one batch record per batch, one
/// member item per alert delivered, every one sealed, and no group is left due.
#[tokio::test]
async fn on_the_alerts_table_every_alert_is_in_exactly_one_batch() {
    let moto = streamwatch_tests::MotoServer::start();
    let config = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for case in 0..6 {
        let table = format!("alerts-{case}");
        streamwatch_tests::create_alerts_table(&ddb, &table).await;
        let store = DynamoDbGroupStore::new(ddb.clone(), &table);
        let (alerts, deliveries, _) = scenario().new_tree(&mut runner).unwrap().current();
        let records = records_of(&alerts);
        let (sealed, first_arrival) = drive(&store, &records, &deliveries, false).await;
        check(&records, &deliveries, &sealed, &first_arrival);
        let items = streamwatch_tests::scan_all(&ddb, &table).await;
        let of = |t: &str| {
            items
                .iter()
                .filter(|i| record_type(i) == t)
                .collect::<Vec<_>>()
        };
        assert_eq!(of("group_batch").len(), sealed.len(), "case {case}");
        let delivered: BTreeSet<usize> = deliveries.iter().map(|d| d.alert).collect();
        assert_eq!(of("group_member").len(), delivered.len(), "case {case}");
        assert!(
            of("group_member")
                .iter()
                .all(|m| m.contains_key("sealed_in"))
        );
        assert!(
            of("group")
                .iter()
                .all(|g| !g.contains_key("pending_bucket"))
        );
    }
}
