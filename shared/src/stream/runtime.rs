//! The Lambda runtime for the stream functions, with each event read once.
//!
//! `lambda_runtime` deserialises an invocation's body into the handler's
//! event type with `serde_json` behind `serde_path_to_error`. A
//! [`StreamEvent`] is read by sonic-rs, so all `serde_json` would do is
//! scan the whole body to find where it ends: about a fifth of a plain
//! invocation (BENCHMARKS.md, "The floor"). [`run`] takes the body before
//! that: a layer sets it aside under the invocation's request id and gives
//! the runtime's deserialiser `null` for a `()` event, and [`invoke`]
//! reads the body with [`read_event`] and frees it before the handler runs.
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
use lambda_runtime::{
    layers::TracingLayer, Context, Error, LambdaEvent, LambdaInvocation, Runtime,
};
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

/// Reads the event of one invocation from `body`, lets the body go, and
/// hands the event to `handler`. The event owns everything it keeps of the
/// body (payloads decoded, sequence numbers, names), so an owned body is
/// freed before the handler runs: a 10,000-record event's bytes are about
/// as large as everything the handler allocates (BENCHMARKS.md, peak RSS).
/// A borrowed body stays with its owner.
pub async fn invoke<B, H, Fut, R>(body: B, context: Context, handler: H) -> Result<R, Error>
where
    B: AsRef<[u8]>,
    H: FnOnce(LambdaEvent<StreamEvent>) -> Fut,
    Fut: Future<Output = Result<R, Error>>,
{
    let event = read_event(body.as_ref());
    drop(body);
    handler(LambdaEvent::new(event?, context)).await
}

/// Runs `handler` on every invocation, its event read by [`read_event`]
/// from the body the runtime received, which is freed before the handler
/// runs ([`invoke`]).
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
        invoke(body, placeholder.context, handler)
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

    /// A body that says when it is dropped.
    struct Watched(&'static [u8], Arc<Mutex<bool>>);

    impl AsRef<[u8]> for Watched {
        fn as_ref(&self) -> &[u8] {
            self.0
        }
    }

    impl Drop for Watched {
        fn drop(&mut self) {
            *self.1.lock().unwrap() = true;
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_handler_gets_the_event_after_its_body_is_freed() {
        let dropped = Arc::new(Mutex::new(false));
        let body = Watched(
            br#"{"Records": [{"kinesis": {"sequenceNumber": "7", "data": "eyJhIjoxfQ==",
                "approximateArrivalTimestamp": 1545084650.987},
                "eventSourceARN": "arn:aws:kinesis:us-east-2:1:stream/s"}]}"#,
            dropped.clone(),
        );
        let seen = block_on(invoke(body, Context::default(), |e| {
            let freed = *dropped.lock().unwrap();
            async move {
                let StreamEvent::Kinesis(batch) = e.payload else {
                    panic!("a Kinesis event")
                };
                let r = batch.records().next().unwrap();
                Ok::<_, Error>((freed, r.position.into_owned(), r.data.unwrap().into_owned()))
            }
        }))
        .unwrap();
        assert_eq!(seen, (true, "7".to_string(), br#"{"a":1}"#.to_vec()));
    }

    #[test]
    fn a_body_that_is_not_an_event_never_reaches_the_handler() {
        let called = Arc::new(Mutex::new(false));
        let e = block_on(invoke(&b"{\"Records\": 7}"[..], Context::default(), |_| {
            *called.lock().unwrap() = true;
            async { Ok::<_, Error>(()) }
        }))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with(NOT_AN_EVENT), "{e}");
        assert!(!*called.lock().unwrap());
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
