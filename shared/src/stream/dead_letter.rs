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

/// Which bytes a dead letter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole record payload as it arrived on the stream.
    Payload,
    /// One document of the payload, after decompression.
    Document,
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
    /// A dead letter for `bytes`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: &str,
        shard: &str,
        sequence_number: &str,
        document_index: usize,
        arrival: DateTime<Utc>,
        reason: &str,
        detail: String,
        scope: Scope,
        bytes: &[u8],
    ) -> Self {
        DeadLetter {
            stream: stream.to_string(),
            shard: shard.to_string(),
            sequence_number: sequence_number.to_string(),
            sub_sequence_number: None,
            partition: None,
            offset: None,
            document_index,
            arrival_time: arrival.to_rfc3339_opts(SecondsFormat::Millis, true),
            reason: reason.to_string(),
            detail,
            scope,
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
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
        let l = DeadLetter::new(
            "s",
            "shardId-1",
            "12",
            3,
            t,
            "invalid_json",
            "bad".into(),
            Scope::Document,
            b"\xff{",
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
