//! The declared schema read from a Glue Data Catalog table, as a Glue
//! streaming job reads its source table: `GetTable`, then each column's name
//! and Hive type. Read once at cold start, so it is cached per container.
//!
//! Catalog columns are nullable, so every field is optional; partition keys
//! are not part of the records and are skipped.

use aws_smithy_types::error::display::DisplayErrorContext;

use crate::config::schema::{Field, FieldType, Schema};
use crate::config::{schema_from, ConfigError, SchemaSource, StreamConfig};

/// The field type of a Hive column type, `None` for types the lake does not
/// store.
pub fn field_type_of_hive(hive: &str) -> Option<FieldType> {
    let t = hive.trim().to_ascii_lowercase();
    let base = t.split('(').next().unwrap_or_default().trim();
    Some(match base {
        "bigint" | "int" | "integer" | "smallint" | "tinyint" => FieldType::Int64,
        "double" | "float" | "decimal" => FieldType::Float64,
        "boolean" => FieldType::Boolean,
        "string" | "varchar" | "char" => FieldType::String,
        "timestamp" => FieldType::Timestamp,
        _ => return None,
    })
}

/// The schema of a list of (column name, Hive type).
pub fn schema_of_columns(columns: &[(String, String)]) -> Result<Schema, String> {
    let mut fields = Vec::with_capacity(columns.len());
    for (name, hive) in columns {
        let field_type = field_type_of_hive(hive).ok_or_else(|| {
            format!("column `{name}` has type {hive:?}, which the lake cannot store")
        })?;
        fields.push(Field {
            name: name.clone(),
            field_type,
            required: false,
            format: None,
        });
    }
    let json = serde_json::to_string(&Schema { fields }).map_err(|e| e.to_string())?;
    Schema::parse(&json).map_err(|e| e.to_string())
}

/// Reads the schema of `database.table` from the Glue Data Catalog.
pub async fn fetch(
    glue: &aws_sdk_glue::Client,
    database: &str,
    table: &str,
) -> Result<Schema, ConfigError> {
    let fail = |reason: String| ConfigError::GlueSchema {
        database: database.to_string(),
        table: table.to_string(),
        reason,
    };
    let out = glue
        .get_table()
        .database_name(database)
        .name(table)
        .send()
        .await
        .map_err(|e| fail(DisplayErrorContext(&e).to_string()))?;
    let columns: Vec<(String, String)> = out
        .table()
        .and_then(|t| t.storage_descriptor())
        .map(|sd| {
            sd.columns()
                .iter()
                .map(|c| {
                    (
                        c.name().to_string(),
                        c.r#type().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    schema_of_columns(&columns).map_err(fail)
}

/// The declared schema named by `SCHEMA_SOURCE` (read through `get`): the
/// configuration's (`SCHEMA` or `SCHEMA_FILE`) or a Glue table's, with the
/// source it came from.
pub async fn load_schema(
    get: &impl Fn(&str) -> Option<String>,
    glue: impl FnOnce() -> aws_sdk_glue::Client,
) -> Result<(Schema, SchemaSource), ConfigError> {
    let source = SchemaSource::from_lookup(get)?;
    let schema = match &source {
        SchemaSource::Config => schema_from(get)?,
        SchemaSource::GlueTable { database, table } => fetch(&glue(), database, table).await?,
    };
    Ok((schema, source))
}

/// Reads the stream configuration through `get`, taking the schema from the
/// Glue table named in `SCHEMA_SOURCE` when there is one.
pub async fn load_config(
    get: impl Fn(&str) -> Option<String>,
    glue: impl FnOnce() -> aws_sdk_glue::Client,
) -> Result<StreamConfig, ConfigError> {
    let (schema, _) = load_schema(&get, glue).await?;
    StreamConfig::with_schema(get, schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_types_map_to_lake_types_and_others_are_named() {
        let cols = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let s = schema_of_columns(&cols(&[
            ("id", "bigint"),
            ("v", "decimal(10,2)"),
            ("name", "varchar(20)"),
            ("ok", "BOOLEAN"),
            ("at", "timestamp"),
        ]))
        .unwrap();
        let types: Vec<&str> = s.fields.iter().map(|f| f.field_type.name()).collect();
        assert_eq!(
            types,
            ["int64", "float64", "string", "boolean", "timestamp"]
        );
        assert!(s.fields.iter().all(|f| !f.required));
        let e = schema_of_columns(&cols(&[("tags", "array<string>")])).unwrap_err();
        assert!(e.contains("`tags`"), "{e}");
        assert!(schema_of_columns(&[]).is_err());
    }
}
