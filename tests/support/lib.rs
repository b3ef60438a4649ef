//! Support for the integration tests: one moto server per test binary,
//! unique resource names, a proxy that injects faults between the SDK and
//! moto, and a harness that runs state machines in moto's interpreter with
//! the real handlers behind their Lambda tasks; `template.yaml` read as
//! JSON for the checks over it (`template`).

pub mod template;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use lake_tools::proxy;

pub use lake_tools::lambda_endpoint::{function_arn, LambdaEndpoint};
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

/// A fault to inject: requests whose method and path match (and, for the
/// JSON-protocol services, whose `X-Amz-Target` header contains `target`)
/// get `status` and `body` instead of reaching moto, `times` times (forever
/// when `None`).
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    pub path_contains: String,
    pub target: Option<String>,
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub times: Option<usize>,
}

impl Fault {
    /// S3 `AccessDenied` for PUTs whose path contains `needle`.
    pub fn s3_put_denied(needle: &str) -> Self {
        Self::s3_put(
            needle,
            403,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
             <Message>Access Denied</Message></Error>",
        )
    }

    /// An S3 error for PUTs whose path contains `needle`.
    pub fn s3_put(needle: &str, status: u16, body: &str) -> Self {
        Fault {
            method: "PUT",
            path_contains: needle.to_string(),
            target: None,
            status,
            content_type: "application/xml",
            body: body.to_string(),
            times: None,
        }
    }

    /// An error of a JSON-protocol service (DynamoDB, Step Functions, Glue,
    /// Athena, Kinesis) for the operation whose `X-Amz-Target` contains
    /// `target`, e.g. `("DynamoDB_20120810.UpdateItem", 400,
    /// "ProvisionedThroughputExceededException")` or
    /// `("AWSStepFunctions.StartExecution", 400, "ThrottlingException")`.
    pub fn aws_json(target: &str, status: u16, error_type: &str) -> Self {
        Fault {
            method: "POST",
            path_contains: "/".to_string(),
            target: Some(target.to_string()),
            status,
            content_type: "application/x-amz-json-1.0",
            body: serde_json::json!({
                "__type": error_type,
                "message": format!("injected {error_type}"),
            })
            .to_string(),
            times: None,
        }
    }

    /// Fails only the first `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
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
        let listener = tokio::net::TcpListener::bind(proxy::loopback_any_port())
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let faults: Arc<Mutex<Vec<Fault>>> = Arc::default();
        let injected = Arc::new(AtomicU64::new(0));
        let client = proxy::upstream_client();
        let upstream = upstream.trim_end_matches('/').to_string();
        let (f, n) = (Arc::clone(&faults), Arc::clone(&injected));
        tokio::spawn(proxy::serve(listener, move |req| {
            respond(
                req,
                client.clone(),
                upstream.clone(),
                Arc::clone(&f),
                Arc::clone(&n),
            )
        }));
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

async fn respond(
    req: Request<Incoming>,
    client: proxy::UpstreamClient,
    upstream: String,
    faults: Arc<Mutex<Vec<Fault>>>,
    injected: Arc<AtomicU64>,
) -> Response<Full<Bytes>> {
    let req = proxy::BufferedRequest::read(req).await;
    let decoded = proxy::percent_decode(&req.path_and_query());
    let target = req.header("x-amz-target").unwrap_or_default().to_string();
    let fault = {
        let mut faults = faults.lock().expect("faults lock");
        let hit = faults.iter_mut().find(|f| {
            f.method == req.parts.method.as_str()
                && decoded.contains(&f.path_contains)
                && f.target
                    .as_ref()
                    .is_none_or(|t| target.contains(t.as_str()))
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
        let mut resp = Response::builder()
            .status(f.status)
            .header("content-type", f.content_type);
        if f.target.is_some() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&f.body) {
                if let Some(kind) = v["__type"].as_str() {
                    resp = resp.header("x-amzn-errortype", kind);
                }
            }
        }
        return resp
            .body(Full::new(Bytes::from(f.body)))
            .unwrap_or_default();
    }
    proxy::forward(&client, &upstream, req).await
}

/// A moto server that really executes state machines, with a local Lambda
/// endpoint in front of it (moto's interpreter calls Lambda and every other
/// service through it). One per test binary, started on first use.
#[derive(Debug)]
pub struct SfnHarness {
    pub moto: MotoServer,
    pub lambda: LambdaEndpoint,
}

/// The state-machine harness of this test binary.
pub fn sfn_harness() -> &'static SfnHarness {
    static HARNESS: OnceLock<SfnHarness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let lambda = LambdaEndpoint::start().expect("start the local Lambda endpoint");
        let moto = MotoServer::start(&MotoOptions {
            lambda_endpoint_port: Some(lambda.port()),
            execute_state_machines: true,
        })
        .unwrap_or_else(|e| panic!("cannot start moto: {e:#}"));
        lambda.set_upstream(&moto.endpoint);
        SfnHarness { moto, lambda }
    })
}

/// The role moto's state machines are created with (moto checks its form only).
pub const STATE_MACHINE_ROLE: &str = "arn:aws:iam::123456789012:role/telemetry-lake-states";

/// Reads `statemachine/{asl_file}`, replaces every `${Key}` with its value,
/// creates the state machine `name` and returns its ARN. Panics naming any
/// placeholder left without a value.
pub async fn create_state_machine(
    sfn: &aws_sdk_sfn::Client,
    asl_file: &str,
    name: &str,
    substitutions: &[(&str, String)],
) -> String {
    let path = lake_tools::moto::repo_root()
        .join("statemachine")
        .join(asl_file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let substitutions = substitutions
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let definition = lake_tools::template::substitute_definition(&text, &substitutions)
        .unwrap_or_else(|e| panic!("{asl_file}: {e:#}"));
    create_state_machine_from(sfn, name, &definition).await
}

/// Creates the state machine `name` from an ASL definition and returns its ARN.
pub async fn create_state_machine_from(
    sfn: &aws_sdk_sfn::Client,
    name: &str,
    definition: &str,
) -> String {
    sfn.create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn(STATE_MACHINE_ROLE)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create state machine {name}: {e:?}"))
        .state_machine_arn
}

/// Polls `DescribeExecution` until the execution is no longer RUNNING and
/// returns its final description. Panics after two minutes (a hung
/// interpreter, not a slow one).
pub async fn wait_for_execution(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    lake_tools::step_functions::wait_for_execution(
        sfn,
        execution_arn,
        std::time::Duration::from_secs(120),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The names of the states the execution entered, in order.
pub async fn states_entered(sfn: &aws_sdk_sfn::Client, execution_arn: &str) -> Vec<String> {
    lake_tools::step_functions::states_entered(sfn, execution_arn)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}
