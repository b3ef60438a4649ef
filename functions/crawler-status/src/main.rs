//! Lambda entry point of `crawler-status`.

use crawler_status::CrawlerStatus;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use telemetry_lake::repartition_config::CrawlerStatusConfig;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = CrawlerStatusConfig::from_env()?;
    let aws = aws_config::load_from_env().await;
    let function = CrawlerStatus::new(config, aws_sdk_glue::Client::new(&aws));
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| function.handle(event))).await
}
