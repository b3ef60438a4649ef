//! The days a repartition run processes: parsed and validated from the
//! workflow's input, or "yesterday" in a configured IANA time zone.
//!
//! Dates are only ever `chrono::NaiveDate` values once past [`parse_date`]:
//! nothing downstream (the SQL in particular) sees the input text.

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The zone "yesterday" is computed in when none is configured.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Brussels";
/// The longest range accepted when none is configured.
pub const DEFAULT_MAX_RANGE_DAYS: u32 = 31;
/// Default of [`LATE_ARRIVAL_DAYS`](crate::config::vars::LATE_ARRIVAL_DAYS):
/// a scheduled run also rewrites the day before yesterday.
pub const DEFAULT_LATE_ARRIVAL_DAYS: u32 = 1;

/// An inclusive range of days, `from <= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    /// The first day.
    pub from: NaiveDate,
    /// The last day (inclusive).
    pub to: NaiveDate,
}

impl DateRange {
    /// The range of one day.
    pub fn day(day: NaiveDate) -> Self {
        DateRange { from: day, to: day }
    }

    /// How many days the range holds (at least 1).
    pub fn len_days(&self) -> u64 {
        (self.to - self.from).num_days().unsigned_abs() + 1
    }

    /// Every day of the range, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .collect()
    }

    /// Consecutive sub-ranges of at most `days` days each, covering the range.
    pub fn chunks(&self, days: u64) -> Vec<DateRange> {
        let days = days.max(1);
        let mut out = Vec::new();
        let mut start = self.from;
        while start <= self.to {
            let end = start
                .checked_add_days(Days::new(days - 1))
                .map_or(self.to, |e| e.min(self.to));
            out.push(DateRange {
                from: start,
                to: end,
            });
            match end.succ_opt() {
                Some(next) => start = next,
                None => break,
            }
        }
        out
    }
}

/// What the workflow's input may say about dates: nothing (yesterday), one
/// `date`, or an inclusive `from`..`to` range. Other fields are ignored here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DateRequest {
    /// One day, `YYYY-MM-DD`.
    #[serde(default)]
    pub date: Option<String>,
    /// First day of a range, `YYYY-MM-DD`.
    #[serde(default)]
    pub from: Option<String>,
    /// Last day of a range (inclusive), `YYYY-MM-DD`.
    #[serde(default)]
    pub to: Option<String>,
}

/// Input that does not name a valid day or range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("`{field}` is {value:?}: {reason} (expected a calendar date YYYY-MM-DD)")]
    InvalidDate {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("give either `date` or `from` and `to`, not both")]
    DateAndRange,
    #[error("`{0}` is missing: a range needs both `from` and `to`")]
    MissingBound(&'static str),
    #[error("`from` ({from}) is after `to` ({to})")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error("the range {from}..{to} holds {days} days, more than the {max} allowed")]
    TooLong {
        from: NaiveDate,
        to: NaiveDate,
        days: u64,
        max: u32,
    },
    #[error("unknown time zone {0:?} (expected an IANA name such as Europe/Brussels)")]
    UnknownTimeZone(String),
}

/// Parses a strict `YYYY-MM-DD` calendar date; `field` names the input
/// field in the error.
pub fn parse_date(field: &'static str, value: &str) -> Result<NaiveDate, DateError> {
    let invalid = |reason| DateError::InvalidDate {
        field,
        value: value.to_string(),
        reason,
    };
    let b = value.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err(invalid("not of the form YYYY-MM-DD"));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| invalid("no such day"))
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(name: &str) -> Result<Tz, DateError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| DateError::UnknownTimeZone(name.to_string()))
}

/// The day before `now`'s date in `zone` (real calendar arithmetic: the day
/// before the 1st of March is the 28th or 29th of February).
pub fn yesterday_in(zone: Tz, now: DateTime<Utc>) -> NaiveDate {
    let today = now.with_timezone(&zone).date_naive();
    today.pred_opt().unwrap_or(today)
}

/// The range of a scheduled run (a request naming no day): yesterday in
/// `zone` and the `late_days` days before it, so that a reading arriving up
/// to `late_days` + 1 days after its event day is in the lake when its day
/// is written for the last time. Reruns replace a day, so rewriting one is
/// safe.
pub fn scheduled_range(zone: Tz, now: DateTime<Utc>, late_days: u32) -> DateRange {
    let to = yesterday_in(zone, now);
    let from = to
        .checked_sub_days(chrono::Days::new(u64::from(late_days)))
        .unwrap_or(to);
    DateRange { from, to }
}

/// The range a request names, or yesterday in `zone` when it names none.
pub fn resolve(
    request: &DateRequest,
    zone: Tz,
    now: DateTime<Utc>,
    max_days: u32,
) -> Result<DateRange, DateError> {
    let range = match (&request.date, &request.from, &request.to) {
        (None, None, None) => DateRange::day(yesterday_in(zone, now)),
        (Some(d), None, None) => DateRange::day(parse_date("date", d)?),
        (Some(_), _, _) => return Err(DateError::DateAndRange),
        (None, Some(_), None) => return Err(DateError::MissingBound("to")),
        (None, None, Some(_)) => return Err(DateError::MissingBound("from")),
        (None, Some(f), Some(t)) => {
            let (from, to) = (parse_date("from", f)?, parse_date("to", t)?);
            if from > to {
                return Err(DateError::Reversed { from, to });
            }
            DateRange { from, to }
        }
    };
    let days = range.len_days();
    if days > u64::from(max_days) {
        return Err(DateError::TooLong {
            from: range.from,
            to: range.to,
            days,
            max: max_days,
        });
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn brussels() -> Tz {
        parse_time_zone(DEFAULT_TIME_ZONE).unwrap()
    }

    #[test]
    fn a_scheduled_run_reaches_back_over_the_late_days() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 6, 0, 0).unwrap();
        let r = scheduled_range(brussels(), now, 2);
        assert_eq!((r.from, r.to), (d("2026-02-26"), d("2026-02-28")));
        assert_eq!(r.days().len(), 3);
        let r = scheduled_range(brussels(), now, 0);
        assert_eq!(r, DateRange::day(d("2026-02-28")));
    }

    #[test]
    fn yesterday_crosses_month_year_and_leap_day() {
        let at = |s: &str| Utc.from_utc_datetime(&s.parse().unwrap());
        assert_eq!(
            yesterday_in(brussels(), at("2026-03-01T10:00:00")),
            d("2026-02-28")
        );
        assert_eq!(
            yesterday_in(brussels(), at("2024-03-01T10:00:00")),
            d("2024-02-29")
        );
        assert_eq!(
            yesterday_in(brussels(), at("2027-01-01T10:00:00")),
            d("2026-12-31")
        );
        // 23:30 UTC on 31 December is already 1 January in Brussels.
        assert_eq!(
            yesterday_in(brussels(), at("2026-12-31T23:30:00")),
            d("2026-12-31")
        );
        let utc = parse_time_zone("UTC").unwrap();
        assert_eq!(
            yesterday_in(utc, at("2026-12-31T23:30:00")),
            d("2026-12-30")
        );
    }

    #[test]
    fn dates_are_parsed_strictly_and_errors_name_the_field() {
        assert_eq!(parse_date("date", "2026-02-28"), Ok(d("2026-02-28")));
        for bad in [
            "2026-2-28",
            "2026-02-28 ",
            "26-02-28",
            "2026/02/28",
            "",
            "2026-02-2x",
        ] {
            let err = parse_date("date", bad).unwrap_err();
            assert!(err.to_string().starts_with("`date` is"), "{err}");
        }
        let err = parse_date("from", "2026-02-30").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`from` is \"2026-02-30\": no such day (expected a calendar date YYYY-MM-DD)"
        );
        // Anything meant for SQL never gets past the shape check.
        assert!(parse_date("date", "2026-01-01' OR '1'='1").is_err());
    }

    #[test]
    fn requests_resolve_to_ranges() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap();
        let req = |date: Option<&str>, from: Option<&str>, to: Option<&str>| DateRequest {
            date: date.map(str::to_string),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
        };
        let r = |q| resolve(&q, brussels(), now, 31);
        assert_eq!(
            r(req(None, None, None)),
            Ok(DateRange::day(d("2025-12-31")))
        );
        assert_eq!(
            r(req(Some("2026-03-01"), None, None)),
            Ok(DateRange::day(d("2026-03-01")))
        );
        let range = r(req(None, Some("2026-02-25"), Some("2026-03-06"))).unwrap();
        assert_eq!(range.len_days(), 10);
        assert_eq!(range.days().len(), 10);
        assert_eq!(
            r(req(Some("2026-03-01"), Some("2026-03-01"), None)),
            Err(DateError::DateAndRange)
        );
        assert_eq!(
            r(req(None, Some("2026-03-01"), None)),
            Err(DateError::MissingBound("to"))
        );
        assert_eq!(
            r(req(None, None, Some("2026-03-01"))),
            Err(DateError::MissingBound("from"))
        );
        assert!(matches!(
            r(req(None, Some("2026-03-02"), Some("2026-03-01"))),
            Err(DateError::Reversed { .. })
        ));
        let err = r(req(None, Some("2026-01-01"), Some("2026-02-01"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the range 2026-01-01..2026-02-01 holds 32 days, more than the 31 allowed"
        );
    }

    #[test]
    fn ranges_split_into_chunks() {
        let range = DateRange {
            from: d("2026-02-25"),
            to: d("2026-03-06"),
        };
        let chunks = range.chunks(4);
        assert_eq!(
            chunks,
            [
                DateRange {
                    from: d("2026-02-25"),
                    to: d("2026-02-28")
                },
                DateRange {
                    from: d("2026-03-01"),
                    to: d("2026-03-04")
                },
                DateRange {
                    from: d("2026-03-05"),
                    to: d("2026-03-06")
                },
            ]
        );
        assert_eq!(DateRange::day(d("2026-01-01")).chunks(4).len(), 1);
    }

    #[test]
    fn unknown_zones_are_rejected() {
        assert_eq!(
            parse_time_zone("Europe/Bruxelles"),
            Err(DateError::UnknownTimeZone("Europe/Bruxelles".into()))
        );
    }
}
