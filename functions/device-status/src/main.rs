//! Lambda entry point of `device-status`.

use device_status::config::DeviceStatusConfig;
use device_status::DeviceStatus;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use telemetry_lake::change_flag::ChangeFlagStore;
use telemetry_lake::lake_writer::{s3_client, S3Sink};
use telemetry_lake::reference::{ReferenceCache, ReferenceTable};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = aws_config::load_from_env().await;
    let config = DeviceStatusConfig::load(
        |name| std::env::var(name).ok(),
        || aws_sdk_glue::Client::new(&aws),
    )
    .await?;
    let s3 = s3_client(&aws);
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = ReferenceTable {
        client: dynamodb.clone(),
        table: config.reference_table.clone(),
        key_attribute: config.reference_key_attribute.clone(),
        metrics: config.metrics.clone(),
    };
    let flag = ChangeFlagStore::new(s3.clone(), config.change_flag.clone());
    let cache = ReferenceCache::new(table, flag, config.change_flag_check);
    let sink = S3Sink::new(s3, &config.dead_letter_bucket);
    let function = DeviceStatus::new(&config, cache, dynamodb, sink)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        function.handle_event(event)
    }))
    .await
}
