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

use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;
use aws_lambda_events::event::kinesis::KinesisEventRecord;
use chrono::{DateTime, Utc};

use crate::columns::Columns;
use crate::dead_letter::{DeadLetter, Scope};
use crate::decode::{decompress, DecodeError};
use crate::partition::{stream_name, IngestHour};
use crate::record::{parse_document, RecordError, Value};
use crate::schema::Schema;

/// The shard id of a record whose event carries none.
const UNKNOWN_SHARD: &str = "unknown-shard";

/// One stretch of consecutive records of one shard in one arrival hour.
#[derive(Debug)]
pub struct Run {
    /// The arrival hour of every record of the run.
    pub hour: IngestHour,
    /// The stream name.
    pub stream: String,
    /// The shard id.
    pub shard: String,
    /// The sequence number of the run's first record: the object keys' stem,
    /// and what is reported when the run cannot be written.
    pub first_sequence: String,
    /// The sequence number of the run's last record.
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

/// Splits a batch into runs, parsing and validating every payload.
pub fn split_into_runs(
    records: &[KinesisEventRecord],
    schema: &Schema,
    arrow_schema: &Arc<ArrowSchema>,
    max_payload_bytes: usize,
) -> (Vec<Run>, BatchCounts) {
    let mut runs: Vec<Run> = Vec::new();
    let mut counts = BatchCounts {
        records: records.len(),
        ..Default::default()
    };
    for rec in records {
        let k = &rec.kinesis;
        let arrival: DateTime<Utc> = *k.approximate_arrival_timestamp;
        let hour = IngestHour::of(arrival);
        let shard = shard_id(rec);
        let stream = stream_name(rec.event_source_arn.as_deref().unwrap_or("unknown-stream"));
        let same_run = runs
            .last()
            .is_some_and(|r| r.hour == hour && r.shard == shard && r.stream == stream);
        if !same_run {
            runs.push(Run {
                hour,
                stream: stream.to_string(),
                shard: shard.to_string(),
                first_sequence: k.sequence_number.clone(),
                last_sequence: k.sequence_number.clone(),
                records: 0,
                good: Columns::new(schema, Arc::clone(arrow_schema)),
                dead_letters: Vec::new(),
            });
        }
        let Some(run) = runs.last_mut() else { continue };
        run.records += 1;
        run.last_sequence.clone_from(&k.sequence_number);

        let Run {
            good, dead_letters, ..
        } = run;
        let mut reject =
            |index: usize, reason: &str, detail: String, scope: Scope, bytes: &[u8]| {
                dead_letters.push(DeadLetter::new(
                    stream,
                    shard,
                    &k.sequence_number,
                    index,
                    arrival,
                    reason,
                    detail,
                    scope,
                    bytes,
                ));
            };
        decode_payload(
            &k.data,
            schema,
            max_payload_bytes,
            |outcome| match outcome {
                Ok(values) => good.push(&values),
                Err(r) => reject(r.index, r.reason, r.detail, r.scope, r.bytes),
            },
        );
    }
    counts.good = runs.iter().map(|r| r.good.len()).sum();
    counts.bad = runs.iter().map(|r| r.dead_letters.len()).sum();
    (runs, counts)
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
}

/// Decompresses a record's payload, splits it into documents and parses each
/// against the schema, calling `on_document` once per document with its
/// values or the reason it is bad (once, for the payload, when the payload
/// as a whole cannot be read). Every stream consumer validates through here,
/// so a record is good or bad for the same reason everywhere.
pub fn decode_payload<F>(data: &[u8], schema: &Schema, max_payload_bytes: usize, mut on_document: F)
where
    F: for<'b> FnMut(Result<Vec<Value<'b>>, Rejection<'b>>),
{
    let payload = |reason: &'static str, detail: String| Rejection {
        index: 0,
        reason,
        detail,
        scope: Scope::Payload,
        bytes: data,
    };
    let bytes = match decompress(data, max_payload_bytes) {
        Ok(bytes) => bytes,
        Err(e) => {
            let reason = match e {
                DecodeError::TooLarge { .. } => "payload_too_large",
                DecodeError::Corrupt { .. } => "decompression_failed",
            };
            on_document(Err(payload(reason, e.to_string())));
            return;
        }
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) if text.trim().is_empty() => {
            let e = RecordError::Empty;
            on_document(Err(payload(e.kind(), e.to_string())));
            return;
        }
        Ok(text) => text,
        Err(e) => {
            let e = RecordError::InvalidUtf8 {
                offset: e.valid_up_to(),
            };
            on_document(Err(payload(e.kind(), e.to_string())));
            return;
        }
    };
    for_each_document(text, |index, doc| match parse_document(schema, doc) {
        Ok(values) => on_document(Ok(values)),
        Err(e) => on_document(Err(Rejection {
            index,
            reason: e.kind(),
            detail: e.to_string(),
            scope: Scope::Document,
            bytes: doc.as_bytes(),
        })),
    });
}

/// The shard of a record: the part of `eventID` before the colon
/// (`shardId-000000000000:4954...`).
pub fn shard_id(rec: &KinesisEventRecord) -> &str {
    rec.event_id
        .as_deref()
        .and_then(|id| id.split(':').next())
        .filter(|s| !s.is_empty())
        .unwrap_or(UNKNOWN_SHARD)
}

/// Calls `f` for each JSON document of a payload: the whole payload when it
/// is one document (even pretty-printed over several lines), otherwise each
/// non-blank line (newline-delimited JSON).
fn for_each_document<'a>(text: &'a str, mut f: impl FnMut(usize, &'a str)) {
    let trimmed = text.trim();
    if !trimmed.contains('\n') || is_single_document(trimmed) {
        f(0, trimmed);
        return;
    }
    let lines = trimmed.split('\n').map(str::trim).filter(|l| !l.is_empty());
    for (i, line) in lines.enumerate() {
        f(i, line);
    }
}

/// True when the whole text is exactly one JSON value.
fn is_single_document(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_on_newlines_unless_the_payload_is_one_document() {
        let mut seen = Vec::new();
        for_each_document("{\"a\":1}\n\n {\"a\":2}\r\n", |i, d| {
            seen.push((i, d.to_string()))
        });
        assert_eq!(
            seen,
            vec![(0, "{\"a\":1}".to_string()), (1, "{\"a\":2}".to_string())]
        );

        let mut seen = Vec::new();
        for_each_document("{\n  \"a\": 1\n}\n", |i, d| seen.push((i, d.to_string())));
        assert_eq!(seen.len(), 1);
    }
}
