//! The event a stream function receives, read straight from the invocation's
//! JSON: a Kinesis batch or an MSK / self-managed Kafka batch.
//!
//! Reading a Kinesis event through `aws_lambda_events`' model allocates about
//! ten strings and two buffers per record, most of them for fields nobody
//! reads, and going through `serde_json::Value` first doubles that. The
//! visitor here keeps only what the functions use (stream, shard, sequence
//! number, arrival time, payload) and stores it back to back in a few
//! buffers shared by the whole batch: a 10,000-record event costs a handful
//! of allocations instead of 100,000.
//!
//! The event is read from the invocation's body ([`StreamEvent::from_body`],
//! which `stream::runtime` hands it to) with sonic-rs, the payloads decoded
//! with base64-simd: about twice as fast on a Kinesis event as the runtime's
//! `serde_json` behind `serde_path_to_error` (BENCHMARKS.md).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use aws_lambda_events::event::streams::KinesisEventResponse;
use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::lake::keys::stream_name;
use crate::stream::source::{SourceRecord, Unreadable};
use base64::Engine;

/// The shard of a record whose event carries none.
const UNKNOWN_SHARD: &str = "unknown-shard";
/// The stream of a record whose event carries no ARN.
const UNKNOWN_STREAM_ARN: &str = "unknown-stream";

/// The event a stream function receives: a Kinesis batch, or an MSK /
/// self-managed Kafka batch (`records` by topic-partition).
#[derive(Debug)]
pub enum StreamEvent {
    Kinesis(KinesisBatch),
    Kafka(KafkaBatch),
}

/// A Kafka batch (MSK or self-managed) as Lambda delivers it: the fields the
/// functions read.
#[derive(Debug, Default)]
pub struct KafkaBatch {
    pub event_source: Option<String>,
    pub event_source_arn: Option<String>,
    pub bootstrap_servers: Option<String>,
    /// The records by topic-partition (`"topic-0"`).
    pub records: HashMap<String, Vec<KafkaRecord>>,
}

/// One Kafka record of a batch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRecord {
    #[serde(default)]
    pub topic: Option<String>,
    pub partition: i64,
    pub offset: i64,
    /// Milliseconds since the epoch as the producer or the broker set it
    /// (`-1` when there is none). It is kept as it came: the producer
    /// chooses it, so a bad one must be that record's dead letter, not a
    /// failure to read the whole event.
    #[serde(default)]
    pub timestamp: Option<serde_json::Value>,
    /// The value, base64-encoded.
    #[serde(default)]
    pub value: Option<String>,
}

impl StreamEvent {
    /// Reads an event from an invocation's body.
    pub fn from_body(body: &[u8]) -> Result<Self, String> {
        let text = crate::stream::document::utf8(body)
            .map_err(|at| format!("the body is not UTF-8 (first bad byte at offset {at})"))?;
        Self::from_json(text).map_err(|e| sonic_message(&e))
    }

    /// Reads an event from its JSON text.
    fn from_json(text: &str) -> Result<Self, sonic_rs::Error> {
        let mut de = sonic_rs::Deserializer::from_str(text);
        // Every payload byte is in the text as base64 (4 characters per 3
        // bytes): reserving that much up front means the payload buffer is
        // never copied to grow.
        let event = (&mut de).deserialize_map(EventVisitor {
            payload_capacity: text.len() / 4 * 3,
        })?;
        de.end()?;
        Ok(event)
    }
}

/// A stream function's answer to one event, and what the invocation did.
///
/// Lambda reads the serialised form: for a Kinesis batch the batch item
/// failures (`ReportBatchItemFailures`: the sequence number the shard
/// resumes from, if any), for a Kafka batch `{}`. The summary is what the
/// invocation logged; it is not sent.
#[derive(Debug)]
pub struct Handled<S> {
    /// What the invocation did.
    pub summary: S,
    /// The batch item failures of a Kinesis batch (empty for Kafka).
    pub response: KinesisEventResponse,
    kafka: bool,
}

impl<S> Handled<S> {
    /// The answer to a Kinesis batch: resume from `retry_from`, if any.
    pub fn kinesis(summary: S, retry_from: Option<&str>) -> Self {
        let mut response = KinesisEventResponse::default();
        if let Some(seq) = retry_from {
            response.add_failure(seq.to_string());
        }
        Handled {
            summary,
            response,
            kafka: false,
        }
    }

    /// The answer to a Kafka batch written in full.
    pub fn kafka(summary: S) -> Self {
        Handled {
            summary,
            response: KinesisEventResponse::default(),
            kafka: true,
        }
    }
}

impl<S> Serialize for Handled<S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        if self.kafka {
            s.serialize_map(Some(0))?.end()
        } else {
            self.response.serialize(s)
        }
    }
}

/// The records of a Kinesis batch, with only the fields the stream functions
/// read.
#[derive(Debug, Default)]
pub struct KinesisBatch {
    records: Vec<KinesisEntry>,
    /// Every record's decoded payload, back to back.
    data: Vec<u8>,
    /// Every record's sequence number, back to back.
    sequences: String,
    /// The distinct stream names (from the ARNs) and shard ids of the batch
    /// (one of each, nearly always), referred to by index.
    names: Vec<String>,
}

/// One record of the batch: 36 bytes instead of the 64 that `usize`
/// indices and ranges take, since an event is never near 4 GiB.
#[derive(Debug)]
struct KinesisEntry {
    stream: u32,
    shard: u32,
    sequence: Span,
    data: Span,
    arrival: DateTime<Utc>,
}

/// A range of one of the batch's buffers.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `range`, or an error when it is past 4 GiB (no Lambda
    /// event is).
    fn of<E: de::Error>(range: Range<usize>) -> Result<Span, E> {
        match (u32::try_from(range.start), u32::try_from(range.end)) {
            (Ok(start), Ok(end)) => Ok(Span { start, end }),
            _ => Err(E::custom("the event is larger than 4 GiB")),
        }
    }

    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl KinesisBatch {
    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The batch's records, in order, borrowing from the batch.
    pub fn records(&self) -> impl Iterator<Item = SourceRecord<'_>> {
        self.records.iter().map(|r| SourceRecord {
            stream: Cow::Borrowed(&self.names[r.stream as usize]),
            shard: Cow::Borrowed(&self.names[r.shard as usize]),
            position: Cow::Borrowed(&self.sequences[r.sequence.range()]),
            arrival: r.arrival,
            data: Ok(Cow::Borrowed(&self.data[r.data.range()])),
            kafka: None,
        })
    }

    /// The index of `name` in `names`, added when new.
    fn intern(&mut self, name: &str) -> u32 {
        let i = match self.names.iter().rposition(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        };
        // One name per distinct ARN or shard of a record: far fewer than
        // the records, which are far fewer than 2^32.
        i as u32
    }
}

/// sonic-rs's message without the excerpt of the input it appends (the
/// excerpt of a large event is noise, and may carry record data).
fn sonic_message(e: &sonic_rs::Error) -> String {
    let full = e.to_string();
    full.split("\n\n").next().unwrap_or_default().to_string()
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
/// record before it in the same topic-partition, else after it: one pass
/// forwards, one backwards over the sorted records.
fn borrow_neighbour_arrivals(records: &mut [(SourceRecord<'_>, bool)]) {
    let same_partition = |records: &[(SourceRecord<'_>, bool)], a: usize, b: usize| {
        records[a].0.stream == records[b].0.stream && records[a].0.shard == records[b].0.shard
    };
    let mut placed: Vec<bool> = records.iter().map(|(_, timed)| *timed).collect();
    let mut before = None;
    for i in 0..records.len() {
        if records[i].1 {
            before = Some(i);
        } else if let Some(j) = before.filter(|&j| same_partition(records, j, i)) {
            records[i].0.arrival = records[j].0.arrival;
            placed[i] = true;
        }
    }
    let mut after = None;
    for i in (0..records.len()).rev() {
        if records[i].1 {
            after = Some(i);
        } else if let Some(j) = after.filter(|&j| !placed[i] && same_partition(records, j, i)) {
            records[i].0.arrival = records[j].0.arrival;
        }
    }
}

struct EventVisitor {
    /// An upper bound of the batch's payload bytes.
    payload_capacity: usize,
}

impl<'de> Visitor<'de> for EventVisitor {
    type Value = StreamEvent;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kinesis event (`Records`) or a Kafka event (`records`)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StreamEvent, A::Error> {
        let mut batch: Option<KinesisBatch> = None;
        let mut kafka = KafkaBatch::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_deref().unwrap_or_default() {
                "Records" => {
                    let mut b = KinesisBatch::default();
                    b.data.reserve(self.payload_capacity);
                    map.next_value_seed(RecordsSeed(&mut b))?;
                    batch = Some(b);
                }
                "eventSource" => kafka.event_source = map.next_value()?,
                "eventSourceArn" => kafka.event_source_arn = map.next_value()?,
                "bootstrapServers" => kafka.bootstrap_servers = map.next_value()?,
                // Lambda's Kafka event: null counts as no records, as in
                // `aws_lambda_events`.
                "records" => {
                    kafka.records = map
                        .next_value::<Option<HashMap<String, Vec<KafkaRecord>>>>()
                        .map_err(|e| de::Error::custom(format!("not a valid Kafka event: {e}")))?
                        .unwrap_or_default();
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let source = kafka.event_source.as_deref().unwrap_or_default();
        if source == "aws:kafka" || source == "SelfManagedKafka" {
            return Ok(StreamEvent::Kafka(kafka));
        }
        batch.map(StreamEvent::Kinesis).ok_or_else(|| {
            de::Error::custom(format!(
                "neither a Kinesis event nor a Kafka event (eventSource {source:?}): missing field `Records`"
            ))
        })
    }
}

/// `Records`: the array of Kinesis records.
struct RecordsSeed<'b>(&'b mut KinesisBatch);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of Kinesis records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.0.records.reserve(n);
        }
        // sonic-rs keeps no path: the error names the record and the field.
        for i in 0.. {
            let read = seq
                .next_element_seed(RecordSeed(&mut *self.0))
                .map_err(|e| de::Error::custom(format_args!("Records[{i}]: {e}")))?;
            if read.is_none() {
                break;
            }
        }
        Ok(())
    }
}

/// One element of `Records`: `eventSourceARN`, `eventID` and `kinesis`.
struct RecordSeed<'b>(&'b mut KinesisBatch);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kinesis record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let batch = self.0;
        let mut stream = None;
        let mut shard = None;
        let mut kinesis = None;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_deref().unwrap_or_default() {
                "eventSourceARN" => {
                    let arn = map.next_value::<Text<'de>>()?.0;
                    let arn = arn.as_deref().unwrap_or(UNKNOWN_STREAM_ARN);
                    stream = Some(batch.intern(stream_name(arn)));
                }
                // The shard is the part of `eventID` before the colon
                // (`shardId-000000000000:4954...`).
                "eventID" => {
                    let id = map.next_value::<Text<'de>>()?.0;
                    let name = id
                        .as_deref()
                        .map(|id| id.split_once(':').map_or(id, |(shard, _)| shard))
                        .filter(|s| !s.is_empty())
                        .unwrap_or(UNKNOWN_SHARD);
                    shard = Some(batch.intern(name));
                }
                "kinesis" => kinesis = Some(map.next_value_seed(KinesisSeed(&mut *batch))?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (sequence, data, arrival) =
            kinesis.ok_or_else(|| de::Error::missing_field("kinesis"))?;
        let entry = KinesisEntry {
            stream: stream.unwrap_or_else(|| batch.intern(stream_name(UNKNOWN_STREAM_ARN))),
            shard: shard.unwrap_or_else(|| batch.intern(UNKNOWN_SHARD)),
            sequence: Span::of(sequence)?,
            data: Span::of(data)?,
            arrival,
        };
        batch.records.push(entry);
        Ok(())
    }
}

/// A record's `kinesis` object: the payload is base64-decoded straight onto
/// the end of the batch's buffer.
struct KinesisSeed<'b>(&'b mut KinesisBatch);

type KinesisFields = (Range<usize>, Range<usize>, DateTime<Utc>);

impl<'de> DeserializeSeed<'de> for KinesisSeed<'_> {
    type Value = KinesisFields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KinesisFields, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KinesisSeed<'_> {
    type Value = KinesisFields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the `kinesis` object of a Kinesis record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KinesisFields, A::Error> {
        let batch = self.0;
        let mut sequence = None;
        let mut data = None;
        let mut arrival = None;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_deref().unwrap_or_default() {
                "approximateArrivalTimestamp" => {
                    let at = map.next_value::<ArrivalSeconds>().map_err(|e| {
                        de::Error::custom(format_args!("kinesis.approximateArrivalTimestamp: {e}"))
                    })?;
                    arrival = Some(at.0);
                }
                "data" => {
                    let text = map.next_value::<Text<'de>>()?.0.ok_or_else(|| {
                        de::Error::invalid_type(de::Unexpected::Unit, &"a base64 string")
                    })?;
                    let start = batch.data.len();
                    // Appends in place; only grows the buffer when the
                    // reservation in `EventVisitor` fell short.
                    if batch.data.capacity() - start < text.len() {
                        batch.data.reserve(text.len().max(start));
                    }
                    base64_simd::STANDARD
                        .decode_append(text.as_bytes(), &mut batch.data)
                        .map_err(|_| de::Error::custom("`data` is not valid base64"))?;
                    data = Some(start..batch.data.len());
                }
                "sequenceNumber" => {
                    let seq = map.next_value::<Text<'de>>()?.0;
                    let start = batch.sequences.len();
                    batch.sequences.push_str(seq.as_deref().unwrap_or_default());
                    sequence = Some(start..batch.sequences.len());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let arrival =
            arrival.ok_or_else(|| de::Error::missing_field("approximateArrivalTimestamp"))?;
        let data = data.ok_or_else(|| de::Error::missing_field("data"))?;
        let at = batch.sequences.len();
        Ok((sequence.unwrap_or(at..at), data, arrival))
    }
}

/// `approximateArrivalTimestamp`: seconds since the epoch with a fraction
/// (`1545084650.987`; a string of one is taken too), kept to the
/// microsecond. `aws_lambda_events`' `SecondTimestamp` prints the number
/// back to text and reads the digits after the point as milliseconds, so
/// `1545084650.12` came out 12 ms past the second instead of 120, and that
/// round trip cost a quarter of the time spent reading a Kinesis event.
struct ArrivalSeconds(DateTime<Utc>);

impl<'de> Deserialize<'de> for ArrivalSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ArrivalVisitor)
    }
}

struct ArrivalVisitor;

impl ArrivalVisitor {
    fn at<E: de::Error>(
        self,
        seconds: f64,
        shown: de::Unexpected<'_>,
    ) -> Result<ArrivalSeconds, E> {
        // Microseconds since the epoch fit a double exactly until the year
        // 2255, so rounding the product recovers what the sender wrote.
        Some(seconds * 1e6)
            .filter(|micros| micros.is_finite() && *micros >= 0.0)
            .and_then(|micros| DateTime::from_timestamp_micros(micros.round() as i64))
            .map(ArrivalSeconds)
            .ok_or_else(|| E::invalid_value(shown, &self))
    }
}

impl<'de> Visitor<'de> for ArrivalVisitor {
    type Value = ArrivalSeconds;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("seconds since the epoch")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ArrivalSeconds, E> {
        self.at(v, de::Unexpected::Float(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ArrivalSeconds, E> {
        self.at(v as f64, de::Unexpected::Unsigned(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ArrivalSeconds, E> {
        self.at(v as f64, de::Unexpected::Signed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ArrivalSeconds, E> {
        let seconds = v.trim().parse::<f64>().unwrap_or(f64::NAN);
        self.at(seconds, de::Unexpected::Str(v))
    }
}

/// A string or null, borrowed from the event's text when it has no escapes:
/// `Cow<str>`'s own `Deserialize` always allocates.
struct Text<'de>(Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Some(Cow::Borrowed(s))))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
        Ok(Text(Some(Cow::Owned(s.to_string()))))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Text<'de>, E> {
        Ok(Text(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Text<'de>, E> {
        Ok(Text(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_of_the_batch_index_takes_36_bytes() {
        // The index lives for the whole invocation: every byte more per
        // record is 10 KB more of a 10,000-record invocation's peak.
        assert_eq!(std::mem::size_of::<KinesisEntry>(), 36);
    }

    fn event() -> serde_json::Value {
        json!({"Records": [
            {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "1",
                "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "data": "eyJhIjoxfQ==", "approximateArrivalTimestamp": 1545084650.987},
             "eventSource": "aws:kinesis", "eventVersion": "1.0",
             "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
             "eventName": "aws:kinesis:record", "awsRegion": "us-east-2",
             "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"},
            {"kinesis": {"sequenceNumber": "2", "data": "",
                "approximateArrivalTimestamp": 1545084711.166},
             "eventID": null}
        ]})
    }

    fn owned(r: SourceRecord<'_>) -> (String, String, String, DateTime<Utc>, Vec<u8>) {
        let data = r.data.unwrap().into_owned();
        (
            r.stream.into(),
            r.shard.into(),
            r.position.into(),
            r.arrival,
            data,
        )
    }

    fn read(text: &[u8]) -> Result<StreamEvent, String> {
        StreamEvent::from_body(text)
    }

    fn read_value(event: serde_json::Value) -> Result<StreamEvent, String> {
        read(&serde_json::to_vec(&event).unwrap())
    }

    #[test]
    fn a_kinesis_batch_keeps_what_the_functions_read() {
        let Ok(StreamEvent::Kinesis(batch)) = read_value(event()) else {
            panic!("not read as Kinesis");
        };
        let records: Vec<_> = batch.records().map(owned).collect();
        let at = |s, ms: u32| DateTime::from_timestamp(s, ms * 1_000_000).unwrap();
        assert_eq!(
            records,
            vec![
                (
                    "lambda-stream".to_string(),
                    "shardId-000000000006".to_string(),
                    "49590338271490256608559692538361571095921575989136588898".to_string(),
                    at(1545084650, 987),
                    b"{\"a\":1}".to_vec(),
                ),
                (
                    stream_name(UNKNOWN_STREAM_ARN).to_string(),
                    UNKNOWN_SHARD.to_string(),
                    "2".to_string(),
                    at(1545084711, 166),
                    Vec::new(),
                ),
            ]
        );
    }

    #[test]
    fn the_runtime_path_names_errors() {
        let err = read(
            br#"{"Records": [{"kinesis": {"data": "e30=", "approximateArrivalTimestamp": "x"}}]}"#,
        )
        .unwrap_err();
        assert!(
            err.contains("Records[0]: kinesis.approximateArrivalTimestamp"),
            "{err}"
        );
        assert!(read(br#"{"Records": [}"#).is_err());
    }

    #[test]
    fn the_arrival_time_is_read_to_the_microsecond() {
        let arrival = |at: serde_json::Value| -> Result<DateTime<Utc>, String> {
            let event = json!({"Records": [{"kinesis": {"data": "",
                "approximateArrivalTimestamp": at}}]});
            match read_value(event)? {
                StreamEvent::Kinesis(b) => Ok(b.records().next().unwrap().arrival),
                StreamEvent::Kafka(_) => panic!("read as Kafka"),
            }
        };
        let micros = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        // 120 ms past the second, written as JSON writes it: the event
        // model's `SecondTimestamp` read it as 12 ms.
        assert_eq!(
            micros(arrival(json!(1545084650.12)).unwrap()),
            "2018-12-17T22:10:50.120000Z"
        );
        assert_eq!(
            micros(arrival(json!(1545084650.987)).unwrap()),
            "2018-12-17T22:10:50.987000Z"
        );
        assert_eq!(
            micros(arrival(json!(1545084650.000_001)).unwrap()),
            "2018-12-17T22:10:50.000001Z"
        );
        assert_eq!(
            micros(arrival(json!(1545084650)).unwrap()),
            "2018-12-17T22:10:50.000000Z"
        );
        assert_eq!(
            micros(arrival(json!("1545084650.5")).unwrap()),
            "2018-12-17T22:10:50.500000Z"
        );
        for bad in [json!(-1.0), json!("soon"), json!(1e300), json!(true)] {
            let err = arrival(bad.clone()).unwrap_err();
            assert!(
                err.contains("kinesis.approximateArrivalTimestamp"),
                "{bad}: {err}"
            );
            assert!(err.contains("seconds since the epoch"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_kafka_event_is_told_from_a_kinesis_event_by_its_source() {
        let kafka = json!({"eventSource": "aws:kafka", "bootstrapServers": "b-1:9092",
            "records": {"t-0": [{"topic": "t", "partition": 0, "offset": 3,
                "timestamp": 1591970759000_i64, "timestampType": "CREATE_TIME",
                "value": "e30=", "headers": []}]}});
        match read_value(kafka).unwrap() {
            StreamEvent::Kafka(e) => {
                assert_eq!(e.records["t-0"][0].offset, 3);
                assert_eq!(e.bootstrap_servers.as_deref(), Some("b-1:9092"));
            }
            other => panic!("read as {other:?}"),
        }
    }

    #[test]
    fn a_malformed_event_is_an_error_naming_what_is_wrong() {
        let err = read_value(json!({"eventSource": "aws:sqs"})).unwrap_err();
        assert!(err.contains("missing field `Records`"), "{err}");
        let err = read_value(
            json!({"Records": [{"kinesis": {"data": "%%%", "approximateArrivalTimestamp": 1.0}}]}),
        )
        .unwrap_err();
        assert!(err.contains("`data` is not valid base64"), "{err}");
        assert!(!err.contains("%%%"), "no excerpt of the input: {err}");
        let err = read_value(json!({"Records": [{"kinesis": {"data": ""}}]})).unwrap_err();
        assert!(err.contains("approximateArrivalTimestamp"), "{err}");
    }
}
