//! Silences (#19): an alert decided while a matching silence is in force is recorded as
//! silenced and never sent; everything else goes out exactly as without silences — the
//! decisions (FIRING, REMINDER, per-event) are the same, because a silence changes only what
//! is sent. Checked against a control run of the same deliveries without silences, and the
//! matching worked out here from the generated alerts' own attributes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use alerter::{Deps, Grouping, ManualClock, Silences, process};
use common::{MIN, T0, settings, stream_event, window_alert};
use proptest::prelude::*;
use streamwatch_adapters::alert_state::EmbeddedAlertStateStore;
use streamwatch_adapters::silences::EmbeddedSilenceStore;
use streamwatch_adapters::sns::EmbeddedNotifier;
use streamwatch_core::notify::silence::{Silence, SilenceStore};
use streamwatch_core::notify::{NotificationKind, NotificationStatus, StoredDecision};
use streamwatch_core::time::Micros;
use streamwatch_core::{AlertKind, AlertRecord};

type SilenceDeps = Deps<
    EmbeddedAlertStateStore,
    EmbeddedNotifier,
    ManualClock,
    alerter::NoGroups,
    EmbeddedSilenceStore,
>;

const COUNTIES: [&str; 3] = ["Harris", "Dallas", "Travis"];
const SEC: Micros = 1_000_000;

fn deps() -> SilenceDeps {
    Deps {
        store: EmbeddedAlertStateStore::new(),
        notifier: EmbeddedNotifier::new(),
        clock: ManualClock::new(T0),
        settings: settings(),
        grouping: Grouping::off(),
        silences: Silences::new(EmbeddedSilenceStore::new()),
    }
}

fn accident(i: usize, county: &str) -> AlertRecord {
    common::accident_alert(i, &[("County", county)])
}

/// One generated delivery: the alert, when (wall clock) it is first delivered, and the
/// attributes a silence may match, written down as the alert was made.
#[derive(Debug, Clone)]
struct Delivery {
    alert: AlertRecord,
    at: Micros,
    attrs: BTreeMap<&'static str, String>,
    again: bool,
}

/// Turbine firing windows (device1..3, in window order per key) and accidents, delivered
/// one per 20 s of wall clock, some twice.
fn deliveries() -> impl Strategy<Value = Vec<Delivery>> {
    prop::collection::vec((0..5usize, 0..3usize, any::<bool>()), 1..30).prop_map(|picks| {
        let mut next_window = [0i64; 3];
        picks
            .into_iter()
            .enumerate()
            .map(|(i, (what, which, again))| {
                let at = T0 + i as i64 * 20 * SEC;
                if what < 2 {
                    let key = format!("device{}", which + 1);
                    next_window[which] += 1 + what as i64 * 3;
                    let alert = window_alert(&key, next_window[which], AlertKind::Firing);
                    let attrs = BTreeMap::from([("key", key)]);
                    Delivery {
                        alert,
                        at,
                        attrs,
                        again,
                    }
                } else {
                    let county = COUNTIES[which];
                    let alert = accident(i, county);
                    let attrs =
                        BTreeMap::from([("key", alert.key.clone()), ("County", county.to_owned())]);
                    Delivery {
                        alert,
                        at,
                        attrs,
                        again,
                    }
                }
            })
            .collect()
    })
}

fn silences() -> impl Strategy<Value = Vec<Silence>> {
    let one =
        (any::<bool>(), 0..6usize, 0..40i64, 1..40i64).prop_map(|(turbines, m, from, len)| {
            let (rule, matchers) = if turbines {
                let matchers = match m {
                    0 => vec![],
                    _ => vec![("key".to_owned(), format!("device{}", m % 3 + 1))],
                };
                ("windspeed-avg", matchers)
            } else {
                let matchers = match m {
                    0 => vec![],
                    1..=3 => vec![("County".to_owned(), COUNTIES[m - 1].to_owned())],
                    _ => vec![
                        ("County".to_owned(), COUNTIES[m % 3].to_owned()),
                        ("severity".to_owned(), "4".to_owned()),
                    ],
                };
                ("accident-severity", matchers)
            };
            Silence {
                id: String::new(),
                rule: rule.into(),
                matchers,
                starts_micros: T0 + from * 15 * SEC,
                ends_micros: T0 + (from + len) * 15 * SEC,
                comment: "generated".into(),
                created_by: "proptest".into(),
            }
        });
    prop::collection::vec(one, 0..4).prop_map(|mut all| {
        for (i, s) in all.iter_mut().enumerate() {
            s.id = format!("s{i}");
        }
        all
    })
}

/// Whether a generated silence matches a delivery at its first delivery time (worked out
/// from the attributes written down when the alert was made).
fn model_silenced(d: &Delivery, silences: &[Silence]) -> bool {
    silences.iter().any(|s| {
        s.rule == d.alert.rule
            && s.starts_micros <= d.at
            && d.at < s.ends_micros
            && s.matchers.iter().all(|(k, v)| {
                let value = if k == "severity" {
                    Some(&d.alert.severity)
                } else {
                    d.attrs.get(k.as_str())
                };
                value == Some(v)
            })
    })
}

/// Delivers every alert at its time (duplicates 10 s later); the ids of the alerts sent.
async fn run(deps: &SilenceDeps, plan: &[Delivery]) -> (Vec<String>, usize) {
    let mut silenced = 0;
    let mut seq = 0;
    for (i, d) in plan.iter().enumerate() {
        let times = if d.again { 2 } else { 1 };
        for n in 0..times {
            deps.clock.set(d.at + n * 10 * SEC);
            seq += 1;
            let event = stream_event(std::slice::from_ref(&d.alert), seq);
            let (response, report) = process(deps, &event, &format!("inv-{i}-{n}")).await;
            assert!(response.batch_item_failures.is_empty());
            silenced += report.silenced;
        }
    }
    let sent = deps
        .notifier
        .published()
        .iter()
        .map(|m| m.notification_id.clone())
        .collect();
    (sent, silenced)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn silenced_alerts_are_recorded_never_sent_and_change_no_other_decision(
        plan in deliveries(),
        silences in silences(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let control = deps();
            let (sent_control, none) = run(&control, &plan).await;
            assert_eq!(none, 0);
            let with = deps();
            for s in &silences {
                with.silences.store.add(s).await.unwrap();
            }
            let (sent, counted) = run(&with, &plan).await;

            let silenced: BTreeSet<String> = plan
                .iter()
                .filter(|d| sent_control.contains(&d.alert.id) && model_silenced(d, &silences))
                .map(|d| d.alert.id.clone())
                .collect();
            let expected: Vec<String> = sent_control
                .iter()
                .filter(|id| !silenced.contains(*id))
                .cloned()
                .collect();
            assert_eq!(sent, expected, "sent = the control run's minus the silenced");
            assert_eq!(counted, silenced.len(), "each silenced alert counted once");
            let records: BTreeMap<String, _> = with
                .store
                .notifications()
                .into_iter()
                .map(|r| (r.alert_id.clone(), r))
                .collect();
            for id in &silenced {
                let r = &records[id];
                assert_eq!(r.status, NotificationStatus::Suppressed, "{id}");
                assert!(
                    matches!(&r.outcome, StoredDecision::Suppressed(why) if why.starts_with("silenced by s")),
                    "{id}: {:?}",
                    r.outcome
                );
            }
            // Every delivered alert has its record, silenced or not.
            for d in &plan {
                assert!(records.contains_key(&d.alert.id), "{} not recorded", d.alert.id);
            }
        });
    }
}

/// The case: a turbine under maintenance is silenced; when the silence is expired
/// while it still fires, its next reminder goes out on the usual schedule.
#[tokio::test]
async fn a_reminder_goes_out_as_usual_once_the_silence_ends() {
    let d = deps();
    d.silences
        .store
        .add(&Silence {
            id: "maint".into(),
            rule: "windspeed-avg".into(),
            matchers: vec![("key".into(), "device3".into())],
            starts_micros: T0,
            ends_micros: T0 + 120 * MIN,
            comment: "blade inspection".into(),
            created_by: "test".into(),
        })
        .await
        .unwrap();
    // Windows 0..=30 of device3 fire, one per wall-clock minute; device1 fires at window 0.
    // The repeat interval is 15 min of event time: FIRING at 0, REMINDERs at 15 and 30.
    let mut silenced = 0;
    for i in 0..=30 {
        d.clock.set(T0 + i * MIN);
        if i == 20 {
            assert!(
                d.silences
                    .store
                    .expire("maint", T0 + i * MIN)
                    .await
                    .unwrap()
            );
        }
        let mut alerts = vec![window_alert("device3", i, AlertKind::Firing)];
        if i == 0 {
            alerts.push(window_alert("device1", 0, AlertKind::Firing));
        }
        let (_, report) = process(&d, &stream_event(&alerts, 100 + i as u64 * 2), "inv").await;
        silenced += report.silenced;
    }
    let sent: Vec<(String, NotificationKind)> = d
        .notifier
        .published()
        .iter()
        .map(|m| (m.notification_id.clone(), m.kind))
        .collect();
    assert_eq!(
        silenced, 2,
        "the FIRING (window 0) and the REMINDER (window 15)"
    );
    let reminder = window_alert("device3", 15, AlertKind::Firing).id;
    assert!(!sent.iter().any(|(id, _)| *id == reminder));
    // Expired at window 20: no catch-up message then; the REMINDER due at 30 goes out.
    assert_eq!(
        sent,
        [
            (
                window_alert("device1", 0, AlertKind::Firing).id,
                NotificationKind::Firing
            ),
            (
                window_alert("device3", 30, AlertKind::Firing).id,
                NotificationKind::Reminder
            ),
        ],
    );
}
