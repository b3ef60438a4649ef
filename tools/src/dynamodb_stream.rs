//! Playing Lambda's DynamoDB Streams event source mapping locally: read
//! every shard of a table's stream, hand the records to a handler as the
//! Lambda event, retry a failed batch, and resume where the last call
//! stopped.

use std::future::Future;

use anyhow::{Context, Result};
use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde_json::{json, Value};

use crate::event_source::{MappingSettings, ShardReport};

/// The stream of one table, read like an event source mapping.
#[derive(Debug)]
pub struct TableStreamPoller {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    settings: MappingSettings,
    /// (shard ID, next iterator) per shard.
    shards: Vec<(String, Option<String>)>,
}

impl TableStreamPoller {
    /// Opens the latest stream of `table` at `TRIM_HORIZON`.
    pub async fn open(
        client: aws_sdk_dynamodbstreams::Client,
        table: &str,
        settings: &MappingSettings,
    ) -> Result<Self> {
        let streams = client
            .list_streams()
            .table_name(table)
            .send()
            .await
            .with_context(|| format!("listing the streams of {table}"))?;
        let stream_arn = streams
            .streams()
            .last()
            .and_then(|s| s.stream_arn())
            .with_context(|| format!("table {table} has no stream"))?
            .to_string();
        let described = client
            .describe_stream()
            .stream_arn(&stream_arn)
            .send()
            .await
            .with_context(|| format!("describing {stream_arn}"))?;
        let mut shards = Vec::new();
        for shard in described
            .stream_description()
            .map(|d| d.shards())
            .unwrap_or_default()
        {
            let id = shard.shard_id().unwrap_or_default().to_string();
            let iterator = client
                .get_shard_iterator()
                .stream_arn(&stream_arn)
                .shard_id(&id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .with_context(|| format!("shard iterator of {stream_arn}/{id}"))?
                .shard_iterator;
            shards.push((id, iterator));
        }
        Ok(TableStreamPoller {
            client,
            stream_arn,
            settings: settings.clone(),
            shards,
        })
    }

    /// The stream's ARN.
    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// Reads every shard to its current end, invoking `handler` per batch
    /// and retrying a failed batch up to the mapping's retry attempts.
    pub async fn drain<F, Fut, E>(&mut self, mut handler: F) -> Result<ShardReport>
    where
        F: FnMut(DynamoDbEvent) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let mut report = ShardReport::default();
        for (shard, iterator) in &mut self.shards {
            while let Some(it) = iterator.clone() {
                let out = self
                    .client
                    .get_records()
                    .shard_iterator(it)
                    .limit(self.settings.batch_size.max(1))
                    .send()
                    .await
                    .with_context(|| format!("reading {}/{shard}", self.stream_arn))?;
                *iterator = out.next_shard_iterator.clone();
                if out.records().is_empty() {
                    break;
                }
                report.records += out.records().len();
                let records: Vec<Value> = out
                    .records()
                    .iter()
                    .map(|r| record_json(&self.stream_arn, r))
                    .collect();
                let event: DynamoDbEvent = serde_json::from_value(json!({ "Records": records }))
                    .context("building the DynamoDB stream event")?;
                let mut attempts = 0;
                loop {
                    report.invocations += 1;
                    if handler(event.clone()).await.is_ok() {
                        break;
                    }
                    if attempts >= self.settings.maximum_retry_attempts {
                        report.given_up.extend(
                            event
                                .records
                                .iter()
                                .filter_map(|r| r.change.sequence_number.clone()),
                        );
                        break;
                    }
                    attempts += 1;
                    report.retries += 1;
                }
            }
        }
        Ok(report)
    }
}

/// A stream record as Lambda delivers it.
fn record_json(stream_arn: &str, rec: &Record) -> Value {
    let d = rec.dynamodb();
    let image = |m: Option<&std::collections::HashMap<String, AttributeValue>>| -> Value {
        m.map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), attribute_json(v)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .unwrap_or(Value::Null)
    };
    let mut change = json!({
        "Keys": image(d.and_then(|d| d.keys.as_ref())),
        "SequenceNumber": d.and_then(|d| d.sequence_number()),
        "SizeBytes": d.and_then(|d| d.size_bytes()),
        "StreamViewType": d.and_then(|d| d.stream_view_type()).map(|v| v.as_str()),
    });
    for (name, m) in [
        ("NewImage", d.and_then(|d| d.new_image.as_ref())),
        ("OldImage", d.and_then(|d| d.old_image.as_ref())),
    ] {
        if m.is_some() {
            change[name] = image(m);
        }
    }
    json!({
        "eventID": rec.event_id(),
        "eventName": rec.event_name().map(|n| n.as_str()),
        "eventVersion": rec.event_version(),
        "eventSource": rec.event_source(),
        "awsRegion": rec.aws_region(),
        "eventSourceARN": stream_arn,
        "dynamodb": change,
    })
}

/// An attribute value in DynamoDB's JSON form.
fn attribute_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::L(v) => json!({ "L": v.iter().map(attribute_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({
            "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>()
        }),
        _ => Value::Null,
    }
}
