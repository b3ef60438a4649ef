//! The stream-to-lake function: decodes a Kinesis batch, validates each record
//! against the declared schema, and writes snappy Parquet partitioned by
//! arrival hour, with bad records as dead letters.
//!
//! A failure to write returns the first sequence number of the earliest run
//! that could not be written as the batch item failure (Kinesis
//! `ReportBatchItemFailures`), so Lambda retries from there and the retried
//! objects overwrite, never duplicate (see `telemetry_lake::lake::runs`).
//!
//! With `LAKE_FORMAT=iceberg` the batch goes to an Apache Iceberg table
//! instead, partitioned by event time and committed exactly once with each
//! shard's watermark (see `telemetry_lake::lake::iceberg`); a batch that
//! could not be committed reports its first record not yet in the table.
//!
//! Each invocation logs one line and writes one metrics document
//! (`telemetry_lake::metrics`): records, rows, dead letters by reason,
//! objects and bytes, item failures, event-time lag and arrival-to-write
//! latency.
//!
//! The same function takes Lambda's MSK / self-managed Kafka event: records
//! go through the same decode path, runs are per topic and partition, and
//! objects are keyed `{topic}.{partition}.{first offset}`. A Kafka batch with
//! a run that could not be written fails the invocation: Lambda's Kafka
//! partial batch response exists only for provisioned-mode pollers, while a
//! function error retries the batch in every mode, and the retried batch
//! starts at the same committed offset, so it rewrites the same keys.

use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use telemetry_lake::config::glue_schema::load_config;
use telemetry_lake::config::vars::ICEBERG_TABLE;
use telemetry_lake::config::{ConfigError, LakeFormat, StreamConfig};
use telemetry_lake::lake::columns::ArrowSchema;
use telemetry_lake::lake::iceberg::batch::IcebergLake;
use telemetry_lake::lake::iceberg::catalog::GlueCatalog;
use telemetry_lake::lake::iceberg::storage::S3Storage;
use telemetry_lake::lake::parquet::ParquetEncoder;
use telemetry_lake::lake::runs::{split_records, BatchCounts, Run};
use telemetry_lake::lake::writer::{s3_client, write_runs, LakeLayout, ObjectSink, S3Sink};
use telemetry_lake::metrics::{self, Invocation, MetricsOut, StreamBatch};
use telemetry_lake::stream::event::kafka_records;
use telemetry_lake::stream::event::Handled;
use telemetry_lake::stream::event::StreamEvent;
use telemetry_lake::stream::format::PayloadDecoder;
use telemetry_lake::stream::observed::Observed;
use telemetry_lake::stream::source::SourceRecord;

/// The function's name where Lambda does not give one.
const NAME: &str = "kinesis-to-parquet";

/// The function's state, built once per container.
pub struct KinesisToParquet<S> {
    config: StreamConfig,
    decoder: PayloadDecoder,
    arrow_schema: Arc<ArrowSchema>,
    encoder: ParquetEncoder,
    layout: LakeLayout,
    sink: S,
    iceberg: Option<IcebergLake>,
    event_time: Option<usize>,
    metrics: MetricsOut,
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
    /// Fields the good records held that the schema does not declare
    /// (left out of the rows).
    pub undeclared_fields: usize,
    /// CloudWatch Logs control messages read (skipped).
    pub control_messages: usize,
    /// Iceberg: records left out because the table already held them.
    pub skipped: usize,
    /// Iceberg: the snapshot committed, if any.
    pub snapshot_id: Option<i64>,
    /// Iceberg: commit attempts (more than 1 when commits lost races).
    pub commit_attempts: u32,
    /// What was not written or committed, and why (also logged).
    pub error: Option<String>,
    /// Runs (Hive) not written.
    pub failed_runs: usize,
    /// The newest event time, the oldest arrival and the dead letters by
    /// reason, for the metrics.
    pub observed: Observed,
}

impl KinesisToParquet<S3Sink> {
    /// The function as it runs in Lambda and in the local run: the
    /// configuration read through `env` (the schema from the Glue table
    /// `SCHEMA_SOURCE` names, if any), objects written to S3.
    pub async fn load(
        env: impl Fn(&str) -> Option<String>,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, ConfigError> {
        let metrics = MetricsOut::from_env(&env, NAME);
        let config = load_config(env, || aws_sdk_glue::Client::new(aws)).await?;
        let s3 = s3_client(aws);
        let sink = S3Sink::new(s3.clone(), &config.lake_bucket);
        let iceberg = match &config.lake_format {
            LakeFormat::Hive => None,
            LakeFormat::Iceberg(settings) => {
                S3Storage::install(s3);
                let catalog = std::sync::Arc::new(GlueCatalog::new(
                    aws_sdk_glue::Client::new(aws),
                    S3Storage::file_io(),
                ));
                let location = format!(
                    "s3://{}/{}",
                    config.lake_bucket,
                    config.lake_prefix.trim_matches('/')
                );
                let lake = IcebergLake::open(catalog, settings, &config.schema, &location)
                    .await
                    .map_err(|reason| ConfigError::Invalid {
                        name: ICEBERG_TABLE,
                        reason,
                    })?;
                Some(lake)
            }
        };
        Ok(Self::new(config, sink)
            .with_iceberg(iceberg)
            .with_metrics(metrics))
    }
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
        let decoder = PayloadDecoder::new(
            config.format.clone(),
            config.schema.clone(),
            config.max_payload_bytes,
        )
        .with_invocation_budget(config.decode_budget_bytes);
        KinesisToParquet {
            event_time: config.event_time_index(),
            config,
            decoder,
            arrow_schema,
            encoder,
            layout,
            sink,
            iceberg: None,
            metrics: MetricsOut::from_env(|_| None, NAME),
        }
    }

    /// The same function writing its metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: MetricsOut) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same function writing to an Iceberg table (opened with
    /// [`IcebergLake::open`]) rather than the Hive layout.
    pub fn with_iceberg(mut self, iceberg: Option<IcebergLake>) -> Self {
        self.iceberg = iceberg;
        self
    }

    /// Handles one invocation, as the Lambda runtime delivers it: a Kinesis
    /// event (`Records`) or an MSK / self-managed Kafka event (`records` by
    /// topic-partition), read from the invocation's JSON by [`StreamEvent`].
    pub async fn handle(
        &self,
        event: LambdaEvent<StreamEvent>,
    ) -> Result<Handled<BatchSummary>, lambda_runtime::Error> {
        let mut invocation = Invocation::start(&event.context.request_id);
        let kinesis = matches!(event.payload, StreamEvent::Kinesis(_));
        let summary = self.write_event(event.payload).await;
        self.report(&summary, &mut invocation, kinesis);
        if kinesis {
            let retry_from = summary.retry_from.clone();
            return Ok(Handled::kinesis(summary, retry_from.as_deref()));
        }
        match &summary.retry_from {
            None => Ok(Handled::kafka(summary)),
            Some(_) => Err(KafkaBatchError { summary }.into()),
        }
    }

    /// Logs the batch's line and writes its metrics. Only a Kinesis batch
    /// reports item failures; a Kafka batch that needs a retry fails.
    fn report(&self, summary: &BatchSummary, invocation: &mut Invocation, kinesis: bool) {
        tracing::info!(
            format = self.decoder.format().name(),
            lake_format = if self.iceberg.is_some() { "iceberg" } else { "hive" },
            table = %self.iceberg.as_ref().map(|lake| lake.ident().to_string()).unwrap_or_default(),
            records = summary.records,
            skipped = summary.skipped,
            good = summary.good,
            bad = summary.bad,
            undeclared_fields = summary.undeclared_fields,
            control_messages = summary.control_messages,
            objects = summary.objects,
            bytes = summary.bytes,
            failed_runs = summary.failed_runs,
            snapshot_id = summary.snapshot_id.unwrap_or(-1),
            commit_attempts = summary.commit_attempts,
            retry_from = summary.retry_from.as_deref().unwrap_or(""),
            error = summary.error.as_deref().unwrap_or(""),
            duration_ms = invocation.elapsed_ms(),
            "batch processed"
        );
        invocation
            .stream_batch(StreamBatch {
                records: summary.records,
                good: summary.good,
                undeclared_fields: summary.undeclared_fields,
                control_messages: summary.control_messages,
                objects: summary.objects,
                item_failures: usize::from(kinesis && summary.retry_from.is_some()),
                observed: &summary.observed,
            })
            .count(metrics::BYTES_WRITTEN, summary.bytes);
        if self.iceberg.is_some() {
            invocation
                .count(metrics::RECORDS_ALREADY_COMMITTED, summary.skipped)
                .count(metrics::COMMIT_ATTEMPTS, summary.commit_attempts as usize);
        }
        self.metrics.emit(invocation);
    }

    /// Writes the event's records. On the Hive layout the runs own their
    /// rows once split, so the event (its payloads, sequence numbers and
    /// record list) is freed before the Parquet files are encoded: one
    /// invocation's memory peaks at the larger of the two, not their sum.
    async fn write_event(&self, event: StreamEvent) -> BatchSummary {
        if let Some(lake) = &self.iceberg {
            return match &event {
                StreamEvent::Kafka(kafka) => self.write_iceberg(lake, kafka_records(kafka)).await,
                StreamEvent::Kinesis(batch) => self.write_iceberg(lake, batch.records()).await,
            };
        }
        let (runs, counts) = match &event {
            StreamEvent::Kafka(kafka) => self.split(kafka_records(kafka)),
            StreamEvent::Kinesis(batch) => self.split(batch.records()),
        };
        drop(event);
        self.write(runs, counts).await
    }

    fn split<'e>(
        &self,
        records: impl IntoIterator<Item = SourceRecord<'e>>,
    ) -> (Vec<Run>, BatchCounts) {
        split_records(records, &self.decoder, &self.arrow_schema, self.event_time)
    }

    async fn write_iceberg<'e>(
        &self,
        lake: &IcebergLake,
        records: impl IntoIterator<Item = SourceRecord<'e>>,
    ) -> BatchSummary {
        let records: Vec<SourceRecord<'e>> = records.into_iter().collect();
        let report = lake
            .write(
                &records,
                &self.decoder,
                &self.sink,
                &self.config.dead_letter_prefix,
                self.config.write_concurrency,
            )
            .await;
        BatchSummary {
            records: report.records,
            good: report.good,
            bad: report.bad,
            objects: report.objects,
            bytes: report.bytes,
            retry_from: report.retry_from,
            undeclared_fields: report.undeclared_fields,
            control_messages: report.control_messages,
            skipped: report.skipped,
            snapshot_id: report.snapshot_id,
            commit_attempts: report.commit_attempts,
            error: report.error,
            failed_runs: 0,
            observed: report.observed,
        }
    }

    async fn write(&self, runs: Vec<Run>, counts: BatchCounts) -> BatchSummary {
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
        BatchSummary {
            records: counts.records,
            good: counts.good,
            bad: counts.bad,
            objects: report.objects,
            bytes: report.bytes,
            retry_from: report.retry_from.clone(),
            undeclared_fields: counts.undeclared_fields,
            control_messages: counts.control_messages,
            skipped: 0,
            snapshot_id: None,
            commit_attempts: 0,
            error: report.failures.first().map(ToString::to_string),
            failed_runs: report.failures.len(),
            observed: counts.observed,
        }
    }
}

/// A Kafka batch some of whose runs could not be written: the invocation
/// fails so Lambda retries the batch.
#[derive(Debug, thiserror::Error)]
#[error("the Kafka batch was not written in full (first failed run starts at offset {}); Lambda retries the batch", .summary.retry_from.as_deref().unwrap_or("?"))]
pub struct KafkaBatchError {
    /// What the batch did before failing.
    pub summary: BatchSummary,
}
