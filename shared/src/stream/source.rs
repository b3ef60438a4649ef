//! One stream record, whatever its source, and the one decode path every
//! stream consumer reads its records through: the payload (KPL
//! de-aggregation, decompression, the format's parser) becomes the values
//! of each good document, or a dead letter naming the record and why.

use std::borrow::Cow;

use base64::Engine;
use chrono::{DateTime, Utc};

use crate::stream::dead_letter::{DeadLetter, Origin, Rejection, Scope};
use crate::stream::document::Value;
use crate::stream::event::{KafkaBatch, KafkaRecord};
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
    /// The payload, or why the record cannot be read at all.
    pub data: Result<Cow<'e, [u8]>, Unreadable<'e>>,
    /// The Kafka partition and offset, for a Kafka record.
    pub kafka: Option<(i64, i64)>,
}

/// Why a record of the event cannot be read, whatever its payload holds: it
/// becomes one dead letter of the whole record.
#[derive(Debug, Clone)]
pub struct Unreadable<'e> {
    /// The dead-letter reason.
    pub reason: &'static str,
    pub detail: String,
    /// The record's bytes as the event carried them.
    pub raw: &'e [u8],
}

/// The records of a Kafka batch (MSK or self-managed), ordered by topic,
/// partition and offset. A record's arrival time is its Kafka timestamp; a
/// record whose timestamp is missing (`-1`), not a whole number of
/// milliseconds or out of range is unreadable (`invalid_kafka_timestamp`)
/// and takes its arrival from the nearest readable record before it in its
/// partition (else after it, else the epoch), so that its dead letter goes
/// with its neighbours, in the same place on every retry.
pub fn kafka_records(batch: &KafkaBatch) -> Vec<SourceRecord<'_>> {
    let mut records: Vec<(SourceRecord<'_>, bool)> = batch
        .records
        .values()
        .flatten()
        .map(|r| {
            let arrival = kafka_timestamp(r);
            let timed = arrival.is_ok();
            let data = match (&arrival, r.value.as_deref()) {
                (Err(detail), v) => Err(Unreadable {
                    reason: "invalid_kafka_timestamp",
                    detail: detail.clone(),
                    raw: v.unwrap_or_default().as_bytes(),
                }),
                (Ok(_), None) => Ok(Cow::Borrowed(&[][..])),
                (Ok(_), Some(v)) => base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(Cow::Owned)
                    .map_err(|e| Unreadable {
                        reason: "invalid_base64",
                        detail: format!("Kafka record value is not valid base64: {e}"),
                        raw: v.as_bytes(),
                    }),
            };
            let record = SourceRecord {
                stream: Cow::Borrowed(r.topic.as_deref().unwrap_or("unknown-topic")),
                shard: Cow::Owned(r.partition.to_string()),
                position: Cow::Owned(r.offset.to_string()),
                arrival: arrival.unwrap_or(DateTime::UNIX_EPOCH),
                data,
                kafka: Some((r.partition, r.offset)),
            };
            (record, timed)
        })
        .collect();
    records.sort_by(|(a, _), (b, _)| (&a.stream, a.kafka).cmp(&(&b.stream, b.kafka)));
    borrow_neighbour_arrivals(&mut records);
    records.into_iter().map(|(r, _)| r).collect()
}

/// A Kafka record's timestamp: whole milliseconds, not negative, in
/// chrono's range.
fn kafka_timestamp(r: &KafkaRecord) -> Result<DateTime<Utc>, String> {
    let at = r.timestamp.as_ref().and_then(serde_json::Value::as_i64);
    match at {
        Some(-1) => Err("the Kafka record has no timestamp (-1)".to_string()),
        Some(ms) if ms >= 0 => DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| format!("Kafka timestamp {ms} ms is out of range")),
        _ => Err(format!(
            "Kafka timestamp {} is not milliseconds since the epoch",
            r.timestamp
                .as_ref()
                .map_or_else(|| "(absent)".to_string(), |t| t.to_string())
        )),
    }
}

/// Gives each record without a timestamp the arrival of the nearest timed
/// record before it in the same topic-partition, else after it.
fn borrow_neighbour_arrivals(records: &mut [(SourceRecord<'_>, bool)]) {
    let same_partition =
        |a: &SourceRecord<'_>, b: &SourceRecord<'_>| a.stream == b.stream && a.shard == b.shard;
    for i in 0..records.len() {
        if records[i].1 {
            continue;
        }
        let before = (0..i).rev().find(|&j| records[j].1);
        let after = (i + 1..records.len()).find(|&j| records[j].1);
        let neighbour = before
            .filter(|&j| same_partition(&records[j].0, &records[i].0))
            .or(after.filter(|&j| same_partition(&records[j].0, &records[i].0)));
        if let Some(j) = neighbour {
            records[i].0.arrival = records[j].0.arrival;
        }
    }
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
        Err(unreadable) => reject(Rejection {
            index: 0,
            reason: unreadable.reason,
            detail: unreadable.detail.clone(),
            scope: Scope::Payload,
            bytes: unreadable.raw,
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
    use crate::stream::event::StreamEvent;
    use serde_json::json;

    fn batch(records: serde_json::Value) -> KafkaBatch {
        let event = json!({"eventSource": "aws:kafka", "records": records});
        match serde_json::from_str(&event.to_string()) {
            Ok(StreamEvent::Kafka(batch)) => batch,
            other => panic!("not a Kafka batch: {other:?}"),
        }
    }

    fn record(partition: i64, offset: i64, timestamp: serde_json::Value) -> serde_json::Value {
        json!({"topic": "t", "partition": partition, "offset": offset,
               "timestamp": timestamp, "value": "e30=", "headers": []})
    }

    #[test]
    fn a_bad_kafka_timestamp_makes_that_record_unreadable_in_its_neighbours_hour() {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap();
        let b = batch(json!({
            "t-0": [record(0, 1, json!(-1)), record(0, 2, json!(7_200_000)),
                    record(0, 3, json!(1.5)), record(0, 4, json!(3_600_000))],
            "t-1": [record(1, 1, json!("soon"))],
            "t-2": [record(2, 1, json!(8_700_000_000_000_000_i64)), record(2, 2, json!(0))],
        }));
        let records = kafka_records(&b);
        let got: Vec<_> = records
            .iter()
            .map(|r| {
                let reason = r.data.as_ref().err().map(|u| u.reason);
                (r.kafka.unwrap(), r.arrival, reason)
            })
            .collect();
        let bad = Some("invalid_kafka_timestamp");
        assert_eq!(
            got,
            vec![
                ((0, 1), at(7_200_000), bad),
                ((0, 2), at(7_200_000), None),
                ((0, 3), at(7_200_000), bad),
                ((0, 4), at(3_600_000), None),
                ((1, 1), DateTime::UNIX_EPOCH, bad),
                ((2, 1), at(0), bad),
                ((2, 2), at(0), None),
            ]
        );
        let detail = |i: usize| records[i].data.as_ref().unwrap_err().detail.clone();
        assert_eq!(detail(0), "the Kafka record has no timestamp (-1)");
        assert_eq!(
            detail(2),
            "Kafka timestamp 1.5 is not milliseconds since the epoch"
        );
        assert!(detail(5).contains("out of range"), "{}", detail(5));
    }

    #[test]
    fn an_aggregate_of_no_user_records_is_one_rejection_not_nothing() {
        use crate::config::schema::Schema;
        use crate::stream::format::Format;
        let decoder = PayloadDecoder::new(Format::Json, Schema::parse("a:int64").unwrap(), 1024);
        let empty = kpl::frame(&kpl::AggregatedRecord::default());
        let mut seen = Vec::new();
        decode_payload(&empty, &decoder, |r| {
            seen.push(
                r.map(|v| v.len())
                    .map_err(|r| (r.reason, r.detail, r.scope)),
            )
        });
        assert_eq!(
            seen,
            vec![Err((
                "kpl_invalid_aggregate",
                "KPL aggregated record holds no user records".to_string(),
                Scope::Payload
            ))]
        );
    }
}
