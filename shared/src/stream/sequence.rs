//! Kinesis sequence numbers: decimal strings of up to 56 digits (2^185), too
//! large for any integer type, compared as numbers without parsing them.

use std::cmp::Ordering;

/// Compares two sequence numbers numerically: the longer is larger (no
/// leading zeros in real ones), equal lengths compare digit by digit.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// True when `sequence` is above `watermark` (always when there is none):
/// the record has not been applied yet.
pub fn is_after(sequence: &str, watermark: Option<&str>) -> bool {
    watermark.is_none_or(|w| compare(sequence, w) == Ordering::Greater)
}

/// The larger of two sequence numbers.
pub fn max<'a>(a: &'a str, b: &'a str) -> &'a str {
    if compare(a, b) == Ordering::Less {
        b
    } else {
        a
    }
}

/// The smaller of two sequence numbers.
pub fn min<'a>(a: &'a str, b: &'a str) -> &'a str {
    if compare(a, b) == Ordering::Greater {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_not_lexical_order() {
        assert_eq!(compare("9", "10"), Ordering::Less);
        assert_eq!(compare("10", "9"), Ordering::Greater);
        assert_eq!(compare("10", "10"), Ordering::Equal);
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692538361571095921575989136588899";
        assert_eq!(compare(a, b), Ordering::Less);
        assert_eq!(compare(b, "99999999999999999999"), Ordering::Greater);
        assert_eq!(max(a, b), b);
        assert_eq!(max("2", "11"), "11");
        assert_eq!(min("2", "11"), "2");
    }

    #[test]
    fn only_records_above_the_watermark_are_new() {
        assert!(is_after("5", None));
        assert!(is_after("10", Some("9")));
        assert!(!is_after("9", Some("9")));
        assert!(!is_after("8", Some("10")));
    }
}
