//! Reading a function's settings from its environment, with errors that name
//! the variable. Every configuration reader takes a lookup function (the
//! process environment in production, fixed pairs in tests).

use std::collections::HashMap;
use std::str::FromStr;

use crate::config::error::ConfigError;

/// A variable's value, required and not blank (trimmed).
pub fn required(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, ConfigError> {
    get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))
}

/// A whole number, `default` when the variable is unset.
pub fn number<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<T>().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("{v:?} is not a whole number"),
        }),
    }
}

/// A whole number of at least 1, `default` when the variable is unset.
pub fn positive<T: FromStr + PartialEq + From<u8>>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    let n = number(get, name, default)?;
    if n == T::from(0) {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be at least 1".to_string(),
        });
    }
    Ok(n)
}

/// A lookup over fixed pairs, for tests and tools.
pub fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_defaults_and_errors_name_the_variable() {
        let get = lookup_from(&[
            ("A", " x "),
            ("BLANK", "  "),
            ("N", "7"),
            ("Z", "0"),
            ("W", "7.5"),
        ]);
        assert_eq!(required(&get, "A").unwrap(), "x");
        assert_eq!(
            required(&get, "BLANK").unwrap_err().to_string(),
            "environment variable BLANK is not set"
        );
        assert_eq!(number(&get, "N", 1u32).unwrap(), 7);
        assert_eq!(number(&get, "UNSET", 3usize).unwrap(), 3);
        assert_eq!(positive(&get, "N", 1usize).unwrap(), 7);
        let zero = positive(&get, "Z", 1u32).unwrap_err().to_string();
        assert!(zero.contains('Z') && zero.contains("at least 1"), "{zero}");
        let frac = number(&get, "W", 1u32).unwrap_err().to_string();
        assert!(
            frac.contains('W') && frac.contains("whole number"),
            "{frac}"
        );
    }
}
