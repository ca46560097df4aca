//! Lambda entry point: configuration and clients once per cold start, then the runtime.

use lambda_runtime::{run, service_fn};
use streamwatch_adapters::alerts::DynamoDbAlertOutbox;
use streamwatch_adapters::aws::load_config;
use streamwatch_adapters::shards::KinesisShardProbe;
use streamwatch_adapters::windows::DynamoDbWindowStore;
use streamwatch_core::config::ConfigError;
use window_aggregator::{Config, Deps, SystemClock, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    streamwatch_adapters::logging::init();
    let config = Config::from_env()?;
    let stream_arn = config.stream_arn.clone().ok_or_else(|| ConfigError {
        variable: "STREAM_ARN".into(),
        reason: "required: the readings stream's ARN (its shards decide when windows close)".into(),
    })?;
    let aws = load_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws);
    let deps = Deps {
        store: DynamoDbWindowStore::new(ddb.clone(), &config.windows_table, config.state_ttl),
        outbox: DynamoDbAlertOutbox::new(ddb, &config.alerts_table),
        probe: KinesisShardProbe::new(aws_sdk_kinesis::Client::new(&aws), stream_arn),
        clock: SystemClock,
        config,
    };
    run(service_fn(|event| handle(&deps, event))).await
}
