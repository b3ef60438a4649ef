//! A local stand-in for the Lambda service's `Invoke` API, so that moto's
//! Step Functions interpreter runs the suite's real handlers.
//!
//! Moto's interpreter calls every service it integrates with through a boto3
//! client at `http://localhost:$MOTO_PORT` (see `scripts/moto_launcher.py`).
//! Moto is started with `MOTO_PORT` set to this endpoint's port: it serves
//! `POST /2015-03-31/functions/{name}/invocations` with the handler
//! registered under that name, and forwards every other request (Glue,
//! DynamoDB, Step Functions, ...) to moto itself.
//!
//! The endpoint runs on a thread and Tokio runtime of its own, so it outlives
//! the runtime of any one test. Handlers run on that runtime: they build
//! their SDK clients themselves rather than borrowing a test's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use lambda_runtime::Diagnostic;
use serde_json::Value;

use crate::proxy::{
    forward, percent_decode, plain_response, serve, upstream_client, BufferedRequest,
    UpstreamClient,
};

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, Diagnostic>> + Send>>;
type Handler = Arc<dyn Fn(Value) -> HandlerFuture + Send + Sync>;

#[derive(Default)]
struct Registry {
    upstream: RwLock<Option<String>>,
    handlers: Mutex<HashMap<String, Handler>>,
    invocations: Mutex<HashMap<String, usize>>,
}

/// The local Lambda endpoint.
pub struct LambdaEndpoint {
    port: u16,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for LambdaEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaEndpoint")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl LambdaEndpoint {
    /// Binds a free loopback port and starts serving on a thread of its own.
    pub fn start() -> Result<Self> {
        let listener = std::net::TcpListener::bind(crate::proxy::loopback_any_port())
            .context("binding the Lambda endpoint")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let registry = Arc::new(Registry::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lambda-endpoint")
            .enable_all()
            .build()
            .context("building the Lambda endpoint's runtime")?;
        let served = Arc::clone(&registry);
        std::thread::Builder::new()
            .name("lambda-endpoint".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let client = upstream_client();
                    serve(listener, move |req| {
                        respond(req, Arc::clone(&served), client.clone())
                    })
                    .await;
                });
            })
            .context("spawning the Lambda endpoint's thread")?;
        Ok(LambdaEndpoint { port, registry })
    }

    /// The port it listens on (give it to moto as `MOTO_PORT`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where to forward every request that is not a Lambda invocation.
    pub fn set_upstream(&self, moto_endpoint: &str) {
        *self
            .registry
            .upstream
            .write()
            .unwrap_or_else(|e| e.into_inner()) =
            Some(moto_endpoint.trim_end_matches('/').to_string());
    }

    /// Serves invocations of `function_name` (a plain name: ARNs and
    /// qualifiers in the request path are reduced to it) with `handler`.
    pub fn register<F, Fut>(&self, function_name: &str, handler: F)
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, Diagnostic>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |payload| Box::pin(handler(payload)));
        self.registry
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(function_name.to_string(), handler);
    }

    /// How many times `function_name` was invoked.
    pub fn invocations(&self, function_name: &str) -> usize {
        self.registry
            .invocations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(function_name)
            .copied()
            .unwrap_or(0)
    }
}

/// `arn:aws:lambda:{region}:123456789012:function:{name}` (moto's account).
pub fn function_arn(region: &str, name: &str) -> String {
    format!("arn:aws:lambda:{region}:123456789012:function:{name}")
}

/// The function name in an `Invoke` path, or `None` for any other request.
/// `FunctionName` may be a name, `name:qualifier`, a full or partial ARN.
fn invoked_function(method: &hyper::Method, path: &str) -> Option<String> {
    if method != hyper::Method::POST {
        return None;
    }
    let path = path.split('?').next().unwrap_or(path);
    let name = path
        .strip_prefix("/2015-03-31/functions/")?
        .strip_suffix("/invocations")?;
    let name = percent_decode(name);
    let name = match name.split_once(":function:") {
        Some((_, rest)) => rest.to_string(),
        None => name,
    };
    Some(name.split(':').next().unwrap_or_default().to_string())
}

async fn respond(
    req: Request<Incoming>,
    registry: Arc<Registry>,
    client: UpstreamClient,
) -> Response<Full<Bytes>> {
    let req = BufferedRequest::read(req).await;
    let Some(name) = invoked_function(&req.parts.method, &req.path_and_query()) else {
        let upstream = registry
            .upstream
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return match upstream {
            Some(upstream) => forward(&client, &upstream, req).await,
            None => plain_response(503, "the Lambda endpoint has no upstream yet"),
        };
    };
    let handler = registry
        .handlers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .cloned();
    let Some(handler) = handler else {
        return lambda_error(
            404,
            "ResourceNotFoundException",
            &format!(
                "Function not found: {name} (no handler registered on the local Lambda endpoint)"
            ),
        );
    };
    *registry
        .invocations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.clone())
        .or_default() += 1;
    let payload = if req.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => {
                return lambda_error(
                    400,
                    "InvalidRequestContentException",
                    &format!("payload of {name} is not JSON: {e}"),
                )
            }
        }
    };
    match handler(payload).await {
        Ok(out) => json_response(200, &out, None),
        // As the Lambda service reports an unhandled function error: 200,
        // X-Amz-Function-Error, and the runtime's error document.
        Err(d) => json_response(
            200,
            &serde_json::json!({"errorType": d.error_type, "errorMessage": d.error_message}),
            Some("Unhandled"),
        ),
    }
}

fn json_response(status: u16, body: &Value, function_error: Option<&str>) -> Response<Full<Bytes>> {
    let mut resp = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amz-executed-version", "$LATEST");
    if let Some(kind) = function_error {
        resp = resp.header("x-amz-function-error", kind);
    }
    resp.body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

fn lambda_error(status: u16, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", error_type)
        .body(Full::new(Bytes::from(
            serde_json::json!({"Type": "User", "message": message}).to_string(),
        )))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_paths_name_the_function() {
        let post = hyper::Method::POST;
        for (path, name) in [
            ("/2015-03-31/functions/start/invocations", "start"),
            ("/2015-03-31/functions/start%3Alive/invocations", "start"),
            (
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Astart/invocations",
                "start",
            ),
            (
                "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:start:7/invocations?x=1",
                "start",
            ),
        ] {
            assert_eq!(invoked_function(&post, path).as_deref(), Some(name), "{path}");
        }
        assert_eq!(invoked_function(&post, "/"), None);
        assert_eq!(
            invoked_function(
                &hyper::Method::GET,
                "/2015-03-31/functions/start/invocations"
            ),
            None
        );
    }
}
