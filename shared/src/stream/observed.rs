//! What a batch's decode saw beside its rows, for the stream functions'
//! metrics: the newest event time of the good rows (how far the lake is
//! behind the devices), the oldest arrival (how long the oldest record
//! waited to be written) and the dead letters by reason.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::stream::dead_letter::DeadLetter;
use crate::stream::document::Value;

/// Times and reasons seen over one batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The newest event time of a good row, in microseconds since the epoch.
    newest_event_micros: Option<i64>,
    /// The oldest arrival time of a record.
    oldest_arrival: Option<DateTime<Utc>>,
    /// Dead letters by reason.
    reasons: BTreeMap<String, usize>,
}

impl Observed {
    /// Notes a record's arrival time.
    pub fn arrival(&mut self, at: DateTime<Utc>) {
        if self.oldest_arrival.is_none_or(|oldest| at < oldest) {
            self.oldest_arrival = Some(at);
        }
    }

    /// Notes the event time of a good row: its value at `field`, when the
    /// schema has an event-time field and the value is a timestamp.
    pub fn event_time(&mut self, values: &[Value<'_>], field: Option<usize>) {
        if let Some(&Value::Timestamp(micros)) = field.and_then(|i| values.get(i)) {
            if self
                .newest_event_micros
                .is_none_or(|newest| micros > newest)
            {
                self.newest_event_micros = Some(micros);
            }
        }
    }

    /// Counts dead letters by their reason.
    pub fn dead_letters<'a>(&mut self, letters: impl IntoIterator<Item = &'a DeadLetter>) {
        for letter in letters {
            match self.reasons.get_mut(letter.reason.as_str()) {
                Some(n) => *n += 1,
                None => {
                    self.reasons.insert(letter.reason.clone(), 1);
                }
            }
        }
    }

    /// The newest event time of a good row.
    pub fn newest_event(&self) -> Option<DateTime<Utc>> {
        self.newest_event_micros
            .and_then(DateTime::from_timestamp_micros)
    }

    /// The oldest arrival time of a record.
    pub fn oldest_arrival(&self) -> Option<DateTime<Utc>> {
        self.oldest_arrival
    }

    /// Dead letters by reason.
    pub fn reasons(&self) -> impl Iterator<Item = (&str, usize)> {
        self.reasons.iter().map(|(r, n)| (r.as_str(), *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_event_the_oldest_arrival_and_counts_by_reason() {
        let mut seen = Observed::default();
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        seen.arrival(t(20));
        seen.arrival(t(10));
        seen.arrival(t(30));
        seen.event_time(&[Value::Int64(1), Value::Timestamp(5_000_000)], Some(1));
        seen.event_time(&[Value::Int64(1), Value::Timestamp(7_000_000)], Some(1));
        seen.event_time(&[Value::Int64(1), Value::Timestamp(6_000_000)], Some(1));
        seen.event_time(&[Value::Int64(1), Value::Timestamp(9_000_000)], None);
        seen.event_time(&[Value::Timestamp(8_000_000)], Some(0));
        assert_eq!(seen.oldest_arrival(), Some(t(10)));
        assert_eq!(seen.newest_event(), Some(t(8)));
        assert_eq!(seen.reasons().count(), 0);
    }
}
