//! Writing a batch's runs to the lake: one Parquet object of good rows and one
//! JSON-lines object of dead letters per run, under deterministic keys.

use std::future::Future;

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use futures::stream::{self, StreamExt};

use crate::lake::keys::{object_key, StreamPosition};
use crate::lake::parquet::ParquetEncoder;
use crate::lake::runs::Run;
use crate::stream::dead_letter::to_json_lines;

/// The extension of lake objects.
pub const PARQUET_EXTENSION: &str = "snappy.parquet";
/// The extension of dead-letter objects.
pub const DEAD_LETTER_EXTENSION: &str = "jsonl";

/// Somewhere objects can be put: S3 in production.
pub trait ObjectSink: Send + Sync {
    /// Stores `body` under `key`, replacing any object there.
    fn put(
        &self,
        key: String,
        body: Vec<u8>,
        content_type: &'static str,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// An object could not be stored. Always the world's fault (permissions,
/// throttling, outage after the SDK's own retries), so the batch is retried.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("could not write s3://{bucket}/{key}: {message}")]
pub struct SinkError {
    pub bucket: String,
    pub key: String,
    pub message: String,
}

/// An S3 bucket as an [`ObjectSink`].
#[derive(Debug, Clone)]
pub struct S3Sink {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Sink {
    /// A sink writing into `bucket` with a client built once per container.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Sink {
            client,
            bucket: bucket.into(),
        }
    }
}

impl ObjectSink for S3Sink {
    async fn put(
        &self,
        key: String,
        body: Vec<u8>,
        content_type: &'static str,
    ) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SinkError {
                bucket: self.bucket.clone(),
                key,
                message: DisplayErrorContext(&e).to_string(),
            })
    }
}

/// Where a batch's objects go.
#[derive(Debug, Clone)]
pub struct LakeLayout {
    /// Prefix of the Parquet lake (for example `raw/ventilator_metrics`).
    pub lake_prefix: String,
    /// Prefix of the dead letters (for example `dead-letters/ventilator_metrics`).
    pub dead_letter_prefix: String,
}

/// What writing one batch achieved.
#[derive(Debug, Default)]
pub struct WriteReport {
    /// Objects written.
    pub objects: usize,
    /// Bytes written.
    pub bytes: usize,
    /// Keys written, in run order.
    pub keys: Vec<String>,
    /// The first sequence number of the earliest run that failed: Lambda
    /// must retry from here.
    pub retry_from: Option<String>,
    /// Every failure, in run order.
    pub failures: Vec<String>,
}

/// The objects one run wrote (key, bytes), or why it could not be written.
type RunOutcome = Result<Vec<(String, usize)>, String>;

/// Writes every run, at most `concurrency` at a time.
pub async fn write_runs<S: ObjectSink>(
    runs: Vec<Run>,
    sink: &S,
    encoder: &ParquetEncoder,
    layout: &LakeLayout,
    concurrency: usize,
) -> WriteReport {
    let mut results: Vec<(usize, String, RunOutcome)> = stream::iter(runs.into_iter().enumerate())
        .map(|(i, run)| async move {
            let first = run.first_sequence.clone();
            (i, first, write_run(run, sink, encoder, layout).await)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.sort_by_key(|(i, _, _)| *i);

    let mut report = WriteReport::default();
    for (_, first, result) in results {
        match result {
            Ok(written) => {
                for (key, bytes) in written {
                    report.objects += 1;
                    report.bytes += bytes;
                    report.keys.push(key);
                }
            }
            Err(e) => {
                report.retry_from.get_or_insert(first);
                report.failures.push(e);
            }
        }
    }
    report
}

async fn write_run<S: ObjectSink>(
    run: Run,
    sink: &S,
    encoder: &ParquetEncoder,
    layout: &LakeLayout,
) -> RunOutcome {
    let pos = StreamPosition {
        stream: &run.stream,
        shard: &run.shard,
        sequence_number: &run.first_sequence,
    };
    let mut objects = Vec::with_capacity(2);
    // The Parquet object is written even when the run has no good rows (an
    // empty file): a retry of a bisected batch must overwrite what a longer
    // earlier attempt wrote under the same key, or those rows stay in the
    // lake beside their own later copy (tests/exactly_once.rs).
    {
        let metadata = [
            ("telemetry_lake.stream", run.stream.clone()),
            ("telemetry_lake.shard", run.shard.clone()),
            (
                "telemetry_lake.first_sequence_number",
                run.first_sequence.clone(),
            ),
            (
                "telemetry_lake.last_sequence_number",
                run.last_sequence.clone(),
            ),
            ("telemetry_lake.stream_records", run.records.to_string()),
        ];
        let batch = run
            .good
            .finish()
            .map_err(|e| format!("building columns: {e}"))?;
        let body = encoder
            .encode(&batch, &metadata)
            .map_err(|e| format!("encoding Parquet: {e}"))?;
        let key = object_key(&layout.lake_prefix, run.hour, &pos, PARQUET_EXTENSION);
        objects.push((key, body, "application/vnd.apache.parquet"));
    }
    if !run.dead_letters.is_empty() {
        let key = object_key(
            &layout.dead_letter_prefix,
            run.hour,
            &pos,
            DEAD_LETTER_EXTENSION,
        );
        objects.push((
            key,
            to_json_lines(&run.dead_letters),
            "application/x-ndjson",
        ));
    }
    let puts = objects
        .into_iter()
        .map(|(key, body, content_type)| async move {
            let len = body.len();
            sink.put(key.clone(), body, content_type)
                .await
                .map(|()| (key, len))
        });
    futures::future::try_join_all(puts)
        .await
        .map_err(|e| e.to_string())
}

/// An S3 client for the given SDK configuration. Path-style addressing is
/// used when an endpoint override is set (in the configuration, or by
/// `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3`, as for a local moto
/// server), where bucket host names do not resolve.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let overridden = sdk.endpoint_url().is_some()
        || ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(overridden)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
