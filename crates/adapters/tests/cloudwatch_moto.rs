//! The CloudWatch sink against moto server: what GetMetricStatistics / GetMetricData return
//! afterwards for datums sent as `Values`/`Counts`, how batches split into requests, and how
//! failures are classified and retried.
//!
//! moto 5.2 expands `Values`/`Counts` into `Counts[i]` single samples of `Values[i]`
//! (`int(float(count))`, so a fractional count would be truncated — this sink only sends
//! whole counts), which makes its Sum and SampleCount what CloudWatch reports. It does not
//! check timestamps against CloudWatch's two-week window or dimension values against
//! CloudWatch's ASCII rule; those are checked before a datum is built (core `metrics`).

use std::time::Duration;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{
    Dimension as SdkDimension, Metric, MetricDataQuery, MetricStat, Statistic,
};
use aws_smithy_types::DateTime;
use streamwatch_adapters::CloudWatchSink;
use streamwatch_adapters::cloudwatch::Backoff;
use streamwatch_core::metrics::{Datum, Dimension, MetricSink, Resolution, SeriesKey, Unit};
use streamwatch_tests::MotoServer;

/// 2026-11-21T12:00:14Z in milliseconds.
const T: i64 = 1_795_262_414_000;

async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    streamwatch_adapters::aws::defaults()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::for_tests())
        .load()
        .await
}

fn series(name: &str, city: &str, ts: i64) -> SeriesKey {
    SeriesKey {
        namespace: "streamwatch/test".into(),
        name: name.into(),
        dimensions: vec![
            Dimension {
                name: "severity_accident".into(),
                value: "3".into(),
            },
            Dimension {
                name: "city_accident".into(),
                value: city.into(),
            },
        ],
        timestamp_millis: ts,
        unit: Unit::COUNT,
        resolution: Resolution::High,
    }
}

fn sdk_dims(city: &str) -> Vec<SdkDimension> {
    vec![
        SdkDimension::builder()
            .name("severity_accident")
            .value("3")
            .build(),
        SdkDimension::builder()
            .name("city_accident")
            .value(city)
            .build(),
    ]
}

/// (Sum, SampleCount) of one series over a minute around `T`, as GetMetricStatistics says.
async fn statistics(cw: &Client, name: &str, city: &str) -> Option<(f64, f64)> {
    let out = cw
        .get_metric_statistics()
        .namespace("streamwatch/test")
        .metric_name(name)
        .set_dimensions(Some(sdk_dims(city)))
        .start_time(DateTime::from_millis(T - 14_000))
        .end_time(DateTime::from_millis(T + 46_000))
        .period(60)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .unwrap();
    let points = out.datapoints.unwrap_or_default();
    assert!(points.len() <= 1, "{points:?}");
    points
        .first()
        .map(|p| (p.sum.unwrap(), p.sample_count.unwrap()))
}

#[tokio::test]
async fn values_and_counts_read_back_as_sums_and_sample_counts() {
    let moto = MotoServer::start();
    let config = sdk_config(&moto.endpoint()).await;
    let sink = CloudWatchSink::new(&config);
    let datums = vec![
        Datum {
            series: series("accidents", "Dallas", T),
            values: vec![1.0, 5.0],
            counts: vec![3.0, 2.0],
        },
        Datum::single(series("accidents", "Austin", T), 1.0, 7.0),
        Datum::single(series("accidents", "San Jose", T + 1_000), 2.5, 1.0),
    ];
    let published = sink.publish(&datums).await.unwrap();
    assert_eq!((published.requests, published.datums), (1, 3));
    assert_eq!((sink.requests(), sink.calls()), (1, 1));

    let cw = Client::new(&config);
    assert_eq!(
        statistics(&cw, "accidents", "Dallas").await,
        Some((13.0, 5.0))
    );
    assert_eq!(
        statistics(&cw, "accidents", "Austin").await,
        Some((7.0, 7.0))
    );
    assert_eq!(
        statistics(&cw, "accidents", "San Jose").await,
        Some((2.5, 1.0))
    );
    assert_eq!(statistics(&cw, "accidents", "Houston").await, None);

    // GetMetricData agrees (exact dimension match).
    let query = |id: &str, city: &str, stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("streamwatch/test")
                            .metric_name("accidents")
                            .set_dimensions(Some(sdk_dims(city)))
                            .build(),
                    )
                    .period(60)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    let out = cw
        .get_metric_data()
        .metric_data_queries(query("dallas_sum", "Dallas", "Sum"))
        .metric_data_queries(query("dallas_n", "Dallas", "SampleCount"))
        .start_time(DateTime::from_millis(T - 14_000))
        .end_time(DateTime::from_millis(T + 46_000))
        .send()
        .await
        .unwrap();
    let results = out.metric_data_results.unwrap_or_default();
    let value = |id: &str| {
        results
            .iter()
            .find(|r| r.id.as_deref() == Some(id))
            .and_then(|r| r.values.clone())
            .unwrap_or_default()
    };
    assert_eq!(value("dallas_sum"), vec![13.0]);
    assert_eq!(value("dallas_n"), vec![5.0]);
}

#[tokio::test]
async fn a_large_batch_is_split_into_requests_of_1000_datums() {
    let moto = MotoServer::start();
    let config = sdk_config(&moto.endpoint()).await;
    let sink = CloudWatchSink::new(&config).with_concurrency(2);
    let datums: Vec<Datum> = (0..2_500)
        .map(|i| {
            Datum::single(
                series("accidents", &format!("City{i}"), T),
                1.0,
                f64::from(i % 5 + 1),
            )
        })
        .collect();
    let published = sink.publish(&datums).await.unwrap();
    assert_eq!((published.requests, published.datums), (3, 2_500));
    assert_eq!((sink.requests(), sink.calls()), (3, 3));
    let cw = Client::new(&config);
    for i in [0, 999, 1_000, 1_999, 2_000, 2_499] {
        let n = f64::from(i % 5 + 1);
        assert_eq!(
            statistics(&cw, "accidents", &format!("City{i}")).await,
            Some((n, n)),
            "City{i}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient_and_retried() {
    // Port 9 on loopback: nothing listens, the connection is refused at once.
    let config = sdk_config("http://127.0.0.1:9").await;
    let sink = CloudWatchSink::new(&config).with_retry(Backoff {
        attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    });
    let datums = vec![Datum::single(series("accidents", "Dallas", T), 1.0, 1.0)];
    let err = sink.publish(&datums).await.unwrap_err();
    assert_eq!(err.failures.len(), 1);
    assert!(
        err.failures[0].error.is_transient(),
        "{}",
        err.failures[0].error
    );
    assert_eq!(err.failures[0].datums, vec![0]);
    assert_eq!((sink.requests(), sink.calls()), (1, 3));
    assert_eq!(err.published.datums, 0);
}

#[tokio::test]
async fn a_rejected_request_is_permanent_and_not_retried() {
    let moto = MotoServer::start();
    let config = sdk_config(&moto.endpoint()).await;
    let sink = CloudWatchSink::new(&config);
    // moto rejects NaN values with InvalidParameterValue (400), as CloudWatch does; the
    // handler never builds such a datum (core `check_value`).
    let datums = vec![
        Datum::single(series("accidents", "Dallas", T), 1.0, 1.0),
        Datum::single(series("accidents", "Austin", T), f64::NAN, 1.0),
    ];
    let err = sink.publish(&datums).await.unwrap_err();
    assert_eq!(err.failures.len(), 1);
    assert!(
        !err.failures[0].error.is_transient(),
        "{}",
        err.failures[0].error
    );
    assert_eq!(err.failures[0].datums, vec![0, 1]);
    assert_eq!(sink.calls(), 1);
    // The whole request was rejected: not even the valid datum is stored.
    let cw = Client::new(&config);
    assert_eq!(statistics(&cw, "accidents", "Dallas").await, None);
}
