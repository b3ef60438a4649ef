//! Configuration read from the environment at cold start.
//!
//! Every environment variable the functions read is named here, once. A
//! missing or malformed value fails the cold start with a message naming the
//! variable, so a misconfigured deployment never processes a record.
//!
//! Submodules: the AWS SDK configuration ([`aws`]), reading variables with errors that name them ([`env`]), the
//! declared schema ([`schema`]) and the schema read from a Glue table
//! ([`glue_schema`]).

pub mod aws;
pub mod env;
mod error;
pub mod glue_schema;
pub mod schema;
pub mod vars;

pub use self::error::ConfigError;

use crate::config::env::positive;
use crate::config::vars::*;
use std::sync::Arc;

use crate::config::schema::{FieldType, Schema};
use crate::stream::format::{
    AvroWriterSchema, CloudWatchLogs, CsvOptions, EnvelopeFields, Format, GrokPattern,
    MessageFormat, DEFAULT_GROK_TIME_BUDGET,
};
use std::time::Duration;

/// Default for [`MAX_PAYLOAD_BYTES`]: Kinesis' own 1 MiB record limit.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The function memory assumed when Lambda does not say (MB).
pub const DEFAULT_FUNCTION_MEMORY_MB: usize = 1024;

/// The decoded bytes one invocation may produce over all its records: a
/// quarter of the function's memory ([`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`],
/// set by Lambda), and never less than one payload.
pub fn decode_budget_from(
    get: &impl Fn(&str) -> Option<String>,
    max_payload_bytes: usize,
) -> Result<usize, ConfigError> {
    let mb = positive(
        get,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
        DEFAULT_FUNCTION_MEMORY_MB,
    )?;
    Ok(((mb << 20) / 4).max(max_payload_bytes))
}
/// Default for [`WRITE_CONCURRENCY`].
pub const DEFAULT_WRITE_CONCURRENCY: usize = 4;

/// The event-time field when [`EVENT_TIME_FIELD`] is unset.
pub const DEFAULT_EVENT_TIME_FIELD: &str = "eventtime";

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
    /// Decoded bytes one invocation may produce over all its records
    /// ([`decode_budget_from`]).
    pub decode_budget_bytes: usize,
    /// Objects written at once ([`WRITE_CONCURRENCY`]).
    pub write_concurrency: usize,
    /// The record format ([`FORMAT`] and its options).
    pub format: Format,
    /// The lake's layout ([`LAKE_FORMAT`] and its options).
    pub lake_format: LakeFormat,
    /// The field whose newest value gives the event-time lag metric
    /// ([`EVENT_TIME_FIELD`]); no lag is measured when the schema has no
    /// timestamp field of that name.
    pub event_time_field: String,
}

impl StreamConfig {
    /// The position of the event-time field in the schema, when it is
    /// declared as a timestamp.
    pub fn event_time_index(&self) -> Option<usize> {
        self.schema
            .fields
            .iter()
            .position(|f| f.name == self.event_time_field && f.field_type == FieldType::Timestamp)
    }
}

/// How the lake is laid out ([`LAKE_FORMAT`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LakeFormat {
    /// Parquet objects under arrival-hour prefixes, catalogued by a crawler.
    #[default]
    Hive,
    /// An Apache Iceberg table in the Glue Data Catalog.
    Iceberg(IcebergSettings),
}

/// Where the Iceberg table is and how it is partitioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcebergSettings {
    /// The Glue database ([`ICEBERG_TABLE`]).
    pub database: String,
    /// The table's name in it.
    pub table: String,
    /// The timestamp field of the hidden partition ([`ICEBERG_PARTITION`]).
    pub partition_field: String,
    /// The partition's transform of it.
    pub partition: PartitionTransform,
}

/// The time transforms a hidden partition may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionTransform {
    Hour,
    Day,
}

impl PartitionTransform {
    /// Its name in Iceberg (`hour`, `day`).
    pub fn name(self) -> &'static str {
        match self {
            PartitionTransform::Hour => "hour",
            PartitionTransform::Day => "day",
        }
    }
}

/// True when [`LAKE_FORMAT`] is `iceberg`; `hive` or unset is the Hive
/// layout, anything else an error naming the variable.
pub fn is_iceberg(get: &impl Fn(&str) -> Option<String>) -> Result<bool, ConfigError> {
    match get(LAKE_FORMAT).as_deref().map(str::trim) {
        None | Some("" | "hive") => Ok(false),
        Some("iceberg") => Ok(true),
        Some(other) => Err(ConfigError::Invalid {
            name: LAKE_FORMAT,
            reason: format!("{other:?} is neither `hive` nor `iceberg`"),
        }),
    }
}

/// Reads [`LAKE_FORMAT`] and, for Iceberg, [`ICEBERG_TABLE`] and
/// [`ICEBERG_PARTITION`], whose field must be a required timestamp of
/// `schema`.
fn lake_format_from(
    get: &impl Fn(&str) -> Option<String>,
    schema: &Schema,
) -> Result<LakeFormat, ConfigError> {
    let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let invalid = |name: &'static str, reason: String| ConfigError::Invalid { name, reason };
    if !is_iceberg(get)? {
        return Ok(LakeFormat::Hive);
    }
    let table = set(ICEBERG_TABLE).ok_or(ConfigError::Missing(ICEBERG_TABLE))?;
    let (database, table) = table
        .trim()
        .split_once('.')
        .filter(|(d, t)| !d.is_empty() && !t.is_empty() && !t.contains('.'))
        .ok_or_else(|| invalid(ICEBERG_TABLE, format!("{table:?} is not DATABASE.TABLE")))?;
    let partition = set(ICEBERG_PARTITION).ok_or(ConfigError::Missing(ICEBERG_PARTITION))?;
    let spec = partition.trim();
    let (transform, field) = spec
        .strip_suffix(')')
        .and_then(|s| s.split_once('('))
        .ok_or_else(|| {
            invalid(
                ICEBERG_PARTITION,
                format!("{spec:?} is not hour(FIELD) or day(FIELD)"),
            )
        })?;
    let transform = match transform.trim() {
        "hour" => PartitionTransform::Hour,
        "day" => PartitionTransform::Day,
        other => {
            return Err(invalid(
                ICEBERG_PARTITION,
                format!("the transform {other:?} is neither `hour` nor `day`"),
            ))
        }
    };
    let field = field.trim();
    match schema.fields.iter().find(|f| f.name == field) {
        Some(f) if f.field_type == FieldType::Timestamp && f.required => {}
        Some(_) => {
            return Err(invalid(
                ICEBERG_PARTITION,
                format!("field `{field}` is not a required timestamp of the schema"),
            ))
        }
        None => {
            return Err(invalid(
                ICEBERG_PARTITION,
                format!("field `{field}` is not in the schema"),
            ))
        }
    }
    Ok(LakeFormat::Iceberg(IcebergSettings {
        database: database.to_string(),
        table: table.to_string(),
        partition_field: field.to_string(),
        partition: transform,
    }))
}

/// Where the declared schema comes from ([`SCHEMA_SOURCE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    /// [`SCHEMA`] or [`SCHEMA_FILE`].
    Config,
    /// The columns of a Glue Data Catalog table.
    GlueTable { database: String, table: String },
}

impl SchemaSource {
    /// Reads [`SCHEMA_SOURCE`] through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let Some(v) = get(SCHEMA_SOURCE).filter(|v| !v.trim().is_empty()) else {
            return Ok(SchemaSource::Config);
        };
        let v = v.trim();
        if v.eq_ignore_ascii_case("config") {
            return Ok(SchemaSource::Config);
        }
        let table = v.strip_prefix("glue:").and_then(|t| t.split_once('.'));
        match table {
            Some((db, t)) if !db.is_empty() && !t.is_empty() && !t.contains('.') => {
                Ok(SchemaSource::GlueTable {
                    database: db.to_string(),
                    table: t.to_string(),
                })
            }
            _ => Err(ConfigError::Invalid {
                name: SCHEMA_SOURCE,
                reason: format!("{v:?} is neither `config` nor `glue:DATABASE.TABLE`"),
            }),
        }
    }
}

impl StreamConfig {
    /// Reads the configuration through `get`, which returns a variable's value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let schema = schema_from(&get)?;
        Self::with_schema(get, schema)
    }

    /// Reads everything but the schema through `get`, taking the schema
    /// given (read from a Glue table, see [`crate::config::glue_schema`]).
    pub fn with_schema(
        get: impl Fn(&str) -> Option<String>,
        schema: Schema,
    ) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let max_payload_bytes = positive(&get, MAX_PAYLOAD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES)?;
        let format = format_from(&get)?;
        check_format(&format, &schema)?;
        Ok(StreamConfig {
            lake_bucket: required(LAKE_BUCKET)?,
            lake_prefix: required(LAKE_PREFIX)?,
            dead_letter_prefix: required(DEAD_LETTER_PREFIX)?,
            max_payload_bytes,
            decode_budget_bytes: decode_budget_from(&get, max_payload_bytes)?,
            write_concurrency: positive(&get, WRITE_CONCURRENCY, DEFAULT_WRITE_CONCURRENCY)?,
            format,
            lake_format: lake_format_from(&get, &schema)?,
            event_time_field: get(EVENT_TIME_FIELD)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_EVENT_TIME_FIELD.to_string()),
            schema,
        })
    }
}

/// Reads [`FORMAT`] and the options of the chosen format, compiling what
/// must be compiled (Avro schema, grok pattern) so a bad one fails the cold
/// start.
pub fn format_from(get: &impl Fn(&str) -> Option<String>) -> Result<Format, ConfigError> {
    let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let invalid = |name: &'static str, reason: String| ConfigError::Invalid { name, reason };
    let name = set(FORMAT).unwrap_or_else(|| "json".to_string());
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "json" => Format::Json,
        "csv" => {
            let header = match set(CSV_HEADER).map(|v| v.trim().to_ascii_lowercase()) {
                None => false,
                Some(v) if v == "true" => true,
                Some(v) if v == "false" => false,
                Some(v) => return Err(invalid(CSV_HEADER, format!("{v:?} is not true or false"))),
            };
            let byte = |name: &'static str, default: u8| -> Result<u8, ConfigError> {
                match get(name).filter(|v| !v.is_empty()) {
                    None => Ok(default),
                    Some(v) if v.eq_ignore_ascii_case("tab") || v == "\\t" => Ok(b'\t'),
                    Some(v) if v.len() == 1 && v.is_ascii() && v != "\n" && v != "\r" => {
                        Ok(v.as_bytes()[0])
                    }
                    Some(v) => Err(invalid(name, format!("{v:?} is not one ASCII character"))),
                }
            };
            let options = CsvOptions {
                header,
                delimiter: byte(CSV_DELIMITER, b',')?,
                quote: byte(CSV_QUOTE, b'"')?,
            };
            if options.delimiter == options.quote {
                return Err(invalid(CSV_QUOTE, "the quote is also the delimiter".into()));
            }
            Format::Csv(options)
        }
        "avro" | "avro-datum" => {
            let (name, text) = match set(AVRO_SCHEMA) {
                Some(text) => (AVRO_SCHEMA, text),
                None => {
                    let path = set(AVRO_SCHEMA_FILE).ok_or(ConfigError::Missing(AVRO_SCHEMA))?;
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        invalid(AVRO_SCHEMA_FILE, format!("cannot read {path}: {e}"))
                    })?;
                    (AVRO_SCHEMA_FILE, text)
                }
            };
            Format::AvroDatum(Arc::new(
                AvroWriterSchema::parse(&text).map_err(|e| invalid(name, e))?,
            ))
        }
        "avro-ocf" | "avro-file" => Format::AvroFile,
        "grok" => Format::Grok(grok_from(get)?),
        "cloudwatch-logs" => {
            let message = match set(LOG_MESSAGE_FORMAT).map(|v| v.trim().to_ascii_lowercase()) {
                None => MessageFormat::Json,
                Some(v) if v == "json" => MessageFormat::Json,
                Some(v) if v == "grok" => MessageFormat::Grok(grok_from(get)?),
                Some(v) if v == "text" => MessageFormat::Text,
                Some(v) => {
                    return Err(invalid(
                        LOG_MESSAGE_FORMAT,
                        format!("{v:?} is not one of json, grok, text"),
                    ))
                }
            };
            let defaults = EnvelopeFields::default();
            let name =
                |var: &str, default: String| set(var).map_or(default, |v| v.trim().to_string());
            Format::CloudWatchLogs(Arc::new(CloudWatchLogs {
                message,
                fields: EnvelopeFields {
                    log_group: name(LOG_GROUP_FIELD, defaults.log_group),
                    log_stream: name(LOG_STREAM_FIELD, defaults.log_stream),
                    event_id: name(LOG_EVENT_ID_FIELD, defaults.event_id),
                    timestamp: name(LOG_TIMESTAMP_FIELD, defaults.timestamp),
                    message: name(LOG_MESSAGE_FIELD, defaults.message),
                },
            }))
        }
        other => {
            return Err(invalid(
                FORMAT,
                format!("{other:?} is not one of json, csv, avro, avro-ocf, grok, cloudwatch-logs"),
            ))
        }
    })
}

/// Reads [`GROK_PATTERN`] and its options, compiling the pattern.
fn grok_from(get: &impl Fn(&str) -> Option<String>) -> Result<Arc<GrokPattern>, ConfigError> {
    let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let pattern = set(GROK_PATTERN).ok_or(ConfigError::Missing(GROK_PATTERN))?;
    let custom = get(GROK_CUSTOM_PATTERNS).unwrap_or_default();
    let compiled = GrokPattern::compile(&pattern, &custom).map_err(|e| {
        let name = if e.contains("custom pattern") {
            GROK_CUSTOM_PATTERNS
        } else {
            GROK_PATTERN
        };
        ConfigError::Invalid { name, reason: e }
    })?;
    let budget = positive(
        get,
        GROK_TIME_BUDGET_MS,
        DEFAULT_GROK_TIME_BUDGET.as_millis() as usize,
    )?;
    Ok(Arc::new(
        compiled.with_time_budget(Duration::from_millis(budget as u64)),
    ))
}

/// Checks the format's options against the declared schema (a CloudWatch
/// Logs text message needs its field), so a mismatch fails the cold start.
pub fn check_format(format: &Format, schema: &Schema) -> Result<(), ConfigError> {
    match format {
        Format::CloudWatchLogs(f) => f.check(schema).map_err(|reason| ConfigError::Invalid {
            name: LOG_MESSAGE_FORMAT,
            reason,
        }),
        _ => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::env::lookup_from as lookup;

    const BASE: &[(&str, &str)] = &[
        (LAKE_BUCKET, "b"),
        (LAKE_PREFIX, "raw"),
        (DEAD_LETTER_PREFIX, "dl"),
        (SCHEMA, "a:int64"),
    ];

    #[test]
    fn the_decode_budget_is_a_quarter_of_the_functions_memory() {
        let read = |pairs: &[(&str, &str)]| decode_budget_from(&lookup(pairs), 1 << 20);
        assert_eq!(read(&[]).unwrap(), 256 << 20);
        assert_eq!(
            read(&[(AWS_LAMBDA_FUNCTION_MEMORY_SIZE, "256")]).unwrap(),
            64 << 20
        );
        // Never less than one payload.
        assert_eq!(
            read(&[(AWS_LAMBDA_FUNCTION_MEMORY_SIZE, "2")]).unwrap(),
            1 << 20
        );
        let e = read(&[(AWS_LAMBDA_FUNCTION_MEMORY_SIZE, "lots")]).unwrap_err();
        assert!(
            e.to_string().contains(AWS_LAMBDA_FUNCTION_MEMORY_SIZE),
            "{e}"
        );
    }

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
    fn each_format_is_read_with_its_options_and_errors_name_the_variable() {
        let with = |extra: &[(&str, &str)]| {
            let mut pairs = BASE.to_vec();
            pairs.extend_from_slice(extra);
            StreamConfig::from_lookup(lookup(&pairs))
        };
        assert_eq!(with(&[]).unwrap().format.name(), "json");
        let c = with(&[
            (FORMAT, "csv"),
            (CSV_HEADER, "true"),
            (CSV_DELIMITER, "tab"),
        ])
        .unwrap();
        match c.format {
            Format::Csv(o) => assert_eq!((o.header, o.delimiter, o.quote), (true, b'\t', b'"')),
            other => panic!("{other:?}"),
        }
        let avro = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"}]}"#;
        assert_eq!(
            with(&[(FORMAT, "avro"), (AVRO_SCHEMA, avro)])
                .unwrap()
                .format
                .name(),
            "avro"
        );
        assert_eq!(
            with(&[(FORMAT, "avro-ocf")]).unwrap().format.name(),
            "avro-ocf"
        );
        assert_eq!(
            with(&[(FORMAT, "grok"), (GROK_PATTERN, "%{INT:a}")])
                .unwrap()
                .format
                .name(),
            "grok"
        );
        let c = with(&[
            (FORMAT, "cloudwatch-logs"),
            (LOG_MESSAGE_FORMAT, "grok"),
            (GROK_PATTERN, "%{INT:a}"),
            (LOG_GROUP_FIELD, "group"),
        ])
        .unwrap();
        match c.format {
            Format::CloudWatchLogs(f) => {
                assert_eq!(f.message.name(), "grok");
                assert_eq!(f.fields.log_group, "group");
                assert_eq!(f.fields.log_stream, EnvelopeFields::default().log_stream);
            }
            other => panic!("{other:?}"),
        }
        for (extra, variable) in [
            (
                &[(FORMAT, "cloudwatch-logs"), (LOG_MESSAGE_FORMAT, "xml")][..],
                LOG_MESSAGE_FORMAT,
            ),
            (
                &[(FORMAT, "cloudwatch-logs"), (LOG_MESSAGE_FORMAT, "grok")][..],
                GROK_PATTERN,
            ),
            // BASE's schema declares no `message` field for text messages.
            (
                &[(FORMAT, "cloudwatch-logs"), (LOG_MESSAGE_FORMAT, "text")][..],
                LOG_MESSAGE_FORMAT,
            ),
            (&[(FORMAT, "xml")][..], FORMAT),
            (&[(FORMAT, "csv"), (CSV_HEADER, "yes")][..], CSV_HEADER),
            (&[(FORMAT, "csv"), (CSV_DELIMITER, ";;")][..], CSV_DELIMITER),
            (&[(FORMAT, "avro")][..], AVRO_SCHEMA),
            (&[(FORMAT, "avro"), (AVRO_SCHEMA, "{")][..], AVRO_SCHEMA),
            (&[(FORMAT, "grok")][..], GROK_PATTERN),
            (
                &[(FORMAT, "grok"), (GROK_PATTERN, "%{NOPE:a}")][..],
                GROK_PATTERN,
            ),
            (
                &[
                    (FORMAT, "grok"),
                    (GROK_PATTERN, "%{INT:a}"),
                    (GROK_CUSTOM_PATTERNS, "X"),
                ][..],
                GROK_CUSTOM_PATTERNS,
            ),
        ] {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.contains(variable), "{extra:?}: {err}");
        }
    }

    #[test]
    fn the_schema_source_is_config_or_a_glue_table() {
        let src = |v: &str| SchemaSource::from_lookup(lookup(&[(SCHEMA_SOURCE, v)]));
        assert_eq!(
            SchemaSource::from_lookup(lookup(&[])).unwrap(),
            SchemaSource::Config
        );
        assert_eq!(src("config").unwrap(), SchemaSource::Config);
        assert_eq!(
            src("glue:lake.metrics").unwrap(),
            SchemaSource::GlueTable {
                database: "lake".into(),
                table: "metrics".into()
            }
        );
        for bad in ["glue:lake", "glue:.t", "dynamo:x.y", "glue:a.b.c"] {
            assert!(
                src(bad).unwrap_err().to_string().contains(SCHEMA_SOURCE),
                "{bad}"
            );
        }
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
