//! CloudWatch Logs subscription envelopes, as a subscription filter puts
//! them on a stream: for the tests, the local run's `--source
//! cloudwatch-logs` scenario and the benchmarks.

use std::io::Write;

use serde_json::json;

use crate::telemetry::Reading;

/// One log event: its id, its time (milliseconds since the epoch) and its
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub id: String,
    pub timestamp: i64,
    pub message: String,
}

impl LogEvent {
    /// An event with an id made of its time and position, as CloudWatch
    /// Logs ids are (a 56-digit decimal string).
    pub fn new(timestamp: i64, index: usize, message: impl Into<String>) -> Self {
        LogEvent {
            id: format!("{timestamp:0>26}{index:0>30}"),
            timestamp,
            message: message.into(),
        }
    }
}

/// The JSON of a `DATA_MESSAGE` envelope of `group` and `stream`, not yet
/// compressed.
pub fn data_message(group: &str, stream: &str, events: &[LogEvent]) -> Vec<u8> {
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|e| json!({"id": e.id, "timestamp": e.timestamp, "message": e.message}))
        .collect();
    serde_json::to_vec(&json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": group,
        "logStream": stream,
        "subscriptionFilters": ["to-telemetry-lake"],
        "logEvents": events,
    }))
    .expect("an envelope of strings and numbers serialises")
}

/// The log events of one envelope, at most, in the envelopes the local
/// run and the benchmarks make of readings.
pub const EVENTS_PER_ENVELOPE: usize = 100;

/// A gzip'd `DATA_MESSAGE` of `group` and `stream` whose log events are
/// `readings`, each at its event time, its message the reading's JSON.
pub fn readings_envelope<'r>(
    group: &str,
    stream: &str,
    readings: impl IntoIterator<Item = &'r Reading>,
) -> Vec<u8> {
    let events: Vec<LogEvent> = readings
        .into_iter()
        .enumerate()
        .map(|(i, r)| LogEvent::new(r.event_time.timestamp_millis(), i, r.json.as_str()))
        .collect();
    gzip(&data_message(group, stream, &events))
}

/// The `CONTROL_MESSAGE` CloudWatch Logs sends when a subscription is made,
/// not yet compressed.
pub fn control_message(timestamp: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [{
            "id": "",
            "timestamp": timestamp,
            "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.",
        }],
    }))
    .expect("an envelope of strings and numbers serialises")
}

/// gzip, as CloudWatch Logs compresses every record it puts.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    z.write_all(bytes).expect("writing to memory");
    z.finish().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_56_digits_and_envelopes_name_their_group() {
        let e = LogEvent::new(1_764_000_000_000, 3, "m");
        assert_eq!(e.id.len(), 56);
        assert!(e.id.bytes().all(|b| b.is_ascii_digit()));
        let v: serde_json::Value = serde_json::from_slice(&data_message("/g", "s", &[e])).unwrap();
        assert_eq!(v["logGroup"], "/g");
        assert_eq!(v["logEvents"][0]["message"], "m");
    }
}
