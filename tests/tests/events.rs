//! Every sample event in `events/` parses as the event type its function takes — the same
//! files `cargo lambda invoke --data-file` and `sam local invoke -e` send — and carries
//! what its name promises.

use std::path::PathBuf;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use streamwatch_core::change::Precision;
use streamwatch_core::{ChangeRecord, EventName, JsonObject, KinesisEvent, record};

fn events() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn change_records(event: &KinesisEvent) -> Vec<ChangeRecord> {
    record::parents(event)
        .flat_map(|p| p.user_records().expect("sample records de-aggregate"))
        .map(|u| ChangeRecord::from_slice(u.data).expect("sample change record decodes"))
        .collect()
}

#[test]
fn every_sample_event_parses_as_its_functions_event_type() {
    let all = events();
    assert!(all.len() >= 12, "{} sample events", all.len());
    for (name, text) in &all {
        match name.as_str() {
            n if n.starts_with("metrics-publisher-") => {
                let event: KinesisEvent =
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("{n}: {e}"));
                assert!(!event.records.is_empty(), "{n}");
                if n.ends_with("-kpl.json") || n.ends_with("-plain.json") {
                    let users: Vec<_> = record::parents(&event)
                        .flat_map(|p| p.user_records().unwrap())
                        .collect();
                    assert!(
                        users.iter().all(|u| JsonObject::parse(u.data).is_ok()),
                        "{n}: every accident is JSON"
                    );
                    assert_eq!(
                        users.iter().any(|u| u.sub_sequence_number.is_some()),
                        n.ends_with("-kpl.json"),
                        "{n}"
                    );
                }
            }
            "window-aggregator-schedule.json" => {
                let event: EventBridgeEvent = serde_json::from_str(text).unwrap();
                assert_eq!(event.detail_type, "Scheduled Event");
            }
            "window-aggregator-json.json" => {
                let event: KinesisEvent = serde_json::from_str(text).unwrap();
                for parent in record::parents(&event) {
                    for u in parent.user_records().unwrap() {
                        let obj = JsonObject::parse(u.data).unwrap();
                        assert!(
                            obj.get("deviceID").is_some()
                                && obj.get("value").is_some()
                                && obj.get("createdAt").is_some()
                        );
                    }
                }
            }
            n if n.starts_with("window-aggregator-changes-") => {
                let event: KinesisEvent =
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("{n}: {e}"));
                let changes = change_records(&event);
                let names: std::collections::BTreeSet<_> = changes
                    .iter()
                    .map(|c| format!("{:?}", c.event_name))
                    .collect();
                if n.ends_with("-micro.json") {
                    assert!(
                        changes
                            .iter()
                            .all(|c| c.dynamodb.precision == Precision::Microsecond)
                    );
                    for kind in [EventName::Insert, EventName::Modify, EventName::Remove] {
                        assert!(names.contains(&format!("{kind:?}")), "{n} lacks {kind:?}");
                    }
                } else {
                    assert!(
                        changes
                            .iter()
                            .all(|c| c.dynamodb.precision == Precision::Millisecond),
                        "{n}: named or inferred"
                    );
                    // Same instants as the microsecond sample, to the millisecond.
                    assert!(
                        changes
                            .iter()
                            .all(|c| c.creation_time_micros() > 1_795_262_400_000_000)
                    );
                }
            }
            n if n.starts_with("alerter-") => {
                let event: DynamoDbEvent =
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("{n}: {e}"));
                assert!(!event.records.is_empty(), "{n}");
            }
            other => panic!("{other}: no function takes this event; name it after its function"),
        }
    }
}
