//! Arrow column builders filled row by row from parsed records.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
pub use arrow_schema::Schema as ArrowSchema;
use arrow_schema::{ArrowError, DataType};

use crate::config::schema::{FieldType, Schema};
use crate::stream::document::Value;

enum Column {
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    String(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

/// The typed columns of the good records of one output object.
pub struct Columns {
    arrow_schema: Arc<ArrowSchema>,
    columns: Vec<Column>,
    rows: usize,
}

impl Columns {
    /// Empty columns for a schema, with room for `rows` rows: builders that
    /// grow by doubling copy every value about once more.
    pub fn with_capacity(schema: &Schema, arrow_schema: Arc<ArrowSchema>, rows: usize) -> Self {
        let columns = schema
            .fields
            .iter()
            .zip(arrow_schema.fields())
            .map(|(f, arrow)| match f.field_type {
                FieldType::Int64 => Column::Int64(Int64Builder::with_capacity(rows)),
                FieldType::Float64 => Column::Float64(Float64Builder::with_capacity(rows)),
                FieldType::Boolean => Column::Boolean(BooleanBuilder::with_capacity(rows)),
                FieldType::String => Column::String(StringBuilder::with_capacity(rows, rows * 16)),
                FieldType::Timestamp => {
                    // The Hive layout's timestamps have no zone; the Iceberg
                    // table's are UTC (`timestamptz`).
                    let zone = match arrow.data_type() {
                        DataType::Timestamp(_, zone) => zone.clone(),
                        _ => None,
                    };
                    Column::Timestamp(
                        TimestampMicrosecondBuilder::with_capacity(rows).with_timezone_opt(zone),
                    )
                }
            })
            .collect();
        Columns {
            arrow_schema,
            columns,
            rows: 0,
        }
    }

    /// Appends one record whose values came from [`crate::stream::document::parse_document`]
    /// with the same schema, so every value matches its column's type.
    pub fn push(&mut self, values: &[Value<'_>]) {
        debug_assert_eq!(values.len(), self.columns.len());
        for (col, v) in self.columns.iter_mut().zip(values) {
            match (col, v) {
                (Column::Int64(b), Value::Int64(x)) => b.append_value(*x),
                (Column::Float64(b), Value::Float64(x)) => b.append_value(*x),
                (Column::Boolean(b), Value::Boolean(x)) => b.append_value(*x),
                (Column::String(b), Value::String(x)) => b.append_value(x),
                (Column::Timestamp(b), Value::Timestamp(x)) => b.append_value(*x),
                (Column::Int64(b), _) => b.append_null(),
                (Column::Float64(b), _) => b.append_null(),
                (Column::Boolean(b), _) => b.append_null(),
                (Column::String(b), _) => b.append_null(),
                (Column::Timestamp(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
    }

    /// The number of rows pushed.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Finishes the builders into a record batch.
    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| match c {
                Column::Int64(b) => Arc::new(b.finish()) as ArrayRef,
                Column::Float64(b) => Arc::new(b.finish()),
                Column::Boolean(b) => Arc::new(b.finish()),
                Column::String(b) => Arc::new(b.finish()),
                Column::Timestamp(b) => Arc::new(b.finish()),
            })
            .collect();
        debug_assert!(arrays.iter().all(|a| a.len() == self.rows));
        RecordBatch::try_new(self.arrow_schema, arrays)
    }
}

impl std::fmt::Debug for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lens: Vec<usize> = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Int64(b) => b.len(),
                Column::Float64(b) => b.len(),
                Column::Boolean(b) => b.len(),
                Column::String(b) => b.len(),
                Column::Timestamp(b) => b.len(),
            })
            .collect();
        f.debug_struct("Columns")
            .field("rows", &self.rows)
            .field("column_lens", &lens)
            .finish()
    }
}
