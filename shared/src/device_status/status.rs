//! A device's status from its readings and its normal ranges.
//!
//! GREEN when every reading is inside its range, RED when every reading is
//! outside, ORANGE otherwise; bounds are inclusive. A device without normal
//! ranges is UNKNOWN. (The seed's GREEN test joins `>= min` and `<= max` with
//! OR, which holds for every value, so it never yields ORANGE.)

use std::fmt;

/// The status of one reading of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Green,
    Orange,
    Red,
    Unknown,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 4] = [Status::Green, Status::Orange, Status::Red, Status::Unknown];

    /// The status's name (in logs and summaries; lower-cased in the windows
    /// table's attribute names).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Green => "GREEN",
            Status::Orange => "ORANGE",
            Status::Red => "RED",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A normal range, both bounds included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    /// True when `value` is within the range, bounds included.
    pub fn contains(&self, value: f64) -> bool {
        self.min <= value && value <= self.max
    }
}

/// The status of `readings` against `ranges` (one range per reading, same
/// order), or UNKNOWN when the device has no ranges.
pub fn status_of(readings: &[f64], ranges: Option<&[Range]>) -> Status {
    let Some(ranges) = ranges else {
        return Status::Unknown;
    };
    let inside = readings
        .iter()
        .zip(ranges)
        .filter(|(v, r)| r.contains(**v))
        .count();
    if inside == readings.len() {
        Status::Green
    } else if inside == 0 {
        Status::Red
    } else {
        Status::Orange
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: [Range; 3] = [
        Range {
            min: 90.0,
            max: 100.0,
        },
        Range {
            min: 10.0,
            max: 20.0,
        },
        Range { min: 5.0, max: 8.0 },
    ];

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(status_of(&[90.0, 10.0, 5.0], Some(&R)), Status::Green);
        assert_eq!(status_of(&[100.0, 20.0, 8.0], Some(&R)), Status::Green);
        assert_eq!(status_of(&[89.0, 21.0, 4.0], Some(&R)), Status::Red);
        assert_eq!(status_of(&[100.5, 9.99, 8.01], Some(&R)), Status::Red);
    }

    #[test]
    fn some_out_of_range_is_orange() {
        assert_eq!(status_of(&[101.0, 15.0, 6.0], Some(&R)), Status::Orange);
        assert_eq!(status_of(&[101.0, 25.0, 6.0], Some(&R)), Status::Orange);
        assert_eq!(status_of(&[95.0, 25.0, 9.0], Some(&R)), Status::Orange);
    }

    #[test]
    fn no_ranges_is_unknown() {
        assert_eq!(status_of(&[95.0, 15.0, 6.0], None), Status::Unknown);
        assert_eq!(Status::Unknown.to_string(), "UNKNOWN");
    }
}
