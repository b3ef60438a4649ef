//! One stream record, whatever its source, and the one decode path every
//! stream consumer reads its records through: the payload (KPL
//! de-aggregation, decompression, the format's parser) becomes the values
//! of each good document, or a dead letter naming the record and why.

use std::borrow::Cow;

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::stream::dead_letter::{DeadLetter, Origin, Rejection, Scope};
use crate::stream::document::Value;
use crate::stream::format::PayloadDecoder;
use crate::stream::kpl;

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
    let origin = Origin {
        stream: &rec.stream,
        shard: &rec.shard,
        sequence_number: &rec.position,
        arrival: rec.arrival,
        kafka: rec.kafka,
    };
    let mut reject = |r: Rejection<'_>| dead_letters.push(DeadLetter::rejected(&origin, r));
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
