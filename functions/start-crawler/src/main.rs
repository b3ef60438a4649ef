//! Lambda entry point of `start-crawler`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use start_crawler::StartCrawler;
use telemetry_lake::repartition_config::StartCrawlerConfig;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = StartCrawlerConfig::from_env()?;
    let aws = aws_config::load_from_env().await;
    let function = StartCrawler::new(config, aws_sdk_glue::Client::new(&aws));
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| function.handle(event))).await
}
