//! Lambda entry point: configuration and clients once per cold start, then the runtime.

use lambda_runtime::{run, service_fn};
use streamwatch_adapters::alerts::DynamoDbAlertOutbox;
use streamwatch_adapters::aws::load_config;
use streamwatch_adapters::windows::DynamoDbWindowStore;
use window_aggregator::{Config, Deps, SystemClock, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    streamwatch_adapters::logging::init();
    let config = Config::from_env()?;
    let aws = load_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws);
    let deps = Deps {
        store: DynamoDbWindowStore::new(ddb.clone(), &config.windows_table, config.state_ttl),
        outbox: DynamoDbAlertOutbox::new(ddb, &config.alerts_table),
        clock: SystemClock,
        config,
    };
    run(service_fn(|event| handle(&deps, event))).await
}
