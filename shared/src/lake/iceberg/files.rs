//! A batch's good rows as Iceberg data files: grouped by the hour or day of
//! their event time (the table's hidden partition), encoded with the lake's
//! Parquet encoder, written under names made of the records they hold.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_schema::{DataType, Schema as ArrowSchema};
use chrono::{DateTime, Utc};
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Literal, Struct,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use crate::config::schema::Schema;
use crate::config::PartitionTransform;
use crate::lake::columns::Columns;
use crate::lake::iceberg::table::PARQUET_FIELD_ID;
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
            let (bytes, footer) = encoder
                .encode_with_footer(&batch, &[])
                .map_err(|e| e.to_string())?;
            let stats = ColumnStats::of(&footer, &batch.schema());
            let path = naming.path(hour);
            let data_file = DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path(path.clone())
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::from_iter([Some(Literal::int(hour))]))
                .partition_spec_id(naming.partition_spec_id)
                .record_count(count)
                .file_size_in_bytes(bytes.len() as u64)
                .column_sizes(stats.sizes)
                .value_counts(stats.values)
                .null_value_counts(stats.nulls)
                .lower_bounds(stats.lower)
                .upper_bounds(stats.upper)
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

/// A data file's column metrics, by Iceberg field id, from its Parquet
/// footer: what Athena, Spark and pyiceberg read from the manifests to
/// skip files a query's filter cannot match (an event-time range inside
/// an hour partition, a device id) without opening them.
#[derive(Debug, Default, PartialEq)]
pub struct ColumnStats {
    /// Compressed bytes of each column.
    pub sizes: HashMap<i32, u64>,
    /// Values of each column, nulls included.
    pub values: HashMap<i32, u64>,
    pub nulls: HashMap<i32, u64>,
    /// The smallest and largest value of each column with one.
    pub lower: HashMap<i32, Datum>,
    pub upper: HashMap<i32, Datum>,
}

impl ColumnStats {
    /// The metrics of the file `footer` describes, written with `schema`
    /// (flat: column chunk `i` is field `i`, its id in the field's
    /// `PARQUET:field_id`).
    pub fn of(footer: &ParquetMetaData, schema: &ArrowSchema) -> Self {
        let mut stats = ColumnStats::default();
        let ids: Vec<Option<i32>> = schema
            .fields()
            .iter()
            .map(|f| f.metadata().get(PARQUET_FIELD_ID)?.parse().ok())
            .collect();
        for group in footer.row_groups() {
            for (i, chunk) in group.columns().iter().enumerate() {
                let (Some(Some(id)), Some(field)) = (ids.get(i), schema.fields().get(i)) else {
                    continue;
                };
                let id = *id;
                *stats.sizes.entry(id).or_default() += chunk.compressed_size().max(0) as u64;
                *stats.values.entry(id).or_default() += chunk.num_values().max(0) as u64;
                let Some(s) = chunk.statistics() else {
                    continue;
                };
                *stats.nulls.entry(id).or_default() += s.null_count_opt().unwrap_or(0);
                let Some((low, high)) = bounds(s, field.data_type()) else {
                    continue;
                };
                merge(&mut stats.lower, id, low, std::cmp::Ordering::Less);
                merge(&mut stats.upper, id, high, std::cmp::Ordering::Greater);
            }
        }
        stats
    }
}

/// Keeps in `map` the one of its value and `datum` that is `keep` of the
/// other.
fn merge(map: &mut HashMap<i32, Datum>, id: i32, datum: Datum, keep: std::cmp::Ordering) {
    match map.get(&id) {
        Some(held) if held.partial_cmp(&datum) != Some(keep.reverse()) => {}
        _ => {
            map.insert(id, datum);
        }
    }
}

/// A column chunk's min and max as Iceberg values of the column's type.
fn bounds(s: &Statistics, data_type: &DataType) -> Option<(Datum, Datum)> {
    match (s, data_type) {
        (Statistics::Int64(v), DataType::Timestamp(_, Some(_))) => Some((
            Datum::timestamptz_micros(*v.min_opt()?),
            Datum::timestamptz_micros(*v.max_opt()?),
        )),
        (Statistics::Int64(v), DataType::Int64) => {
            Some((Datum::long(*v.min_opt()?), Datum::long(*v.max_opt()?)))
        }
        (Statistics::Double(v), DataType::Float64) => {
            let (low, high) = (*v.min_opt()?, *v.max_opt()?);
            // Iceberg bounds are never NaN (the writer's statistics leave
            // NaN out; a chunk of NaN only has none worth giving).
            (!low.is_nan() && !high.is_nan()).then(|| (Datum::double(low), Datum::double(high)))
        }
        (Statistics::Boolean(v), DataType::Boolean) => {
            Some((Datum::bool(*v.min_opt()?), Datum::bool(*v.max_opt()?)))
        }
        (Statistics::ByteArray(v), DataType::Utf8) => Some((
            Datum::string(std::str::from_utf8(v.min_opt()?.data()).ok()?),
            Datum::string(std::str::from_utf8(v.max_opt()?.data()).ok()?),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_metrics_are_its_columns_bounds_counts_and_sizes_by_field_id() {
        use arrow_array::{
            ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
            TimestampMicrosecondArray,
        };
        use arrow_schema::{Field, TimeUnit};
        let field = |name: &str, t: DataType, id: i32| {
            Field::new(name, t, true).with_metadata(std::collections::HashMap::from([(
                PARQUET_FIELD_ID.to_string(),
                id.to_string(),
            )]))
        };
        let schema = Arc::new(ArrowSchema::new(vec![
            field("device", DataType::Int64, 1),
            field(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                2,
            ),
            field("o2", DataType::Float64, 3),
            field("name", DataType::Utf8, 4),
            field("ok", DataType::Boolean, 5),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![3, 1, 2])),
            Arc::new(TimestampMicrosecondArray::from(vec![30, 10, 20]).with_timezone("UTC")),
            Arc::new(Float64Array::from(vec![Some(1.5), None, Some(-2.0)])),
            Arc::new(StringArray::from(vec![Some("b"), Some("a"), None])),
            Arc::new(BooleanArray::from(vec![None, None, None])),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let (bytes, footer) = ParquetEncoder::for_schema(&schema)
            .encode_with_footer(&batch, &[])
            .unwrap();
        let stats = ColumnStats::of(&footer, &schema);
        assert_eq!(
            stats.lower,
            HashMap::from([
                (1, Datum::long(1)),
                (2, Datum::timestamptz_micros(10)),
                (3, Datum::double(-2.0)),
                (4, Datum::string("a")),
            ])
        );
        assert_eq!(
            stats.upper,
            HashMap::from([
                (1, Datum::long(3)),
                (2, Datum::timestamptz_micros(30)),
                (3, Datum::double(1.5)),
                (4, Datum::string("b")),
            ])
        );
        assert_eq!(
            stats.nulls,
            HashMap::from([(1, 0), (2, 0), (3, 1), (4, 1), (5, 3)])
        );
        assert_eq!(stats.values, (1..=5).map(|id| (id, 3)).collect());
        assert_eq!(stats.sizes.len(), 5);
        assert!(stats.sizes.values().sum::<u64>() < bytes.len() as u64);
    }

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
