//! Lambda entry point of `reference-change-flag`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use reference_change_flag::{location_from_env, ReferenceChangeFlag};
use telemetry_lake::change_flag::ChangeFlagStore;
use telemetry_lake::lake_writer::s3_client;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let location = location_from_env()?;
    let aws = aws_config::load_from_env().await;
    let function = ReferenceChangeFlag::new(ChangeFlagStore::new(s3_client(&aws), location));
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| function.handle(event))).await
}
