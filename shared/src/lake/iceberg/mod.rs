//! The lake as an Apache Iceberg table in the Glue Data Catalog, committed
//! exactly once.
//!
//! A batch's good rows become Parquet data files (the lake's own encoder)
//! partitioned by the hour of their event time, named by the records they
//! hold ([`files`]); one fast append commits them together with every
//! shard's watermark and its batch's range ([`commit`]), so a batch
//! delivered again commits nothing twice and a range Lambda gave up is
//! still written when replayed ([`history`]). The table's schema and partition spec come from the
//! declared schema ([`table`]); metadata goes through the Glue catalog
//! ([`catalog`]) and the suite's S3 client ([`storage`]).

pub mod batch;
pub mod catalog;
pub mod commit;
pub mod files;
pub mod history;
pub mod storage;
pub mod table;
