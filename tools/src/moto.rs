//! A moto server for tests and the local runner, started from the project's
//! virtualenv on a free loopback port.
//!
//! The server is `scripts/moto_launcher.py` (which also patches the moto bugs
//! the suite runs into). It exits when its standard input closes, so it never
//! outlives the process that started it, even when that process is killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};

use anyhow::{bail, Context, Result};

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A running moto server.
#[derive(Debug)]
pub struct MotoServer {
    /// The endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Option<Child>,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Options of a moto server.
#[derive(Debug, Clone, Default)]
pub struct MotoOptions {
    /// Port of a local Lambda endpoint that moto's Step Functions interpreter
    /// should call (`MOTO_PORT`).
    pub lambda_endpoint_port: Option<u16>,
    /// Make Step Functions really execute state machines.
    pub execute_state_machines: bool,
}

impl MotoServer {
    /// Starts a server and waits until it answers (a blocking call of a
    /// second or two: moto's import is slow).
    pub fn start(opts: &MotoOptions) -> Result<Self> {
        let root = repo_root();
        let python = std::env::var_os("LAKE_VENV_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/bin/python"));
        if !python.exists() {
            bail!(
                "{} not found: run `scripts/bootstrap.sh` (or `make setup`) to create the virtualenv with moto",
                python.display()
            );
        }
        let mut cmd = Command::new(&python);
        cmd.arg(root.join("scripts/moto_launcher.py"))
            .args(["--host", "127.0.0.1", "--port", "0"]);
        if let Some(port) = opts.lambda_endpoint_port {
            cmd.args(["--lambda-endpoint-port", &port.to_string()]);
        }
        if opts.execute_state_machines {
            cmd.arg("--execute-state-machines");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        let stdout = child.stdout.take().context("moto launcher has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let endpoint = loop {
            match lines.next() {
                Some(line) => {
                    let line = line?;
                    if let Some(url) = line.strip_prefix("READY ") {
                        break url.trim().to_string();
                    }
                }
                None => bail!("moto launcher exited before it was ready"),
            }
        };
        Ok(MotoServer {
            endpoint,
            child: Some(child),
        })
    }
}

/// An SDK configuration pointing at `endpoint` with dummy credentials.
pub async fn sdk_config(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    telemetry_lake::config::aws::loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

/// An S3 client for moto (path-style addressing).
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Sets how moto advances a model's state (`glue::crawl`,
/// `athena::execution`, ...) through its state manager API, e.g.
/// `{"progression": "immediate"}` or `{"progression": "manual", "times": 2}`.
pub async fn set_transition(
    endpoint: &str,
    model_name: &str,
    transition: serde_json::Value,
) -> Result<()> {
    use http_body_util::Full;
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let body = serde_json::json!({"model_name": model_name, "transition": transition});
    let request = hyper::Request::post(format!(
        "{}/moto-api/state-manager/set-transition",
        endpoint.trim_end_matches('/')
    ))
    .header("content-type", "application/json")
    .body(Full::new(bytes::Bytes::from(body.to_string())))?;
    let response = client
        .request(request)
        .await
        .context("moto's state manager")?;
    if !response.status().is_success() {
        bail!("setting the {model_name} transition: {}", response.status());
    }
    Ok(())
}
