//! The Iceberg table of a declared schema: its columns, its hidden
//! event-time partition, the Arrow schema of its data files, and the
//! stream watermarks each commit carries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_schema::{DataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit};
use iceberg::spec::{
    NestedField, PrimitiveType, Schema as IcebergSchema, Transform, Type, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{Error, ErrorKind, Result};

use crate::config::schema::{FieldType, Schema};
use crate::lake::iceberg::history::{
    lineage, BASE_SNAPSHOT, PREVIOUS_WATERMARK_PREFIX, WATERMARK_PREFIX,
};
use crate::stream::sequence;

/// The key of a Parquet field's Iceberg field id in Arrow field metadata.
pub const PARQUET_FIELD_ID: &str = "PARQUET:field_id";

/// Table properties of every table the suite creates (format version 2,
/// the crate's default). Commits are retried
/// by the suite, never by the crate: a retry must recompute the watermarks
/// from the table it lost to, which the crate's own retry (re-applying the
/// same snapshot properties on the new base) would not.
pub fn table_properties() -> HashMap<String, String> {
    HashMap::from([
        ("commit.retry.num-retries".to_string(), "0".to_string()),
        (
            "write.parquet.compression-codec".to_string(),
            "snappy".to_string(),
        ),
    ])
}

/// The Iceberg type of a declared field type; timestamps are UTC
/// (`timestamptz`).
pub fn iceberg_type(t: &FieldType) -> Type {
    Type::Primitive(match t {
        FieldType::Int64 => PrimitiveType::Long,
        FieldType::Float64 => PrimitiveType::Double,
        FieldType::Boolean => PrimitiveType::Boolean,
        FieldType::String => PrimitiveType::String,
        FieldType::Timestamp => PrimitiveType::Timestamptz,
    })
}

/// The schema of a new table: the declared fields in order, field ids from
/// 1, required as declared.
pub fn new_table_schema(declared: &Schema) -> Result<IcebergSchema> {
    let fields = declared.fields.iter().enumerate().map(|(i, f)| {
        let id = i as i32 + 1;
        let field = if f.required {
            NestedField::required(id, &f.name, iceberg_type(&f.field_type))
        } else {
            NestedField::optional(id, &f.name, iceberg_type(&f.field_type))
        };
        Arc::new(field)
    });
    IcebergSchema::builder().with_fields(fields).build()
}

/// The partition spec: `transform(field)`, named `<field>_<transform>`
/// (`eventtime_hour`), the way Athena and Spark name a hidden partition.
pub fn partition_spec(
    schema: &IcebergSchema,
    field: &str,
    transform: Transform,
) -> Result<UnboundPartitionSpec> {
    let source = schema.field_by_name(field).ok_or_else(|| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("the partition field `{field}` is not in the schema"),
        )
    })?;
    Ok(UnboundPartitionSpec::builder()
        .add_partition_field(source.id, format!("{field}_{transform}"), transform)?
        .build())
}

/// The Arrow schema of the table's data files written from `declared`: each
/// declared field with the table's field id for its name, timestamps in
/// UTC. Refuses a declared field the table does not have or has with
/// another type, naming it.
pub fn data_file_schema(declared: &Schema, table: &IcebergSchema) -> Result<Arc<ArrowSchema>> {
    let fields = declared
        .fields
        .iter()
        .map(|f| {
            let column = table.field_by_name(&f.name).ok_or_else(|| {
                Error::new(
                    ErrorKind::DataInvalid,
                    format!("field `{}` is not a column of the table", f.name),
                )
            })?;
            let want = iceberg_type(&f.field_type);
            if *column.field_type != want {
                return Err(Error::new(
                    ErrorKind::DataInvalid,
                    format!(
                        "field `{}` is {} in the declared schema and {} in the table",
                        f.name, want, column.field_type
                    ),
                ));
            }
            let dt = match f.field_type {
                FieldType::Int64 => DataType::Int64,
                FieldType::Float64 => DataType::Float64,
                FieldType::Boolean => DataType::Boolean,
                FieldType::String => DataType::Utf8,
                FieldType::Timestamp => {
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                }
            };
            Ok(
                ArrowField::new(&f.name, dt, !f.required).with_metadata(HashMap::from([(
                    PARQUET_FIELD_ID.to_string(),
                    column.id.to_string(),
                )])),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(ArrowSchema::new(fields)))
}

/// The columns the declared schema adds to the table's current schema:
/// every declared field the table does not have, each optional (nullable),
/// in declared order. Older data files read them as null.
///
/// Refuses, naming the field, what Iceberg (or the files the suite writes)
/// does not allow: a declared field whose type differs from its column's
/// (Iceberg only widens int to long and float to double, neither of which a
/// declared type can ask for), a required field the table does not have or
/// has as optional (rows already in the table may lack it), and a required
/// column the declared schema does not write.
pub fn schema_additions(
    declared: &Schema,
    table: &IcebergSchema,
) -> std::result::Result<Vec<(String, Type)>, String> {
    let mut additions = Vec::new();
    for f in &declared.fields {
        let want = iceberg_type(&f.field_type);
        match table.field_by_name(&f.name) {
            Some(column) if *column.field_type != want => {
                return Err(format!(
                    "field `{}` is {} in the table and {want} in the declared schema: \
                     a column's type cannot change to another",
                    f.name, column.field_type
                ))
            }
            Some(column) if f.required && !column.required => {
                return Err(format!(
                    "field `{}` is required in the declared schema and optional in the table: \
                     rows already in the table may have no value",
                    f.name
                ))
            }
            Some(_) => {}
            None if f.required => {
                return Err(format!(
                    "field `{}` is required in the declared schema and not a column of the \
                     table: a new field must be optional (`{}:{}?`), rows already in the \
                     table have no value for it",
                    f.name,
                    f.name,
                    f.field_type.name()
                ))
            }
            None => additions.push((f.name.clone(), want)),
        }
    }
    for column in table.as_struct().fields() {
        if column.required && declared.fields.iter().all(|f| f.name != column.name) {
            return Err(format!(
                "column `{}` of the table is required and not in the declared schema: \
                 the data files would have no value for it",
                column.name
            ));
        }
    }
    Ok(additions)
}

/// Refuses a commit that would take the table from `current` to `next`
/// unless it keeps every shard's watermark and was planned on the
/// watermarks `current` holds: no watermark moves back or disappears, and
/// each shard the new snapshot moves moved from the value it has now, and
/// the snapshot it was planned on is the table's current one.
///
/// The crate re-reads the table before it commits and, when another
/// commit landed in between, silently re-applies the append on the new
/// table with the snapshot properties computed from the old one; this is
/// the check that turns that into a conflict (the caller then plans on
/// the table as it is).
pub fn check_watermarks(current: &Table, next: &Table) -> std::result::Result<(), String> {
    let before = committed_watermarks(current);
    let after = committed_watermarks(next);
    for (key, mark) in &before {
        match after.get(key) {
            Some(m) if sequence::compare(m, mark) != std::cmp::Ordering::Less => {}
            Some(m) => {
                return Err(format!(
                    "the watermark of {key} would move back from {mark} to {m}"
                ))
            }
            None => return Err(format!("the watermark of {key} ({mark}) would be dropped")),
        }
    }
    let same_snapshot =
        current.metadata().current_snapshot_id() == next.metadata().current_snapshot_id();
    if same_snapshot {
        return Ok(());
    }
    let Some(snapshot) = next.metadata().current_snapshot() else {
        return Ok(());
    };
    let properties = &snapshot.summary().additional_properties;
    if let Some(base) = properties.get(BASE_SNAPSHOT) {
        let now = current
            .metadata()
            .current_snapshot_id()
            .map(|id| id.to_string())
            .unwrap_or_default();
        if *base != now {
            return Err(format!(
                "the commit was planned on snapshot {base:?}, but the table is at {now:?}"
            ));
        }
    }
    for (k, previous) in properties {
        let Some(key) = k.strip_prefix(PREVIOUS_WATERMARK_PREFIX) else {
            continue;
        };
        let now = before.get(key).map(String::as_str).unwrap_or("");
        if now != previous {
            return Err(format!(
                "the commit moves {key} from {previous:?}, but the table holds {now:?}"
            ));
        }
    }
    Ok(())
}

/// The watermark property of a stream and shard.
pub fn watermark_key(stream: &str, shard: &str) -> String {
    format!("{WATERMARK_PREFIX}{stream}/{shard}")
}

/// The watermarks of the table's current snapshot, by `<stream>/<shard>`:
/// every commit carries all of them forward.
pub fn committed_watermarks(table: &Table) -> BTreeMap<String, String> {
    // The newest snapshot of this suite's on the current lineage: another
    // engine's commit (Athena's OPTIMIZE, a pyiceberg append) does not carry
    // the watermarks, so the current snapshot alone would lose them.
    lineage(table)
        .into_iter()
        .map(|(_, summary)| {
            summary
                .iter()
                .filter_map(|(k, v)| {
                    Some((k.strip_prefix(WATERMARK_PREFIX)?.to_string(), v.clone()))
                })
                .collect::<BTreeMap<String, String>>()
        })
        .find(|marks| !marks.is_empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Schema {
        Schema::parse("device:int64,at:timestamp,o2:float64?,name:string").unwrap()
    }

    #[test]
    fn a_new_table_has_the_declared_fields_in_order_with_times_in_utc() {
        let s = new_table_schema(&declared()).unwrap();
        let fields: Vec<(i32, String, String, bool)> = s
            .as_struct()
            .fields()
            .iter()
            .map(|f| (f.id, f.name.clone(), f.field_type.to_string(), f.required))
            .collect();
        assert_eq!(
            fields,
            vec![
                (1, "device".into(), "long".into(), true),
                (2, "at".into(), "timestamptz".into(), true),
                (3, "o2".into(), "double".into(), false),
                (4, "name".into(), "string".into(), true),
            ]
        );
        let spec = partition_spec(&s, "at", Transform::Hour).unwrap();
        let field = &spec.fields()[0];
        assert_eq!((field.source_id, field.name.as_str()), (2, "at_hour"));
        assert!(partition_spec(&s, "nope", Transform::Hour).is_err());
    }

    #[test]
    fn new_optional_fields_are_added_and_disallowed_changes_named() {
        let table = new_table_schema(&declared()).unwrap();
        let wider =
            Schema::parse("device:int64,at:timestamp,o2:float64?,name:string,fw:string?").unwrap();
        assert_eq!(
            schema_additions(&wider, &table).unwrap(),
            vec![("fw".to_string(), Type::Primitive(PrimitiveType::String))]
        );
        assert_eq!(schema_additions(&declared(), &table).unwrap(), vec![]);
        // An optional column left out of the declared schema is written as
        // null; a required one cannot be.
        let fewer = Schema::parse("device:int64,at:timestamp,name:string").unwrap();
        assert_eq!(schema_additions(&fewer, &table).unwrap(), vec![]);
        for (schema, want) in [
            (
                "device:int64,at:timestamp,o2:float64?,name:string,fw:string",
                "field `fw` is required in the declared schema and not a column",
            ),
            (
                "device:float64,at:timestamp,o2:float64?,name:string",
                "field `device` is long in the table and double in the declared schema",
            ),
            (
                "device:int64,at:timestamp,o2:float64,name:string",
                "field `o2` is required in the declared schema and optional in the table",
            ),
            (
                "device:int64,o2:float64?,name:string",
                "column `at` of the table is required and not in the declared schema",
            ),
        ] {
            let e = schema_additions(&Schema::parse(schema).unwrap(), &table).unwrap_err();
            assert!(e.contains(want), "{schema}: {e}");
        }
    }

    #[test]
    fn data_files_carry_the_tables_field_ids_and_refuse_what_it_lacks() {
        let table = new_table_schema(&declared()).unwrap();
        let arrow = data_file_schema(&declared(), &table).unwrap();
        let ids: Vec<&str> = arrow
            .fields()
            .iter()
            .map(|f| f.metadata()[PARQUET_FIELD_ID].as_str())
            .collect();
        assert_eq!(ids, ["1", "2", "3", "4"]);
        assert_eq!(
            arrow.field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let other = Schema::parse("device:string,at:timestamp").unwrap();
        let e = data_file_schema(&other, &table).unwrap_err().to_string();
        assert!(
            e.contains("field `device` is string in the declared schema and long in the table"),
            "{e}"
        );
        let extra = Schema::parse("device:int64,more:string").unwrap();
        let e = data_file_schema(&extra, &table).unwrap_err().to_string();
        assert!(e.contains("field `more` is not a column"), "{e}");
    }
}
