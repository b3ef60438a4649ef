//! A batch's good rows as Iceberg data files: grouped by the hour or day of
//! their event time (the table's hidden partition), encoded with the lake's
//! Parquet encoder, written under names made of the records they hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;
use chrono::{DateTime, Utc};
use iceberg::spec::{DataContentType, DataFile, DataFileBuilder, DataFileFormat, Literal, Struct};

use crate::config::schema::Schema;
use crate::config::PartitionTransform;
use crate::lake::columns::Columns;
use crate::lake::keys::key_part;
use crate::lake::parquet::ParquetEncoder;
use crate::stream::document::Value;

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// The `hour` transform of a timestamp: hours since 1970-01-01T00:00Z.
pub fn hour_of(micros: i64) -> i32 {
    micros.div_euclid(MICROS_PER_HOUR) as i32
}

/// The partition value of a timestamp: hours (`hour`) or days (`day`)
/// since 1970-01-01T00:00Z.
pub fn partition_value(transform: PartitionTransform, micros: i64) -> i32 {
    match transform {
        PartitionTransform::Hour => hour_of(micros),
        PartitionTransform::Day => micros.div_euclid(MICROS_PER_DAY) as i32,
    }
}

/// The partition directory of a value, as Iceberg writers name it
/// (`eventtime_hour=2026-11-22-10`, `eventtime_day=2026-11-22`).
pub fn partition_path(partition_field: &str, transform: PartitionTransform, value: i32) -> String {
    let (seconds, format) = match transform {
        PartitionTransform::Hour => (3600, "%Y-%m-%d-%H"),
        PartitionTransform::Day => (86_400, "%Y-%m-%d"),
    };
    let at = DateTime::<Utc>::from_timestamp(i64::from(value) * seconds, 0).unwrap_or_default();
    format!("{partition_field}={}", at.format(format))
}

/// The good rows of a batch, by partition value of their event time.
#[derive(Debug)]
pub struct PartitionedRows {
    schema: Schema,
    arrow_schema: Arc<ArrowSchema>,
    event_time: usize,
    transform: PartitionTransform,
    hours: BTreeMap<i32, Columns>,
}

impl PartitionedRows {
    /// Empty, for rows of `schema` whose event time is field `event_time`,
    /// partitioned by `transform` of it, written with `arrow_schema` (the
    /// table's field ids).
    pub fn new(
        schema: &Schema,
        arrow_schema: Arc<ArrowSchema>,
        event_time: usize,
        transform: PartitionTransform,
    ) -> Self {
        PartitionedRows {
            schema: schema.clone(),
            arrow_schema,
            event_time,
            transform,
            hours: BTreeMap::new(),
        }
    }

    /// Adds one good row. Its event time is required by configuration, so
    /// a row always has one.
    pub fn push(&mut self, values: &[Value<'_>]) {
        let Value::Timestamp(micros) = values[self.event_time] else {
            return;
        };
        let (schema, arrow_schema) = (&self.schema, &self.arrow_schema);
        self.hours
            .entry(partition_value(self.transform, micros))
            .or_insert_with(|| Columns::with_capacity(schema, Arc::clone(arrow_schema), 64))
            .push(values);
    }

    /// Rows added.
    pub fn len(&self) -> usize {
        self.hours.values().map(Columns::len).sum()
    }

    /// True when no row was added.
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// The partition values with rows, and the rows, in value order.
    pub fn into_hours(self) -> impl Iterator<Item = (i32, Columns)> {
        self.hours.into_iter()
    }
}

/// One encoded data file, ready to be written and committed.
#[derive(Debug, Clone)]
pub struct EncodedFile {
    /// Its full path (`s3://bucket/.../data/<partition>/<name>.parquet`).
    pub path: String,
    pub bytes: Vec<u8>,
    pub data_file: DataFile,
}

/// Where a batch's data files go: the table's data directory, the
/// partition field, and the stream position that names them.
#[derive(Debug, Clone)]
pub struct FileNaming<'a> {
    /// The table location (`s3://bucket/prefix/table`), without a slash.
    pub table_location: &'a str,
    pub partition_field: &'a str,
    pub transform: PartitionTransform,
    pub partition_spec_id: i32,
    pub stream: &'a str,
    pub shard: &'a str,
    /// The first and last sequence numbers of the batch's records.
    pub first: &'a str,
    pub last: &'a str,
}

impl FileNaming<'_> {
    /// The path of the batch's data file for partition value `hour`: the
    /// same records give the same path, so a retry rewrites, never adds, a
    /// file.
    pub fn path(&self, hour: i32) -> String {
        format!(
            "{}/data/{}/{}.{}.{}-{}.parquet",
            self.table_location.trim_end_matches('/'),
            partition_path(self.partition_field, self.transform, hour),
            key_part(self.stream),
            key_part(self.shard),
            key_part(self.first),
            key_part(self.last),
        )
    }
}

/// Encodes each partition's rows as one Parquet data file.
pub fn encode_files(
    rows: PartitionedRows,
    encoder: &ParquetEncoder,
    naming: &FileNaming<'_>,
) -> Result<Vec<EncodedFile>, String> {
    rows.into_hours()
        .map(|(hour, columns)| {
            let count = columns.len() as u64;
            let batch = columns.finish().map_err(|e| e.to_string())?;
            let bytes = encoder.encode(&batch, &[]).map_err(|e| e.to_string())?;
            let path = naming.path(hour);
            let data_file = DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path(path.clone())
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::from_iter([Some(Literal::int(hour))]))
                .partition_spec_id(naming.partition_spec_id)
                .record_count(count)
                .file_size_in_bytes(bytes.len() as u64)
                .build()
                .map_err(|e| e.to_string())?;
            Ok(EncodedFile {
                path,
                bytes,
                data_file,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_days_count_from_the_epoch_and_name_their_directory() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(MICROS_PER_HOUR - 1), 0);
        assert_eq!(hour_of(-1), -1);
        let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 22)
            .unwrap()
            .and_hms_opt(10, 59, 59)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        let hour = hour_of(at);
        assert_eq!(
            partition_path("eventtime_hour", PartitionTransform::Hour, hour),
            "eventtime_hour=2026-11-22-10"
        );
        let day = partition_value(PartitionTransform::Day, at);
        assert_eq!(day, hour / 24);
        assert_eq!(partition_value(PartitionTransform::Day, -1), -1);
        assert_eq!(
            partition_path("eventtime_day", PartitionTransform::Day, day),
            "eventtime_day=2026-11-22"
        );
        let naming = FileNaming {
            table_location: "s3://lake/warehouse/readings/",
            partition_field: "eventtime_hour",
            transform: PartitionTransform::Hour,
            partition_spec_id: 0,
            stream: "vent",
            shard: "shardId-000000000000",
            first: "49",
            last: "51",
        };
        assert_eq!(
            naming.path(hour),
            "s3://lake/warehouse/readings/data/eventtime_hour=2026-11-22-10/\
             vent.shardId-000000000000.49-51.parquet"
        );
    }
}
