//! A function's real binary run the way Lambda runs it: a child process
//! polling a local Lambda Runtime API (`/2018-06-01/runtime/...`) for its
//! events, optionally under a memory limit like the function's.
//!
//! Lambda limits a function's resident memory. The closest limit on one
//! machine is a memory cgroup: [`MemoryLimit::lambda_like`] creates one
//! where the machine allows it (cgroup v1 or v2, as root), and falls back
//! to an address-space limit (`ulimit -v`), which is stricter: address space
//! reserved and never touched counts against it, resident memory only
//! against a cgroup.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use crate::proxy::{plain_response, serve, BufferedRequest};

/// How a child's memory is limited.
#[derive(Debug)]
pub enum MemoryLimit {
    /// A memory cgroup of its own (the directory), limiting resident memory.
    Cgroup { dir: PathBuf, bytes: u64 },
    /// An address-space limit (`RLIMIT_AS`) of this many bytes.
    AddressSpace(u64),
}

impl MemoryLimit {
    /// A cgroup limiting resident memory to `bytes` where this process may
    /// create one, otherwise an address-space limit of `bytes`.
    pub fn lambda_like(bytes: u64) -> MemoryLimit {
        match create_cgroup(bytes) {
            Ok(dir) => MemoryLimit::Cgroup { dir, bytes },
            Err(_) => MemoryLimit::AddressSpace(bytes),
        }
    }

    /// What the limit is, for a test's output.
    pub fn describe(&self) -> String {
        match self {
            MemoryLimit::Cgroup { dir, bytes } => format!(
                "resident memory limited to {} MiB by the memory cgroup {}",
                bytes >> 20,
                dir.display()
            ),
            MemoryLimit::AddressSpace(bytes) => format!(
                "address space limited to {} MiB (RLIMIT_AS; no memory cgroup could be created)",
                bytes >> 20
            ),
        }
    }

    /// The most memory the cgroup's processes have used, when it is a cgroup.
    pub fn peak_bytes(&self) -> Option<u64> {
        let MemoryLimit::Cgroup { dir, .. } = self else {
            return None;
        };
        ["memory.max_usage_in_bytes", "memory.peak"]
            .iter()
            .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .and_then(|s| s.trim().parse().ok())
    }

    /// A command that runs `binary` under this limit.
    fn command(&self, binary: &Path) -> Command {
        let mut cmd = Command::new("sh");
        match self {
            MemoryLimit::Cgroup { dir, .. } => {
                cmd.arg("-c")
                    .arg(r#"echo $$ > "$0" && exec "$@""#)
                    .arg(dir.join("cgroup.procs"));
            }
            MemoryLimit::AddressSpace(bytes) => {
                cmd.arg("-c")
                    .arg(r#"ulimit -v "$0" && exec "$@""#)
                    .arg((bytes / 1024).to_string());
            }
        }
        cmd.arg(binary);
        cmd
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        if let MemoryLimit::Cgroup { dir, .. } = self {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Creates a memory cgroup limited to `bytes`, under this process's own
/// (cgroup v2) or the memory controller's root (cgroup v1).
fn create_cgroup(bytes: u64) -> Result<PathBuf> {
    let name = format!("function-process-{}-{}", std::process::id(), next_id());
    let v1 = Path::new("/sys/fs/cgroup/memory");
    let (dir, limit_file) = if v1.join("memory.limit_in_bytes").exists() {
        (v1.join(name), "memory.limit_in_bytes")
    } else {
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .context("no cgroup v2 path")?;
        let parent = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        if !std::fs::read_to_string(parent.join("cgroup.subtree_control"))?.contains("memory") {
            bail!(
                "the memory controller is not enabled below {}",
                parent.display()
            );
        }
        (parent.join(name), "memory.max")
    };
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let limited = std::fs::write(dir.join(limit_file), bytes.to_string())
        .and_then(|()| std::fs::read_to_string(dir.join(limit_file)));
    match limited {
        Ok(s) if s.trim() == bytes.to_string() => {
            // No swap beyond the limit where the kernel accounts it.
            let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            Ok(dir)
        }
        other => {
            let _ = std::fs::remove_dir(&dir);
            bail!("the limit did not hold: {other:?}")
        }
    }
}

fn next_id() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The handler's response (`/invocation/{id}/response`).
    Response(Value),
    /// The error the runtime reported (`/invocation/{id}/error`).
    Error(Value),
}

/// The process ended, or did not answer in time, instead of answering.
#[derive(Debug)]
pub struct NoAnswer {
    /// Its exit status, when it exited.
    pub status: Option<ExitStatus>,
    /// The end of what it wrote to stderr.
    pub stderr_tail: String,
    /// An initialisation error it reported (`/runtime/init/error`).
    pub init_error: Option<Value>,
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "the function exited ({s})")?,
            None => write!(f, "the function did not answer in time")?,
        }
        if let Some(e) = &self.init_error {
            write!(f, "; init error {e}")?;
        }
        write!(f, "; stderr ends: {}", self.stderr_tail)
    }
}

#[derive(Default)]
struct Api {
    next: tokio::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(String, Bytes)>>>,
    answers: Mutex<Option<mpsc::Sender<Reported>>>,
}

enum Reported {
    Answer(String, Answer),
    InitError(Value),
}

/// A function binary running as a child process on a local Runtime API.
pub struct FunctionProcess {
    child: Child,
    events: tokio::sync::mpsc::UnboundedSender<(String, Bytes)>,
    answers: mpsc::Receiver<Reported>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    invocations: u64,
    _runtime: std::thread::JoinHandle<()>,
}

impl std::fmt::Debug for FunctionProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionProcess")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl FunctionProcess {
    /// Starts `binary` with exactly `env` (plus `PATH` and the Runtime API's
    /// variables) under `limit`.
    pub fn spawn(
        binary: &Path,
        env: &HashMap<String, String>,
        limit: &MemoryLimit,
    ) -> Result<FunctionProcess> {
        let listener = std::net::TcpListener::bind(crate::proxy::loopback_any_port())
            .context("binding the Runtime API")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?.to_string();
        let (events, received) = tokio::sync::mpsc::unbounded_channel();
        let (reported, answers) = mpsc::channel();
        let api = Arc::new(Api {
            next: tokio::sync::Mutex::new(Some(received)),
            answers: Mutex::new(Some(reported)),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the Runtime API's runtime")?;
        let served = Arc::clone(&api);
        let server = std::thread::Builder::new()
            .name("runtime-api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    serve(listener, move |req| respond(req, Arc::clone(&served))).await;
                });
            })
            .context("spawning the Runtime API's thread")?;
        let mut cmd = limit.command(binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .env("AWS_LAMBDA_RUNTIME_API", &address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        if let Some(pipe) = child.stdout.take() {
            collect(pipe, Arc::clone(&stdout));
        }
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(pipe) = child.stderr.take() {
            collect(pipe, Arc::clone(&stderr));
        }
        Ok(FunctionProcess {
            child,
            events,
            answers,
            stdout,
            stderr,
            invocations: 0,
            _runtime: server,
        })
    }

    /// Hands `event` to the function and waits up to `timeout` for its
    /// answer.
    pub fn invoke(&mut self, event: &[u8], timeout: Duration) -> Result<Answer, NoAnswer> {
        self.invocations += 1;
        let id = format!("invocation-{}", self.invocations);
        let _ = self
            .events
            .send((id.clone(), Bytes::copy_from_slice(event)));
        let start = Instant::now();
        let mut init_error = None;
        loop {
            match self.answers.recv_timeout(Duration::from_millis(20)) {
                Ok(Reported::Answer(answered, answer)) if answered == id => return Ok(answer),
                Ok(Reported::Answer(..)) => {}
                Ok(Reported::InitError(e)) => init_error = Some(e),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the stderr reader a moment to drain the pipe.
                std::thread::sleep(Duration::from_millis(50));
                return Err(self.no_answer(Some(status), init_error));
            }
            if start.elapsed() > timeout {
                break;
            }
        }
        Err(self.no_answer(None, init_error))
    }

    /// Everything the function has written to stderr (a panic's message)
    /// so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into()
    }

    /// Everything the function has written to stdout (its logs and metrics
    /// documents, which Lambda sends to CloudWatch Logs) so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(|e| e.into_inner())).into()
    }

    /// What [`FunctionProcess::stdout`] holds once `ready` accepts it, or
    /// when `timeout` has passed. A thread drains the pipe, so lines the
    /// function wrote before it answered may reach it after the answer.
    pub fn stdout_once(&self, ready: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let out = self.stdout();
            if ready(&out) || start.elapsed() > timeout {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn no_answer(&self, status: Option<ExitStatus>, init_error: Option<Value>) -> NoAnswer {
        let all = self.stderr();
        let tail: String = all
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        NoAnswer {
            status,
            stderr_tail: tail,
            init_error,
        }
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn respond(req: Request<Incoming>, api: Arc<Api>) -> Response<Full<Bytes>> {
    let req = BufferedRequest::read(req).await;
    let path = req.parts.uri.path().to_string();
    let report = |r: Reported| {
        if let Some(tx) = api
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(r);
        }
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    if path == "/2018-06-01/runtime/invocation/next" {
        let mut next = api.next.lock().await;
        let Some(received) = next.as_mut() else {
            return plain_response(500, "the Runtime API is closed");
        };
        let Some((id, event)) = received.recv().await else {
            return plain_response(500, "the Runtime API is closed");
        };
        let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", id)
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:function-process",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::new(event))
            .unwrap_or_else(|_| plain_response(500, "building the event response"));
    }
    if path == "/2018-06-01/runtime/init/error" {
        report(Reported::InitError(body));
        return plain_response(202, "{}");
    }
    let invocation = path
        .strip_prefix("/2018-06-01/runtime/invocation/")
        .and_then(|rest| rest.rsplit_once('/'));
    match invocation {
        Some((id, "response")) => report(Reported::Answer(id.into(), Answer::Response(body))),
        Some((id, "error")) => report(Reported::Answer(id.into(), Answer::Error(body))),
        _ => return plain_response(404, "not a Runtime API path"),
    }
    plain_response(202, "{}")
}

/// Copies what a child writes to `pipe` into `sink` until it closes.
fn collect(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(&buf[..n]);
        }
    });
}
