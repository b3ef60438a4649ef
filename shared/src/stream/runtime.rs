//! The Lambda runtime for the stream functions, with each event read once.
//!
//! `lambda_runtime` deserialises an invocation's body into the handler's
//! event type with `serde_json` behind `serde_path_to_error`. A
//! [`StreamEvent`] is read by sonic-rs, so all `serde_json` would do is
//! scan the whole body to find where it ends: about a fifth of a plain
//! invocation (BENCHMARKS.md, "The floor"). [`run`] takes the body before
//! that: a layer sets it aside under the invocation's request id and gives
//! the runtime's deserialiser `null` for a `()` event, and the handler
//! reads the body with [`read_event`].
//!
//! Everything else is the runtime's own, unchanged: its tracing layer, its
//! catching of panics, and its reporting of a handler's error (an event
//! that is not a stream batch included) to the Runtime API.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{layers::TracingLayer, Error, LambdaEvent, LambdaInvocation, Runtime};
use serde::Serialize;

use crate::stream::event::StreamEvent;

/// What the runtime reports when a body does not deserialise, and so what
/// [`read_event`] says of a body that is not a stream batch.
const NOT_AN_EVENT: &str =
    "failed to deserialize the incoming data into the function's payload type";

/// Reads an invocation's body as a stream event: the one reader of the
/// stream functions' events, in Lambda and wherever they are invoked from
/// an event's bytes.
pub fn read_event(body: &[u8]) -> Result<StreamEvent, Error> {
    StreamEvent::from_body(body).map_err(|e| format!("{NOT_AN_EVENT}: {e}").into())
}

/// Runs `handler` on every invocation, its event read by [`read_event`]
/// from the body the runtime received.
pub async fn run<H, Fut, R>(handler: H) -> Result<(), Error>
where
    H: Fn(LambdaEvent<StreamEvent>) -> Fut,
    Fut: Future<Output = Result<R, Error>>,
    R: Serialize,
{
    let bodies = Bodies::default();
    let handler = &handler;
    let taken = bodies.clone();
    let service = lambda_runtime::service_fn(move |placeholder: LambdaEvent<()>| {
        let body = taken.take(&placeholder.context.request_id);
        async move {
            let event = read_event(&body)?;
            handler(LambdaEvent::new(event, placeholder.context)).await
        }
    });
    Runtime::new(service)
        .layer(SetBodyAside { bodies })
        .layer(TracingLayer::new())
        .run()
        .await
}

/// Bodies set aside, by request id, until their handler takes them.
#[derive(Debug, Clone, Default)]
struct Bodies(Arc<Mutex<HashMap<String, Bytes>>>);

impl Bodies {
    fn put(&self, request_id: String, body: Bytes) {
        if let Ok(mut bodies) = self.0.lock() {
            bodies.insert(request_id, body);
        }
    }

    /// The body of `request_id` (empty, so not an event, if it was never
    /// set aside).
    fn take(&self, request_id: &str) -> Bytes {
        self.0
            .lock()
            .ok()
            .and_then(|mut bodies| bodies.remove(request_id))
            .unwrap_or_default()
    }
}

/// The layer that sets each invocation's body aside.
#[derive(Debug, Clone)]
struct SetBodyAside {
    bodies: Bodies,
}

impl<S> Layer<S> for SetBodyAside {
    type Service = SetBodyAsideService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetBodyAsideService {
            inner,
            bodies: self.bodies.clone(),
        }
    }
}

#[derive(Debug)]
struct SetBodyAsideService<S> {
    inner: S,
    bodies: Bodies,
}

/// The JSON the runtime's deserialiser is given in place of the body.
const PLACEHOLDER: &[u8] = b"null";

impl<S> Service<LambdaInvocation> for SetBodyAsideService<S>
where
    S: Service<LambdaInvocation>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> Self::Future {
        let body = std::mem::replace(&mut invocation.body, Bytes::from_static(PLACEHOLDER));
        tracing::trace!(
            body = %String::from_utf8_lossy(&body),
            "raw JSON event received from Lambda"
        );
        self.bodies.put(invocation.context.request_id.clone(), body);
        self.inner.call(invocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_a_stream_batch_is_an_error_the_runtime_reports() {
        for (body, says) in [
            (&b""[..], "EOF"),
            (b"\xff", "UTF-8"),
            (b"[1]", "expected"),
            (b"{\"Records\": 7}", "expected"),
        ] {
            let e = read_event(body).unwrap_err().to_string();
            assert!(e.starts_with(NOT_AN_EVENT), "{e}");
            assert!(e.contains(says), "{body:?}: {e}");
        }
    }

    #[test]
    fn a_body_is_taken_once_by_its_request_id() {
        let bodies = Bodies::default();
        bodies.put("a".into(), Bytes::from_static(b"{}"));
        bodies.put("b".into(), Bytes::from_static(b"[]"));
        assert_eq!(bodies.take("a"), Bytes::from_static(b"{}"));
        assert_eq!(bodies.take("a"), Bytes::new());
        assert_eq!(bodies.take("b"), Bytes::from_static(b"[]"));
    }
}
