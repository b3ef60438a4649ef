//! The logic the telemetry lake's functions share: the declared schema,
//! payload decoding, typed columns, Parquet encoding, partitioning and the
//! writing of a stream batch to the lake. Pure logic has no AWS types except
//! the Lambda event models; the S3 adapter lives in [`lake_writer`].

pub mod columns;
pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod env;
pub mod lake_writer;
pub mod parquet_writer;
pub mod partition;
pub mod record;
pub mod schema;
pub mod stream_batch;
pub mod stream_event;

// Input formats, schema sources and producers (issue 11).
pub mod format;
pub mod glue_schema;
pub mod kpl;

// Reference data, status and windows (device-status, reference-change-flag).
pub mod change_flag;
pub mod reference;
pub mod sequence;
pub mod status;
pub mod windows;

// Repartition workflow (start-crawler, crawler-status, start-queries, query-status).
pub mod dates;
pub mod repartition;
pub mod repartition_config;
pub mod task_error;

// Per-provider scheduler.
pub mod providers;
pub mod schedule;
