//! Bad records, kept with the reason so they can be inspected and replayed.
//!
//! Dead letters are JSON lines under their own prefix, partitioned like the
//! lake. Each line carries where the record came from and its bytes
//! (base64): the raw payload when the payload as a whole could not be read
//! (decompression, size, UTF-8), or the one rejected document of a payload
//! that held several.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::stream::document::{Document, DocumentError};

/// What a payload gives for each of its documents: the document, or why it
/// is a bad record.
pub type DocumentOutcome<'b> = Result<Document<'b>, Rejection<'b>>;

/// Which bytes a dead letter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole record payload as it arrived on the stream.
    Payload,
    /// One document of the payload, after decompression.
    Document,
}

/// Why one document (or the whole payload) of a record is a bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection<'b> {
    /// The document's position in the payload (0 for the whole payload).
    pub index: usize,
    /// The machine-readable reason (`invalid_json`, `payload_too_large`, ...).
    pub reason: &'static str,
    /// The reason in words.
    pub detail: String,
    /// Whether `bytes` is the whole payload or one document.
    pub scope: Scope,
    /// The rejected bytes.
    pub bytes: &'b [u8],
    /// The user record's index in a KPL aggregated record, if it was one.
    pub sub_sequence_number: Option<u64>,
}

impl<'b> Rejection<'b> {
    pub(crate) fn document(index: usize, e: &DocumentError, bytes: &'b [u8]) -> Self {
        Rejection {
            index,
            reason: e.kind(),
            detail: e.to_string(),
            scope: Scope::Document,
            bytes,
            sub_sequence_number: None,
        }
    }
}

/// Where a rejected record came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The stream name, or the Kafka topic.
    pub stream: &'a str,
    /// The shard id, or the Kafka partition number.
    pub shard: &'a str,
    /// The sequence number, or the Kafka offset.
    pub sequence_number: &'a str,
    /// When the record reached the stream.
    pub arrival: DateTime<Utc>,
    /// The Kafka partition and offset, for a record read from Kafka.
    pub kafka: Option<(i64, i64)>,
}

/// One bad record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The stream the record came from.
    pub stream: String,
    /// The shard id.
    pub shard: String,
    /// The Kinesis sequence number, as a decimal string.
    pub sequence_number: String,
    /// The user record's position in a KPL aggregated record (its
    /// sub-sequence number), absent for a record that was not aggregated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_sequence_number: Option<u64>,
    /// The Kafka partition, for a record read from Kafka (`stream` is then
    /// the topic and `sequence_number` the offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i64>,
    /// The Kafka offset, for a record read from Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The document's position in a multi-document payload (0 for the first).
    pub document_index: usize,
    /// The record's arrival time on the stream, RFC 3339 UTC.
    pub arrival_time: String,
    /// The machine-readable reason (`invalid_json`, `missing_field`, ...).
    pub reason: String,
    /// The reason in words, naming the field and value at fault.
    pub detail: String,
    /// Which bytes `data` holds.
    pub scope: Scope,
    /// The rejected bytes, base64.
    pub data: String,
}

impl DeadLetter {
    /// The dead letter of a record from `origin`, rejected for `why`.
    pub fn rejected(origin: &Origin<'_>, why: Rejection<'_>) -> Self {
        DeadLetter {
            stream: origin.stream.to_string(),
            shard: origin.shard.to_string(),
            sequence_number: origin.sequence_number.to_string(),
            sub_sequence_number: why.sub_sequence_number,
            partition: origin.kafka.map(|(partition, _)| partition),
            offset: origin.kafka.map(|(_, offset)| offset),
            document_index: why.index,
            arrival_time: origin.arrival.to_rfc3339_opts(SecondsFormat::Millis, true),
            reason: why.reason.to_string(),
            detail: why.detail,
            scope: why.scope,
            data: base64::engine::general_purpose::STANDARD.encode(why.bytes),
        }
    }

    /// The rejected bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.data)
    }
}

/// Serialises dead letters as JSON lines.
pub fn to_json_lines(letters: &[DeadLetter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(letters.len() * 256);
    for l in letters {
        // A struct of strings and integers always serialises.
        if serde_json::to_writer(&mut out, l).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn json_lines_round_trip_with_the_original_bytes() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let origin = Origin {
            stream: "s",
            shard: "shardId-1",
            sequence_number: "12",
            arrival: t,
            kafka: None,
        };
        let l = DeadLetter::rejected(
            &origin,
            Rejection {
                index: 3,
                reason: "invalid_json",
                detail: "bad".into(),
                scope: Scope::Document,
                bytes: b"\xff{",
                sub_sequence_number: None,
            },
        );
        let text = to_json_lines(&[l.clone(), l.clone()]);
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|x| !x.is_empty())
            .collect();
        assert_eq!(lines.len(), 2);
        let back: DeadLetter = serde_json::from_slice(lines[0]).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.bytes().unwrap(), b"\xff{");
        assert_eq!(back.arrival_time, "2026-11-22T10:00:00.000Z");
    }
}
