//! Lambda entry point of `start-queries`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use start_queries::StartQueries;
use telemetry_lake::repartition_config::StartQueriesConfig;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Parses the SQL template (built in, or SQL_TEMPLATE_FILE): a bad one
    // fails the cold start naming the placeholder.
    let config = StartQueriesConfig::from_env()?;
    let aws = aws_config::load_from_env().await;
    let function = StartQueries::new(config, aws_sdk_athena::Client::new(&aws));
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| function.handle(event))).await
}
