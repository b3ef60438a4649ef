//! Lambda entry point of `kinesis-to-parquet`.

use kinesis_to_parquet::KinesisToParquet;
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = telemetry_lake::config::aws::load().await;
    let function = KinesisToParquet::load(|name| std::env::var(name).ok(), &aws).await?;
    telemetry_lake::stream::runtime::run(|event| function.handle(event)).await
}
