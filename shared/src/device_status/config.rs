//! The configuration of `device-status`, read from the environment at cold
//! start. A missing or malformed value fails the cold start naming the
//! variable, and the schema is checked to hold the fields the function reads.

use crate::config::vars::*;
use std::time::Duration;

use crate::config::env::{number, positive, required};
use crate::config::glue_schema::load_schema;
use crate::config::schema::{FieldType, Schema};
use crate::config::{
    check_format, decode_budget_from, format_from, schema_from, ConfigError, SchemaSource,
    DEFAULT_MAX_PAYLOAD_BYTES,
};
use crate::device_status::change_flag::FlagLocation;
use crate::device_status::reference::MetricSpec;
use crate::device_status::windows::WindowSpec;
use crate::stream::format::Format;

pub const DEFAULT_REFERENCE_KEY_ATTRIBUTE: &str = "ventilatorid";
pub const DEFAULT_CHANGE_FLAG_CHECK_SECONDS: u64 = 60;
pub const DEFAULT_DEAD_LETTER_PREFIX: &str = "dead-letters/device-status";
pub const DEFAULT_DEVICE_ID_FIELD: &str = "ventilatorid";
pub use crate::config::DEFAULT_EVENT_TIME_FIELD;
pub const DEFAULT_METRICS: &str = "o2stats:o2_stats_min:o2_stats_max,\
pressurecontrol:pressure_control_min:pressure_control_max,\
minutevolume:minute_volume_min:minute_volume_max";
pub const DEFAULT_WINDOW_SIZE_SECONDS: i64 = 600;
pub const DEFAULT_WINDOW_SLIDE_SECONDS: i64 = 300;
pub const DEFAULT_RETENTION_DAYS: u64 = 7;
pub const DEFAULT_WRITE_CONCURRENCY: usize = 8;

/// Configuration of `device-status`.
#[derive(Debug, Clone)]
pub struct DeviceStatusConfig {
    /// The reference table ([`REFERENCE_TABLE`]).
    pub reference_table: String,
    /// Its key attribute ([`REFERENCE_KEY_ATTRIBUTE`], default `ventilatorid`).
    pub reference_key_attribute: String,
    /// The windows table ([`WINDOWS_TABLE`]).
    pub windows_table: String,
    /// The change flag ([`CHANGE_FLAG_BUCKET`], [`CHANGE_FLAG_KEY`]).
    pub change_flag: FlagLocation,
    /// Least time between two probes of the flag ([`CHANGE_FLAG_CHECK_SECONDS`], default 60).
    pub change_flag_check: Duration,
    /// Bucket of the dead letters ([`DEAD_LETTER_BUCKET`]).
    pub dead_letter_bucket: String,
    /// Prefix of the dead letters ([`DEAD_LETTER_PREFIX`], default `dead-letters/device-status`).
    pub dead_letter_prefix: String,
    /// The declared record schema (`SCHEMA` or `SCHEMA_FILE`, or a Glue
    /// table named in `SCHEMA_SOURCE`).
    pub schema: Schema,
    /// Largest decoded payload accepted (`MAX_PAYLOAD_BYTES`).
    pub max_payload_bytes: usize,
    /// Decoded bytes one invocation may produce (a quarter of
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`), as for `kinesis-to-parquet`.
    pub decode_budget_bytes: usize,
    /// The record format (`FORMAT` and its options), as for `kinesis-to-parquet`.
    pub format: Format,
    /// The record field naming the device ([`DEVICE_ID_FIELD`], default `ventilatorid`).
    pub device_id_field: String,
    /// The record field holding the event time ([`EVENT_TIME_FIELD`], default `eventtime`).
    pub event_time_field: String,
    /// The readings and their range attributes ([`METRICS`]).
    pub metrics: Vec<MetricSpec>,
    /// Window length and slide ([`WINDOW_SIZE_SECONDS`] 600, [`WINDOW_SLIDE_SECONDS`] 300).
    pub windows: WindowSpec,
    /// How long an item outlives its window ([`RETENTION_DAYS`], default 7).
    pub retention: Duration,
    /// Window items written at once ([`WRITE_CONCURRENCY`], default 8).
    pub write_concurrency: usize,
}

impl DeviceStatusConfig {
    /// Reads the configuration through `get`, which returns a variable's value,
    /// the schema from `SCHEMA` or `SCHEMA_FILE`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let schema = schema_from(&get)?;
        let config = Self::with_schema(get, schema)?;
        config.fields()?;
        Ok(config)
    }

    /// Reads the configuration through `get`, taking the schema from the Glue
    /// table named in `SCHEMA_SOURCE` when there is one (`glue:DATABASE.TABLE`),
    /// as `kinesis-to-parquet` does.
    ///
    /// Catalog columns are all nullable, but a reading without its device,
    /// event time or metrics cannot be placed in a window: the fields this
    /// function reads are made required, so such a record is dead-lettered
    /// as `missing_field` rather than counted.
    pub async fn load(
        get: impl Fn(&str) -> Option<String>,
        glue: impl FnOnce() -> aws_sdk_glue::Client,
    ) -> Result<Self, ConfigError> {
        let (schema, source) = load_schema(&get, glue).await?;
        let mut config = Self::with_schema(get, schema)?;
        if matches!(source, SchemaSource::GlueTable { .. }) {
            config.require_read_fields();
        }
        config.fields()?;
        Ok(config)
    }

    /// Marks the fields the function reads as required in the schema.
    fn require_read_fields(&mut self) {
        let read: Vec<&str> = [self.device_id_field.as_str(), &self.event_time_field]
            .into_iter()
            .chain(self.metrics.iter().map(|m| m.field.as_str()))
            .collect();
        for field in &mut self.schema.fields {
            if read.contains(&field.name.as_str()) {
                field.required = true;
            }
        }
    }

    /// Reads everything but the schema through `get`, taking `schema` as
    /// given; the caller checks it with [`DeviceStatusConfig::fields`].
    fn with_schema(
        get: impl Fn(&str) -> Option<String>,
        schema: Schema,
    ) -> Result<Self, ConfigError> {
        let or = |name: &str, default: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let size: i64 = positive(&get, WINDOW_SIZE_SECONDS, DEFAULT_WINDOW_SIZE_SECONDS)?;
        let slide: i64 = positive(&get, WINDOW_SLIDE_SECONDS, DEFAULT_WINDOW_SLIDE_SECONDS)?;
        let windows = WindowSpec::new(size, slide).map_err(|e| ConfigError::Invalid {
            name: WINDOW_SIZE_SECONDS,
            reason: e.to_string(),
        })?;
        let check: u64 = number(
            &get,
            CHANGE_FLAG_CHECK_SECONDS,
            DEFAULT_CHANGE_FLAG_CHECK_SECONDS,
        )?;
        let retention_days: u64 = positive(&get, RETENTION_DAYS, DEFAULT_RETENTION_DAYS)?;
        let max_payload_bytes = positive(&get, MAX_PAYLOAD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES)?;
        let format = format_from(&get)?;
        check_format(&format, &schema)?;
        Ok(DeviceStatusConfig {
            reference_table: required(&get, REFERENCE_TABLE)?,
            reference_key_attribute: or(REFERENCE_KEY_ATTRIBUTE, DEFAULT_REFERENCE_KEY_ATTRIBUTE),
            windows_table: required(&get, WINDOWS_TABLE)?,
            change_flag: FlagLocation::from_lookup(&get)?,
            change_flag_check: Duration::from_secs(check),
            dead_letter_bucket: required(&get, DEAD_LETTER_BUCKET)?,
            dead_letter_prefix: or(DEAD_LETTER_PREFIX, DEFAULT_DEAD_LETTER_PREFIX),
            schema,
            max_payload_bytes,
            decode_budget_bytes: decode_budget_from(&get, max_payload_bytes)?,
            format,
            device_id_field: or(DEVICE_ID_FIELD, DEFAULT_DEVICE_ID_FIELD),
            event_time_field: or(EVENT_TIME_FIELD, DEFAULT_EVENT_TIME_FIELD),
            metrics: parse_metrics(&or(METRICS, DEFAULT_METRICS))?,
            windows,
            retention: Duration::from_secs(retention_days.saturating_mul(86_400)),
            write_concurrency: positive(&get, WRITE_CONCURRENCY, DEFAULT_WRITE_CONCURRENCY)?,
        })
    }

    /// Where the function finds its fields in a parsed record, checking the
    /// schema declares each with a usable type.
    pub fn fields(&self) -> Result<RecordFields, ConfigError> {
        let find = |var: &'static str, name: &str, types: &[FieldType]| {
            let invalid = |reason: String| ConfigError::Invalid { name: var, reason };
            let (i, f) = self
                .schema
                .fields
                .iter()
                .enumerate()
                .find(|(_, f)| f.name == name)
                .ok_or_else(|| invalid(format!("the schema ({SCHEMA}) has no field `{name}`")))?;
            if !types.contains(&f.field_type) {
                let want: Vec<&str> = types.iter().map(FieldType::name).collect();
                return Err(invalid(format!(
                    "field `{name}` is {}, expected {}",
                    f.field_type.name(),
                    want.join(" or ")
                )));
            }
            if !f.required {
                return Err(invalid(format!(
                    "field `{name}` must be required in the schema"
                )));
            }
            Ok(i)
        };
        Ok(RecordFields {
            device: find(
                DEVICE_ID_FIELD,
                &self.device_id_field,
                &[FieldType::Int64, FieldType::String],
            )?,
            event_time: find(
                EVENT_TIME_FIELD,
                &self.event_time_field,
                &[FieldType::Timestamp],
            )?,
            metrics: self
                .metrics
                .iter()
                .map(|m| find(METRICS, &m.field, &[FieldType::Int64, FieldType::Float64]))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Positions, in a parsed record, of the fields the function reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFields {
    pub device: usize,
    pub event_time: usize,
    pub metrics: Vec<usize>,
}

/// Parses `field:min_attribute:max_attribute,...`.
pub fn parse_metrics(text: &str) -> Result<Vec<MetricSpec>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: METRICS,
        reason,
    };
    let metrics = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
            match parts[..] {
                [field, min, max] if !field.is_empty() && !min.is_empty() && !max.is_empty() => {
                    Ok(MetricSpec {
                        field: field.to_string(),
                        min_attribute: min.to_string(),
                        max_attribute: max.to_string(),
                    })
                }
                _ => Err(invalid(format!(
                    "entry {entry:?} is not of the form field:min_attribute:max_attribute"
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if metrics.is_empty() {
        return Err(invalid("no metric declared".into()));
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA_JSON: &str = include_str!("../../../config/ventilator.schema.json");

    use crate::config::env::lookup_from as lookup;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            (REFERENCE_TABLE, "ref"),
            (WINDOWS_TABLE, "win"),
            (CHANGE_FLAG_BUCKET, "flags"),
            (DEAD_LETTER_BUCKET, "dl"),
            (SCHEMA, SCHEMA_JSON),
        ]
    }

    #[test]
    fn defaults_match_the_ventilator_schema() {
        let c = DeviceStatusConfig::from_lookup(lookup(&base())).unwrap();
        assert_eq!(c.metrics.len(), 3);
        assert_eq!(c.metrics[1].min_attribute, "pressure_control_min");
        assert_eq!(c.windows.size_secs(), 600);
        assert_eq!(c.change_flag_check, Duration::from_secs(60));
        let f = c.fields().unwrap();
        assert_eq!(
            (f.device, f.event_time, f.metrics.clone()),
            (0, 1, vec![4, 3, 5])
        );
    }

    #[test]
    fn errors_name_the_variable_and_the_problem() {
        let err = |extra: (&'static str, &'static str)| {
            let mut pairs = base();
            pairs.push(extra);
            DeviceStatusConfig::from_lookup(lookup(&pairs))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err((WINDOW_SLIDE_SECONDS, "240")),
            "environment variable WINDOW_SIZE_SECONDS is invalid: window size 600s is not a multiple of the slide 240s"
        );
        assert!(err((METRICS, "o2stats:min")).contains("field:min_attribute:max_attribute"));
        assert!(err((METRICS, "serialnumber:a:b")).contains("`serialnumber` is string"));
        assert!(err((DEVICE_ID_FIELD, "deviceid")).contains("no field `deviceid`"));
        assert!(err((CHANGE_FLAG_CHECK_SECONDS, "soon")).contains("CHANGE_FLAG_CHECK_SECONDS"));
        let missing = DeviceStatusConfig::from_lookup(lookup(&base()[1..])).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "environment variable REFERENCE_TABLE is not set"
        );
    }
}
