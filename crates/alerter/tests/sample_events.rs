//! GIVEN the sample DynamoDB stream events in `events/`, WHEN the real handler processes
//! them with the embedded store and notifier, THEN the notifications and the stored state
//! are what the rules say.

mod common;

use std::time::{Duration, SystemTime};

use alerter::process;
use common::*;
use streamwatch_adapters::alerts::alert_item;
use streamwatch_core::notify::{KeyStatus, NotificationStatus, StoredDecision};
use streamwatch_core::time::format_micros;

#[tokio::test]
async fn a_new_firing_alert_sends_one_firing_notification() {
    let deps = deps();
    let (response, report) = process(&deps, &event(FIRING), "inv-1").await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.alerts, report.firing, report.sent()), (1, 1, 1));
    let sent = deps.notifier.published();
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(
        m.subject,
        "[FIRING] Wind speed avg 72.4 mph > 60 on device3"
    );
    for line in [
        "device3 started firing rule windspeed-avg.",
        "Rule:         windspeed-avg",
        "Key:          device3",
        "Window:       2026-11-21T12:00:00.000Z to 2026-11-21T12:01:00.000Z (1 min)",
        "Readings:     avg 72.4, min 65, max 80, count 12",
        "Condition:    avg > 60 (threshold 60)",
        "What to do:",
    ] {
        assert!(m.email.contains(line), "missing {line:?} in\n{}", m.email);
    }
    assert_eq!(
        m.attributes,
        [
            ("key", "device3"),
            ("rule", "windspeed-avg"),
            ("severity", "critical"),
            ("state", "firing")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into()
    );
    let machine: serde_json::Value = serde_json::from_str(&m.json).unwrap();
    assert_eq!(
        machine["alert_id"],
        "windspeed-avg#device3#1795262400000000#firing"
    );
    assert_eq!(machine["window"]["max"], 80.0);
    assert_eq!(machine["repeat_interval_seconds"], 900);

    let records = deps.store.inner.notifications();
    assert_eq!(records.len(), 1);
    assert!(
        matches!(&records[0].status, NotificationStatus::Sent { message_id, .. } if message_id == "embedded-1")
    );
    assert_eq!(records[0].attempts, 1);
    let states = deps.store.inner.states();
    assert_eq!(states[0].status, KeyStatus::Firing);
    assert_eq!(states[0].since_micros, T0 + MIN);
}

#[tokio::test]
async fn a_key_still_firing_fifteen_minutes_later_gets_a_reminder_then_a_resolved() {
    let deps = deps();
    for (i, sample) in [FIRING, REMINDER, RESOLVED].into_iter().enumerate() {
        let (response, _) = process(&deps, &event(sample), &format!("inv-{i}")).await;
        assert!(response.batch_item_failures.is_empty());
    }
    assert_eq!(
        deps.notifier.subjects(),
        [
            "[FIRING] Wind speed avg 72.4 mph > 60 on device3",
            "[REMINDER] Wind speed avg 74.1 mph > 60 on device3 (firing for 15 min)",
            "[RESOLVED] Wind speed avg 41.5 mph back under 60 on device3",
        ]
    );
    let resolved = &deps.notifier.published()[2];
    if std::env::var_os("SHOW_MESSAGES").is_some() {
        for m in deps.notifier.published() {
            println!("{}\n----\n{}\n----\n{}\n====", m.email, m.sms, m.json);
        }
    }
    assert_eq!(resolved.attributes["state"], "resolved");
    assert!(
        resolved
            .email
            .contains("device3 is back to normal for rule windspeed-avg.")
    );
    assert!(resolved.email.contains(&format!(
        "Firing since: {} (16 min, 2 firing alerts)",
        format_micros(T0 + MIN)
    )));
    assert_eq!(deps.store.inner.states()[0].status, KeyStatus::Resolved);
}

#[tokio::test]
async fn a_repeat_within_the_interval_is_suppressed_and_recorded_with_why() {
    let deps = deps();
    let repeat = window_alert("device3", 7, streamwatch_core::AlertKind::Firing);
    process(&deps, &event(FIRING), "inv-1").await;
    let (response, report) = process(
        &deps,
        &stream_event(std::slice::from_ref(&repeat), 50),
        "inv-2",
    )
    .await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.suppressed, report.sent()), (1, 0));
    assert_eq!(deps.notifier.published().len(), 1);
    let record = deps
        .store
        .inner
        .notifications()
        .into_iter()
        .find(|r| r.alert_id == repeat.id)
        .unwrap();
    assert_eq!(record.status, NotificationStatus::Suppressed);
    let StoredDecision::Suppressed(reason) = &record.outcome else {
        panic!("{record:?}")
    };
    assert_eq!(
        reason,
        "within repeat interval: last notified for event time 2026-11-21T12:01:00.000Z, next reminder from 2026-11-21T12:16:00.000Z"
    );
}

#[tokio::test]
async fn an_accident_alert_says_where_when_and_how_bad() {
    let deps = deps();
    let (response, report) = process(&deps, &event(ACCIDENT), "inv-1").await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.events, 1);
    let m = &deps.notifier.published()[0];
    assert_eq!(m.subject, "[ALERT] Severity 4 accident in Dayton, OH");
    assert_eq!(m.attributes["severity"], "4");
    assert_eq!(m.attributes["state"], "event");
    assert_eq!(m.attributes["key"], "A-2716628");
    let details = m.email.split("Details:\n").nth(1).unwrap();
    let expected = "  Severity:     4\n  Start_Time:   2016-02-08T00:54:00\n  City:         Dayton\n  County:       Montgomery\n  State:        OH\n  Street:       I-70 E\n  Description:  Right lane blocked due to accident on I-70 E at Exit 165.\n";
    assert!(details.starts_with(expected), "{details}");
    assert!(m.email.contains("no reminder or resolved message follows"));
    assert!(
        m.sms.len() <= 140
            && m.sms
                .starts_with("[ALERT] Severity 4 accident in Dayton, OH")
    );
    // Per-event alerts keep no (rule, key) state.
    assert!(deps.store.inner.states().is_empty());
}

#[tokio::test]
async fn modify_remove_own_items_and_keys_only_inserts_are_ignored() {
    let deps = deps();
    let (response, report) = process(&deps, &event(IGNORED), "inv-1").await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (
            report.records,
            report.ignored,
            report.alerts,
            report.malformed
        ),
        (4, 4, 0, 0)
    );
    assert!(deps.notifier.published().is_empty());
    assert!(deps.store.inner.notifications().is_empty());
}

#[tokio::test]
async fn a_malformed_alert_record_is_skipped_and_counted_and_the_rest_is_sent() {
    let deps = deps();
    let broken = FIRING.replace(r#"\"kind\":\"firing\""#, r#"\"kind\":\"sideways\""#);
    assert_ne!(broken, FIRING);
    let mismatched = ACCIDENT.replacen(
        r#""S": "accident-severity#shardId"#,
        r#""S": "another-id#shardId"#,
        2,
    );
    let (response, report) = process(
        &deps,
        &batch(&[&broken, IGNORED, &mismatched, REMINDER]),
        "inv-1",
    )
    .await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.malformed, report.ignored, report.alerts), (2, 4, 1));
    // The reminder sample alone is a first firing for its key.
    assert_eq!(
        deps.notifier.subjects(),
        ["[FIRING] Wind speed avg 74.1 mph > 60 on device3"]
    );
}

#[test]
fn the_samples_hold_items_in_the_outbox_layout() {
    for sample in [FIRING, REMINDER, RESOLVED, ACCIDENT] {
        let event = event(sample);
        for record in &event.records {
            let image = serde_json::to_value(&record.change.new_image).unwrap();
            let alert: streamwatch_core::AlertRecord =
                serde_json::from_str(image["alert"]["S"].as_str().unwrap()).unwrap();
            let written = alert_item(&alert, SystemTime::now(), Duration::from_secs(1)).unwrap();
            let names: Vec<&String> = written.keys().collect();
            let mut sample_names: Vec<&String> = image.as_object().unwrap().keys().collect();
            sample_names.sort();
            assert_eq!(names, sample_names);
            for (name, value) in &written {
                if name != "created_at" && name != "ttl" {
                    assert_eq!(
                        image[name]["S"].as_str(),
                        value.as_s().ok().map(|s| s.as_str()),
                        "{name}"
                    );
                }
            }
        }
    }
}
