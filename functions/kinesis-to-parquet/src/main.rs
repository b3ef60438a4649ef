//! Lambda entry point of `kinesis-to-parquet`.

use kinesis_to_parquet::KinesisToParquet;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = telemetry_lake::config::aws::load().await;
    let function = KinesisToParquet::load(|name| std::env::var(name).ok(), &aws).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| function.handle(event))).await
}
