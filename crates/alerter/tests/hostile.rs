//! Hostile input for the alerter: the Lambda event deserialisation (arbitrary bytes as a
//! DynamoDB stream `Event`) and the real handler over alert records whose fields carry
//! every kind of wrong value (control characters and line breaks in the summary and key,
//! 300 KB texts, unknown kinds, times at the ends of the range, a deep `alert` JSON, an
//! `alert_id` that does not match, non-alert items). Whatever comes in, nothing panics, a
//! malformed alert never fails the batch, and every notification that goes out is one SNS
//! accepts: an ASCII subject under 100 characters without line breaks, at most 256 KB,
//! no empty attribute.
//!
//! Longer run: `PROPTEST_CASES=20000 cargo test --release -p alerter --test hostile`.

mod common;

use alerter::process;
use aws_lambda_events::event::dynamodb::Event;
use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use streamwatch_core::AlertKind;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Runs the real handler on a 2 MiB stack and checks what went out.
fn run(event: Event) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let deps = deps();
            let (response, report) = runtime().block_on(process(&deps, &event, "inv-hostile"));
            assert!(
                response.batch_item_failures.is_empty(),
                "bad input must never fail the batch: {report:?}"
            );
            assert_eq!(report.records, event.records.len());
            for m in deps.notifier.published() {
                assert!(m.subject.len() < 100, "subject {:?}", m.subject);
                assert!(
                    m.subject
                        .chars()
                        .all(|c| c.is_ascii() && !c.is_ascii_control()),
                    "subject {:?}",
                    m.subject
                );
                assert!(m.size_bytes() <= 256 * 1024, "{} bytes", m.size_bytes());
                assert!(m.attributes.values().all(|v| !v.is_empty()));
            }
        })
        .expect("thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,8}",
        ".{0,16}",
        "[\\x00-\\x1f\\x7f\\u{2028}]{1,4}",
        Just(String::new()),
        Just(" \r\n ".to_owned()),
        Just("x".repeat(300 * 1024)),
        Just("San José ✓ 🚗 ".repeat(40)),
        Just("jane.doe@example.com arn:aws:sns:us-east-1:123456789012:t".to_owned()),
    ]
}

fn micros() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(T0 + MIN)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1.5)),
        Just(json!("soon")),
    ]
}

/// An alert record as the outbox writes it, then its fields overwritten with hostile ones.
fn hostile_record() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(
            prop_oneof![
                Just("summary"),
                Just("key"),
                Just("rule"),
                Just("severity"),
                Just("kind"),
                Just("id"),
            ],
            text(),
            0..4,
        ),
        prop::option::of(micros()),
        prop::option::of(prop::collection::btree_map(text(), text(), 0..4)),
        prop_oneof![Just(0u8), Just(1), Just(2), Just(3)],
        0u64..1000,
        prop_oneof![Just(AlertKind::Firing), Just(AlertKind::Resolved)],
    )
        .prop_map(|(texts, time, details, how, seq, kind)| {
            let alert = window_alert("device3", (seq % 5) as i64, kind);
            let mut record = insert_record(&alert, seq);
            let image = &mut record["dynamodb"]["NewImage"];
            let mut a: Value = serde_json::from_str(image["alert"]["S"].as_str().unwrap_or("{}"))
                .unwrap_or_default();
            let keep_id = !texts.contains_key("id");
            for (k, v) in texts {
                a[k] = json!(v);
            }
            if let Some(t) = time {
                a["event_time_micros"] = t;
            }
            if let Some(d) = details {
                a["details"] = json!(d);
            }
            if keep_id {
                image["alert_id"] = json!({"S": a["id"].clone()});
            }
            match how {
                // The window summary with impossible statistics.
                1 => a["window"] = json!({"start_micros": 5, "end_micros": 1, "count": 0, "sum": 1e308,
                                          "min": -1e308, "max": 1e308, "avg": 1e308,
                                          "condition": "", "threshold": -0.0}),
                // Not even an object.
                2 => a = json!([1, 2, 3]),
                // A stream record that is not an INSERT of an alert.
                3 => {
                    record["eventName"] = json!("MODIFY");
                }
                _ => {}
            }
            if how != 3 {
                record["dynamodb"]["NewImage"]["alert"] = json!({"S": a.to_string()});
            }
            record
        })
}

#[test]
fn a_deep_alert_attribute_and_odd_images() {
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut record = insert_record(&window_alert("device3", 0, AlertKind::Firing), 1);
    record["dynamodb"]["NewImage"]["alert"] = json!({"S": deep});
    let mut keys_only = insert_record(&window_alert("device3", 1, AlertKind::Firing), 2);
    keys_only["dynamodb"]["NewImage"] = json!({});
    let mut wrong_type = insert_record(&window_alert("device3", 2, AlertKind::Firing), 3);
    wrong_type["dynamodb"]["NewImage"]["alert"] = json!({"N": "1"});
    let mut deep_image = insert_record(&window_alert("device3", 3, AlertKind::Firing), 4);
    deep_image["dynamodb"]["NewImage"]["x"] = serde_json::from_str(&format!(
        "{}{{\"N\":\"1\"}}{}",
        "{\"M\":{\"a\":".repeat(60),
        "}}".repeat(60)
    ))
    .expect("60 levels parse");
    let event: Event =
        serde_json::from_value(json!({"Records": [record, keys_only, wrong_type, deep_image]}))
            .expect("event");
    run(event);
    // Deeper than serde_json's limit: the envelope itself fails to parse (the runtime
    // reports an invocation error), and does not overflow the stack on the way.
    let text = format!(
        r#"{{"Records":[{{"eventID":"1","eventName":"INSERT","dynamodb":{{"NewImage":{{"x":{}{{"N":"1"}}{}}}}}}}]}}"#,
        "{\"M\":{\"a\":".repeat(100_000),
        "}}".repeat(100_000)
    );
    let parsed = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || serde_json::from_str::<Event>(&text).is_ok())
        .expect("thread")
        .join()
        .expect("no overflow");
    assert!(!parsed);
}

#[test]
fn texts_sns_would_reject_are_made_sendable() {
    let mut alert = window_alert("device3", 0, AlertKind::Firing);
    alert.summary = format!(
        "line one\r\nline two \u{1} San José ✓ {}",
        "x".repeat(300 * 1024)
    );
    alert
        .details
        .insert("Description".into(), "é\n".repeat(50 * 1024));
    let event = stream_event(&[alert], 1);
    let deps = deps();
    let (response, report) = runtime().block_on(process(&deps, &event, "inv-1"));
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.sent(), 1, "{report:?}");
    let m = &deps.notifier.published()[0];
    assert!(
        m.subject.len() < 100 && m.subject.is_ascii(),
        "{:?}",
        m.subject
    );
    assert!(!m.subject.chars().any(|c| c.is_ascii_control()));
    assert!(m.size_bytes() <= 256 * 1024, "{} bytes", m.size_bytes());
}

/// Found by `hostile_alert_records` (`PROPTEST_CASES=2000`): a firing alert whose event
/// time is `i64::MIN`, then the next window's firing alert for the same key — a reminder,
/// whose "firing for" span overflowed and panicked the handler (in a release build it
/// wrapped). Also a window whose end minus start overflows.
#[test]
fn regression_event_times_at_the_ends_of_the_range() {
    let mut first = window_alert("device3", 3, AlertKind::Firing);
    first.event_time_micros = i64::MIN;
    let second = window_alert("device3", 4, AlertKind::Firing);
    let mut third = window_alert("device3", 5, AlertKind::Firing);
    if let Some(w) = third.window.as_mut() {
        w.start_micros = i64::MIN;
        w.end_micros = i64::MAX;
    }
    third.event_time_micros = i64::MAX;
    let records: Vec<Value> = [first, second, third]
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut r = insert_record(a, 100 + i as u64);
            // The stream's own timestamp stays ordinary; only the alert's are extreme.
            r["dynamodb"]["ApproximateCreationDateTime"] = json!(T0 / 1_000_000);
            r
        })
        .collect();
    run(serde_json::from_value(json!({"Records": records})).expect("event"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn arbitrary_bytes_as_an_event(data in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(event) = serde_json::from_slice::<Event>(&data) {
            run(event);
        }
    }

    #[test]
    fn hostile_alert_records(records in prop::collection::vec(hostile_record(), 1..6)) {
        let event: Event = serde_json::from_value(json!({"Records": records})).expect("event");
        run(event);
    }
}
