//! Per-rule topics (`TOPIC_ROUTES`) against moto server: the alerter configured from its
//! environment, with the alerts table and two SNS topics; what each topic recorded is read
//! back from moto (`/moto-api/data.json`).

mod common;

use std::collections::BTreeMap;

use alerter::{Config, Deps, Grouping, ManualClock, Silences, process, schedule_pass};
use common::*;
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
use streamwatch_adapters::groups::DynamoDbGroupStore;
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_core::{AlertKind, AlertRecord};
use streamwatch_tests::MotoServer;

fn accident(i: usize, county: &str) -> AlertRecord {
    accident_alert(i, &[("County", county), ("State", "TX")])
}

/// Topic name → the subjects moto recorded as published to it.
fn published_by_topic(moto: &MotoServer) -> BTreeMap<String, Vec<String>> {
    let state = moto.state();
    let mut out = BTreeMap::new();
    for topic in state["sns"]["Topic"].as_array().into_iter().flatten() {
        let name = topic["name"].as_str().unwrap_or_default().to_owned();
        let subjects = topic["sent_notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| n[2].as_str().unwrap_or_default().to_owned())
            .collect();
        out.insert(name, subjects);
    }
    out
}

/// GIVEN the alerter configured with `TOPIC_ROUTES=accident-severity=<traffic-desk>` and
/// grouping by County, State; WHEN a turbine fires and three accidents in two counties
/// arrive, and the schedule passes after the group wait; THEN the turbine's FIRING is on the
/// default topic only and the two group notifications on the traffic desk's only.
#[tokio::test]
async fn each_rule_s_notifications_land_on_its_topic() {
    let moto = MotoServer::start();
    let sdk = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let default_topic = streamwatch_tests::create_topic(&sns, "alerts").await;
    let traffic = streamwatch_tests::create_topic(&sns, "traffic-desk").await;
    let routes = format!("accident-severity={traffic}");
    let config = Config::from_source(&[
        ("TOPIC_ARN", default_topic.as_str()),
        ("ALERTS_TABLE", "alerts"),
        ("GROUP_BY", "accident-severity=County,State"),
        ("TOPIC_ROUTES", routes.as_str()),
    ])
    .unwrap();
    let deps = Deps {
        store: DynamoDbAlertStateStore::new(ddb.clone(), "alerts"),
        notifier: SnsNotifier::new(sns, &config.topic_arn).with_routes(config.topic_routes.clone()),
        clock: ManualClock::new(T0 + 2 * MIN),
        settings: settings(),
        grouping: Grouping::new(
            DynamoDbGroupStore::new(ddb, "alerts"),
            config.group_policies(),
        ),
        silences: Silences::off(),
    };

    let alerts = vec![
        window_alert("device3", 0, AlertKind::Firing),
        accident(1, "Harris"),
        accident(2, "Dallas"),
        accident(3, "Harris"),
    ];
    let (response, report) = process(&deps, &stream_event(&alerts, 1), "inv-1").await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.firing, report.grouped), (1, 3));
    deps.clock.advance(std::time::Duration::from_secs(31));
    let pass = schedule_pass(&deps, "schedule-1").await;
    assert_eq!((pass.groups.sealed, pass.groups.sent), (2, 2));

    let mut published = published_by_topic(&moto);
    for subjects in published.values_mut() {
        subjects.sort();
    }
    assert_eq!(
        published,
        BTreeMap::from([
            (
                "alerts".to_owned(),
                vec!["[FIRING] Wind speed avg 72.4 mph > 60 on device3".to_owned()]
            ),
            (
                "traffic-desk".to_owned(),
                vec![
                    "[ALERT] 1 accident-severity alert (County=Dallas, State=TX)".to_owned(),
                    "[ALERT] 2 accident-severity alerts (County=Harris, State=TX)".to_owned(),
                ]
            ),
        ])
    );
}
