//! Puts dead letters back on the stream once their cause is fixed: reads
//! them from S3 (by prefix, arrival-time range and reason), optionally
//! decodes each one again with the current schema and format (those that
//! still fail are counted by their new reason and left alone), and puts
//! the others on the stream, where both consumers read them as new
//! records. The letters stay in S3: a replay changes nothing there, so an
//! interrupted one can be run again (the records already put go again, as
//! any producer retry would).
//!
//! A letter holds the bytes that were rejected: a whole payload, or one
//! document of a multi-document payload or of a KPL aggregate. Each goes
//! back as one record of its own, partition key `{shard}/{sequence}/{index}`
//! so letters of one record stay in order on one shard.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use telemetry_lake::stream::dead_letter::DeadLetter;
use telemetry_lake::stream::format::PayloadDecoder;
use telemetry_lake::stream::source::decode_payload;

use crate::kinesis_event::{put_records, PUT_RECORDS_MAX};
use crate::lake_reader;

/// Which dead letters to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub bucket: String,
    /// The dead letters' prefix (the stack's `DeadLetterUri`, or narrower:
    /// one arrival hour is `.../ingest_year=2026/.../ingest_hour=13/`).
    pub prefix: String,
    /// Arrival times from (inclusive) and to (exclusive).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only these reasons (all when empty).
    pub reasons: Vec<String>,
}

impl Selection {
    fn takes(&self, letter: &DeadLetter) -> bool {
        let arrival = DateTime::parse_from_rfc3339(&letter.arrival_time)
            .map(|t| t.with_timezone(&Utc))
            .ok();
        let in_range = |t: Option<DateTime<Utc>>| {
            t.is_some_and(|t| self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t < to))
        };
        (self.reasons.is_empty() || self.reasons.contains(&letter.reason)) && in_range(arrival)
    }
}

/// What a replay did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Dead letters read, and those the selection took.
    pub read: usize,
    pub selected: usize,
    /// Put on the stream (dry run: would be).
    pub sent: usize,
    /// Decoded again with the current schema and still bad, by the reason
    /// they would now be dead-lettered with; not sent.
    pub still_failing: BTreeMap<String, usize>,
    /// Dead letters whose bytes are not valid base64 (a damaged object).
    pub unreadable: usize,
}

/// The decoder a stream function would build from `env` (the variables of
/// docs/configuration.md: `SCHEMA` or `SCHEMA_FILE`, `FORMAT` and its
/// options, `MAX_PAYLOAD_BYTES`): what a replayed record will meet.
pub fn decoder_from(env: impl Fn(&str) -> Option<String>) -> Result<PayloadDecoder> {
    use telemetry_lake::config::{self, vars};
    let schema = config::schema_from(&env).context("the schema to check against")?;
    let format = config::format_from(&env).context("the format to check against")?;
    let max = match env(vars::MAX_PAYLOAD_BYTES) {
        Some(v) => v
            .parse()
            .with_context(|| format!("{}: {v:?} is not a number", vars::MAX_PAYLOAD_BYTES))?,
        None => config::DEFAULT_MAX_PAYLOAD_BYTES,
    };
    Ok(PayloadDecoder::new(format, schema, max))
}

/// Reads the selected dead letters, checks them with `decoder` when given,
/// and puts the good ones on `stream` (nothing when `dry_run`).
pub async fn replay(
    s3: &aws_sdk_s3::Client,
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    selection: &Selection,
    decoder: Option<&PayloadDecoder>,
    dry_run: bool,
) -> Result<Report> {
    let mut report = Report::default();
    let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
    for object in lake_reader::list(s3, &selection.bucket, &selection.prefix).await? {
        let bytes = lake_reader::get(s3, &selection.bucket, &object.key).await?;
        let letters = lake_reader::dead_letters(&bytes)
            .with_context(|| format!("reading s3://{}/{}", selection.bucket, object.key))?;
        for letter in letters {
            report.read += 1;
            if !selection.takes(&letter) {
                continue;
            }
            report.selected += 1;
            let Ok(data) = letter.bytes() else {
                report.unreadable += 1;
                continue;
            };
            if let Some(reason) = decoder.and_then(|d| still_bad(d, &data)) {
                *report.still_failing.entry(reason.to_string()).or_default() += 1;
                continue;
            }
            report.sent += 1;
            let key = format!(
                "{}/{}/{}",
                letter.shard, letter.sequence_number, letter.document_index
            );
            batch.push((key, data));
            if batch.len() == PUT_RECORDS_MAX && !dry_run {
                put_records(kinesis, stream, std::mem::take(&mut batch)).await?;
            }
        }
    }
    if !dry_run && !batch.is_empty() {
        put_records(kinesis, stream, batch).await?;
    }
    Ok(report)
}

/// The reason the current decoder still rejects `data` with, if it does.
fn still_bad(decoder: &PayloadDecoder, data: &[u8]) -> Option<&'static str> {
    let mut budget = decoder.budget();
    let mut reason = None;
    decode_payload(data, decoder, &mut budget, |outcome| {
        if let Err(rejection) = outcome {
            reason.get_or_insert(rejection.reason);
        }
    });
    reason
}
