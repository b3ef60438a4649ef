//! Lambda entry point of `scheduler`.

use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use scheduler::config::SchedulerConfig;
use scheduler::{dynamodb_client, sfn_client, Scheduler};
use telemetry_lake::providers::DynamoProviders;

/// The SDK's default first backoff; doubles (with jitter) per retry.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = SchedulerConfig::from_env()?;
    let aws = aws_config::load_from_env().await;
    let attempts = config.aws_max_attempts;
    let source = DynamoProviders::new(
        dynamodb_client(&aws, attempts, INITIAL_BACKOFF),
        &config.providers_table,
    );
    let sfn = sfn_client(&aws, attempts, INITIAL_BACKOFF);
    let function = Scheduler::new(config, source, sfn);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| function.handle(event))).await
}
