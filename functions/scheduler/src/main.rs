//! Lambda entry point of `scheduler`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use scheduler::Scheduler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = telemetry_lake::config::aws::load().await;
    let function = Scheduler::load(|name| std::env::var(name).ok(), &aws)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| function.handle(event))).await
}
