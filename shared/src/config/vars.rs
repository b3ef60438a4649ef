//! Every environment variable a function reads, each named once.
//!
//! The configuration readers (`config`, `device_status::config`,
//! `repartition::config`, `scheduler::config`) take their names from here,
//! and [`ALL`] lists them with their descriptions: `tests/configuration.rs`
//! checks that docs/configuration.md documents each one and that the
//! template sets no variable that is not here.

/// Declares each variable as a constant holding its own name, with its doc
/// comment, and lists them all in [`ALL`].
macro_rules! variables {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        $($(#[doc = $doc])+ pub const $name: &str = stringify!($name);)+

        /// Every variable: its name and its description.
        pub const ALL: &[(&str, &str)] = &[$((stringify!($name), concat!($($doc, "\n"),+)),)+];
    };
}

variables! {
    // Every function.
    /// CloudWatch namespace of the function's metrics (Embedded Metric
    /// Format in its log).
    METRICS_NAMESPACE,
    /// Set by Lambda: the function's name, the metrics' `FunctionName`
    /// dimension.
    AWS_LAMBDA_FUNCTION_NAME,
    // The stream functions (`kinesis-to-parquet`, `device-status`): where
    // the lake is, the declared schema and the record format.
    /// Bucket of the lake and its dead letters.
    LAKE_BUCKET,
    /// Prefix of the Parquet lake inside the bucket.
    LAKE_PREFIX,
    /// Prefix of dead letters inside the bucket.
    DEAD_LETTER_PREFIX,
    /// The declared schema, JSON or compact (`name:type,...`).
    SCHEMA,
    /// A file holding the declared schema, read when `SCHEMA` is unset.
    SCHEMA_FILE,
    /// The largest payload accepted, after decompression, in bytes.
    MAX_PAYLOAD_BYTES,
    /// Set by Lambda: the function's memory in MB, of which a quarter is the
    /// decoded bytes one invocation may produce.
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    /// How many objects a batch writes at once.
    WRITE_CONCURRENCY,
    /// The record format: `json` (default), `csv`, `avro`, `avro-ocf`, `grok`
    /// or `cloudwatch-logs` (subscription envelopes, each log event a row).
    FORMAT,
    /// CSV: `true` when each payload starts with a header line (default `false`).
    CSV_HEADER,
    /// CSV: the column separator, one ASCII character or `tab` (default `,`).
    CSV_DELIMITER,
    /// CSV: the quote character, one ASCII character (default `"`).
    CSV_QUOTE,
    /// Avro datum: the writer schema (JSON).
    AVRO_SCHEMA,
    /// Avro datum: a file holding the writer schema, read when `AVRO_SCHEMA` is unset.
    AVRO_SCHEMA_FILE,
    /// Grok: the pattern matched against each line (Glue's `grokPattern`).
    GROK_PATTERN,
    /// Grok: custom patterns, one `NAME regex` per line (Glue's `grokCustomPatterns`).
    GROK_CUSTOM_PATTERNS,
    /// Grok: milliseconds the lines of one payload may take to match.
    GROK_TIME_BUDGET_MS,
    /// CloudWatch Logs: how each log event's message is read: `json`
    /// (default: an object against the schema), `grok` (with `GROK_PATTERN`)
    /// or `text` (the message as it is, into `LOG_MESSAGE_FIELD`).
    LOG_MESSAGE_FORMAT,
    /// CloudWatch Logs: the field given the envelope's `logGroup` (default
    /// `loggroup`; filled when the schema declares it).
    LOG_GROUP_FIELD,
    /// CloudWatch Logs: the field given the envelope's `logStream` (default
    /// `logstream`).
    LOG_STREAM_FIELD,
    /// CloudWatch Logs: the field given the log event's `id` (default
    /// `logeventid`).
    LOG_EVENT_ID_FIELD,
    /// CloudWatch Logs: the field given the log event's `timestamp` (default
    /// `logtimestamp`): a timestamp field as a time, an int64 field in
    /// milliseconds. Naming the event-time field uses it as event time.
    LOG_TIMESTAMP_FIELD,
    /// CloudWatch Logs, `text` messages: the field given the message (default
    /// `message`).
    LOG_MESSAGE_FIELD,
    /// The record field holding the event time (device-status: its windows;
    /// kinesis-to-parquet: its event-time lag metric).
    EVENT_TIME_FIELD,
    /// The lake's layout: `hive` (default: Parquet objects under arrival-hour
    /// prefixes) or `iceberg` (an Apache Iceberg table in the Glue Data Catalog).
    LAKE_FORMAT,
    /// Iceberg: the table, `DATABASE.TABLE` in the Glue Data Catalog; created
    /// at cold start when missing, under `s3://LAKE_BUCKET/LAKE_PREFIX`.
    ICEBERG_TABLE,
    /// Iceberg: the table's hidden partition, `hour(FIELD)` or `day(FIELD)` of
    /// a required timestamp field.
    ICEBERG_PARTITION,
    /// Where the declared schema comes from: `config` (default: [`SCHEMA`] or
    /// [`SCHEMA_FILE`]) or `glue:DATABASE.TABLE` (a Glue Data Catalog table).
    SCHEMA_SOURCE,
    // `device-status` and `reference-change-flag`.
    /// The reference table (normal ranges per device).
    REFERENCE_TABLE,
    /// The reference table's key attribute.
    REFERENCE_KEY_ATTRIBUTE,
    /// The windows table.
    WINDOWS_TABLE,
    /// Bucket of the change flag.
    CHANGE_FLAG_BUCKET,
    /// Key of the change flag.
    CHANGE_FLAG_KEY,
    /// Seconds between two probes of the change flag (0: every batch).
    CHANGE_FLAG_CHECK_SECONDS,
    /// Bucket of the dead letters.
    DEAD_LETTER_BUCKET,
    /// The record field naming the device.
    DEVICE_ID_FIELD,
    /// The readings and their range attributes: `field:min_attr:max_attr,...`.
    METRICS,
    /// Window length in seconds.
    WINDOW_SIZE_SECONDS,
    /// Seconds between window starts.
    WINDOW_SLIDE_SECONDS,
    /// Days a window item is kept after its end (DynamoDB TTL).
    RETENTION_DAYS,
    // `scheduler`.
    /// The providers table.
    PROVIDERS_TABLE,
    /// ARN of the provider-etl state machine.
    STATE_MACHINE_ARN,
    /// Minutes between schedule ticks; scheduled times are floored to it to name
    /// executions.
    SCHEDULE_PERIOD_MINUTES,
    /// Minutes a provider may stay RUNNING before its execution is checked.
    STALE_RUNNING_MINUTES,
    /// Providers started (or reconciled) at once.
    START_CONCURRENCY,
    /// Attempts of each AWS call (the first plus retries) before it fails.
    AWS_MAX_ATTEMPTS,
    /// The Glue job arguments a provider's item may set (comma-separated).
    PROVIDER_JOB_ARGUMENTS,
    // The repartition workflow's tasks.
    /// The crawler of the raw lake (partitioned by ingest time).
    RAW_CRAWLER_NAME,
    /// The crawler of the repartitioned table.
    TRANSFORMED_CRAWLER_NAME,
    /// IANA zone in which "yesterday" is computed.
    TIME_ZONE,
    /// Longest range of days one run accepts.
    MAX_RANGE_DAYS,
    /// Days before yesterday a scheduled run rewrites too, for readings
    /// that arrive late.
    LATE_ARRIVAL_DAYS,
    /// Seconds between two polls of a crawler.
    CRAWLER_WAIT_SECONDS,
    /// Polls of a crawler before the workflow gives up.
    MAX_CRAWLER_POLLS,
    /// Seconds between two polls of the queries.
    QUERY_WAIT_SECONDS,
    /// Polls of the queries before the workflow gives up.
    MAX_QUERY_POLLS,
    /// Athena workgroup the queries run in (it holds the results location).
    ATHENA_WORKGROUP,
    /// Glue database of the three tables.
    GLUE_DATABASE,
    /// The raw lake's table.
    SOURCE_TABLE,
    /// The repartitioned table.
    TARGET_TABLE,
    /// DynamoDB table of the day claims: which execution writes a day of
    /// the repartitioned table.
    DAY_CLAIMS_TABLE,
    /// Most partitions one query may write.
    MAX_PARTITIONS_PER_QUERY,
    /// Hours of readings before the range that feed the moving averages.
    LOOKBACK_HOURS,
    /// A file replacing the SQL template built into the function.
    SQL_TEMPLATE_FILE,
}
