//! Encoding record batches as snappy Parquet files in memory.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema as ArrowSchema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// Builds Parquet files with the lake's settings; cheap to clone and meant to
/// be built once per container.
#[derive(Debug, Clone)]
pub struct ParquetEncoder {
    properties: Arc<WriterProperties>,
}

impl Default for ParquetEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ParquetEncoder {
    /// Snappy compression, page-level min/max statistics on every column.
    pub fn new() -> Self {
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by(format!("telemetry-lake {}", env!("CARGO_PKG_VERSION")))
            .build();
        ParquetEncoder {
            properties: Arc::new(properties),
        }
    }

    /// As [`ParquetEncoder::new`], without dictionary encoding for the
    /// columns whose values rarely repeat (timestamps, floats): building a
    /// dictionary that is then abandoned costs time and saves no space.
    pub fn for_schema(schema: &ArrowSchema) -> Self {
        let mut builder = (*Self::new().properties).clone().into_builder();
        for f in schema.fields() {
            if matches!(f.data_type(), DataType::Timestamp(_, _) | DataType::Float64) {
                builder = builder
                    .set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
            }
        }
        ParquetEncoder {
            properties: Arc::new(builder.build()),
        }
    }

    /// Encodes one batch into a complete Parquet file, with `metadata` as
    /// key-value pairs in its footer.
    pub fn encode(
        &self,
        batch: &RecordBatch,
        metadata: &[(&str, String)],
    ) -> Result<Vec<u8>, ParquetError> {
        self.encode_with_footer(batch, metadata)
            .map(|(bytes, _)| bytes)
    }

    /// [`ParquetEncoder::encode`], with the file's footer as the writer
    /// built it (row groups, column chunks and their statistics).
    pub fn encode_with_footer(
        &self,
        batch: &RecordBatch,
        metadata: &[(&str, String)],
    ) -> Result<(Vec<u8>, ParquetMetaData), ParquetError> {
        let mut props = (*self.properties).clone();
        if !metadata.is_empty() {
            let kv = metadata
                .iter()
                .map(|(k, v)| KeyValue::new((*k).to_string(), v.clone()))
                .collect();
            props = props
                .into_builder()
                .set_key_value_metadata(Some(kv))
                .build();
        }
        let mut out = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
        writer.write(batch)?;
        let footer = writer.close()?;
        Ok((out, footer))
    }
}
