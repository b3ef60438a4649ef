//! Lambda entry point of `query-status`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use query_status::QueryStatus;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = telemetry_lake::config::aws::load().await;
    let function = QueryStatus::load(|name| std::env::var(name).ok(), &aws);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| function.handle(event))).await
}
