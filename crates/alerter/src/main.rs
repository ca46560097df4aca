//! The `alerter` Lambda binary: configuration and clients once per cold start, then the
//! runtime loop. Everything else is in the library.

// The AWS SDK futures nested in the handler's future exceed the default type-layout depth.
#![recursion_limit = "256"]

use alerter::config::PUBLISH_TIMEOUT;
use alerter::group::Grouping;
use alerter::silence::Silences;
use alerter::{Config, Deps, SystemClock, handle};
use aws_config::timeout::TimeoutConfig;
use lambda_runtime::{Error, service_fn};
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
use streamwatch_adapters::groups::DynamoDbGroupStore;
use streamwatch_adapters::silences::DynamoDbSilenceStore;
use streamwatch_adapters::sns::SnsNotifier;

#[tokio::main]
async fn main() -> Result<(), Error> {
    streamwatch_adapters::logging::init();
    let config = Config::from_env()?;
    let aws = streamwatch_adapters::aws::load_config().await;
    // Bounded publish calls: a claim's lease (at least PUBLISH_TIMEOUT + 5 s) then always
    // outlasts a live publisher's call, so only a dead one's claim can be taken over.
    let sns = aws_sdk_sns::config::Builder::from(&aws)
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(PUBLISH_TIMEOUT / 2)
                .operation_timeout(PUBLISH_TIMEOUT)
                .build(),
        )
        .build();
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let deps = Deps {
        store: DynamoDbAlertStateStore::new(dynamodb.clone(), &config.alerts_table),
        notifier: SnsNotifier::new(aws_sdk_sns::Client::from_conf(sns), &config.topic_arn)
            .with_routes(config.topic_routes.clone())
            .with_https_format(config.https_format),
        clock: SystemClock,
        settings: config.settings(),
        grouping: Grouping::new(
            DynamoDbGroupStore::new(dynamodb.clone(), &config.alerts_table),
            config.group_policies(),
        ),
        silences: Silences::new(DynamoDbSilenceStore::new(dynamodb, &config.alerts_table)),
    };
    // The alerts table's stream and the recovery schedule share the function.
    lambda_runtime::run(service_fn(|event| handle(&deps, event))).await
}
