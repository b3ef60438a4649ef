//! Splitting a Kinesis batch into runs: the unit of output and of retry.
//!
//! A run is a maximal stretch of consecutive records of one shard with the
//! same arrival hour. Each run becomes at most one Parquet object (its good
//! rows) and one dead-letter object (its bad records), keyed by the run's
//! first sequence number. Why this makes retries safe:
//!
//! * Run boundaries depend only on the records, except the first run of a
//!   batch, which starts wherever Lambda started the batch.
//! * When a run fails to write, the handler reports that run's first sequence
//!   number as the batch item failure. Lambda checkpoints everything before
//!   it (those runs are fully written) and retries from it, so the retried
//!   batch starts exactly at a run boundary: every run it rebuilds has the
//!   same first record and therefore the same key, and its object is
//!   overwritten, never duplicated, even when the retried batch holds more
//!   records than the first attempt.
//! * A batch retried whole (function error, timeout) rebuilds the same runs
//!   from the same first record. A bisected batch rebuilds its first half
//!   under the same first key (overwriting the longer object) and its second
//!   half under a new key that holds only the records the first half lost.
//! * One case leaves a temporary duplicate: a batch is written whole, then
//!   fails (a timeout after the PUTs), is bisected, and its first half fails
//!   until Lambda gives up on it and sends its range to the on-failure
//!   destination. The second half is then written under a new key while the
//!   whole batch's object still holds those rows. Replaying the failed range
//!   from the on-failure destination (what an operator must do anyway)
//!   rewrites the first key with the first half only and removes the
//!   duplicate; `tests/stream_to_lake.rs` covers this path.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;
use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::columns::Columns;
use crate::dead_letter::{DeadLetter, Scope};
use crate::format::PayloadDecoder;
pub use crate::format::Rejection;
use crate::kpl;
use crate::partition::IngestHour;
use crate::record::Value;
pub use crate::stream_event::{KinesisBatch, StreamEvent};

/// One stretch of consecutive records of one shard in one arrival hour.
#[derive(Debug)]
pub struct Run {
    /// The arrival hour of every record of the run.
    pub hour: IngestHour,
    /// The stream name (the topic, for Kafka).
    pub stream: String,
    /// The shard id (the partition number, for Kafka).
    pub shard: String,
    /// The sequence number (offset, for Kafka) of the run's first record:
    /// the object keys' stem, and what is reported when the run cannot be
    /// written.
    pub first_sequence: String,
    /// The sequence number (offset) of the run's last record.
    pub last_sequence: String,
    /// How many stream records the run holds.
    pub records: usize,
    /// The good rows.
    pub good: Columns,
    /// The bad records.
    pub dead_letters: Vec<DeadLetter>,
}

/// Counts over one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchCounts {
    /// Stream records in the batch.
    pub records: usize,
    /// Rows that passed validation.
    pub good: usize,
    /// Dead letters (a multi-document payload may give several).
    pub bad: usize,
}

/// One record of a batch, whatever its source (Kinesis or Kafka).
#[derive(Debug, Clone)]
pub struct SourceRecord<'e> {
    /// The stream name, or the Kafka topic.
    pub stream: Cow<'e, str>,
    /// The shard id, or the Kafka partition number.
    pub shard: Cow<'e, str>,
    /// The sequence number, or the Kafka offset, as a decimal string.
    pub position: Cow<'e, str>,
    /// When the record reached the stream.
    pub arrival: DateTime<Utc>,
    /// The payload, or why the event's encoding of it cannot be read (with
    /// the encoded text as it came).
    pub data: Result<Cow<'e, [u8]>, (String, &'e [u8])>,
    /// The Kafka partition and offset, for a Kafka record.
    pub kafka: Option<(i64, i64)>,
}

/// The records of a Kafka batch (MSK or self-managed), ordered by topic,
/// partition and offset. A record's arrival time is its Kafka timestamp.
pub fn kafka_records(event: &KafkaEvent) -> Vec<SourceRecord<'_>> {
    let mut records: Vec<SourceRecord<'_>> = event
        .records
        .values()
        .flatten()
        .map(|r| SourceRecord {
            stream: Cow::Borrowed(r.topic.as_deref().unwrap_or("unknown-topic")),
            shard: Cow::Owned(r.partition.to_string()),
            position: Cow::Owned(r.offset.to_string()),
            arrival: *r.timestamp,
            data: match r.value.as_deref() {
                None => Ok(Cow::Borrowed(&[][..])),
                Some(v) => base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(Cow::Owned)
                    .map_err(|e| {
                        let detail = format!("Kafka record value is not valid base64: {e}");
                        (detail, v.as_bytes())
                    }),
            },
            kafka: Some((r.partition, r.offset)),
        })
        .collect();
    records.sort_by(|a, b| (&a.stream, a.kafka).cmp(&(&b.stream, b.kafka)));
    records
}

/// Splits records of any source into runs, de-aggregating KPL records and
/// parsing and validating every payload.
pub fn split_records<'e>(
    records: impl IntoIterator<Item = SourceRecord<'e>>,
    decoder: &PayloadDecoder,
    arrow_schema: &Arc<ArrowSchema>,
) -> (Vec<Run>, BatchCounts) {
    let mut runs: Vec<Run> = Vec::new();
    let mut counts = BatchCounts::default();
    let mut records = records.into_iter();
    while let Some(rec) = records.next() {
        counts.records += 1;
        let hour = IngestHour::of(rec.arrival);
        let same_run = runs
            .last()
            .is_some_and(|r| r.hour == hour && r.shard == rec.shard && r.stream == rec.stream);
        if !same_run {
            runs.push(Run {
                hour,
                stream: rec.stream.to_string(),
                shard: rec.shard.to_string(),
                first_sequence: rec.position.to_string(),
                last_sequence: rec.position.to_string(),
                records: 0,
                // Nearly always one run takes the rest of the batch.
                good: Columns::with_capacity(
                    decoder.schema(),
                    Arc::clone(arrow_schema),
                    records.size_hint().0 + 1,
                ),
                dead_letters: Vec::new(),
            });
        }
        let Some(run) = runs.last_mut() else { continue };
        run.records += 1;
        run.last_sequence.clear();
        run.last_sequence.push_str(&rec.position);
        decode_record(&rec, decoder, &mut run.dead_letters, |values| {
            run.good.push(values)
        });
    }
    counts.good = runs.iter().map(|r| r.good.len()).sum();
    counts.bad = runs.iter().map(|r| r.dead_letters.len()).sum();
    (runs, counts)
}

/// Decodes one stream record: `on_good` gets the values of each good
/// document, and every bad one (or a payload whose base64 did not decode)
/// becomes a dead letter naming the record. Both stream functions read their
/// records through here.
pub fn decode_record<F>(
    rec: &SourceRecord<'_>,
    decoder: &PayloadDecoder,
    dead_letters: &mut Vec<DeadLetter>,
    mut on_good: F,
) where
    F: for<'b> FnMut(&[Value<'b>]),
{
    let mut reject = |r: Rejection<'_>| {
        let mut letter = DeadLetter::new(
            &rec.stream,
            &rec.shard,
            &rec.position,
            r.index,
            rec.arrival,
            r.reason,
            r.detail,
            r.scope,
            r.bytes,
        );
        letter.sub_sequence_number = r.sub_sequence_number;
        if let Some((partition, offset)) = rec.kafka {
            letter.partition = Some(partition);
            letter.offset = Some(offset);
        }
        dead_letters.push(letter);
    };
    match &rec.data {
        Ok(data) => decode_payload(data, decoder, |outcome| match outcome {
            Ok(values) => on_good(&values),
            Err(r) => reject(r),
        }),
        Err((detail, raw)) => reject(Rejection {
            index: 0,
            reason: "invalid_base64",
            detail: detail.clone(),
            scope: Scope::Payload,
            bytes: raw,
            sub_sequence_number: None,
        }),
    }
}

/// Decodes a record's payload through the stream's format, calling
/// `on_document` once per document with its values or the reason it is bad.
/// A KPL aggregated record is split into its user records first, each
/// decoded on its own (their rejections carry their sub-sequence number); an
/// aggregate that fails its MD5 check or cannot be read is one rejection of
/// the whole payload. Every stream consumer decodes through here, so a
/// record is good or bad for the same reason everywhere.
pub fn decode_payload<F>(data: &[u8], decoder: &PayloadDecoder, mut on_document: F)
where
    F: for<'b> FnMut(Result<Vec<Value<'b>>, Rejection<'b>>),
{
    if !kpl::is_aggregated(data) {
        decoder.decode(data, on_document);
        return;
    }
    match kpl::deaggregate(data) {
        Err(e) => on_document(Err(Rejection {
            index: 0,
            reason: e.kind(),
            detail: e.to_string(),
            scope: Scope::Payload,
            bytes: data,
            sub_sequence_number: None,
        })),
        Ok(aggregate) => {
            for (sub, user) in (0u64..).zip(&aggregate.records) {
                decoder.decode(&user.data, |outcome| {
                    on_document(outcome.map_err(|r| Rejection {
                        sub_sequence_number: Some(sub),
                        ..r
                    }))
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use crate::schema::Schema;
    use serde_json::json;

    #[test]
    fn kafka_records_are_ordered_and_carry_partition_and_offset() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let event: KafkaEvent = serde_json::from_value(json!({
            "eventSource": "aws:kafka",
            "records": {
                "t-1": [
                    {"topic": "t", "partition": 1, "offset": 8, "timestamp": 1591970759000_i64,
                     "timestampType": "CREATE_TIME", "value": b64("{\"a\":2}"), "headers": []},
                    {"topic": "t", "partition": 1, "offset": 7, "timestamp": 1591970759000_i64,
                     "timestampType": "CREATE_TIME", "value": "%%%", "headers": []}
                ],
                "t-0": [
                    {"topic": "t", "partition": 0, "offset": 3, "timestamp": 1591970759000_i64,
                     "timestampType": "CREATE_TIME", "value": b64("{\"a\":1}"), "headers": []}
                ]
            }
        }))
        .unwrap();
        let records = kafka_records(&event);
        let at: Vec<(i64, i64)> = records.iter().filter_map(|r| r.kafka).collect();
        assert_eq!(at, vec![(0, 3), (1, 7), (1, 8)]);
        let decoder = PayloadDecoder::new(Format::Json, Schema::parse("a:int64").unwrap(), 1024);
        let arrow = decoder.schema().arrow_schema();
        let (runs, counts) = split_records(records, &decoder, &arrow);
        assert_eq!((counts.records, counts.good, counts.bad), (3, 2, 1));
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (runs[1].shard.as_str(), runs[1].first_sequence.as_str()),
            ("1", "7")
        );
        let letter = &runs[1].dead_letters[0];
        assert_eq!(
            (letter.reason.as_str(), letter.partition, letter.offset),
            ("invalid_base64", Some(1), Some(7))
        );
        assert_eq!(letter.bytes().unwrap(), b"%%%");
    }
}
