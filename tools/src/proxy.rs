//! Forwarding of HTTP requests to an upstream server, shared by the local
//! Lambda endpoint and the tests' fault-injecting proxy.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The HTTP client used to reach the upstream.
pub type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

/// A new upstream client.
pub fn upstream_client() -> UpstreamClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A request whose body has been read.
#[derive(Debug)]
pub struct BufferedRequest {
    pub parts: hyper::http::request::Parts,
    pub body: Bytes,
}

impl BufferedRequest {
    /// Reads the whole body of `req`.
    pub async fn read(req: Request<Incoming>) -> Self {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        BufferedRequest { parts, body }
    }

    /// The path and query, as sent.
    pub fn path_and_query(&self) -> String {
        self.parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default()
    }

    /// A header's value, when present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `req` to `upstream` (`http://host:port`) with its method, path,
/// headers and body, and returns the upstream's response (502 when the
/// upstream cannot be reached).
pub async fn forward(
    client: &UpstreamClient,
    upstream: &str,
    req: BufferedRequest,
) -> Response<Full<Bytes>> {
    let path = req.path_and_query();
    let mut out = Request::builder()
        .method(req.parts.method)
        .uri(format!("{}{path}", upstream.trim_end_matches('/')));
    for (k, v) in &req.parts.headers {
        out = out.header(k, v);
    }
    let Ok(out) = out.body(Full::new(req.body)) else {
        return plain_response(502, "bad request to forward");
    };
    match client.request(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Response::from_parts(parts, Full::new(body))
        }
        Err(e) => plain_response(502, &format!("upstream error: {e}")),
    }
}

/// A response with a status and a text body.
pub fn plain_response(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// Serves HTTP/1 connections accepted on `listener` with `handle`, until the
/// listener fails.
pub async fn serve<F, Fut>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_or_drop(listener, move |req| {
        let fut = handle(req);
        async move { Some(fut.await) }
    })
    .await;
}

/// As [`serve`], but a handler answering `None` closes the connection
/// without a response (the fault proxy's dropped connection).
pub async fn serve_or_drop<F, Fut>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Response<Full<Bytes>>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            break;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let fut = handle(req);
                async move {
                    fut.await
                        .ok_or_else(|| std::io::Error::other("connection dropped on purpose"))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A loopback address with a free port.
pub fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Undoes `%XX` escapes (paths of S3 keys and Lambda ARNs are escaped).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
