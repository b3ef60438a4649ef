//! Support for the integration tests: one moto server per test binary,
//! unique resource names, and a proxy that injects faults between the SDK
//! and moto.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub use lake_tools::moto::{s3_client, sdk_config, MotoOptions, MotoServer};

/// The region the tests use.
pub const REGION: &str = "us-east-1";

/// The moto server shared by the tests of this binary, started on first use.
/// It stops when the test process exits (its stdin closes).
pub fn moto() -> &'static str {
    static MOTO: OnceLock<MotoServer> = OnceLock::new();
    &MOTO
        .get_or_init(|| match MotoServer::start(&MotoOptions::default()) {
            Ok(m) => m,
            Err(e) => panic!("cannot start moto: {e:#}"),
        })
        .endpoint
}

/// A name unique to this test process and call, valid as an S3 bucket,
/// DynamoDB table or Kinesis stream name.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An S3 client on moto and a new empty bucket.
pub async fn s3_with_bucket(prefix: &str) -> (aws_sdk_s3::Client, String) {
    let sdk = sdk_config(moto(), REGION).await;
    let s3 = s3_client(&sdk);
    let bucket = unique(prefix);
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    (s3, bucket)
}

/// A fault to inject: requests whose method and path match get `status` and
/// `body` instead of reaching moto, `times` times (forever when `None`).
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    pub path_contains: String,
    pub status: u16,
    pub body: String,
    pub times: Option<usize>,
}

impl Fault {
    /// S3 `AccessDenied` for PUTs whose path contains `needle`.
    pub fn s3_put_denied(needle: &str) -> Self {
        Fault {
            method: "PUT",
            path_contains: needle.to_string(),
            status: 403,
            body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                   <Message>Access Denied</Message></Error>"
                .to_string(),
            times: None,
        }
    }
}

/// A proxy in front of moto that can fail chosen requests.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    /// The proxy's endpoint, to give the SDK instead of moto's.
    pub endpoint: String,
    faults: Arc<Mutex<Vec<Fault>>>,
    injected: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` on a free loopback port.
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let faults: Arc<Mutex<Vec<Fault>>> = Arc::default();
        let injected = Arc::new(AtomicU64::new(0));
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let upstream = upstream.trim_end_matches('/').to_string();
        let (f, n) = (Arc::clone(&faults), Arc::clone(&injected));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let (client, upstream, faults, injected) = (
                    client.clone(),
                    upstream.clone(),
                    Arc::clone(&f),
                    Arc::clone(&n),
                );
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        forward(
                            req,
                            client.clone(),
                            upstream.clone(),
                            Arc::clone(&faults),
                            Arc::clone(&injected),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FaultProxy {
            endpoint,
            faults,
            injected,
        }
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.faults.lock().expect("faults lock").push(fault);
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.faults.lock().expect("faults lock").clear();
    }

    /// How many responses were faults.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

async fn forward(
    req: Request<Incoming>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: String,
    faults: Arc<Mutex<Vec<Fault>>>,
    injected: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let decoded = percent_decode(&path);
    let fault = {
        let mut faults = faults.lock().expect("faults lock");
        let hit = faults.iter_mut().find(|f| {
            f.method == req.method().as_str()
                && decoded.contains(&f.path_contains)
                && f.times != Some(0)
        });
        hit.map(|f| {
            if let Some(t) = f.times.as_mut() {
                *t -= 1;
            }
            f.clone()
        })
    };
    if let Some(f) = fault {
        injected.fetch_add(1, Ordering::Relaxed);
        return Ok(Response::builder()
            .status(f.status)
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from(f.body)))
            .unwrap_or_default());
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = Request::builder()
        .method(parts.method)
        .uri(format!("{upstream}{path}"));
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    let Ok(out) = out.body(Full::new(body)) else {
        return Ok(error_response("bad request to forward"));
    };
    match client.request(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        Err(e) => Ok(error_response(&format!("upstream error: {e}"))),
    }
}

fn error_response(msg: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(502)
        .body(Full::new(Bytes::from(msg.to_string())))
        .unwrap_or_default()
}

/// Undoes `%XX` escapes, so faults can name paths as S3 keys are written.
fn percent_decode(s: &str) -> String {
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
