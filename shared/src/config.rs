//! Configuration read from the environment at cold start.
//!
//! Every environment variable the functions read is named here, once. A
//! missing or malformed value fails the cold start with a message naming the
//! variable, so a misconfigured deployment never processes a record.

use std::env;

use crate::schema::{Schema, SchemaError};

/// Bucket of the lake and its dead letters.
pub const LAKE_BUCKET: &str = "LAKE_BUCKET";
/// Prefix of the Parquet lake inside the bucket.
pub const LAKE_PREFIX: &str = "LAKE_PREFIX";
/// Prefix of dead letters inside the bucket.
pub const DEAD_LETTER_PREFIX: &str = "DEAD_LETTER_PREFIX";
/// The declared schema, JSON or compact (`name:type,...`).
pub const SCHEMA: &str = "SCHEMA";
/// A file holding the declared schema, read when `SCHEMA` is unset.
pub const SCHEMA_FILE: &str = "SCHEMA_FILE";
/// The largest payload accepted, after decompression, in bytes.
pub const MAX_PAYLOAD_BYTES: &str = "MAX_PAYLOAD_BYTES";
/// How many objects a batch writes at once.
pub const WRITE_CONCURRENCY: &str = "WRITE_CONCURRENCY";

/// Default for [`MAX_PAYLOAD_BYTES`]: Kinesis' own 1 MiB record limit.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Default for [`WRITE_CONCURRENCY`].
pub const DEFAULT_WRITE_CONCURRENCY: usize = 4;

/// A configuration value is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("the schema in {name} is invalid: {source}")]
    Schema {
        name: &'static str,
        source: SchemaError,
    },
}

/// Configuration of a function that reads the stream and writes the lake.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Bucket of the lake and the dead letters ([`LAKE_BUCKET`]).
    pub lake_bucket: String,
    /// Prefix of the Parquet objects ([`LAKE_PREFIX`]).
    pub lake_prefix: String,
    /// Prefix of the dead letters ([`DEAD_LETTER_PREFIX`]).
    pub dead_letter_prefix: String,
    /// The declared record schema ([`SCHEMA`] or [`SCHEMA_FILE`]).
    pub schema: Schema,
    /// Largest decoded payload accepted ([`MAX_PAYLOAD_BYTES`]).
    pub max_payload_bytes: usize,
    /// Objects written at once ([`WRITE_CONCURRENCY`]).
    pub write_concurrency: usize,
}

impl StreamConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| env::var(name).ok())
    }

    /// Reads the configuration through `get`, which returns a variable's value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        Ok(StreamConfig {
            lake_bucket: required(LAKE_BUCKET)?,
            lake_prefix: required(LAKE_PREFIX)?,
            dead_letter_prefix: required(DEAD_LETTER_PREFIX)?,
            schema: schema_from(&get)?,
            max_payload_bytes: positive(&get, MAX_PAYLOAD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES)?,
            write_concurrency: positive(&get, WRITE_CONCURRENCY, DEFAULT_WRITE_CONCURRENCY)?,
        })
    }
}

/// The declared schema from [`SCHEMA`], or the file named by [`SCHEMA_FILE`].
pub fn schema_from(get: &impl Fn(&str) -> Option<String>) -> Result<Schema, ConfigError> {
    let (name, text) = match get(SCHEMA).filter(|v| !v.trim().is_empty()) {
        Some(text) => (SCHEMA, text),
        None => {
            let path = get(SCHEMA_FILE).ok_or(ConfigError::Missing(SCHEMA))?;
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                name: SCHEMA_FILE,
                reason: format!("cannot read {path}: {e}"),
            })?;
            (SCHEMA_FILE, text)
        }
    };
    Schema::parse(&text).map_err(|source| ConfigError::Schema { name, source })
}

fn positive(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: usize,
) -> Result<usize, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!("{v:?} is not a positive integer"),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        (LAKE_BUCKET, "b"),
        (LAKE_PREFIX, "raw"),
        (DEAD_LETTER_PREFIX, "dl"),
        (SCHEMA, "a:int64"),
    ];

    #[test]
    fn defaults_apply_and_required_values_are_read() {
        let c = StreamConfig::from_lookup(lookup(BASE)).unwrap();
        assert_eq!(c.lake_bucket, "b");
        assert_eq!(c.max_payload_bytes, DEFAULT_MAX_PAYLOAD_BYTES);
        assert_eq!(c.write_concurrency, DEFAULT_WRITE_CONCURRENCY);
    }

    #[test]
    fn errors_name_the_variable() {
        let err = StreamConfig::from_lookup(lookup(&BASE[1..])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable LAKE_BUCKET is not set"
        );

        let mut pairs = BASE.to_vec();
        pairs.push((WRITE_CONCURRENCY, "0"));
        let err = StreamConfig::from_lookup(lookup(&pairs)).unwrap_err();
        assert!(err.to_string().contains("WRITE_CONCURRENCY"), "{err}");

        let mut pairs = BASE.to_vec();
        pairs[3] = (SCHEMA, "a:blob");
        let err = StreamConfig::from_lookup(lookup(&pairs)).unwrap_err();
        assert!(
            err.to_string().contains("SCHEMA") && err.to_string().contains("blob"),
            "{err}"
        );
    }

    #[test]
    fn schema_file_is_read_when_schema_is_unset() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/ventilator.schema.json"
        );
        let pairs = [
            (LAKE_BUCKET, "b"),
            (LAKE_PREFIX, "r"),
            (DEAD_LETTER_PREFIX, "d"),
            (SCHEMA_FILE, path),
        ];
        let c = StreamConfig::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(c.schema.fields.len(), 7);
    }
}
