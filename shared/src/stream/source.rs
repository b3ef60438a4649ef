//! One stream record, whatever its source, and the one decode path every
//! stream consumer reads its records through: the payload (KPL
//! de-aggregation, decompression, the format's parser) becomes the values
//! of each good document, or a dead letter naming the record and why.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use crate::stream::dead_letter::{DeadLetter, DocumentOutcome, Origin, Rejection, Scope};
use crate::stream::document::{Document, Value};
use crate::stream::format::{DecodeBudget, PayloadDecoder};
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

impl SourceRecord<'_> {
    /// Where the record sits, as its dead letters name it.
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            stream: &self.stream,
            shard: &self.shard,
            sequence_number: &self.position,
            arrival: self.arrival,
            kafka: self.kafka,
        }
    }

    /// The record's bytes as the event carried them (decoded from base64
    /// when that worked).
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Ok(data) => data,
            Err(unreadable) => unreadable.raw,
        }
    }
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

/// Why a consumer refuses a document the schema accepts: a value its
/// store cannot hold (device-status's numbers and keys for DynamoDB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The dead-letter reason.
    pub reason: &'static str,
    pub detail: String,
}

/// Decodes one stream record: `on_good` gets the values of each good
/// document and may refuse it, and every bad or refused one (or a payload
/// whose base64 did not decode) becomes a dead letter naming the record and
/// the document. Both stream functions read their records through here.
pub fn decode_record<F>(
    rec: &SourceRecord<'_>,
    decoder: &PayloadDecoder,
    budget: &mut DecodeBudget,
    dead_letters: &mut Vec<DeadLetter>,
    mut on_good: F,
) where
    F: for<'b> FnMut(&Document<'b>) -> Result<(), Refusal>,
{
    let origin = rec.origin();
    let mut reject = |r: Rejection<'_>| dead_letters.push(DeadLetter::rejected(&origin, r));
    match &rec.data {
        Ok(data) => decode_payload(data, decoder, budget, |outcome| match outcome {
            Ok(doc) => {
                if let Err(refusal) = on_good(&doc) {
                    // A document that cannot be cut out of its payload (a
                    // record of a compressed container block) is kept as
                    // the JSON of its values.
                    let shown;
                    let bytes = if doc.bytes.is_empty() {
                        shown = values_json(decoder.schema(), &doc.values);
                        shown.as_bytes()
                    } else {
                        doc.bytes
                    };
                    reject(Rejection {
                        index: doc.index,
                        reason: refusal.reason,
                        detail: refusal.detail,
                        scope: Scope::Document,
                        bytes,
                        sub_sequence_number: doc.sub_sequence_number,
                    })
                }
            }
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

/// A document's values as a JSON object of the declared fields, timestamps
/// as RFC 3339 in UTC.
fn values_json(schema: &crate::config::schema::Schema, values: &[Value<'_>]) -> String {
    use serde_json::Value as Json;
    let object: serde_json::Map<String, Json> = schema
        .fields
        .iter()
        .zip(values)
        .map(|(field, value)| {
            let json = match value {
                Value::Null => Json::Null,
                Value::Int64(v) => Json::from(*v),
                Value::Float64(v) => Json::from(*v),
                Value::Boolean(v) => Json::from(*v),
                Value::String(v) => Json::from(v.as_ref()),
                Value::Timestamp(micros) => DateTime::<Utc>::from_timestamp_micros(*micros)
                    .map_or(Json::from(*micros), |t| Json::from(t.to_rfc3339())),
            };
            (field.name.clone(), json)
        })
        .collect();
    Json::Object(object).to_string()
}

/// Decodes a record's payload through the stream's format, calling
/// `on_document` once per document with its values or the reason it is bad.
/// A KPL aggregated record is split into its user records first, each
/// decoded on its own (their rejections carry their sub-sequence number); an
/// aggregate that fails its MD5 check or cannot be read is one rejection of
/// the whole payload. Every stream consumer decodes through here, so a
/// record is good or bad for the same reason everywhere.
pub fn decode_payload<F>(
    data: &[u8],
    decoder: &PayloadDecoder,
    budget: &mut DecodeBudget,
    mut on_document: F,
) where
    F: for<'b> FnMut(DocumentOutcome<'b>),
{
    if !kpl::is_aggregated(data) {
        decoder.decode_within(data, budget, on_document);
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
                decoder.decode_within(&user.data, budget, |outcome| {
                    on_document(match outcome {
                        Ok(doc) => Ok(Document {
                            sub_sequence_number: Some(sub),
                            ..doc
                        }),
                        Err(r) => Err(Rejection {
                            sub_sequence_number: Some(sub),
                            ..r
                        }),
                    })
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::event::{kafka_records, KafkaBatch, StreamEvent};
    use serde_json::json;

    fn batch(records: serde_json::Value) -> KafkaBatch {
        let event = json!({"eventSource": "aws:kafka", "records": records});
        match StreamEvent::from_body(event.to_string().as_bytes()) {
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
    fn user_records_past_the_invocations_decode_budget_are_dead_letters_not_memory() {
        use crate::config::schema::Schema;
        use crate::stream::format::Format;
        use std::io::Write;
        // Twenty user records, each a gzip'd document of 1,000,000 bytes
        // (about 1 KB on the wire), against a budget of three of them.
        let doc = format!("{{\"a\":1,\"pad\":\"{}\"}}", "x".repeat(999_980));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(doc.as_bytes()).unwrap();
        let packed = gz.finish().unwrap();
        let aggregate = kpl::frame(&kpl::AggregatedRecord {
            partition_key_table: vec!["pk".into()],
            explicit_hash_key_table: Vec::new(),
            records: (0..20)
                .map(|_| kpl::UserRecord {
                    partition_key_index: 0,
                    explicit_hash_key_index: None,
                    data: packed.clone(),
                    tags: Vec::new(),
                })
                .collect(),
        });
        assert!(aggregate.len() < 100_000, "{}", aggregate.len());
        let decoder = PayloadDecoder::new(Format::Json, Schema::parse("a:int64").unwrap(), 1 << 20)
            .with_invocation_budget(3_000_000);
        let mut budget = decoder.budget();
        let mut seen = Vec::new();
        decode_payload(&aggregate, &decoder, &mut budget, |r| {
            seen.push(
                r.map(|d| d.values.len())
                    .map_err(|r| (r.reason, r.detail, r.sub_sequence_number)),
            )
        });
        assert_eq!(seen.len(), 20);
        assert!(seen[..3].iter().all(|r| r == &Ok(1)), "{:?}", &seen[..3]);
        for (sub, r) in (3..).zip(&seen[3..]) {
            let (reason, detail, at) = r.clone().unwrap_err();
            assert_eq!((reason, at), ("payload_too_large", Some(sub)));
            assert!(
                detail.contains("decode budget of 3000000 bytes"),
                "{detail}"
            );
        }
        assert!(budget.left() < 1_000_000);
        // The next invocation starts with the whole budget again.
        assert_eq!(decoder.budget().left(), 3_000_000);
    }

    #[test]
    fn an_aggregate_of_no_user_records_is_one_rejection_not_nothing() {
        use crate::config::schema::Schema;
        use crate::stream::format::Format;
        let decoder = PayloadDecoder::new(Format::Json, Schema::parse("a:int64").unwrap(), 1024);
        let empty = kpl::frame(&kpl::AggregatedRecord::default());
        let mut seen = Vec::new();
        decode_payload(&empty, &decoder, &mut decoder.budget(), |r| {
            seen.push(
                r.map(|d| d.values.len())
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
