//! Writing a stream batch to the lake: the batch split into runs
//! ([`runs`]), the typed columns of their good rows ([`columns`]), snappy
//! Parquet ([`parquet`]), arrival-hour partitions and deterministic keys
//! ([`keys`]), and the object sink with its S3 adapter ([`writer`]).

pub mod columns;
pub mod iceberg;
pub mod keys;
pub mod parquet;
pub mod runs;
pub mod writer;
