//! The declared schema of the records on the stream.
//!
//! Nothing in the code knows a field name: the schema comes from configuration,
//! either as JSON (the shape of `config/ventilator.schema.json`) or as a compact
//! `name:type,name:type` list that fits in a Lambda environment variable.

use std::sync::Arc;

use arrow_schema::{DataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit};
use serde::{Deserialize, Serialize};

/// The event-time format of the seed's records: `2020-06-12 14:05:59`.
pub const DEFAULT_TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The longest field name accepted; Glue and Athena columns are at most 255.
const MAX_FIELD_NAME_LEN: usize = 255;

/// A column's type in the lake, and what JSON values convert to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A JSON integer that fits in 64 bits.
    Int64,
    /// A JSON number.
    Float64,
    /// A JSON `true` / `false`.
    Boolean,
    /// A JSON string.
    String,
    /// A JSON string parsed with the field's `format` (a `chrono` pattern, or
    /// `rfc3339`), stored as microseconds since the epoch, UTC.
    Timestamp,
}

impl FieldType {
    /// The name used in errors, configuration and Glue type mapping.
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::Int64 => "int64",
            FieldType::Float64 => "float64",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
            FieldType::Timestamp => "timestamp",
        }
    }

    fn parse(name: &str) -> Result<Self, SchemaError> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "int64" | "long" | "bigint" | "int" | "integer" => FieldType::Int64,
            "float64" | "double" | "float" => FieldType::Float64,
            "boolean" | "bool" => FieldType::Boolean,
            "string" | "varchar" => FieldType::String,
            "timestamp" => FieldType::Timestamp,
            other => return Err(SchemaError::UnknownType(other.to_string())),
        })
    }
}

/// One declared field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The JSON key and the Parquet column name.
    pub name: String,
    /// The column type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// A record without this field (or with `null`) is a bad record when true;
    /// when false the column is nullable.
    #[serde(default = "default_required")]
    pub required: bool,
    /// For timestamps: the `chrono` format of the string, or `rfc3339`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

fn default_required() -> bool {
    true
}

impl Field {
    /// The timestamp format to parse with (the default when none is declared).
    pub fn timestamp_format(&self) -> &str {
        self.format.as_deref().unwrap_or(DEFAULT_TIMESTAMP_FORMAT)
    }
}

/// The declared record schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Fields in column order.
    pub fields: Vec<Field>,
}

/// A schema that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("schema JSON is invalid: {0}")]
    Json(String),
    #[error("schema entry `{0}` is not of the form name:type")]
    Entry(String),
    #[error("unknown field type `{0}` (expected int64, float64, boolean, string or timestamp)")]
    UnknownType(String),
    #[error("schema declares no fields")]
    Empty,
    #[error("field name `{0}` is declared twice")]
    Duplicate(String),
    #[error("field name {0:?} is empty, longer than 255 bytes, or has characters other than letters, digits and `_`")]
    BadName(String),
    #[error("field `{field}` has a format but is not a timestamp")]
    FormatOnNonTimestamp { field: String },
}

impl Schema {
    /// Parses a schema from configuration text: JSON when it starts with `{`,
    /// otherwise the compact form `name:type[?],...` where a trailing `?`
    /// marks an optional field and `timestamp(FORMAT)` declares a format.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        let text = text.trim();
        let schema = if text.starts_with('{') {
            serde_json::from_str::<Schema>(text).map_err(|e| SchemaError::Json(e.to_string()))?
        } else {
            Self::parse_compact(text)?
        };
        schema.validate()?;
        Ok(schema)
    }

    fn parse_compact(text: &str) -> Result<Self, SchemaError> {
        let mut fields = Vec::new();
        for entry in split_top_level(text) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (name, ty) = entry
                .split_once(':')
                .ok_or_else(|| SchemaError::Entry(entry.to_string()))?;
            let (ty, required) = match ty.trim().strip_suffix('?') {
                Some(t) => (t, false),
                None => (ty.trim(), true),
            };
            let (ty, format) = match ty.split_once('(') {
                Some((t, rest)) => {
                    let fmt = rest
                        .strip_suffix(')')
                        .ok_or_else(|| SchemaError::Entry(entry.to_string()))?;
                    (t, Some(fmt.to_string()))
                }
                None => (ty, None),
            };
            fields.push(Field {
                name: name.trim().to_string(),
                field_type: FieldType::parse(ty)?,
                required,
                format,
            });
        }
        Ok(Schema { fields })
    }

    fn validate(&self) -> Result<(), SchemaError> {
        if self.fields.is_empty() {
            return Err(SchemaError::Empty);
        }
        for (i, f) in self.fields.iter().enumerate() {
            let ok_name = !f.name.is_empty()
                && f.name.len() <= MAX_FIELD_NAME_LEN
                && f.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok_name {
                return Err(SchemaError::BadName(f.name.clone()));
            }
            if self.fields[..i].iter().any(|g| g.name == f.name) {
                return Err(SchemaError::Duplicate(f.name.clone()));
            }
            if f.format.is_some() && f.field_type != FieldType::Timestamp {
                return Err(SchemaError::FormatOnNonTimestamp {
                    field: f.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The position of a field by its JSON key.
    pub fn index_of(&self, name: &[u8]) -> Option<usize> {
        // Length and first byte first: most fields differ in one of them,
        // so a key is compared in full against one field, not all of them.
        let first = name.first();
        self.fields.iter().position(|f| {
            let field = f.name.as_bytes();
            field.len() == name.len() && field.first() == first && field == name
        })
    }

    /// The Arrow schema of the Parquet files written for this schema.
    pub fn arrow_schema(&self) -> Arc<ArrowSchema> {
        let fields: Vec<ArrowField> = self
            .fields
            .iter()
            .map(|f| {
                let dt = match f.field_type {
                    FieldType::Int64 => DataType::Int64,
                    FieldType::Float64 => DataType::Float64,
                    FieldType::Boolean => DataType::Boolean,
                    FieldType::String => DataType::Utf8,
                    FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
                };
                ArrowField::new(&f.name, dt, !f.required)
            })
            .collect();
        Arc::new(ArrowSchema::new(fields))
    }
}

/// Splits on commas that are not inside parentheses (formats may hold commas).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPACT: &str = "id:int64,at:timestamp,name:string,score:float64?,ok:boolean";

    #[test]
    fn compact_form_parses_types_and_optionality() {
        let s = Schema::parse(COMPACT).unwrap();
        assert_eq!(s.fields.len(), 5);
        assert_eq!(s.fields[0].field_type, FieldType::Int64);
        assert_eq!(s.fields[1].timestamp_format(), DEFAULT_TIMESTAMP_FORMAT);
        assert!(!s.fields[3].required);
        assert!(s.fields[4].required);
        assert_eq!(s.index_of(b"name"), Some(2));
        assert_eq!(s.index_of(b"nope"), None);
        // Same length and first byte as a field, different name.
        let s = Schema::parse("manufacturer:string,minutevolume:int64").unwrap();
        assert_eq!(s.index_of(b"minutevolume"), Some(1));
        assert_eq!(s.index_of(b"manufacturer"), Some(0));
        assert_eq!(s.index_of(b"manufacturex"), None);
        assert_eq!(s.index_of(b""), None);
    }

    #[test]
    fn compact_form_takes_a_timestamp_format_with_commas() {
        let s = Schema::parse("t:timestamp(%d/%m/%Y, %H:%M),x:int64").unwrap();
        assert_eq!(s.fields[0].format.as_deref(), Some("%d/%m/%Y, %H:%M"));
        assert_eq!(s.fields[1].name, "x");
    }

    #[test]
    fn json_form_matches_the_shipped_config_file() {
        let json = include_str!("../../../config/ventilator.schema.json");
        let s = Schema::parse(json).unwrap();
        assert_eq!(s.fields.len(), 7);
        assert!(s.fields.iter().all(|f| f.required));
        let arrow = s.arrow_schema();
        assert_eq!(arrow.fields().len(), 7);
    }

    #[test]
    fn bad_schemas_are_rejected_with_the_reason() {
        assert_eq!(Schema::parse(""), Err(SchemaError::Empty));
        assert_eq!(
            Schema::parse("a:int64,a:string"),
            Err(SchemaError::Duplicate("a".into()))
        );
        assert_eq!(
            Schema::parse("a:decimal"),
            Err(SchemaError::UnknownType("decimal".into()))
        );
        assert_eq!(Schema::parse("a"), Err(SchemaError::Entry("a".into())));
        assert!(matches!(
            Schema::parse("a b:int64"),
            Err(SchemaError::BadName(_))
        ));
        assert!(matches!(
            Schema::parse("a:int64(%Y)"),
            Err(SchemaError::FormatOnNonTimestamp { .. })
        ));
        assert!(matches!(
            Schema::parse("{\"fields\": 3}"),
            Err(SchemaError::Json(_))
        ));
    }
}
