//! The device-status function: a second consumer of the telemetry stream.
//! It decodes and validates each record exactly as `kinesis-to-parquet` does
//! (bad records become dead letters, never a failed batch), joins it with the
//! device's normal ranges, derives its status, aggregates the batch per
//! (device, status, sliding window) and applies the aggregates to the
//! windows table once per record, even under Lambda retries (see
//! [`window_store`]).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use telemetry_lake::config::ConfigError;
use telemetry_lake::device_status::change_flag::ChangeFlagStore;
use telemetry_lake::device_status::reference::{
    ReferenceCache, ReferenceData, ReferenceError, ReferenceSource, ReferenceTable,
};
use telemetry_lake::device_status::status::{status_of, Status};
use telemetry_lake::device_status::windows::{BatchWindows, WindowSpec};
use telemetry_lake::lake::keys::{object_key, IngestHour, StreamPosition};
use telemetry_lake::lake::writer::{s3_client, ObjectSink, S3Sink, DEAD_LETTER_EXTENSION};
use telemetry_lake::metrics::{self, Invocation, MetricsOut, StreamBatch};
use telemetry_lake::stream::dead_letter::{to_json_lines, DeadLetter, Rejection, Scope};
use telemetry_lake::stream::document::Value;
use telemetry_lake::stream::event::kafka_records;
use telemetry_lake::stream::event::Handled;
use telemetry_lake::stream::event::StreamEvent;
use telemetry_lake::stream::format::PayloadDecoder;
use telemetry_lake::stream::observed::Observed;
use telemetry_lake::stream::sequence;
use telemetry_lake::stream::source::{decode_record, Refusal, SourceRecord};

use telemetry_lake::device_status::config::{DeviceStatusConfig, RecordFields};
use telemetry_lake::device_status::window_store::{
    storable, ApplyReport, Unstorable, WindowSink, WindowStore, MAX_DEVICE_BYTES, MAX_READING,
    MIN_READING,
};

/// How a batch is read: where the fields are, the windows, and the
/// format-aware decoder every stream consumer shares (schema and payload cap
/// included).
#[derive(Debug, Clone)]
struct BatchPlan {
    fields: RecordFields,
    windows: WindowSpec,
    decoder: PayloadDecoder,
}

impl BatchPlan {
    /// The plan of a configuration (whose fields were checked at load).
    fn of(config: &DeviceStatusConfig) -> Result<Self, ConfigError> {
        Ok(BatchPlan {
            fields: config.fields()?,
            windows: config.windows,
            decoder: PayloadDecoder::new(
                config.format.clone(),
                config.schema.clone(),
                config.max_payload_bytes,
            )
            .with_invocation_budget(config.decode_budget_bytes),
        })
    }
}

/// A batch decoded, joined and grouped by window, before any write.
#[derive(Debug)]
struct Aggregated {
    pub windows: BatchWindows,
    pub dead_letters: Vec<DeadLetter>,
    /// Stream records in the batch.
    pub records: usize,
    /// Good documents.
    pub good: usize,
    /// Good documents per status.
    pub by_status: BTreeMap<Status, usize>,
    /// Devices without reference ranges.
    pub unknown_devices: BTreeSet<String>,
    /// Fields the good documents held that the schema does not declare.
    pub undeclared_fields: usize,
    /// CloudWatch Logs control messages read (skipped).
    pub control_messages: usize,
    /// Where each good document came from, by its number in `windows`:
    /// (record in the batch, document in the record, KPL sub-sequence).
    pub sources: Vec<(u32, u32, Option<u64>)>,
    /// Event and arrival times (the dead letters are counted at the end).
    pub observed: Observed,
}

/// Decodes, validates, joins and aggregates records of any source (Kinesis,
/// or Kafka where the window watermarks are kept per topic and partition
/// and offsets play the sequence numbers).
fn aggregate_records(
    records: &[SourceRecord<'_>],
    plan: &BatchPlan,
    reference: &ReferenceData,
) -> Aggregated {
    let fields = &plan.fields;
    let mut budget = plan.decoder.budget();
    let mut out = Aggregated {
        windows: BatchWindows::new(fields.metrics.len()),
        dead_letters: Vec::new(),
        records: 0,
        good: 0,
        by_status: BTreeMap::new(),
        unknown_devices: BTreeSet::new(),
        undeclared_fields: 0,
        control_messages: 0,
        sources: Vec::new(),
        observed: Observed::default(),
    };
    let mut readings = vec![0.0; fields.metrics.len()];
    let mut device = String::new();
    let mut window_shard = String::new();
    for (at, rec) in records.iter().enumerate() {
        out.records += 1;
        out.observed.arrival(rec.arrival);
        let (stream, shard, position) = (&*rec.stream, &*rec.shard, &*rec.position);
        window_shard.clear();
        match rec.kafka {
            Some(_) => {
                use std::fmt::Write;
                let _ = write!(window_shard, "{stream}.{shard}");
            }
            None => window_shard.push_str(shard),
        }
        decode_record(
            rec,
            &plan.decoder,
            &mut budget,
            &mut out.dead_letters,
            |doc| {
                let values = &doc.values;
                // The configuration checked these fields are required and typed,
                // so a parsed record always has them.
                device.clear();
                match &values[fields.device] {
                    Value::Int64(i) => device.push_str(itoa::Buffer::new().format(*i)),
                    Value::String(s) => device.push_str(s),
                    _ => return Ok(()),
                }
                let Value::Timestamp(t) = values[fields.event_time] else {
                    return Ok(());
                };
                out.observed.event_time(values, Some(fields.event_time));
                for (r, &i) in readings.iter_mut().zip(&fields.metrics) {
                    *r = match values[i] {
                        Value::Int64(v) => v as f64,
                        Value::Float64(v) => v,
                        _ => return Ok(()),
                    };
                }
                let name = |i: usize| plan.decoder.schema().fields[i].name.as_str();
                storable(&device, &readings).map_err(|bad| match bad {
                    Unstorable::Device { bytes } => Refusal {
                        reason: "out_of_range",
                        detail: format!(
                            "field `{}`: the device id is {bytes} bytes, past the windows \
                             table's {MAX_DEVICE_BYTES}-byte key",
                            name(fields.device)
                        ),
                    },
                    Unstorable::Reading { index, value } => Refusal {
                        reason: "out_of_range",
                        detail: format!(
                            "field `{}`: {value:e} is outside what the windows table can \
                             sum (0, or magnitudes from {MIN_READING:e} to {MAX_READING:e})",
                            name(fields.metrics[index])
                        ),
                    },
                })?;
                let ranges = reference.get(&device);
                let status = status_of(&readings, ranges);
                if status == Status::Unknown && !out.unknown_devices.contains(&device) {
                    out.unknown_devices.insert(device.clone());
                }
                *out.by_status.entry(status).or_default() += 1;
                out.good += 1;
                let number = out.windows.add(
                    &window_shard,
                    position,
                    &device,
                    status,
                    plan.windows.starts(t),
                    &readings,
                );
                debug_assert_eq!(number as usize, out.sources.len());
                out.sources
                    .push((at as u32, doc.index as u32, doc.sub_sequence_number));
                Ok(())
            },
        );
    }
    out.undeclared_fields = budget.undeclared_fields();
    out.control_messages = budget.control_messages();
    out
}

/// The function's state, built once per container.
///
/// `S` takes the dead letters, `W` the windows and `R` gives the reference
/// data: S3, the windows table and the cached reference table when the
/// function runs.
pub struct DeviceStatus<S, W = WindowStore, R = ReferenceCache> {
    plan: BatchPlan,
    reference: R,
    windows: W,
    dead_letter_sink: S,
    dead_letter_prefix: String,
    metrics: MetricsOut,
}

/// The function's name where Lambda does not give one.
const NAME: &str = "device-status";

/// What one invocation did, also logged as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub records: usize,
    pub good: usize,
    pub bad: usize,
    pub by_status: BTreeMap<Status, usize>,
    pub unknown_devices: usize,
    /// Fields the good records held that the schema does not declare.
    pub undeclared_fields: usize,
    /// CloudWatch Logs control messages read (skipped).
    pub control_messages: usize,
    pub windows: ApplyReport,
    pub dead_letter_objects: usize,
    pub retry_from: Option<String>,
    /// Loads of the reference table during the batch.
    pub reference_loads: u64,
    /// The newest event time, the oldest arrival and the dead letters by
    /// reason.
    pub observed: Observed,
}

/// The batch cannot be processed at all; Lambda retries it whole.
#[derive(Debug, thiserror::Error)]
pub enum DeviceStatusError {
    #[error("reference data unavailable: {0}")]
    Reference(#[from] ReferenceError),
    #[error(
        "the Kafka batch was not applied in full (from offset {offset}); Lambda retries the batch"
    )]
    KafkaBatch { offset: String },
}

impl DeviceStatus<S3Sink> {
    /// The function as it runs in Lambda and in the local run: the
    /// configuration read through `env` (the schema from the Glue table
    /// `SCHEMA_SOURCE` names, if any), the reference table and windows in
    /// DynamoDB, the change flag and dead letters in S3.
    pub async fn load(
        env: impl Fn(&str) -> Option<String>,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, ConfigError> {
        let metrics = MetricsOut::from_env(&env, NAME);
        let config = DeviceStatusConfig::load(env, || aws_sdk_glue::Client::new(aws)).await?;
        let s3 = s3_client(aws);
        let dynamodb = aws_sdk_dynamodb::Client::new(aws);
        let table = ReferenceTable {
            client: dynamodb.clone(),
            table: config.reference_table.clone(),
            key_attribute: config.reference_key_attribute.clone(),
            metrics: config.metrics.clone(),
        };
        let flag = ChangeFlagStore::new(s3.clone(), config.change_flag.clone());
        let cache = ReferenceCache::new(table, flag, config.change_flag_check);
        let sink = S3Sink::new(s3, &config.dead_letter_bucket);
        Ok(Self::new(&config, cache, dynamodb, sink)?.with_metrics(metrics))
    }
}

impl<S: ObjectSink> DeviceStatus<S> {
    /// Prepares the function on the windows table of `config`.
    pub fn new(
        config: &DeviceStatusConfig,
        cache: ReferenceCache,
        dynamodb: aws_sdk_dynamodb::Client,
        dead_letter_sink: S,
    ) -> Result<Self, ConfigError> {
        let store = WindowStore {
            client: dynamodb,
            table: config.windows_table.clone(),
            metrics: config.metrics.iter().map(|m| m.field.clone()).collect(),
            window_secs: config.windows.size_secs(),
            retention_secs: config.retention.as_secs() as i64,
            concurrency: config.write_concurrency,
        };
        Self::with_stores(config, cache, store, dead_letter_sink)
    }
}

impl<S: ObjectSink, W: WindowSink, R: ReferenceSource> DeviceStatus<S, W, R> {
    /// Prepares the function on the given reference data and window sink.
    pub fn with_stores(
        config: &DeviceStatusConfig,
        reference: R,
        windows: W,
        dead_letter_sink: S,
    ) -> Result<Self, ConfigError> {
        Ok(DeviceStatus {
            plan: BatchPlan::of(config)?,
            reference,
            windows,
            dead_letter_sink,
            dead_letter_prefix: config.dead_letter_prefix.clone(),
            metrics: MetricsOut::from_env(|_| None, NAME),
        })
    }

    /// The same function writing its metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: MetricsOut) -> Self {
        self.metrics = metrics;
        self
    }

    /// The reference data's source (the cache, to observe reloads).
    pub fn cache(&self) -> &R {
        &self.reference
    }

    /// Handles one invocation, as the Lambda runtime delivers it: a Kinesis
    /// event or an MSK / self-managed Kafka event, read from the
    /// invocation's JSON by [`StreamEvent`].
    ///
    /// Lambda delivers one shard per Kinesis invocation, so the one reported
    /// failure (a sequence number) is where that shard resumes. Anything of
    /// a Kafka batch not applied fails the invocation: Lambda retries the
    /// batch from the same offsets and the per-partition watermarks keep
    /// every record counted once.
    pub async fn handle(
        &self,
        event: LambdaEvent<StreamEvent>,
    ) -> Result<Handled<BatchSummary>, lambda_runtime::Error> {
        let mut invocation = Invocation::start(&event.context.request_id);
        match event.payload {
            StreamEvent::Kafka(event) => {
                let summary = self.process_records(kafka_records(&event)).await?;
                self.report(&summary, &mut invocation, false);
                match summary.retry_from {
                    None => Ok(Handled::kafka(summary)),
                    Some(offset) => Err(DeviceStatusError::KafkaBatch { offset }.into()),
                }
            }
            StreamEvent::Kinesis(batch) => {
                let summary = self.process_records(batch.records()).await?;
                self.report(&summary, &mut invocation, true);
                let retry_from = summary.retry_from.clone();
                Ok(Handled::kinesis(summary, retry_from.as_deref()))
            }
        }
    }

    /// Logs the batch's line and writes its metrics. Only a Kinesis batch
    /// reports item failures; a Kafka batch that needs a retry fails.
    fn report(&self, summary: &BatchSummary, invocation: &mut Invocation, kinesis: bool) {
        let unknown = summary
            .by_status
            .get(&Status::Unknown)
            .copied()
            .unwrap_or(0);
        tracing::info!(
            records = summary.records,
            good = summary.good,
            bad = summary.bad,
            unknown,
            undeclared_fields = summary.undeclared_fields,
            control_messages = summary.control_messages,
            windows_written = summary.windows.written,
            windows_already_applied = summary.windows.already_applied,
            windows_failed = summary.windows.failed.len(),
            condition_retries = summary.windows.condition_retries,
            reference_loads = summary.reference_loads,
            retry_from = summary.retry_from.as_deref().unwrap_or(""),
            duration_ms = invocation.elapsed_ms(),
            "batch processed"
        );
        invocation
            .stream_batch(StreamBatch {
                records: summary.records,
                good: summary.good,
                undeclared_fields: summary.undeclared_fields,
                control_messages: summary.control_messages,
                objects: summary.dead_letter_objects,
                item_failures: usize::from(kinesis && summary.retry_from.is_some()),
                observed: &summary.observed,
            })
            .count(metrics::WINDOWS_WRITTEN, summary.windows.written)
            .count(
                metrics::WINDOWS_ALREADY_APPLIED,
                summary.windows.already_applied,
            )
            .count(metrics::WINDOW_WRITE_FAILURES, summary.windows.failed.len())
            .count(
                metrics::CONDITIONAL_WRITE_RETRIES,
                summary.windows.condition_retries,
            )
            .count(metrics::REFERENCE_RELOADS, summary.reference_loads as usize)
            .count(metrics::UNKNOWN_STATUS_READINGS, unknown);
        self.metrics.emit(invocation);
    }

    async fn process_records<'e>(
        &self,
        records: impl IntoIterator<Item = SourceRecord<'e>>,
    ) -> Result<BatchSummary, DeviceStatusError> {
        let loads_before = self.reference.loads().await;
        let reference = self.reference.current().await?;
        let reference_loads = self.reference.loads().await - loads_before;
        let records: Vec<SourceRecord<'e>> = records.into_iter().collect();
        let mut agg = aggregate_records(&records, &self.plan, &reference);
        if !agg.unknown_devices.is_empty() {
            let sample: Vec<&str> = agg
                .unknown_devices
                .iter()
                .take(10)
                .map(String::as_str)
                .collect();
            tracing::warn!(
                devices = agg.unknown_devices.len(),
                records = agg.by_status.get(&Status::Unknown).copied().unwrap_or(0),
                sample = %sample.join(","),
                "devices without reference ranges; kept under UNKNOWN"
            );
        }
        let report = self.windows.apply(&agg.windows).await;
        for (key, error) in &report.failed {
            tracing::error!(device = %key.device, window_start = key.start, error = %error, "window not written; the batch will be retried");
        }
        for (number, why) in &report.refused {
            let Some(&(at, document, sub_sequence_number)) = agg.sources.get(*number as usize)
            else {
                continue;
            };
            let rec = &records[at as usize];
            agg.good -= 1;
            agg.dead_letters.push(DeadLetter::rejected(
                &rec.origin(),
                Rejection {
                    index: document as usize,
                    reason: "window_store_refused",
                    detail: format!("the windows table refused the reading: {why}"),
                    scope: Scope::Document,
                    bytes: rec.bytes(),
                    sub_sequence_number,
                },
            ));
        }
        if !report.refused.is_empty() {
            // Each shard's dead-letter object is keyed by its first letter.
            agg.dead_letters.sort_by(|a, b| {
                (&a.stream, &a.shard)
                    .cmp(&(&b.stream, &b.shard))
                    .then_with(|| sequence::compare(&a.sequence_number, &b.sequence_number))
            });
        }
        let mut retry_from = report.retry_from.clone();
        let bad = agg.dead_letters.len();
        agg.observed.dead_letters(&agg.dead_letters);
        let dead_letter_objects = self
            .write_dead_letters(agg.dead_letters, &mut retry_from)
            .await;
        let summary = BatchSummary {
            records: agg.records,
            good: agg.good,
            bad,
            by_status: agg.by_status,
            unknown_devices: agg.unknown_devices.len(),
            undeclared_fields: agg.undeclared_fields,
            control_messages: agg.control_messages,
            windows: report,
            dead_letter_objects,
            retry_from: retry_from.clone(),
            reference_loads,
            observed: agg.observed,
        };
        Ok(summary)
    }

    /// Writes the dead letters of the records Lambda will not deliver again
    /// (those before `retry_from`), one object per shard keyed by its first
    /// dead letter: a retry from the same checkpoint rewrites the same key.
    /// A failed write moves `retry_from` back to that first dead letter.
    async fn write_dead_letters(
        &self,
        letters: Vec<DeadLetter>,
        retry_from: &mut Option<String>,
    ) -> usize {
        let limit = retry_from.clone();
        let mut by_shard: BTreeMap<(String, String), Vec<DeadLetter>> = BTreeMap::new();
        for l in letters {
            let keep = limit
                .as_deref()
                .is_none_or(|r| sequence::compare(&l.sequence_number, r) == Ordering::Less);
            if keep {
                by_shard
                    .entry((l.stream.clone(), l.shard.clone()))
                    .or_default()
                    .push(l);
            }
        }
        let mut written = 0;
        for ((stream, shard), letters) in by_shard {
            let first = &letters[0];
            let arrival = DateTime::parse_from_rfc3339(&first.arrival_time)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default();
            let key = object_key(
                &self.dead_letter_prefix,
                IngestHour::of(arrival),
                &StreamPosition {
                    stream: &stream,
                    shard: &shard,
                    sequence_number: &first.sequence_number,
                },
                DEAD_LETTER_EXTENSION,
            );
            match self
                .dead_letter_sink
                .put(key, to_json_lines(&letters), "application/x-ndjson")
                .await
            {
                Ok(()) => written += 1,
                Err(e) => {
                    tracing::error!(error = %e, "dead letters not written; the batch will be retried from the first");
                    let earlier = retry_from.as_deref().is_none_or(|r| {
                        sequence::compare(&first.sequence_number, r) == Ordering::Less
                    });
                    if earlier {
                        *retry_from = Some(first.sequence_number.clone());
                    }
                }
            }
        }
        written
    }
}
