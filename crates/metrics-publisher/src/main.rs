//! The `metrics-publisher` Lambda function: configuration read once, clients built once,
//! then the runtime loop. Everything else is in the library.

use metrics_publisher::{Config, Deps, SinkKind, run};
use streamwatch_adapters::{CloudWatchSink, DynamoDbAlertOutbox, EmbeddedAlertOutbox, EmfSink};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    streamwatch_adapters::logging::init();
    let config = Config::from_env()?;
    let sdk = streamwatch_adapters::aws::load_config().await;
    // With ALERT_RULE=off the outbox is never called; an embedded one stands in.
    match (config.sink, config.alerts.as_ref().map(|a| a.table.clone())) {
        (SinkKind::Api, Some(table)) => {
            let sink = CloudWatchSink::with_attempt_timeout(&sdk, config.put_metric_data_timeout)
                .with_concurrency(config.publish_concurrency);
            let outbox = DynamoDbAlertOutbox::new(aws_sdk_dynamodb::Client::new(&sdk), table);
            run(Deps {
                config,
                sink,
                outbox,
            })
            .await
        }
        (SinkKind::Api, None) => {
            let sink = CloudWatchSink::with_attempt_timeout(&sdk, config.put_metric_data_timeout)
                .with_concurrency(config.publish_concurrency);
            let outbox = EmbeddedAlertOutbox::new();
            run(Deps {
                config,
                sink,
                outbox,
            })
            .await
        }
        (SinkKind::Emf, Some(table)) => {
            let outbox = DynamoDbAlertOutbox::new(aws_sdk_dynamodb::Client::new(&sdk), table);
            run(Deps {
                config,
                sink: EmfSink::stdout(),
                outbox,
            })
            .await
        }
        (SinkKind::Emf, None) => {
            let outbox = EmbeddedAlertOutbox::new();
            run(Deps {
                config,
                sink: EmfSink::stdout(),
                outbox,
            })
            .await
        }
    }
}
