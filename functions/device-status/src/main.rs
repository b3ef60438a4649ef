//! Lambda entry point of `device-status`.

use device_status::DeviceStatus;
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = telemetry_lake::config::aws::load().await;
    let function = DeviceStatus::load(|name| std::env::var(name).ok(), &aws).await?;
    telemetry_lake::stream::runtime::run(|event| function.handle(event)).await
}
