//! Replaying the batches a stream consumer gave up on.
//!
//! When a batch exhausts its retries or ages out, Lambda puts a record of it
//! on the mapping's on-failure queue: the function, the stream, the shard
//! and the sequence range. Each consumer has its own queue, and a range must
//! go back to the function that failed it: a device-status range starts in
//! the middle of a lake object, so handing it to kinesis-to-parquet would
//! write its records a second time under new keys. The replay reads the
//! range again from the stream and invokes the function named in the
//! message with those records and their original sequence numbers, so the
//! function rewrites the same object keys (kinesis-to-parquet) or skips what
//! its watermarks already counted (device-status). It refuses, and leaves in
//! the queue, a message that names another function than the one the
//! operator replays, a range of a DynamoDB stream, or a range of which part
//! is no longer on the stream.

use anyhow::{Context, Result};
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::DateTime;
use serde_json::Value;

use crate::kinesis_event::{event_json, StreamRecord};

/// One failed Kinesis batch, as Lambda's on-failure record describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedBatch {
    /// The name of the function that failed it.
    pub function: String,
    /// The function's ARN as the record gives it.
    pub function_arn: String,
    pub stream_arn: String,
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub batch_size: usize,
}

/// Why a message is not replayed into the function asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a Lambda on-failure record: {0}")]
    NotAFailureRecord(String),
    #[error(
        "a range of a DynamoDB stream: the reference change flag is rewritten by any \
         change, so touch one of the changed items again instead"
    )]
    DynamoDbStream,
    #[error("not a Kinesis batch (no KinesisBatchInfo): replay it by hand")]
    NotKinesis,
    #[error(
        "failed in {failed_in}, not in {asked}: replay it into the function that failed it, \
         from that function's queue"
    )]
    OtherFunction { failed_in: String, asked: String },
}

/// Reads one on-failure record and checks that it is a Kinesis batch of
/// `function` (a name or an ARN).
pub fn parse_failure_record(body: &str, function: &str) -> Result<FailedBatch, Refusal> {
    let record: Value = serde_json::from_str(body)
        .map_err(|e| Refusal::NotAFailureRecord(format!("not JSON: {e}")))?;
    let function_arn = record["requestContext"]["functionArn"]
        .as_str()
        .ok_or_else(|| Refusal::NotAFailureRecord("no requestContext.functionArn".into()))?;
    if record.get("DDBStreamBatchInfo").is_some() {
        return Err(Refusal::DynamoDbStream);
    }
    let info = record.get("KinesisBatchInfo").ok_or(Refusal::NotKinesis)?;
    let failed_in = function_name(function_arn);
    let asked = function_name(function);
    if failed_in != asked {
        return Err(Refusal::OtherFunction {
            failed_in: failed_in.to_string(),
            asked: asked.to_string(),
        });
    }
    let field = |name: &str| {
        info[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Refusal::NotAFailureRecord(format!("no KinesisBatchInfo.{name}")))
    };
    Ok(FailedBatch {
        function: failed_in.to_string(),
        function_arn: function_arn.to_string(),
        stream_arn: field("streamArn")?,
        shard_id: field("shardId")?,
        start_sequence_number: field("startSequenceNumber")?,
        end_sequence_number: field("endSequenceNumber")?,
        batch_size: info["batchSize"]
            .as_u64()
            .ok_or_else(|| Refusal::NotAFailureRecord("no KinesisBatchInfo.batchSize".into()))?
            as usize,
    })
}

/// The function name of a name, a `name:qualifier` or a (partial) ARN.
fn function_name(function: &str) -> &str {
    match function.split_once("function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => function.split(':').next().unwrap_or(function),
    }
}

/// Orders two decimal sequence numbers (they have up to 56 digits, past
/// any integer type).
fn sequence_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The range was handed to its function, which took every record; the
    /// message is deleted (or would be, on a dry run).
    Replayed { records: usize },
    /// The message is not for this replay; it stays in the queue.
    Refused(String),
    /// The replay was tried and did not succeed; the message stays.
    Failed(String),
}

/// What a replay did, message by message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// (SQS message ID, outcome), in the order received.
    pub messages: Vec<(String, Outcome)>,
}

impl ReplayReport {
    /// How many messages were replayed, refused and failed.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for (_, outcome) in &self.messages {
            match outcome {
                Outcome::Replayed { .. } => counts.0 += 1,
                Outcome::Refused(_) => counts.1 += 1,
                Outcome::Failed(_) => counts.2 += 1,
            }
        }
        counts
    }
}

/// The clients a replay uses.
#[derive(Debug, Clone)]
pub struct Replayer {
    pub sqs: aws_sdk_sqs::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub lambda: aws_sdk_lambda::Client,
}

impl Replayer {
    /// The clients of one AWS configuration.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Replayer {
            sqs: aws_sdk_sqs::Client::new(sdk),
            kinesis: aws_sdk_kinesis::Client::new(sdk),
            lambda: aws_sdk_lambda::Client::new(sdk),
        }
    }
}

/// How long a received message stays hidden while it is replayed.
const VISIBILITY_TIMEOUT_S: i32 = 300;

impl Replayer {
    /// Replays every message of `queue_url` that is a Kinesis batch failed
    /// by `function`; with `dry_run`, reads each range and invokes nothing.
    /// Messages not replayed are made visible again at the end.
    pub async fn replay(
        &self,
        queue_url: &str,
        function: &str,
        dry_run: bool,
    ) -> Result<ReplayReport> {
        let mut report = ReplayReport::default();
        let mut kept = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(VISIBILITY_TIMEOUT_S)
                .wait_time_seconds(0)
                .send()
                .await
                .with_context(|| format!("receiving from {queue_url}"))?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let id = m.message_id.clone().unwrap_or_default();
                let outcome = self
                    .replay_one(m.body().unwrap_or_default(), function, dry_run)
                    .await;
                match (&outcome, m.receipt_handle()) {
                    (Outcome::Replayed { .. }, Some(handle)) if !dry_run => {
                        self.sqs
                            .delete_message()
                            .queue_url(queue_url)
                            .receipt_handle(handle)
                            .send()
                            .await
                            .with_context(|| format!("deleting message {id}"))?;
                    }
                    (_, Some(handle)) => kept.push(handle.to_string()),
                    (_, None) => {}
                }
                report.messages.push((id, outcome));
            }
        }
        for handle in kept {
            self.sqs
                .change_message_visibility()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .context("making a kept message visible again")?;
        }
        Ok(report)
    }

    async fn replay_one(&self, body: &str, function: &str, dry_run: bool) -> Outcome {
        let batch = match parse_failure_record(body, function) {
            Ok(batch) => batch,
            Err(refusal) => return Outcome::Refused(refusal.to_string()),
        };
        let records = match self.read_range(&batch).await {
            Ok(records) => records,
            Err(e) => return Outcome::Failed(format!("{e:#}")),
        };
        if records.len() != batch.batch_size {
            return Outcome::Refused(format!(
                "read {} of the batch's {} records from {}: part of the range is no longer \
                 on the stream, and a part replayed alone would not rewrite the same keys",
                records.len(),
                batch.batch_size,
                batch.shard_id
            ));
        }
        if dry_run {
            return Outcome::Replayed {
                records: records.len(),
            };
        }
        match self.invoke(&batch, &records).await {
            Ok(()) => Outcome::Replayed {
                records: records.len(),
            },
            Err(e) => Outcome::Failed(format!("{e:#}")),
        }
    }

    /// The records of the range, read from the stream from its first
    /// sequence number to its last.
    async fn read_range(&self, batch: &FailedBatch) -> Result<Vec<StreamRecord>> {
        let stream = batch
            .stream_arn
            .rsplit_once("stream/")
            .map_or(batch.stream_arn.as_str(), |(_, name)| name);
        let mut iterator = self
            .kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(&batch.start_sequence_number)
            .send()
            .await
            .with_context(|| {
                format!(
                    "shard iterator of {stream}/{} at {}",
                    batch.shard_id, batch.start_sequence_number
                )
            })?
            .shard_iterator;
        let mut records = Vec::new();
        while let Some(it) = iterator {
            let out = self
                .kinesis
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .with_context(|| format!("reading {stream}/{}", batch.shard_id))?;
            for r in out.records() {
                if sequence_cmp(r.sequence_number(), &batch.end_sequence_number).is_gt() {
                    return Ok(records);
                }
                records.push(StreamRecord::from_kinesis(r, DateTime::UNIX_EPOCH));
            }
            // At the shard's current end: nothing more of the range to come.
            if out.records().is_empty() && out.millis_behind_latest().unwrap_or(0) == 0 {
                break;
            }
            iterator = out.next_shard_iterator;
        }
        Ok(records)
    }

    /// Invokes the function with the range as a Kinesis event and checks
    /// that it took every record.
    async fn invoke(&self, batch: &FailedBatch, records: &[StreamRecord]) -> Result<()> {
        let event = serde_json::to_vec(&event_json(&batch.stream_arn, &batch.shard_id, records))?;
        let out = self
            .lambda
            .invoke()
            .function_name(&batch.function_arn)
            .payload(aws_sdk_lambda::primitives::Blob::new(event))
            .send()
            .await
            .with_context(|| format!("invoking {}", batch.function))?;
        let payload = out.payload().map(|p| p.as_ref()).unwrap_or_default();
        if let Some(error) = out.function_error() {
            anyhow::bail!(
                "{} failed ({error}): {}",
                batch.function,
                String::from_utf8_lossy(payload)
            );
        }
        let response: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        match response["batchItemFailures"].as_array() {
            Some(failures) if !failures.is_empty() => anyhow::bail!(
                "{} reported {} failed records, from {}",
                batch.function,
                failures.len(),
                failures[0]["itemIdentifier"]
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(function: &str, info: &str) -> String {
        json!({
            "requestContext": {
                "requestId": "c9b8fa9f-5a7f-4e3d-9b5d-6b1c7a1d2e3f",
                "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": 3
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2026-11-22T10:40:00.000Z",
            info: {
                "shardId": "shardId-000000000000",
                "startSequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "endSequenceNumber": "49590338271490256608559692540925702759324208523137515618",
                "approximateArrivalOfFirstRecord": "2026-11-22T10:39:00.000Z",
                "approximateArrivalOfLastRecord": "2026-11-22T10:39:59.000Z",
                "batchSize": 500,
                "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/telemetry"
            }
        })
        .to_string()
    }

    #[test]
    fn a_failure_record_is_replayed_only_into_the_function_that_failed_it() {
        let body = record("lake-DeviceStatus", "KinesisBatchInfo");
        let batch = parse_failure_record(&body, "lake-DeviceStatus").unwrap();
        assert_eq!(batch.function, "lake-DeviceStatus");
        assert_eq!(batch.batch_size, 500);
        assert_eq!(batch.shard_id, "shardId-000000000000");
        // An ARN or a qualified name for the function asked is the same function.
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:lake-DeviceStatus:live";
        assert!(parse_failure_record(&body, arn).is_ok());
        assert_eq!(
            parse_failure_record(&body, "lake-KinesisToParquet"),
            Err(Refusal::OtherFunction {
                failed_in: "lake-DeviceStatus".into(),
                asked: "lake-KinesisToParquet".into()
            })
        );
        let ddb = record("lake-ReferenceChangeFlag", "DDBStreamBatchInfo");
        assert_eq!(
            parse_failure_record(&ddb, "lake-ReferenceChangeFlag"),
            Err(Refusal::DynamoDbStream)
        );
        assert!(matches!(
            parse_failure_record("{}", "f"),
            Err(Refusal::NotAFailureRecord(_))
        ));
        assert!(matches!(
            parse_failure_record("not json", "f"),
            Err(Refusal::NotAFailureRecord(_))
        ));
    }

    #[test]
    fn sequence_numbers_are_ordered_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(sequence_cmp("9", "10"), Less);
        assert_eq!(sequence_cmp("0010", "10"), Equal);
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692540925702759324208523137515618";
        assert_eq!(sequence_cmp(a, b), Less);
        assert_eq!(sequence_cmp(b, a), Greater);
    }
}
