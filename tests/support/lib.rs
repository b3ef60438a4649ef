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

/// A new bucket and Glue database on moto for an Iceberg lake: (S3 client,
/// bucket, database).
pub async fn iceberg_lake(prefix: &str) -> (aws_sdk_s3::Client, String, String) {
    let (s3, bucket) = s3_with_bucket(prefix).await;
    let database = unique(prefix).replace('-', "_");
    aws_sdk_glue::Client::new(&sdk_config(moto(), REGION).await)
        .create_database()
        .database_input(
            aws_sdk_glue::types::DatabaseInput::builder()
                .name(&database)
                .build()
                .expect("database input"),
        )
        .send()
        .await
        .expect("database");
    (s3, bucket, database)
}

/// kinesis-to-parquet's environment for the Iceberg table
/// `database.readings` in `bucket`, with the shipped schema, partitioned
/// by event hour.
pub fn iceberg_env(
    bucket: &str,
    database: &str,
) -> std::collections::BTreeMap<&'static str, String> {
    use telemetry_lake::config::vars;
    let schema = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/ventilator.schema.json"
    ))
    .expect("the shipped schema");
    std::collections::BTreeMap::from([
        (vars::LAKE_BUCKET, bucket.to_string()),
        (vars::LAKE_PREFIX, "warehouse/readings".to_string()),
        (vars::DEAD_LETTER_PREFIX, "dead-letters/v".to_string()),
        (vars::SCHEMA, schema),
        (vars::LAKE_FORMAT, "iceberg".to_string()),
        (vars::ICEBERG_TABLE, format!("{database}.readings")),
        (vars::ICEBERG_PARTITION, "hour(eventtime)".to_string()),
    ])
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
/// when `None`). A `method` of `"*"` matches every method.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    pub path_contains: String,
    pub target: Option<String>,
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub times: Option<usize>,
    /// Only requests whose body contains this.
    pub request_body_contains: Option<String>,
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
            request_body_contains: None,
        }
    }

    /// An S3 error as S3 sends it (XML with `code`) for requests of `method`
    /// (`"*"` for any) whose path contains `needle` (with path-style
    /// addressing the path starts with the bucket).
    pub fn s3_error(method: &'static str, needle: &str, status: u16, code: &str) -> Self {
        Fault {
            method,
            path_contains: needle.to_string(),
            target: None,
            status,
            content_type: "application/xml",
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
                 <Message>injected {code}</Message><RequestId>fault</RequestId></Error>"
            ),
            times: None,
            request_body_contains: None,
        }
    }

    /// S3 throttling: 503 `SlowDown`.
    pub fn s3_slow_down(method: &'static str, needle: &str) -> Self {
        Self::s3_error(method, needle, 503, "SlowDown")
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
            request_body_contains: None,
        }
    }

    /// The throttling error the service of `target` (an `X-Amz-Target`
    /// prefix such as `DynamoDB_20120810.` or `AWSGlue.StartCrawler`)
    /// answers with: `ProvisionedThroughputExceededException` for DynamoDB,
    /// `ThrottlingException` for Step Functions, Glue, Athena and Kinesis.
    pub fn throttle(target: &str) -> Self {
        let kind = if target.starts_with("DynamoDB_") {
            "ProvisionedThroughputExceededException"
        } else {
            "ThrottlingException"
        };
        Self::aws_json(target, 400, kind)
    }

    /// A server error (500 `InternalServerError` or 503
    /// `ServiceUnavailable`) of a JSON-protocol service.
    pub fn server_error(target: &str, status: u16) -> Self {
        let kind = if status == 503 {
            "ServiceUnavailable"
        } else {
            "InternalServerError"
        };
        Self::aws_json(target, status, kind)
    }

    /// Matches only requests whose body contains `needle`.
    pub fn body_contains(mut self, needle: &str) -> Self {
        self.request_body_contains = Some(needle.to_string());
        self
    }

    /// Fails only the first `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    /// Holds matching requests for `d` and then forwards them: with `d`
    /// longer than the client's attempt timeout, the client gives up while
    /// moto still does the work (a write that happened but whose answer was
    /// lost).
    pub fn delay(self, d: std::time::Duration) -> Rule {
        Rule::from(self).action(Action::Delay(d))
    }

    /// Closes the connection of matching requests without an answer.
    pub fn drop_connection(self) -> Rule {
        Rule::from(self).action(Action::Drop)
    }

    /// Fails only the first attempt of each SDK call (see
    /// [`When::FirstAttempt`]), so every call's retry gets through.
    pub fn first_attempts(self) -> Rule {
        Rule::from(self).when(When::FirstAttempt)
    }

    /// Fails a deterministic pseudo-random `per_mille` / 1000 share of the
    /// matching calls, drawn from `seed` and the call's index.
    pub fn share(self, per_mille: u32, seed: u64) -> Rule {
        Rule::from(self).when(When::Share { per_mille, seed })
    }
}

/// What a rule does to a request it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answers with the fault's status and body.
    Respond,
    /// Waits, then forwards to moto.
    Delay(std::time::Duration),
    /// Closes the connection without answering.
    Drop,
}

/// Which of the matching calls a rule hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The first n (`Fault::times`), or all of them.
    First(Option<usize>),
    /// The first attempt of each SDK call: the request's `amz-sdk-request`
    /// header (`attempt=N; max=M`, sent by every AWS SDK) says attempt 1, or
    /// the header is absent. Counting calls instead (every other one) would
    /// let a slow answer that the client timed out on shift which attempt
    /// is failed, and fail a call's last attempt under load.
    FirstAttempt,
    /// A seeded share, in thousandths.
    Share { per_mille: u32, seed: u64 },
}

/// A fault with what it does and which matching calls it hits.
#[derive(Debug, Clone)]
pub struct Rule {
    pub fault: Fault,
    pub action: Action,
    pub when: When,
    /// Matching calls seen so far.
    seen: usize,
}

impl From<Fault> for Rule {
    fn from(fault: Fault) -> Self {
        Rule {
            when: When::First(fault.times),
            fault,
            action: Action::Respond,
            seen: 0,
        }
    }
}

impl Rule {
    /// Sets the action.
    pub fn action(mut self, action: Action) -> Self {
        self.action = action;
        self
    }

    /// Sets which matching calls are hit.
    pub fn when(mut self, when: When) -> Self {
        self.when = when;
        self
    }

    /// Hits only the first `n` matching calls.
    pub fn first(self, n: usize) -> Self {
        self.when(When::First(Some(n)))
    }

    /// Fails only the first attempt of each SDK call (see
    /// [`When::FirstAttempt`]).
    pub fn first_attempts(self) -> Self {
        self.when(When::FirstAttempt)
    }

    /// Whether the request matches the fault's method, path, target and body.
    fn matches(&self, method: &str, path: &str, target: &str, body: &[u8]) -> bool {
        let f = &self.fault;
        (f.method == "*" || f.method == method)
            && path.contains(&f.path_contains)
            && f.target
                .as_ref()
                .is_none_or(|t| target.contains(t.as_str()))
            && f.request_body_contains
                .as_ref()
                .is_none_or(|needle| body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }

    /// Counts a matching call and tells whether this one is hit; `attempt`
    /// is the SDK's attempt number from `amz-sdk-request`, when sent.
    fn hit(&mut self, attempt: Option<u32>) -> bool {
        let i = self.seen;
        self.seen += 1;
        match self.when {
            When::First(None) => true,
            When::First(Some(n)) => i < n,
            When::FirstAttempt => attempt.is_none_or(|a| a == 1),
            When::Share { per_mille, seed } => {
                splitmix64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 1000
                    < u64::from(per_mille)
            }
        }
    }
}

/// SplitMix64: a tiny, stable mixer for the seeded share.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A proxy in front of moto that can fail chosen requests.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    /// The proxy's endpoint, to give the SDK instead of moto's.
    pub endpoint: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    injected: Arc<AtomicU64>,
    stamp: Arc<std::sync::atomic::AtomicBool>,
}

/// The header in which a stamping [`FaultProxy`] gives moto the time it
/// received a request (nanoseconds since the epoch); `moto_launcher.py`
/// orders S3 `PutObject`s to one key by it, as S3 orders racing writers.
pub const RECEIVED_AT_HEADER: &str = "x-moto-launcher-received-at-ns";

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` on a free loopback port.
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(proxy::loopback_any_port())
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let injected = Arc::new(AtomicU64::new(0));
        let client = proxy::upstream_client();
        let upstream = upstream.trim_end_matches('/').to_string();
        let stamp: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (f, n, st) = (
            Arc::clone(&rules),
            Arc::clone(&injected),
            Arc::clone(&stamp),
        );
        tokio::spawn(proxy::serve_or_drop(listener, move |mut req| {
            if st.load(Ordering::Relaxed) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                if let Ok(v) = now.to_string().parse() {
                    req.headers_mut().insert(RECEIVED_AT_HEADER, v);
                }
            }
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
            rules,
            injected,
            stamp,
        }
    }

    /// Stamps every request with the time the proxy received it, and
    /// forwards a delayed one even when its client has given up, so that a
    /// delayed S3 `PutObject` reaches moto as one S3 received then and
    /// applied late: S3 keeps, of the writes racing on one key, the one
    /// with the latest timestamp, where moto keeps the last to finish.
    /// (Without stamping, a held request whose client closed the connection
    /// is dropped with it.)
    pub fn stamp_receipt_times(&self) {
        self.stamp.store(true, Ordering::Relaxed);
    }

    /// Adds a fault (a [`Fault`] answers with its error; a [`Rule`] may
    /// delay or drop, and choose which calls it hits).
    pub fn inject(&self, rule: impl Into<Rule>) {
        self.rules.lock().expect("faults lock").push(rule.into());
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.rules.lock().expect("faults lock").clear();
    }

    /// How many requests were hit by a fault.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

async fn respond(
    req: Request<Incoming>,
    client: proxy::UpstreamClient,
    upstream: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    injected: Arc<AtomicU64>,
) -> Option<Response<Full<Bytes>>> {
    let req = proxy::BufferedRequest::read(req).await;
    let decoded = proxy::percent_decode(&req.path_and_query());
    let target = req.header("x-amz-target").unwrap_or_default().to_string();
    let method = req.parts.method.as_str().to_string();
    let attempt = req.header("amz-sdk-request").and_then(sdk_attempt);
    let hit = {
        let mut rules = rules.lock().expect("faults lock");
        rules
            .iter_mut()
            .filter(|r| r.matches(&method, &decoded, &target, &req.body))
            .find_map(|r| r.hit(attempt).then(|| (r.fault.clone(), r.action)))
    };
    let Some((f, action)) = hit else {
        return Some(proxy::forward(&client, &upstream, req).await);
    };
    injected.fetch_add(1, Ordering::Relaxed);
    match action {
        Action::Drop => return None,
        Action::Delay(d) if req.header(RECEIVED_AT_HEADER).is_some() => {
            // A stamping proxy forwards a held request by a task of its own:
            // a client that gives up and closes the connection drops this
            // handler, but not the request already sent, which reaches moto
            // late, as a request S3 had received still applies after its
            // client timed out.
            let late = tokio::spawn(async move {
                tokio::time::sleep(d).await;
                proxy::forward(&client, &upstream, req).await
            });
            return late.await.ok();
        }
        Action::Delay(d) => {
            tokio::time::sleep(d).await;
            return Some(proxy::forward(&client, &upstream, req).await);
        }
        Action::Respond => {}
    }
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
    Some(
        resp.body(Full::new(Bytes::from(f.body)))
            .unwrap_or_default(),
    )
}

/// The attempt number of an `amz-sdk-request` header (`attempt=2; max=3`).
fn sdk_attempt(header: &str) -> Option<u32> {
    header
        .split(';')
        .find_map(|part| part.trim().strip_prefix("attempt="))
        .and_then(|n| n.trim().parse().ok())
}

/// How long a delayed request is held: far longer than [`ATTEMPT_TIMEOUT`].
pub const FAULT_DELAY: std::time::Duration = std::time::Duration::from_millis(1500);
/// The per-attempt timeout the fault tests give their clients.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The kinds of fault every function is run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The service's throttling error (S3 503 `SlowDown`, DynamoDB
    /// `ProvisionedThroughputExceededException`, `ThrottlingException`).
    Throttle,
    /// 500 internal error.
    Internal,
    /// 503 service unavailable.
    Unavailable,
    /// An answer later than the client's attempt timeout (the request still
    /// reaches moto afterwards).
    Timeout,
    /// The connection closed without an answer.
    Dropped,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Throttle,
        FaultKind::Internal,
        FaultKind::Unavailable,
        FaultKind::Timeout,
        FaultKind::Dropped,
    ];

    /// The rule for S3 requests of `method` (`"*"` for any) whose path
    /// contains `needle`, hitting every call.
    pub fn s3(self, method: &'static str, needle: &str) -> Rule {
        match self {
            FaultKind::Throttle => Fault::s3_slow_down(method, needle).into(),
            FaultKind::Internal => Fault::s3_error(method, needle, 500, "InternalError").into(),
            FaultKind::Unavailable => {
                Fault::s3_error(method, needle, 503, "ServiceUnavailable").into()
            }
            FaultKind::Timeout => Fault::s3_error(method, needle, 0, "").delay(FAULT_DELAY),
            FaultKind::Dropped => Fault::s3_error(method, needle, 0, "").drop_connection(),
        }
    }

    /// The rule for a JSON-protocol operation (`X-Amz-Target` containing
    /// `target`), hitting every call.
    pub fn json(self, target: &str) -> Rule {
        match self {
            FaultKind::Throttle => Fault::throttle(target).into(),
            FaultKind::Internal => Fault::server_error(target, 500).into(),
            FaultKind::Unavailable => Fault::server_error(target, 503).into(),
            FaultKind::Timeout => Fault::throttle(target).delay(FAULT_DELAY),
            FaultKind::Dropped => Fault::throttle(target).drop_connection(),
        }
    }
}

/// An SDK configuration for `endpoint` (moto or a fault proxy) with at most
/// `max_attempts` attempts per call and each attempt cut after
/// `attempt_timeout`: what the fault tests give every client, so a delayed
/// answer times out quickly and is retried.
pub async fn sdk_config_with(
    endpoint: &str,
    max_attempts: u32,
    attempt_timeout: std::time::Duration,
) -> aws_config::SdkConfig {
    sdk_config(endpoint, REGION)
        .await
        .into_builder()
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        )
        .build()
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
        let (lambda, moto) = executing_moto();
        lambda.set_upstream(&moto.endpoint);
        SfnHarness { moto, lambda }
    })
}

/// A moto that executes state machines, calling every service through a
/// new local Lambda endpoint (whose upstream the caller sets).
fn executing_moto() -> (LambdaEndpoint, MotoServer) {
    let lambda = LambdaEndpoint::start().expect("start the local Lambda endpoint");
    let moto = MotoServer::start(&MotoOptions {
        lambda_endpoint_port: Some(lambda.port()),
        execute_state_machines: true,
    })
    .unwrap_or_else(|e| panic!("cannot start moto: {e:#}"));
    (lambda, moto)
}

/// A state-machine harness of its own whose every service call (Athena,
/// Glue, ...) goes through a [`FaultProxy`]: moto's interpreter calls the
/// Lambda endpoint, which forwards to the proxy, which forwards to moto.
/// The test holds it for as long as its executions run.
pub struct ProxiedSfnHarness {
    pub moto: MotoServer,
    pub lambda: LambdaEndpoint,
    pub proxy: FaultProxy,
}

impl ProxiedSfnHarness {
    /// Starts moto, the Lambda endpoint and the proxy between them.
    pub async fn start() -> Self {
        let (lambda, moto) = executing_moto();
        let proxy = FaultProxy::start(&moto.endpoint).await;
        lambda.set_upstream(&proxy.endpoint);
        ProxiedSfnHarness {
            moto,
            lambda,
            proxy,
        }
    }
}

/// Athena's answer to `GetQueryExecution` for a query in `state`, with
/// `reason` as its `StateChangeReason`.
pub fn athena_query_answer(id: &str, state: &str, reason: &str) -> Fault {
    let mut fault = Fault::aws_json("AmazonAthena.GetQueryExecution", 200, "unused");
    fault.content_type = "application/x-amz-json-1.1";
    fault.body = serde_json::json!({
        "QueryExecution": {
            "QueryExecutionId": id,
            "Query": "INSERT INTO ...",
            "StatementType": "DML",
            "Status": {
                "State": state,
                "StateChangeReason": reason,
                "SubmissionDateTime": 1_772_323_200.0,
                "CompletionDateTime": 1_772_323_201.0
            }
        }
    })
    .to_string();
    fault
}

/// Athena's answer to `StartQueryExecution`: the execution id `id`, so that
/// a test can answer for that query with [`athena_query_answer`].
pub fn athena_query_started(id: &str) -> Fault {
    let mut fault = Fault::aws_json("AmazonAthena.StartQueryExecution", 200, "unused");
    fault.content_type = "application/x-amz-json-1.1";
    fault.body = serde_json::json!({ "QueryExecutionId": id }).to_string();
    fault
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

/// The values of the Int64 column at `column` of every Parquet object under
/// `prefix`, in key order: what the lake holds, read back as a user would.
pub async fn lake_i64_column(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    column: usize,
) -> Vec<i64> {
    use arrow_array::cast::AsArray;
    let mut out = Vec::new();
    let objects = lake_tools::lake_reader::list(s3, bucket, prefix)
        .await
        .expect("list the lake");
    for o in objects {
        let bytes = lake_tools::lake_reader::get(s3, bucket, &o.key)
            .await
            .expect("get a lake object");
        for batch in lake_tools::lake_reader::parquet_batches(bytes).expect("parquet") {
            let values = batch
                .column(column)
                .as_primitive::<arrow_array::types::Int64Type>();
            out.extend(values.iter().flatten());
        }
    }
    out
}

/// The Glue database `database` (unless it exists) and in it the Hive
/// table `table` at `location`, partitioned as the repartitioned table is
/// (year, month, day, hour).
pub async fn create_event_time_table(
    glue: &aws_sdk_glue::Client,
    database: &str,
    table: &str,
    location: &str,
) {
    use aws_sdk_glue::types::{Column, DatabaseInput, StorageDescriptor, TableInput};
    let _ = glue
        .create_database()
        .database_input(DatabaseInput::builder().name(database).build().unwrap())
        .send()
        .await;
    let column = |name: &str, t: &str| Column::builder().name(name).r#type(t).build().unwrap();
    glue.create_table()
        .database_name(database)
        .table_input(
            TableInput::builder()
                .name(table)
                .table_type("EXTERNAL_TABLE")
                .set_partition_keys(Some(
                    ["year", "month", "day", "hour"]
                        .map(|k| column(k, "bigint"))
                        .to_vec(),
                ))
                .storage_descriptor(
                    StorageDescriptor::builder()
                        .location(location)
                        .columns(column("ventilatorid", "bigint"))
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create the event-time table");
}

/// Creates a pay-per-request DynamoDB table keyed by `keys` (attribute,
/// type, hash or range).
pub async fn create_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    name: &str,
    keys: &[(
        &str,
        aws_sdk_dynamodb::types::ScalarAttributeType,
        aws_sdk_dynamodb::types::KeyType,
    )],
) {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement};
    let mut req = dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attr, t, k) in keys {
        req = req
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attr)
                    .attribute_type(t.clone())
                    .build()
                    .expect("attribute"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*attr)
                    .key_type(k.clone())
                    .build()
                    .expect("key"),
            );
    }
    req.send().await.expect("create table");
}

/// A `device-status` function on fresh tables and bucket in moto, its
/// DynamoDB calls going through `dynamodb_endpoint` (moto or a fault proxy)
/// with `max_attempts` attempts and `attempt_timeout` each; devices 1, 2
/// and 3 have the normal o2stats range `o2` (the other metrics 10–20 and
/// 5–8), and the function probes the change flag on every batch.
pub struct DeviceStatusRig {
    pub function: device_status::DeviceStatus<telemetry_lake::lake::writer::S3Sink>,
    /// A client straight to moto, for reading back.
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub windows_table: String,
    reference_table: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
    flag_version: std::sync::atomic::AtomicU64,
}

/// The devices of a [`DeviceStatusRig`]'s reference table.
pub const RIG_DEVICES: [i64; 3] = [1, 2, 3];
/// The change flag of a [`DeviceStatusRig`].
const RIG_FLAG_KEY: &str = "reference/change-flag.json";

impl DeviceStatusRig {
    pub async fn new(
        dynamodb_endpoint: &str,
        max_attempts: u32,
        attempt_timeout: std::time::Duration,
        o2: (f64, f64),
    ) -> Self {
        use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType};
        use telemetry_lake::config::vars as c;
        let sdk = sdk_config(moto(), REGION).await;
        let (dynamodb, s3) = (aws_sdk_dynamodb::Client::new(&sdk), s3_client(&sdk));
        let (reference, windows, bucket) = (unique("ref"), unique("win"), unique("ds"));
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("bucket");
        let hash = ("ventilatorid", ScalarAttributeType::N, KeyType::Hash);
        create_table(&dynamodb, &reference, &[hash]).await;
        create_table(
            &dynamodb,
            &windows,
            &[
                ("pk", ScalarAttributeType::S, KeyType::Hash),
                ("sk", ScalarAttributeType::S, KeyType::Range),
            ],
        )
        .await;
        put_rig_ranges(&dynamodb, &reference, o2).await;
        let vars = std::collections::HashMap::from([
            (c::REFERENCE_TABLE, reference.clone()),
            (c::WINDOWS_TABLE, windows.clone()),
            (c::CHANGE_FLAG_BUCKET, bucket.clone()),
            (c::DEAD_LETTER_BUCKET, bucket.clone()),
            (c::CHANGE_FLAG_CHECK_SECONDS, "0".to_string()),
            // One write at a time: which call a fault hits is known.
            (c::WRITE_CONCURRENCY, "1".to_string()),
            (
                c::SCHEMA,
                include_str!("../../config/ventilator.schema.json").to_string(),
            ),
        ]);
        let config = telemetry_lake::device_status::config::DeviceStatusConfig::from_lookup(|k| {
            vars.get(k).cloned()
        })
        .expect("config");
        let faulty = aws_sdk_dynamodb::Client::new(
            &sdk_config_with(dynamodb_endpoint, max_attempts, attempt_timeout).await,
        );
        let table = telemetry_lake::device_status::reference::ReferenceTable {
            client: faulty.clone(),
            table: config.reference_table.clone(),
            key_attribute: config.reference_key_attribute.clone(),
            metrics: config.metrics.clone(),
        };
        let flags = telemetry_lake::device_status::change_flag::ChangeFlagStore::new(
            s3.clone(),
            telemetry_lake::device_status::change_flag::FlagLocation {
                bucket: bucket.clone(),
                key: RIG_FLAG_KEY.into(),
            },
        );
        let cache = telemetry_lake::device_status::reference::ReferenceCache::new(
            table,
            flags,
            config.change_flag_check,
        );
        let sink = telemetry_lake::lake::writer::S3Sink::new(s3.clone(), &bucket);
        let function =
            device_status::DeviceStatus::new(&config, cache, faulty, sink).expect("function");
        DeviceStatusRig {
            function,
            dynamodb,
            windows_table: windows,
            reference_table: reference,
            s3,
            bucket,
            flag_version: Default::default(),
        }
    }

    /// Gives every device the normal o2stats range `o2` and moves the change
    /// flag, as the reference table's stream would: the next batch reloads.
    pub async fn set_o2_range(&self, o2: (f64, f64)) {
        put_rig_ranges(&self.dynamodb, &self.reference_table, o2).await;
        let version = self
            .flag_version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(RIG_FLAG_KEY)
            .body(format!("{{\"version\": {version}}}").into_bytes().into())
            .send()
            .await
            .expect("change flag");
    }

    /// Every window item as (pk, window start) → (count, sum of o2stats).
    pub async fn windows(&self) -> std::collections::BTreeMap<(String, String), (u64, f64)> {
        window_items(&self.dynamodb, &self.windows_table)
            .await
            .into_iter()
            .map(|(key, i)| {
                let n = |a: &str| i[a].as_n().expect(a).parse::<f64>().expect(a);
                (key, (n("count") as u64, n("sum_o2stats")))
            })
            .collect()
    }
}

/// Writes the reference rows of [`RIG_DEVICES`] with o2stats range `o2`.
async fn put_rig_ranges(dynamodb: &aws_sdk_dynamodb::Client, table: &str, o2: (f64, f64)) {
    let n = |v: f64| aws_sdk_dynamodb::types::AttributeValue::N(v.to_string());
    for device in RIG_DEVICES {
        dynamodb
            .put_item()
            .table_name(table)
            .item("ventilatorid", n(device as f64))
            .item("o2_stats_min", n(o2.0))
            .item("o2_stats_max", n(o2.1))
            .item("pressure_control_min", n(10.0))
            .item("pressure_control_max", n(20.0))
            .item("minute_volume_min", n(5.0))
            .item("minute_volume_max", n(8.0))
            .send()
            .await
            .expect("reference row");
    }
}

/// Creates an Athena workgroup (`prefix` plus a unique suffix) whose results
/// go to `s3://lake/athena-results/`, and returns its name.
pub async fn create_workgroup(athena: &aws_sdk_athena::Client, prefix: &str) -> String {
    let name = unique(prefix);
    athena
        .create_work_group()
        .name(&name)
        .configuration(
            aws_sdk_athena::types::WorkGroupConfiguration::builder()
                .result_configuration(
                    aws_sdk_athena::types::ResultConfiguration::builder()
                        .output_location("s3://lake/athena-results/")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("create workgroup");
    name
}

/// The states a repartition execution enters when the crawl and the queries
/// succeed at the first poll.
pub const REPARTITION_PATH: [&str; 13] = [
    "StartCrawler",
    "IsCrawlNeeded",
    "WaitForCrawler",
    "GetCrawlerStatus",
    "IsCrawlerDone",
    "ClaimAndClearDays",
    "StartQueries",
    "WaitForQueries",
    "GetQueryStatus",
    "AreQueriesDone",
    "IsTransformedCrawlNeeded",
    "StartTransformedCrawler",
    "Repartitioned",
];

/// The same with the Iceberg layout: no crawler waited for or started.
pub const ICEBERG_REPARTITION_PATH: [&str; 9] = [
    "StartCrawler",
    "IsCrawlNeeded",
    "ClaimAndClearDays",
    "StartQueries",
    "WaitForQueries",
    "GetQueryStatus",
    "AreQueriesDone",
    "IsTransformedCrawlNeeded",
    "Repartitioned",
];

/// What a stream function did with one invocation and what it answered
/// Lambda, or the error the runtime reports (the batch is then retried).
pub type Invoked<S> =
    Result<(S, aws_lambda_events::event::streams::KinesisEventResponse), lambda_runtime::Error>;

/// The stream functions as the Lambda runtime calls them: from an event's
/// JSON bytes, read by `lambda_runtime`'s deserialisation into the event
/// type `main` declares, handed to the handler `main` registers.
pub trait StreamFunction {
    /// What the function logs of one invocation.
    type Summary;
    /// One invocation with `event` as its body.
    fn invoke(&self, event: &[u8]) -> impl std::future::Future<Output = Invoked<Self::Summary>>;
}

impl<S: telemetry_lake::lake::writer::ObjectSink> StreamFunction
    for kinesis_to_parquet::KinesisToParquet<S>
{
    type Summary = kinesis_to_parquet::BatchSummary;
    async fn invoke(&self, event: &[u8]) -> Invoked<Self::Summary> {
        let out = lake_tools::runtime::invoke_stream(event, |e| self.handle(e)).await?;
        Ok((out.summary, out.response))
    }
}

impl<S: telemetry_lake::lake::writer::ObjectSink> StreamFunction
    for device_status::DeviceStatus<S>
{
    type Summary = device_status::BatchSummary;
    async fn invoke(&self, event: &[u8]) -> Invoked<Self::Summary> {
        let out = lake_tools::runtime::invoke_stream(event, |e| self.handle(e)).await?;
        Ok((out.summary, out.response))
    }
}

/// The JSON bytes of a Lambda Kinesis event of `records` from one shard.
pub fn kinesis_event(
    stream_arn: &str,
    shard: &str,
    records: &[lake_tools::kinesis_event::StreamRecord],
) -> Vec<u8> {
    serde_json::to_vec(&lake_tools::kinesis_event::event_json(
        stream_arn, shard, records,
    ))
    .expect("an event serialises")
}

/// A Kinesis event written as Lambda writes it, with arrival times in
/// fractional seconds either side of 11:00 on 2026-11-22: a good reading
/// (sequence 1) and a bad one (2) at 10:59:59.120, a good one (3) at
/// 11:00:00.120. The stream is `vent`, the shard `shardId-000000000000`.
pub fn fractional_arrival_event() -> Vec<u8> {
    use base64::Engine;
    let doc = |id: i64, time: &str| {
        serde_json::json!({
            "ventilatorid": id, "eventtime": format!("2026-11-22 {time}"),
            "serialnumber": format!("SN-{id}"), "pressurecontrol": 20, "o2stats": 95,
            "minutevolume": 6, "manufacturer": "Acme"
        })
        .to_string()
    };
    let record = |seq: u32, at: &str, data: &str| {
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        format!(
            r#"{{"kinesis": {{"kinesisSchemaVersion": "1.0", "partitionKey": "p",
                "sequenceNumber": "{seq}", "data": "{data}",
                "approximateArrivalTimestamp": {at}}},
              "eventSource": "aws:kinesis", "eventVersion": "1.0",
              "eventID": "shardId-000000000000:{seq}", "eventName": "aws:kinesis:record",
              "awsRegion": "us-east-1",
              "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/vent"}}"#
        )
    };
    format!(
        r#"{{"Records": [{}, {}, {}]}}"#,
        record(1, "1795345199.12", &doc(1, "10:59:00")),
        record(2, "1795345199.12", "{not json"),
        record(3, "1795345200.12", &doc(1, "11:00:00")),
    )
    .into_bytes()
}

/// The sequence numbers a Lambda response reports as batch item failures.
pub fn failures(response: &aws_lambda_events::event::streams::KinesisEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect()
}

/// Every Parquet object under `prefix` with its record batches, by key,
/// read back with the `parquet` crate's Arrow reader.
pub async fn parquet_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> std::collections::BTreeMap<String, Vec<arrow_array::RecordBatch>> {
    let mut out = std::collections::BTreeMap::new();
    for o in lake_tools::lake_reader::list(s3, bucket, prefix)
        .await
        .unwrap()
    {
        let bytes = lake_tools::lake_reader::get(s3, bucket, &o.key)
            .await
            .unwrap();
        out.insert(
            o.key,
            lake_tools::lake_reader::parquet_batches(bytes).unwrap(),
        );
    }
    out
}

/// Every dead letter under `prefix`, in key then line order.
pub async fn dead_letters_under(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Vec<telemetry_lake::stream::dead_letter::DeadLetter> {
    let mut out = Vec::new();
    for o in lake_tools::lake_reader::list(s3, bucket, prefix)
        .await
        .unwrap()
    {
        let bytes = lake_tools::lake_reader::get(s3, bucket, &o.key)
            .await
            .unwrap();
        out.extend(lake_tools::lake_reader::dead_letters(&bytes).unwrap());
    }
    out
}

/// An aggregated record as the KPL writes it (magic, protobuf, MD5) of
/// `payloads`, their partition keys alternating between two.
pub fn kpl_record<P: AsRef<[u8]>>(payloads: &[P]) -> Vec<u8> {
    use telemetry_lake::stream::kpl::{frame, AggregatedRecord, UserRecord};
    frame(&AggregatedRecord {
        partition_key_table: vec!["pk-a".into(), "pk-b".into()],
        explicit_hash_key_table: Vec::new(),
        records: payloads
            .iter()
            .enumerate()
            .map(|(i, p)| UserRecord {
                partition_key_index: (i % 2) as u64,
                explicit_hash_key_index: None,
                data: p.as_ref().to_vec(),
                tags: Vec::new(),
            })
            .collect(),
    })
}

/// Every status window of a windows table, read consistently: each item
/// (one per device and window) gives one entry per status it holds, keyed
/// by (`{device}#{STATUS}`, window start), with that status's attributes
/// under their names without the status (`count_green` as `count`,
/// `sum_o2stats_green` as `sum_o2stats`, ...), `status`, and the item's own
/// attributes (`device`, `window_end`, `expires_at`, the watermarks).
pub async fn window_items(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> std::collections::BTreeMap<
    (String, String),
    std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let items = raw_window_items(dynamodb, table).await;
    let mut out = std::collections::BTreeMap::new();
    for ((device, start), item) in items {
        for status in telemetry_lake::device_status::status::Status::ALL {
            let (status, count) = (
                status.as_str(),
                telemetry_lake::device_status::window_store::count_attribute(status),
            );
            let suffix = count.trim_start_matches("count").to_string();
            if !item.contains_key(&count) {
                continue;
            }
            let mut view: std::collections::HashMap<String, AttributeValue> = item
                .iter()
                .filter(|(k, _)| {
                    !k.starts_with("count") && !k.starts_with("sum_") && !k.starts_with("avg_")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in &item {
                if let Some(base) = k.strip_suffix(&suffix) {
                    view.insert(base.to_string(), v.clone());
                }
            }
            view.insert("status".into(), AttributeValue::S(status.into()));
            out.insert((format!("{device}#{status}"), start.clone()), view);
        }
    }
    out
}

/// Every item of a windows table as stored, read consistently, keyed by
/// (device, window start).
pub async fn raw_window_items(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> std::collections::BTreeMap<
    (String, String),
    std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
> {
    let out = dynamodb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan windows");
    out.items()
        .iter()
        .map(|i| {
            let s = |a: &str| i[a].as_s().expect(a).clone();
            ((s("pk"), s("window_start")), i.clone())
        })
        .collect()
}

/// The shipped declared schema of the worked example.
pub const VENTILATOR_SCHEMA: &str = include_str!("../../config/ventilator.schema.json");

/// A `kinesis-to-parquet` configuration for the worked example: JSON
/// payloads of the shipped schema, the lake under `raw/v`, dead letters
/// under `dead-letters/v`, 1 MiB payloads, four writes at once. Tests
/// change what they exercise with `StreamConfig { .., ..stream_config(b) }`.
pub fn stream_config(bucket: &str) -> telemetry_lake::config::StreamConfig {
    telemetry_lake::config::StreamConfig {
        lake_bucket: bucket.to_string(),
        lake_prefix: "raw/v".into(),
        dead_letter_prefix: "dead-letters/v".into(),
        schema: telemetry_lake::config::schema::Schema::parse(VENTILATOR_SCHEMA)
            .expect("the shipped schema"),
        max_payload_bytes: 1 << 20,
        decode_budget_bytes: 256 << 20,
        write_concurrency: 4,
        format: telemetry_lake::stream::format::Format::Json,
        lake_format: telemetry_lake::config::LakeFormat::Hive,
        event_time_field: "eventtime".into(),
    }
}

/// The keys of every object under `prefix`, in key order.
pub async fn object_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    lake_tools::lake_reader::list(s3, bucket, prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// The path of a function's real binary (`functions/<name>`), built in the
/// profile of this test binary first. `cargo test` builds only the binaries
/// of packages that have integration tests of their own, which the function
/// crates do not; cargo is run once per name and test process, and does
/// nothing when the binary is fresh.
pub fn function_binary(name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let me = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary>
    let profile_dir = me
        .parent()
        .and_then(std::path::Path::parent)
        .expect("a test binary under target/<profile>/deps")
        .to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        // With the whole workspace's test targets selected (built already by
        // `cargo test`), cargo resolves features as the test build did and
        // reuses its artifacts; `-p` alone would resolve them for the one
        // package and rebuild part of the dependencies.
        cmd.args(["build", "--quiet", "--workspace", "--tests", "--bin", name]);
        // Cargo gives a test process the variables of its own package
        // (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...). Build scripts that watch
        // them (ring's does) would see them change from the `cargo test` build
        // and rebuild everything above them, minutes on a clean build.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_")
                || matches!(
                    &*key,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_MANIFEST_LINKS"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                )
            {
                cmd.env_remove(&*key);
            }
        }
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "cargo build -p {name} failed: {status}");
        built.push(name.to_string());
    }
    profile_dir.join(name)
}

/// A function's metrics kept in memory, as Lambda would name them: the
/// namespace `Test/Lake`, the function `function`.
pub fn test_metrics(
    function: &str,
) -> (
    telemetry_lake::metrics::MetricsOut,
    telemetry_lake::metrics::Recorded,
) {
    let function = function.to_string();
    telemetry_lake::metrics::MetricsOut::from_env(
        move |name| match name {
            "METRICS_NAMESPACE" => Some("Test/Lake".to_string()),
            "AWS_LAMBDA_FUNCTION_NAME" => Some(function.clone()),
            _ => None,
        },
        "unused",
    )
    .in_memory()
}

/// One invocation's metrics read back from its Embedded Metric Format
/// lines, each line checked against the format as CloudWatch reads it.
#[derive(Debug, Default)]
pub struct EmfInvocation {
    /// Metric → (unit, value), from the document dimensioned by
    /// `FunctionName` alone.
    pub metrics: std::collections::BTreeMap<String, (String, f64)>,
    /// Dead letters by `Reason`, from the documents dimensioned by it.
    pub dead_letters_by_reason: std::collections::BTreeMap<String, f64>,
    /// The `_aws.Timestamp` of the documents (milliseconds).
    pub timestamp: i64,
    /// The `FunctionName` dimension and the `RequestId` property.
    pub function: String,
    pub request_id: String,
}

impl EmfInvocation {
    /// The value of `metric`, failing the test when it is missing.
    pub fn value(&self, metric: &str) -> f64 {
        self.metrics
            .get(metric)
            .unwrap_or_else(|| panic!("no {metric} in {:?}", self.metrics))
            .1
    }
}

/// Reads the EMF lines of each invocation (a main document, then one per
/// dead-letter reason), in the order they were written.
pub fn emf_invocations(lines: &[String]) -> Vec<EmfInvocation> {
    let mut out: Vec<EmfInvocation> = Vec::new();
    for line in lines {
        let doc: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let aws = &doc["_aws"];
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Test/Lake", "{line}");
        let dimensions: Vec<&str> = directive["Dimensions"][0]
            .as_array()
            .expect("a dimension set")
            .iter()
            .map(|d| d.as_str().expect("a dimension name"))
            .collect();
        for d in &dimensions {
            assert!(doc[*d].is_string(), "dimension {d} has no value: {line}");
        }
        let mut metrics = std::collections::BTreeMap::new();
        for m in directive["Metrics"].as_array().expect("metrics") {
            let name = m["Name"].as_str().expect("a name").to_string();
            let unit = m["Unit"].as_str().expect("a unit").to_string();
            assert!(
                ["Count", "Bytes", "Milliseconds"].contains(&unit.as_str()),
                "{line}"
            );
            let value = doc[&name]
                .as_f64()
                .unwrap_or_else(|| panic!("{name} has no value: {line}"));
            metrics.insert(name, (unit, value));
        }
        match dimensions.as_slice() {
            ["FunctionName"] => out.push(EmfInvocation {
                metrics,
                timestamp: aws["Timestamp"].as_i64().expect("a timestamp"),
                function: doc["FunctionName"].as_str().unwrap().to_string(),
                request_id: doc["RequestId"].as_str().unwrap_or_default().to_string(),
                ..EmfInvocation::default()
            }),
            ["FunctionName", "Reason"] => {
                let last = out
                    .last_mut()
                    .expect("a reason after its invocation's document");
                assert_eq!(doc["FunctionName"], last.function.as_str());
                assert_eq!(metrics.len(), 1, "{line}");
                let n = metrics["DeadLetters"].1;
                last.dead_letters_by_reason
                    .insert(doc["Reason"].as_str().unwrap().to_string(), n);
            }
            other => panic!("unexpected dimensions {other:?}: {line}"),
        }
    }
    out
}

/// A ventilator reading of device `id` at `time` (`HH:MM:SS`) on `day`
/// (`YYYY-MM-DD`) as a JSON payload, o2stats `o2`, the other readings in
/// their normal ranges.
pub fn reading_on(day: &str, id: i64, time: &str, o2: i64) -> Vec<u8> {
    serde_json::json!({
        "ventilatorid": id, "eventtime": format!("{day} {time}"),
        "serialnumber": format!("SN-{id}"), "pressurecontrol": 15, "o2stats": o2,
        "minutevolume": 6, "manufacturer": "Acme"
    })
    .to_string()
    .into_bytes()
}

/// `payloads` as records of shard `shard` from sequence `first`, all
/// arriving at `arrival`.
pub fn records_of(
    shard: u32,
    first: u64,
    arrival: chrono::DateTime<chrono::Utc>,
    payloads: &[Vec<u8>],
) -> Vec<lake_tools::kinesis_event::StreamRecord> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, data)| lake_tools::kinesis_event::StreamRecord {
            data: data.clone(),
            partition_key: "pk".into(),
            arrival,
            sequence_number: lake_tools::kinesis_event::sequence_number(shard, first + i as u64),
        })
        .collect()
}
