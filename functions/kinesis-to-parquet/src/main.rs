//! Lambda entry point of `kinesis-to-parquet`.

use kinesis_to_parquet::KinesisToParquet;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use telemetry_lake::glue_schema::load_config;
use telemetry_lake::lake_writer::{s3_client, S3Sink};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = aws_config::load_from_env().await;
    let config = load_config(
        |name| std::env::var(name).ok(),
        || aws_sdk_glue::Client::new(&aws),
    )
    .await?;
    let sink = S3Sink::new(s3_client(&aws), &config.lake_bucket);
    let function = KinesisToParquet::new(config, sink);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        function.handle_event(event)
    }))
    .await
}
