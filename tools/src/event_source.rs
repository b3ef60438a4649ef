//! Playing Lambda's Kinesis event source mapping locally: read a shard in
//! batches, hand each batch to a handler as the JSON body of a Lambda
//! invocation, and checkpoint the way Lambda does with
//! `ReportBatchItemFailures`: a reported sequence number is retried from, a
//! function error retries the whole batch.

use std::future::Future;

use anyhow::{Context, Result};
use aws_lambda_events::event::streams::KinesisEventResponse;
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::Utc;

use crate::kinesis_event::{event_json, StreamRecord};

/// How batches are formed and retried.
#[derive(Debug, Clone)]
pub struct MappingSettings {
    /// Records per batch (the mapping's `BatchSize`).
    pub batch_size: i32,
    /// Retries of a failing batch before it is given up (`MaximumRetryAttempts`).
    pub maximum_retry_attempts: u32,
}

/// What reading a shard to its end did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardReport {
    /// Invocations of the handler.
    pub invocations: usize,
    /// Invocations that reported a failure and were retried.
    pub retries: usize,
    /// Records given up after the last retry (Lambda's on-failure destination).
    pub given_up: Vec<String>,
    /// Records read from the shard.
    pub records: usize,
}

/// One Kinesis shard as an event source mapping reads it for one function:
/// its own iterator and checkpoint, kept between calls of
/// [`ShardPoller::drain`] so that records put later are read from where the
/// last call stopped.
#[derive(Debug)]
pub struct ShardPoller {
    stream: String,
    stream_arn: String,
    shard: String,
    settings: MappingSettings,
    iterator: String,
    pending: Vec<StreamRecord>,
    attempts: u32,
}

impl ShardPoller {
    /// Starts reading `shard` at `TRIM_HORIZON`.
    pub async fn open(
        kinesis: &aws_sdk_kinesis::Client,
        stream: &str,
        stream_arn: &str,
        shard: &str,
        settings: &MappingSettings,
    ) -> Result<Self> {
        let iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .with_context(|| format!("shard iterator of {stream}/{shard}"))?
            .shard_iterator
            .context("no shard iterator")?;
        Ok(ShardPoller {
            stream: stream.to_string(),
            stream_arn: stream_arn.to_string(),
            shard: shard.to_string(),
            settings: settings.clone(),
            iterator,
            pending: Vec::new(),
            attempts: 0,
        })
    }

    /// The shard's ID.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// Reads the shard up to its current end, invoking `handler` per batch
    /// with the event's JSON bytes (a full batch, or what is left at the
    /// end: the batching window is not waited for, there is nothing more to
    /// wait for).
    pub async fn drain<F, Fut>(
        &mut self,
        kinesis: &aws_sdk_kinesis::Client,
        mut handler: F,
    ) -> Result<ShardReport>
    where
        F: FnMut(Vec<u8>) -> Fut,
        Fut: Future<Output = Result<KinesisEventResponse, lambda_runtime::Error>>,
    {
        let batch_size = self.settings.batch_size.max(1);
        let mut report = ShardReport::default();
        let mut exhausted = false;
        loop {
            while !exhausted && (self.pending.len() as i32) < batch_size {
                let out = kinesis
                    .get_records()
                    .shard_iterator(&self.iterator)
                    .limit(batch_size - self.pending.len() as i32)
                    .send()
                    .await
                    .with_context(|| format!("reading {}/{}", self.stream, self.shard))?;
                let got = out.records();
                report.records += got.len();
                exhausted = got.is_empty();
                let now = Utc::now();
                self.pending
                    .extend(got.iter().map(|r| StreamRecord::from_kinesis(r, now)));
                match out.next_shard_iterator {
                    Some(next) => self.iterator = next,
                    None => exhausted = true,
                }
            }
            if self.pending.is_empty() {
                return Ok(report);
            }
            let take = self.pending.len().min(batch_size as usize);
            let event = serde_json::to_vec(&event_json(
                &self.stream_arn,
                &self.shard,
                &self.pending[..take],
            ))?;
            report.invocations += 1;
            let failed_at = match handler(event).await {
                Ok(response) => response
                    .batch_item_failures
                    .iter()
                    .filter_map(|f| f.item_identifier.as_deref())
                    .next()
                    .and_then(|seq| {
                        self.pending[..take]
                            .iter()
                            .position(|r| r.sequence_number == seq)
                    }),
                // A function error: Lambda retries the batch whole.
                Err(_) => Some(0),
            };
            match failed_at {
                None => {
                    self.pending.drain(..take);
                    self.attempts = 0;
                }
                Some(at) if self.attempts < self.settings.maximum_retry_attempts => {
                    // Checkpoint before the failed record; retry from it.
                    self.pending.drain(..at);
                    self.attempts += 1;
                    report.retries += 1;
                }
                Some(_) => {
                    report
                        .given_up
                        .extend(self.pending.drain(..take).map(|r| r.sequence_number));
                    self.attempts = 0;
                }
            }
        }
    }
}

/// Reads `shard` of `stream` from its start to its current end, invoking
/// `handler` per batch.
pub async fn drain_shard<F, Fut>(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    stream_arn: &str,
    shard: &str,
    settings: &MappingSettings,
    handler: F,
) -> Result<ShardReport>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: Future<Output = Result<KinesisEventResponse, lambda_runtime::Error>>,
{
    ShardPoller::open(kinesis, stream, stream_arn, shard, settings)
        .await?
        .drain(kinesis, handler)
        .await
}
