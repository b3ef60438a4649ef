//! Where objects go: arrival-hour partitions and deterministic object keys.
//!
//! Keys are built only from the configured prefix, the arrival hour, and the
//! stream position of the object's first record (stream name, shard id,
//! sequence number), each reduced to a safe alphabet, so data can never steer
//! a key outside its prefix.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// The arrival hour a record belongs to (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IngestHour {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
}

impl IngestHour {
    /// The hour of an arrival time.
    pub fn of(t: DateTime<Utc>) -> Self {
        IngestHour {
            year: t.year(),
            month: t.month(),
            day: t.day(),
            hour: t.hour(),
        }
    }

    /// The Hive-style partition path, without leading or trailing slash.
    pub fn path(&self) -> String {
        format!(
            "ingest_year={:04}/ingest_month={:02}/ingest_day={:02}/ingest_hour={:02}",
            self.year, self.month, self.day, self.hour
        )
    }
}

/// Where in the stream an object's first record sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition<'a> {
    /// The stream name (the last part of the event source ARN).
    pub stream: &'a str,
    /// The shard id, as Kinesis names it (`shardId-000000000000`).
    pub shard: &'a str,
    /// The sequence number, kept as the decimal string Kinesis gives (up to 56 digits).
    pub sequence_number: &'a str,
}

/// The object key of one output object.
///
/// `prefix` is trusted configuration (trailing slashes are dropped); every
/// other part comes from the event and is sanitised.
pub fn object_key(
    prefix: &str,
    hour: IngestHour,
    pos: &StreamPosition<'_>,
    extension: &str,
) -> String {
    let prefix = prefix.trim_end_matches('/');
    let sep = if prefix.is_empty() { "" } else { "/" };
    format!(
        "{prefix}{sep}{}/{}.{}.{}.{extension}",
        hour.path(),
        key_part(pos.stream),
        key_part(pos.shard),
        key_part(pos.sequence_number),
    )
}

/// The stream name of a Kinesis event source ARN
/// (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`), or the ARN's last part.
pub fn stream_name(event_source_arn: &str) -> &str {
    event_source_arn
        .rsplit('/')
        .next()
        .unwrap_or(event_source_arn)
}

/// Keeps `[A-Za-z0-9_-]`, replaces anything else by `_`, and caps the length,
/// so a part can neither add path segments nor exceed S3's key limit.
pub fn key_part(s: &str) -> String {
    const MAX: usize = 128;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn hour_path_is_zero_padded_utc() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 7, 59, 59).unwrap();
        assert_eq!(
            IngestHour::of(t).path(),
            "ingest_year=2026/ingest_month=03/ingest_day=01/ingest_hour=07"
        );
    }

    #[test]
    fn key_is_deterministic_and_holds_the_first_position() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).unwrap();
        let pos = StreamPosition {
            stream: "telemetry",
            shard: "shardId-000000000001",
            sequence_number: "49590338271490256608559692538361571095921575989136588818",
        };
        let key = object_key("raw/metrics/", IngestHour::of(t), &pos, "snappy.parquet");
        assert_eq!(
            key,
            "raw/metrics/ingest_year=2026/ingest_month=11/ingest_day=22/ingest_hour=23/\
             telemetry.shardId-000000000001.49590338271490256608559692538361571095921575989136588818.snappy.parquet"
        );
    }

    #[test]
    fn hostile_parts_cannot_escape_the_prefix() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let long = "x".repeat(10_000);
        let pos = StreamPosition {
            stream: "../../etc",
            shard: "a/b\n\0",
            sequence_number: &long,
        };
        let key = object_key("p", IngestHour::of(t), &pos, "jsonl");
        assert!(key.starts_with("p/ingest_year=2026/"));
        assert_eq!(key.matches('/').count(), 5, "{key}");
        assert!(!key.contains(".."), "{key}");
        assert!(key.len() < 512);
    }

    #[test]
    fn stream_name_comes_from_the_arn() {
        assert_eq!(
            stream_name("arn:aws:kinesis:eu-west-1:123456789012:stream/vent"),
            "vent"
        );
        assert_eq!(stream_name("vent"), "vent");
    }
}
