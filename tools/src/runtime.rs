//! Calling a function the way the Lambda runtime does: from the bytes of an
//! invocation's body, deserialised exactly as `lambda_runtime` deserialises
//! them (`serde_path_to_error` over `serde_json` over the slice) into the
//! event type the function's `main` declares, then handed to the same
//! handler `main` registers. The stream functions' `main` reads the body
//! itself (`telemetry_lake::stream::runtime`): [`invoke_stream`] does the
//! same. Tests, the local run and the benchmarks reach the functions only
//! through here, so they exercise the production path.

use std::future::Future;

use lambda_runtime::{Context, LambdaEvent};
use serde::Deserialize;

/// What `lambda_runtime` reports when the body does not fit the event type.
const DESERIALIZE_ERROR: &str =
    "failed to deserialize the incoming data into the function's payload type";

/// Reads an invocation's body into the handler's event, or the error the
/// runtime would report (with the path of what did not fit).
pub fn lambda_event<T>(body: &[u8]) -> Result<LambdaEvent<T>, lambda_runtime::Error>
where
    T: for<'de> Deserialize<'de>,
{
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize(de) {
        Ok(payload) => Ok(LambdaEvent::new(payload, Context::default())),
        Err(e) => {
            let path = e.path().to_string();
            Err(if path == "." {
                format!("{DESERIALIZE_ERROR}: {}", e.inner()).into()
            } else {
                format!("{DESERIALIZE_ERROR}: [{path}] {}", e.inner()).into()
            })
        }
    }
}

/// Invokes `handler` with an invocation's body, as the runtime does.
pub async fn invoke<T, R, F, Fut>(body: &[u8], handler: F) -> Result<R, lambda_runtime::Error>
where
    T: for<'de> Deserialize<'de>,
    F: FnOnce(LambdaEvent<T>) -> Fut,
    Fut: Future<Output = Result<R, lambda_runtime::Error>>,
{
    handler(lambda_event(body)?).await
}

/// Invokes a stream function's `handler` with an invocation's body, read as
/// its `main` reads it ([`telemetry_lake::stream::runtime::invoke`]): an
/// owned body is freed before the handler runs, a borrowed one is not.
pub async fn invoke_stream<B, R, F, Fut>(body: B, handler: F) -> Result<R, lambda_runtime::Error>
where
    B: AsRef<[u8]>,
    F: FnOnce(LambdaEvent<telemetry_lake::stream::event::StreamEvent>) -> Fut,
    Fut: Future<Output = Result<R, lambda_runtime::Error>>,
{
    telemetry_lake::stream::runtime::invoke(body, Context::default(), handler).await
}
