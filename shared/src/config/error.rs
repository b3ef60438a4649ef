//! Why a function's configuration cannot be used: the variable at fault
//! and what is wrong with it.

use crate::config::schema::SchemaError;

/// A configuration value is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("the schema of Glue table {database}.{table} cannot be used: {reason}")]
    GlueSchema {
        database: String,
        table: String,
        reason: String,
    },
    #[error("the schema in {name} is invalid: {source}")]
    Schema {
        name: &'static str,
        source: SchemaError,
    },
}
