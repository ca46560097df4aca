//! The handler with its AWS adapters (CloudWatch PutMetricData, DynamoDB alerts outbox)
//! against moto server: after a batch, CloudWatch returns the expected sums and sample
//! counts per series and the alerts table holds exactly the expected alerts, also after
//! the batch is delivered again.

use std::collections::BTreeSet;

use aws_sdk_cloudwatch::types::{Dimension as SdkDimension, Statistic};
use aws_smithy_types::DateTime;
use metrics_publisher::{Config, Deps, process};
use streamwatch_adapters::alerts::alert_from_item;
use streamwatch_adapters::{
    CloudWatchSink, DynamoDbAlertOutbox, EmbeddedAlertOutbox, EmbeddedMetricSink,
};
use streamwatch_core::KinesisEvent;
use streamwatch_tests::MotoServer;

const SAMPLE_KPL: &[u8] = include_bytes!("../../../events/metrics-publisher-kpl.json");
/// 2026-11-21T12:30:00Z.
const NOW: i64 = 1_795_264_200_000_000;

async fn sdk_config(moto: &MotoServer) -> aws_config::SdkConfig {
    streamwatch_adapters::aws::defaults()
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::for_tests())
        .load()
        .await
}

async fn create_alerts_table(ddb: &aws_sdk_dynamodb::Client) {
    streamwatch_tests::create_alerts_table(ddb, "alerts").await;
}

/// (Sum, SampleCount) of a series in `[from, from + seconds)`, as GetMetricStatistics says.
async fn statistics(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    name: &str,
    dims: &[(String, String)],
    from_millis: i64,
    seconds: i32,
) -> (f64, f64) {
    let out = cw
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(name)
        .set_dimensions(Some(
            dims.iter()
                .map(|(n, v)| SdkDimension::builder().name(n).value(v).build())
                .collect(),
        ))
        .start_time(DateTime::from_millis(from_millis))
        .end_time(DateTime::from_millis(
            from_millis + i64::from(seconds) * 1_000,
        ))
        .period(seconds)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .unwrap();
    out.datapoints
        .unwrap_or_default()
        .iter()
        .fold((0.0, 0.0), |(s, n), p| {
            (s + p.sum.unwrap_or(0.0), n + p.sample_count.unwrap_or(0.0))
        })
}

#[tokio::test]
async fn a_batch_lands_in_cloudwatch_and_the_alerts_table() {
    // GIVEN moto with an alerts table, and the function wired to its AWS adapters
    let moto = MotoServer::start();
    let sdk = sdk_config(&moto).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_alerts_table(&ddb).await;
    let mut vars = std::collections::HashMap::new();
    vars.insert("ALERTS_TABLE".to_owned(), "alerts".to_owned());
    let config = Config::from_source(&vars).unwrap();
    let deps = Deps {
        config: config.clone(),
        sink: CloudWatchSink::new(&sdk),
        outbox: DynamoDbAlertOutbox::new(ddb.clone(), "alerts"),
    };
    let event: KinesisEvent = serde_json::from_slice(SAMPLE_KPL).unwrap();

    // WHEN the sample KPL event is processed
    let (response, report) = process(&deps, &event, NOW).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.selected, report.alerts_written), (9, 4));
    assert_eq!(deps.sink.requests(), report.metric_requests);
    assert_eq!(report.metric_requests, 2);

    // THEN CloudWatch holds every series with the sum and sample count the embedded sink
    // computes for the same event, and they add up to the 9 selected records
    let embedded = Deps {
        config,
        sink: EmbeddedMetricSink::new(),
        outbox: EmbeddedAlertOutbox::new(),
    };
    process(&embedded, &event, NOW).await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let mut total = 0.0;
    for ((ns, name, dims, ts), stats) in embedded.sink.series() {
        let dims: Vec<(String, String)> = dims.into_iter().map(|d| (d.name, d.value)).collect();
        // The series at its one-second bucket.
        let got = statistics(&cw, &ns, &name, &dims, ts, 1).await;
        if ns == "streamwatch/accidents" {
            assert_eq!(got, (stats.sum, stats.sample_count), "{dims:?}");
            total += got.1;
        }
    }
    assert_eq!(total, 9.0);
    let minute = NOW / 60_000_000 * 60_000;
    let records_in = statistics(
        &cw,
        "streamwatch/metrics-publisher",
        "RecordsIn",
        &[],
        minute,
        60,
    )
    .await;
    assert_eq!(records_in, (4.0, 1.0));

    // AND the alerts table holds exactly the four Severity 4 alerts
    let scan = |ddb: aws_sdk_dynamodb::Client| async move {
        ddb.scan()
            .table_name("alerts")
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| alert_from_item(item).unwrap())
            .collect::<Vec<_>>()
    };
    let alerts = scan(ddb.clone()).await;
    assert_eq!(alerts.len(), 4);
    assert!(
        alerts
            .iter()
            .all(|a| a.severity == "4" && a.rule == "accident-severity")
    );
    let ids: BTreeSet<String> = alerts.iter().map(|a| a.id.clone()).collect();
    let embedded_ids: BTreeSet<String> =
        embedded.outbox.alerts().into_iter().map(|a| a.id).collect();
    assert_eq!(ids, embedded_ids);

    // WHEN Lambda delivers the same batch again
    let (response, again) = process(&deps, &event, NOW).await;
    // THEN no second alert is written
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((again.alerts_written, again.alerts_existing), (0, 4));
    assert_eq!(scan(ddb).await.len(), 4);
}
