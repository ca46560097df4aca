//! Alert grouping end to end (#19): the demo's accident CSV, in four slices one group interval
//! apart, goes through the real metrics-publisher (its DynamoDB outbox on moto); the alerts
//! table's own stream, read back from moto, goes through the real alerter with the template's
//! grouping (`accident-severity=County,State`), delivered newest first, twice, and with every
//! earlier slice's records again; the alerter's schedule entry point is invoked at explicit
//! times of an injected clock (no sleeps). The expected emails are counted here from the CSV
//! itself: one per (County, State) with a Severity >= 4 row in a slice, listing exactly that
//! slice's severe accidents of the county.

use std::collections::{BTreeMap, BTreeSet};

use alerter::group::Grouping;
use alerter::{Backoff, Config as AlerterConfig, Deps as AlerterDeps, ManualClock};
use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Context, LambdaEvent};
use metrics_publisher::{Config, Deps, process};
use serde_json::{Value, json};
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
use streamwatch_adapters::groups::DynamoDbGroupStore;
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_adapters::{DynamoDbAlertOutbox, EmbeddedMetricSink};
use streamwatch_core::time::format_micros;
use streamwatch_core::{AlertRecord, KinesisEvent};
use streamwatch_local::accidents::read_csv;
use streamwatch_local::demo::SAMPLE_CSV;
use streamwatch_tests::MotoServer;

mod common;
use common::accidents::kinesis_record;
use common::alerts::stream_records;

/// 2026-11-21T12:00:00Z.
const T0: i64 = 1_795_262_400_000_000;
const SEC: i64 = 1_000_000;
const WAIT: i64 = 30 * SEC;
const INTERVAL: i64 = 300 * SEC;
const SLICES: usize = 4;

/// (County, State) → severe accident IDs, per slice of the CSV's rows, read with the `csv`
/// crate from the raw columns (not through the pipeline's converter or rule).
fn model() -> Vec<BTreeMap<(String, String), BTreeSet<String>>> {
    let mut reader = csv::Reader::from_reader(SAMPLE_CSV);
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, severity, county, state) = (col("ID"), col("Severity"), col("County"), col("State"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let per_slice = rows.len().div_ceil(SLICES);
    rows.chunks(per_slice)
        .map(|slice| {
            let mut groups: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
            for row in slice {
                if row[severity].trim().parse::<u32>().unwrap() >= 4 {
                    groups
                        .entry((row[county].to_owned(), row[state].to_owned()))
                        .or_default()
                        .insert(row[id].to_owned());
                }
            }
            groups
        })
        .collect()
}

/// Every group notification moto's topic holds: ((County, State), accident IDs listed).
fn group_emails(moto: &MotoServer) -> Vec<((String, String), Vec<String>)> {
    moto.sns_notifications()
        .iter()
        .map(|n| {
            let structured: Value = serde_json::from_str(n[1].as_str().unwrap()).unwrap();
            let machine: Value = serde_json::from_str(structured["sqs"].as_str().unwrap()).unwrap();
            assert_eq!(machine["schema"], "streamwatch.group_notification/1");
            assert_eq!(machine["truncated"], false);
            let group = &machine["group"];
            let ids = machine["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["key"].as_str().unwrap().to_owned())
                .collect();
            (
                (
                    group["County"].as_str().unwrap().to_owned(),
                    group["State"].as_str().unwrap().to_owned(),
                ),
                ids,
            )
        })
        .collect()
}

type Alerter = AlerterDeps<DynamoDbAlertStateStore, SnsNotifier, ManualClock, DynamoDbGroupStore>;

/// The alerter with the template's environment at its defaults (grouping by County, State).
fn alerter(ddb: &aws_sdk_dynamodb::Client, sns: aws_sdk_sns::Client, topic: String) -> Alerter {
    let settings = AlerterConfig::from_source(&[
        ("TOPIC_ARN", topic.as_str()),
        ("ALERTS_TABLE", "alerts"),
        ("GROUP_BY", "accident-severity=County,State"),
        ("GROUP_WAIT_SECONDS", "30"),
        ("GROUP_INTERVAL_SECONDS", "300"),
    ])
    .unwrap();
    AlerterDeps {
        store: DynamoDbAlertStateStore::new(ddb.clone(), "alerts"),
        notifier: SnsNotifier::new(sns, topic),
        clock: ManualClock::new(T0),
        settings: alerter::Settings {
            retry: Backoff {
                attempts: 3,
                base_delay: std::time::Duration::from_millis(1),
                max_delay: std::time::Duration::from_millis(5),
            },
            ..settings.settings()
        },
        grouping: Grouping::new(
            DynamoDbGroupStore::new(ddb.clone(), "alerts"),
            settings.group_policies(),
        ),
        silences: alerter::Silences::off(),
    }
}

/// The alerter's schedule trigger (an EventBridge scheduled event), through its entry point.
async fn schedule(alerter: &Alerter, pass: usize) -> Value {
    let event = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let mut context = Context::default();
    context.request_id = format!("schedule-{pass}");
    alerter::handle(alerter, LambdaEvent::new(event, context))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sample_csv_sends_one_email_per_county_and_interval_listing_each_accident_once() {
    let expected = model();
    assert_eq!(expected.len(), SLICES);
    let severe: usize = expected
        .iter()
        .flat_map(|s| s.values())
        .map(BTreeSet::len)
        .sum();
    // The scenario means something only if groups hold several accidents and recur.
    assert!(
        expected.iter().map(BTreeMap::len).sum::<usize>() < severe,
        "no group holds two accidents"
    );

    let moto = MotoServer::start();
    let config = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let arn = common::alerts::enable_new_image_stream(&ddb, "alerts").await;
    let streams = aws_sdk_dynamodbstreams::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = streamwatch_tests::create_topic(&sns, "alerts").await;

    let publisher = Deps {
        config: Config::from_source(&[("ALERTS_TABLE", "alerts")]).unwrap(),
        sink: EmbeddedMetricSink::new(),
        outbox: DynamoDbAlertOutbox::new(ddb.clone(), "alerts"),
    };
    let alerter = alerter(&ddb, sns, topic);

    let rows = read_csv(SAMPLE_CSV, |i| format_micros(T0 + i as i64 * SEC)).unwrap();
    assert!(rows.bad.is_empty(), "{:?}", rows.bad);
    let per_slice = rows.payloads.len().div_ceil(SLICES);
    let mut seen = 0;
    let mut pass = 0;
    for (k, slice) in rows.payloads.chunks(per_slice).enumerate() {
        let start = T0 + k as i64 * INTERVAL;
        alerter.clock.set(start);
        let records = slice
            .iter()
            .enumerate()
            .map(|(i, (key, data))| {
                kinesis_record(0, (k * per_slice + i) as u64, key, data.clone())
            })
            .collect();
        let event = KinesisEvent { records };
        let (response, report) = process(&publisher, &event, start).await;
        assert!(response.batch_item_failures.is_empty());
        let written: usize = expected[k].values().map(BTreeSet::len).sum();
        assert_eq!(report.alerts_written, written, "slice {k}");

        // Every record of the stream so far (earlier slices' again), newest first, twice.
        alerter.clock.set(start + SEC);
        let mut stream = stream_records(&streams, &arn).await;
        stream.reverse();
        for (n, batch) in stream.chunks(100).chain(stream.chunks(100)).enumerate() {
            let event: Event = serde_json::from_value(json!({ "Records": batch })).unwrap();
            let (response, report) =
                alerter::process(&alerter, &event, &format!("slice-{k}-{n}")).await;
            assert!(response.batch_item_failures.is_empty(), "slice {k}");
            assert_eq!(report.sent(), 0, "grouped alerts are not sent one by one");
        }

        // One second before the slice's groups are due: nothing goes out.
        alerter.clock.set(start + WAIT);
        pass += 1;
        let report = schedule(&alerter, pass).await;
        assert_eq!(report["groups"]["sealed"], 0, "slice {k}: {report}");
        assert_eq!(moto.sns_notifications().len(), seen);

        // Due: one email per (County, State) of the slice; a second pass sends nothing.
        alerter.clock.set(start + SEC + WAIT);
        for again in 0..2 {
            pass += 1;
            let report = schedule(&alerter, pass).await;
            let sent = if again == 0 { expected[k].len() } else { 0 };
            assert_eq!(report["groups"]["sent"], sent, "slice {k}: {report}");
        }
        let emails = group_emails(&moto);
        let mut got: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (group, ids) in &emails[seen..] {
            let listed = got.entry(group.clone()).or_default();
            for id in ids {
                assert!(listed.insert(id.clone()), "{id} listed twice in {group:?}");
            }
        }
        assert_eq!(
            got, expected[k],
            "slice {k}: the emails' groups and accidents"
        );
        assert_eq!(
            emails.len() - seen,
            expected[k].len(),
            "one email per group"
        );
        seen = emails.len();
    }

    // Every severe accident of the CSV listed exactly once, over all emails.
    let listed: Vec<String> = group_emails(&moto)
        .into_iter()
        .flat_map(|(_, ids)| ids)
        .collect();
    let distinct: BTreeSet<&String> = listed.iter().collect();
    assert_eq!((listed.len(), distinct.len()), (severe, severe));
    // Nothing left due, nothing unsent.
    let report = schedule(&alerter, pass + 1).await;
    assert_eq!(report["groups"]["sealed"], 0);
    assert_eq!(report["examined"], 0, "no unsent notification: {report}");
}

/// A sealed group whose publish SNS refuses (the topic is gone) stays pending; once SNS is
/// back, the recovery pass — after the claim lease, reading the batch back from the table —
/// sends it once, listing the group's alerts; later passes send nothing.
#[tokio::test]
async fn a_group_notification_sns_refused_is_resent_once_by_recovery() {
    let moto = MotoServer::start();
    let config = streamwatch_tests::sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    streamwatch_tests::create_alerts_table(&ddb, "alerts").await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = streamwatch_tests::create_topic(&sns, "alerts").await;
    let alerter = alerter(&ddb, sns.clone(), topic.clone());
    let alerts: Vec<AlertRecord> = (0..3)
        .map(|i| {
            let mut a = common::alerts::accident_alert(i, 0);
            a.details = [("County", "Harris"), ("State", "TX")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into();
            a
        })
        .collect();
    let records: Vec<Value> = alerts
        .iter()
        .enumerate()
        .map(|(i, a)| serde_json::to_value(common::alerts::insert_record(a, i as u64)).unwrap())
        .collect();
    let event: Event = serde_json::from_value(json!({ "Records": records })).unwrap();
    let (_, report) = alerter::process(&alerter, &event, "inv").await;
    assert_eq!(report.grouped, 3);

    sns.delete_topic().topic_arn(&topic).send().await.unwrap();
    alerter.clock.set(T0 + WAIT);
    let report = schedule(&alerter, 1).await;
    assert_eq!(
        report["groups"],
        json!({"sealed": 1, "sent": 0, "unsent": 1})
    );

    sns.create_topic().name("alerts").send().await.unwrap();
    // Within the claim lease (30 s) of the seal: recovery leaves it to a live sender.
    alerter.clock.set(T0 + WAIT + 10 * SEC);
    assert_eq!(schedule(&alerter, 2).await["sent"], 0);
    alerter.clock.set(T0 + WAIT + 40 * SEC);
    let report = schedule(&alerter, 3).await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(schedule(&alerter, 4).await["sent"], 0);
    let emails = group_emails(&moto);
    let keys: BTreeSet<String> = alerts.iter().map(|a| a.key.clone()).collect();
    assert_eq!(emails.len(), 1);
    assert_eq!(
        emails[0].1.iter().cloned().collect::<BTreeSet<_>>(),
        keys,
        "the resent batch lists the group's alerts"
    );
    assert_eq!(emails[0].0, ("Harris".to_owned(), "TX".to_owned()));
}
