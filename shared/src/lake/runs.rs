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

use crate::lake::columns::Columns;
use crate::lake::keys::IngestHour;
use crate::stream::dead_letter::DeadLetter;
use crate::stream::format::PayloadDecoder;
use crate::stream::observed::Observed;
use crate::stream::source::{decode_record, SourceRecord};

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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchCounts {
    /// Stream records in the batch.
    pub records: usize,
    /// Rows that passed validation.
    pub good: usize,
    /// Dead letters (a multi-document payload may give several).
    pub bad: usize,
    /// Fields the good rows' documents held that the schema does not
    /// declare.
    pub undeclared_fields: usize,
    /// CloudWatch Logs control messages read (skipped).
    pub control_messages: usize,
    /// Event and arrival times, and the dead letters by reason.
    pub observed: Observed,
}

/// Splits records of any source into runs, de-aggregating KPL records and
/// parsing and validating every payload; `event_time` is the schema's
/// event-time field, if any, whose newest value the counts keep.
pub fn split_records<'e>(
    records: impl IntoIterator<Item = SourceRecord<'e>>,
    decoder: &PayloadDecoder,
    arrow_schema: &Arc<ArrowSchema>,
    event_time: Option<usize>,
) -> (Vec<Run>, BatchCounts) {
    let mut runs: Vec<Run> = Vec::new();
    let mut counts = BatchCounts::default();
    let mut budget = decoder.budget();
    let mut records = records.into_iter();
    // The position of the run's latest record, copied into the run when it
    // ends rather than once per record.
    let mut last_position: Option<Cow<'e, str>> = None;
    while let Some(rec) = records.next() {
        counts.records += 1;
        let hour = IngestHour::of(rec.arrival);
        let same_run = runs
            .last()
            .is_some_and(|r| r.hour == hour && r.shard == rec.shard && r.stream == rec.stream);
        if !same_run {
            end_run(&mut runs, last_position.take());
            runs.push(Run {
                hour,
                stream: rec.stream.to_string(),
                shard: rec.shard.to_string(),
                first_sequence: rec.position.to_string(),
                last_sequence: String::new(),
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
        let observed = &mut counts.observed;
        observed.arrival(rec.arrival);
        decode_record(&rec, decoder, &mut budget, &mut run.dead_letters, |doc| {
            observed.event_time(&doc.values, event_time);
            run.good.push(&doc.values);
            Ok(())
        });
        last_position = Some(rec.position);
    }
    end_run(&mut runs, last_position);
    counts
        .observed
        .dead_letters(runs.iter().flat_map(|r| &r.dead_letters));
    counts.good = runs.iter().map(|r| r.good.len()).sum();
    counts.bad = runs.iter().map(|r| r.dead_letters.len()).sum();
    counts.undeclared_fields = budget.undeclared_fields();
    counts.control_messages = budget.control_messages();
    (runs, counts)
}

/// Gives the latest run the position of its last record.
fn end_run(runs: &mut [Run], last_position: Option<Cow<'_, str>>) {
    if let (Some(run), Some(position)) = (runs.last_mut(), last_position) {
        run.last_sequence = position.into_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::Schema;
    use crate::stream::event::kafka_records;
    use crate::stream::event::StreamEvent;
    use crate::stream::format::Format;
    use base64::Engine;
    use serde_json::json;

    #[test]
    fn kafka_records_are_ordered_and_carry_partition_and_offset() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let event = json!({
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
        });
        let Ok(StreamEvent::Kafka(batch)) = StreamEvent::from_body(event.to_string().as_bytes())
        else {
            panic!("not read as a Kafka batch");
        };
        let records = kafka_records(&batch);
        let at: Vec<(i64, i64)> = records.iter().filter_map(|r| r.kafka).collect();
        assert_eq!(at, vec![(0, 3), (1, 7), (1, 8)]);
        let decoder = PayloadDecoder::new(Format::Json, Schema::parse("a:int64").unwrap(), 1024);
        let arrow = decoder.schema().arrow_schema();
        let (runs, counts) = split_records(records, &decoder, &arrow, None);
        assert_eq!((counts.records, counts.good, counts.bad), (3, 2, 1));
        let reasons: Vec<(&str, usize)> = counts.observed.reasons().collect();
        assert_eq!(reasons, [("invalid_base64", 1)]);
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
