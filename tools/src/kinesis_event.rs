//! Building Lambda Kinesis events the way the Lambda service delivers them.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// One record to put in an event.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// The payload bytes as the producer put them (compressed or not).
    pub data: Vec<u8>,
    /// The partition key.
    pub partition_key: String,
    /// The arrival time on the stream.
    pub arrival: DateTime<Utc>,
    /// The sequence number, a decimal string.
    pub sequence_number: String,
}

impl StreamRecord {
    /// A record as Kinesis `GetRecords` returned it, arriving at
    /// `no_arrival` when it carries no arrival time.
    pub fn from_kinesis(r: &aws_sdk_kinesis::types::Record, no_arrival: DateTime<Utc>) -> Self {
        StreamRecord {
            data: r.data().as_ref().to_vec(),
            partition_key: r.partition_key().unwrap_or_default().to_string(),
            arrival: r
                .approximate_arrival_timestamp()
                .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.to_millis().ok()?))
                .unwrap_or(no_arrival),
            sequence_number: r.sequence_number().to_string(),
        }
    }
}

/// A realistic 56-digit Kinesis sequence number whose order follows `n`
/// (real ones have 56 digits and do not fit in a `u64`).
pub fn sequence_number(shard: u32, n: u64) -> String {
    const PREFIX: &str = "495903382714902566085596925383615710"; // 36 digits
    format!("{PREFIX}{:02}{n:018}", shard % 100)
}

/// The ARN of a stream in the default test account and region.
pub fn stream_arn(region: &str, stream: &str) -> String {
    format!("arn:aws:kinesis:{region}:123456789012:stream/{stream}")
}

/// The JSON of a Lambda Kinesis event holding `records` from one shard.
pub fn event_json(stream_arn: &str, shard_id: &str, records: &[StreamRecord]) -> Value {
    use base64::Engine;
    let region = stream_arn.split(':').nth(3).unwrap_or("us-east-1");
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": r.arrival.timestamp_millis() as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{}", r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Records one `PutRecords` takes.
pub const PUT_RECORDS_MAX: usize = 500;

/// Attempts of a `PutRecords` whose entries keep failing (throttled).
const PUT_ATTEMPTS: usize = 5;

/// Puts `records` (partition key, data; at most [`PUT_RECORDS_MAX`]) on
/// `stream`, again for the entries Kinesis failed (throttling), with a
/// pause doubling each time.
pub async fn put_records(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    records: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let mut pending = records;
    for attempt in 0..PUT_ATTEMPTS {
        let entries = pending
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(data.clone().into())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .with_context(|| format!("putting records on {stream}"))?;
        if out.failed_record_count().unwrap_or(0) == 0 {
            return Ok(());
        }
        pending = pending
            .into_iter()
            .zip(out.records())
            .filter(|(_, r)| r.error_code().is_some())
            .map(|(record, _)| record)
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
    }
    anyhow::bail!(
        "{} records were still refused by {stream} after {PUT_ATTEMPTS} attempts",
        pending.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_56_digits_and_ordered() {
        let a = sequence_number(0, 9);
        let b = sequence_number(0, 10);
        assert_eq!(a.len(), 56);
        assert!(a.bytes().all(|c| c.is_ascii_digit()));
        assert!(a < b);
    }
}
