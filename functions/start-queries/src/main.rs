//! Lambda entry point of `start-queries`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use start_queries::StartQueries;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = telemetry_lake::config::aws::load().await;
    // Parses the SQL template (built in, or SQL_TEMPLATE_FILE): a bad one
    // fails the cold start naming the placeholder.
    let function = StartQueries::load(|name| std::env::var(name).ok(), &aws)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| function.handle(event))).await
}
