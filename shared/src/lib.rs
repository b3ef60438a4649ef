//! Everything the telemetry lake's functions share, one module per pipeline.
//! A function crate (`functions/<name>`) holds only its handler and its
//! wiring; the logic, the configuration and the stores live here
//! (docs/architecture.md gives the rule).
//!
//! - [`config`]: the environment a function reads, the declared schema and
//!   where it comes from.
//! - [`stream`]: a stream event and its records: the event reader,
//!   decompression, formats, KPL, dead letters and sequence numbers.
//! - [`lake`]: writing a batch to the lake: runs, columns, Parquet, keys and
//!   the object sink.
//! - [`device_status`]: status, windows, reference data, the change flag and
//!   the window store.
//! - [`repartition`]: the repartition workflow's days, queries, configuration
//!   and task errors.
//! - [`scheduler`]: providers, schedules, executions and the scheduler's
//!   configuration.
//! - [`metrics`]: what every function measures, as CloudWatch Embedded
//!   Metric Format.

pub mod config;
pub mod device_status;
pub mod lake;
pub mod metrics;
pub mod repartition;
pub mod scheduler;
pub mod stream;
