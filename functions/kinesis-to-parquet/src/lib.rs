//! The stream-to-lake function: decodes a Kinesis batch, validates each record
//! against the declared schema, and writes snappy Parquet partitioned by
//! arrival hour, with bad records as dead letters.
//!
//! A failure to write returns the first sequence number of the earliest run
//! that could not be written as the batch item failure (Kinesis
//! `ReportBatchItemFailures`), so Lambda retries from there and the retried
//! objects overwrite, never duplicate (see `telemetry_lake::stream_batch`).

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use telemetry_lake::columns::ArrowSchema;
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake_writer::{write_runs, LakeLayout, ObjectSink};
use telemetry_lake::parquet_writer::ParquetEncoder;
use telemetry_lake::stream_batch::split_into_runs;

/// The function's state, built once per container.
pub struct KinesisToParquet<S> {
    config: StreamConfig,
    arrow_schema: Arc<ArrowSchema>,
    encoder: ParquetEncoder,
    layout: LakeLayout,
    sink: S,
}

/// What one invocation did, also logged as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub records: usize,
    pub good: usize,
    pub bad: usize,
    pub objects: usize,
    pub bytes: usize,
    pub retry_from: Option<String>,
}

impl<S: ObjectSink> KinesisToParquet<S> {
    /// Prepares the function for a configuration and an object sink.
    pub fn new(config: StreamConfig, sink: S) -> Self {
        let arrow_schema = config.schema.arrow_schema();
        let layout = LakeLayout {
            lake_prefix: config.lake_prefix.clone(),
            dead_letter_prefix: config.dead_letter_prefix.clone(),
        };
        let encoder = ParquetEncoder::for_schema(&arrow_schema);
        KinesisToParquet {
            config,
            arrow_schema,
            encoder,
            layout,
            sink,
        }
    }

    /// Handles one Kinesis batch.
    pub async fn handle(
        &self,
        event: LambdaEvent<KinesisEvent>,
    ) -> Result<KinesisEventResponse, lambda_runtime::Error> {
        let (_, response) = self.process(&event.payload).await;
        Ok(response)
    }

    /// Processes a batch, returning what was done and the Lambda response.
    pub async fn process(&self, event: &KinesisEvent) -> (BatchSummary, KinesisEventResponse) {
        let started = Instant::now();
        let (runs, counts) = split_into_runs(
            &event.records,
            &self.config.schema,
            &self.arrow_schema,
            self.config.max_payload_bytes,
        );
        let report = write_runs(
            runs,
            &self.sink,
            &self.encoder,
            &self.layout,
            self.config.write_concurrency,
        )
        .await;
        for failure in &report.failures {
            tracing::error!(error = %failure, "run not written; the batch will be retried from its first record");
        }
        let summary = BatchSummary {
            records: counts.records,
            good: counts.good,
            bad: counts.bad,
            objects: report.objects,
            bytes: report.bytes,
            retry_from: report.retry_from.clone(),
        };
        tracing::info!(
            records = summary.records,
            good = summary.good,
            bad = summary.bad,
            objects = summary.objects,
            bytes = summary.bytes,
            failed_runs = report.failures.len(),
            retry_from = summary.retry_from.as_deref().unwrap_or(""),
            duration_ms = started.elapsed().as_millis() as u64,
            "batch processed"
        );
        let mut response = KinesisEventResponse::default();
        if let Some(seq) = report.retry_from {
            response.add_failure(seq);
        }
        (summary, response)
    }
}
