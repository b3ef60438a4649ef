//! The AWS SDK configuration every function and tool starts from.
//!
//! The SDK crates are built without their default HTTPS client (rustls on
//! aws-lc); the client here is the same hyper and rustls stack on ring, the
//! crypto library the build holds anyway. One place sets it, so no SDK
//! client is ever built without one.

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// The SDK's default loader (region, credentials and endpoint from the
/// environment, `AWS_ENDPOINT_URL` included) with the suite's HTTPS client.
pub fn loader() -> ConfigLoader {
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(client)
}

/// [`loader`], loaded: what a function's `main` calls at cold start.
pub async fn load() -> SdkConfig {
    loader().load().await
}

/// [`loader`] in `region` when one is given (a tool's `--region`), the
/// environment's otherwise, loaded.
pub async fn load_in(region: Option<&str>) -> SdkConfig {
    let mut loader = loader();
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    loader.load().await
}
