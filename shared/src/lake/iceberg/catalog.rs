//! The Glue Data Catalog as an Iceberg catalog, on the suite's Glue client.
//!
//! A table is a Glue table whose parameters say `table_type = ICEBERG` and
//! where its current metadata JSON is (`metadata_location`), as Athena,
//! Spark and pyiceberg read it. A commit writes the new metadata JSON and
//! then moves `metadata_location` with `UpdateTable`, conditioned on the
//! Glue table's `VersionId` as read: a commit that lost the race gets
//! `ConcurrentModificationException`, reported as a retryable commit
//! conflict, and so is a commit whose stream watermarks were computed on an
//! older table ([`check_watermarks`]).
//!
//! The `iceberg-catalog-glue` crate does the same but refuses `timestamptz`
//! columns when it maps the schema to Glue columns (`Conversion from
//! Timestamptz is not supported`), on every create and commit; here a
//! `timestamptz` column is a Glue `timestamp`, which is what Athena calls it.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use aws_sdk_glue::types::{Column, StorageDescriptor, TableInput};
use aws_smithy_types::error::display::DisplayErrorContext;
use iceberg::io::FileIO;

use crate::lake::iceberg::table::check_watermarks;
use iceberg::spec::{PrimitiveType, Schema, TableMetadata, TableMetadataBuilder, Type};
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, Runtime,
    TableCommit, TableCreation, TableIdent,
};

/// The Glue parameter holding a table's current metadata JSON.
pub const METADATA_LOCATION: &str = "metadata_location";
const PREVIOUS_METADATA_LOCATION: &str = "previous_metadata_location";
const TABLE_TYPE: &str = "table_type";
const ICEBERG: &str = "ICEBERG";

/// Iceberg tables in Glue databases (one namespace level: the database).
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
    file_io: FileIO,
}

impl GlueCatalog {
    /// A catalog on `client`, reading and writing metadata through `file_io`.
    pub fn new(client: aws_sdk_glue::Client, file_io: FileIO) -> Self {
        GlueCatalog { client, file_io }
    }

    fn database(namespace: &NamespaceIdent) -> Result<&str> {
        match namespace.as_ref().as_slice() {
            [database] => Ok(database),
            _ => Err(Error::new(
                ErrorKind::DataInvalid,
                format!("a Glue namespace is one database name, not {namespace:?}"),
            )),
        }
    }

    /// The table, its metadata location and the Glue table's version.
    async fn read(&self, ident: &TableIdent) -> Result<(Table, String)> {
        let database = Self::database(ident.namespace())?;
        let got = self
            .client
            .get_table()
            .database_name(database)
            .name(ident.name())
            .send()
            .await;
        let table = match got {
            Ok(out) => out.table.ok_or_else(|| not_found(ident))?,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                return Err(not_found(ident))
            }
            Err(e) => return Err(glue_error("cannot read", ident, &e)),
        };
        let parameters = table.parameters.unwrap_or_default();
        if !parameters
            .get(TABLE_TYPE)
            .is_some_and(|t| t.eq_ignore_ascii_case(ICEBERG))
        {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!("the Glue table {ident} is not an Iceberg table (table_type)"),
            ));
        }
        let location = parameters.get(METADATA_LOCATION).ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("the Glue table {ident} has no {METADATA_LOCATION}"),
            )
        })?;
        let metadata = TableMetadata::read_from(&self.file_io, location).await?;
        let version = table.version_id.unwrap_or_default();
        Ok((self.table(ident, metadata, location)?, version))
    }

    fn table(&self, ident: &TableIdent, metadata: TableMetadata, location: &str) -> Result<Table> {
        Table::builder()
            .file_io(self.file_io.clone())
            .metadata(metadata)
            .metadata_location(location)
            .identifier(ident.clone())
            .runtime(Runtime::try_current()?)
            .build()
    }
}

fn not_found(ident: &TableIdent) -> Error {
    Error::new(ErrorKind::TableNotFound, format!("no Glue table {ident}"))
}

fn glue_error<E>(what: &str, ident: &TableIdent, e: &aws_sdk_glue::error::SdkError<E>) -> Error
where
    E: std::error::Error + 'static,
{
    Error::new(
        ErrorKind::Unexpected,
        format!("{what} the Glue table {ident}: {}", DisplayErrorContext(e)),
    )
}

fn unsupported(what: &str) -> Error {
    Error::new(
        ErrorKind::FeatureUnsupported,
        format!("{what} is not done by the suite's Glue catalog"),
    )
}

/// The Glue (Hive) name of an Iceberg column type.
pub fn glue_type(t: &Type) -> String {
    match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => "boolean".into(),
            PrimitiveType::Int => "int".into(),
            PrimitiveType::Long => "bigint".into(),
            PrimitiveType::Float => "float".into(),
            PrimitiveType::Double => "double".into(),
            PrimitiveType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            PrimitiveType::Date => "date".into(),
            PrimitiveType::Time | PrimitiveType::String | PrimitiveType::Uuid => "string".into(),
            PrimitiveType::Timestamp
            | PrimitiveType::Timestamptz
            | PrimitiveType::TimestampNs
            | PrimitiveType::TimestamptzNs => "timestamp".into(),
            PrimitiveType::Fixed(_) | PrimitiveType::Binary => "binary".into(),
        },
        Type::Struct(s) => format!(
            "struct<{}>",
            s.fields()
                .iter()
                .map(|f| format!("{}:{}", f.name, glue_type(&f.field_type)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Type::List(l) => format!("array<{}>", glue_type(&l.element_field.field_type)),
        Type::Map(m) => format!(
            "map<{},{}>",
            glue_type(&m.key_field.field_type),
            glue_type(&m.value_field.field_type)
        ),
    }
}

/// The Glue table input of an Iceberg table: its columns (for Athena's
/// and the console's listing), location and metadata location.
fn table_input(
    name: &str,
    metadata: &TableMetadata,
    location: &str,
    previous: Option<&str>,
) -> Result<TableInput> {
    let schema: &Schema = metadata.current_schema();
    let columns = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            Column::builder()
                .name(&f.name)
                .r#type(glue_type(&f.field_type))
                .set_comment(f.doc.clone())
                .build()
                .map_err(|e| Error::new(ErrorKind::DataInvalid, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut parameters: HashMap<String, String> = HashMap::from([
        (TABLE_TYPE.to_string(), ICEBERG.to_string()),
        (METADATA_LOCATION.to_string(), location.to_string()),
    ]);
    if let Some(previous) = previous {
        parameters.insert(PREVIOUS_METADATA_LOCATION.into(), previous.into());
    }
    TableInput::builder()
        .name(name)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(parameters))
        .storage_descriptor(
            StorageDescriptor::builder()
                .location(metadata.location())
                .set_columns(Some(columns))
                .build(),
        )
        .build()
        .map_err(|e| Error::new(ErrorKind::DataInvalid, e.to_string()))
}

#[async_trait]
impl Catalog for GlueCatalog {
    async fn list_namespaces(
        &self,
        _parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        Err(unsupported("listing databases"))
    }

    async fn create_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        Err(unsupported("creating a database (the template does)"))
    }

    async fn get_namespace(&self, _namespace: &NamespaceIdent) -> Result<Namespace> {
        Err(unsupported("describing a database"))
    }

    async fn namespace_exists(&self, _namespace: &NamespaceIdent) -> Result<bool> {
        Err(unsupported("looking up a database"))
    }

    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> Result<()> {
        Err(unsupported("changing a database"))
    }

    async fn drop_namespace(&self, _namespace: &NamespaceIdent) -> Result<()> {
        Err(unsupported("dropping a database"))
    }

    async fn list_tables(&self, _namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        Err(unsupported("listing tables"))
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let database = Self::database(namespace)?;
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        if creation.location.is_none() {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!("the table {ident} needs a location"),
            ));
        }
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let location = MetadataLocation::new_with_metadata(metadata.location(), &metadata);
        metadata.write_to(&self.file_io, &location).await?;
        let location = location.to_string();
        let input = table_input(ident.name(), &metadata, &location, None)?;
        let created = self
            .client
            .create_table()
            .database_name(database)
            .table_input(input)
            .send()
            .await;
        match created {
            Ok(_) => self.table(&ident, metadata, &location),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                // Another instance created it first; its metadata stands,
                // and the one written here is never referenced.
                let _ = self.file_io.delete(&location).await;
                Err(Error::new(
                    ErrorKind::TableAlreadyExists,
                    format!("the Glue table {ident} exists"),
                ))
            }
            Err(e) => Err(glue_error("cannot create", &ident, &e)),
        }
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        Ok(self.read(table).await?.0)
    }

    async fn drop_table(&self, _table: &TableIdent) -> Result<()> {
        Err(unsupported("dropping a table"))
    }

    async fn purge_table(&self, _table: &TableIdent) -> Result<()> {
        Err(unsupported("purging a table"))
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        match self.read(table).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::TableNotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn rename_table(&self, _src: &TableIdent, _dest: &TableIdent) -> Result<()> {
        Err(unsupported("renaming a table"))
    }

    async fn register_table(
        &self,
        _table: &TableIdent,
        _metadata_location: String,
    ) -> Result<Table> {
        Err(unsupported("registering a table"))
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let ident = commit.identifier().clone();
        let database = Self::database(ident.namespace())?.to_string();
        let (current, version) = self.read(&ident).await?;
        let previous = current.metadata_location_result()?.to_string();
        // The commit's requirements (the table's UUID, the snapshot it was
        // built on) are checked against the table as read here, and so are
        // the stream watermarks it carries.
        let next = commit.apply(current.clone())?;
        if let Err(why) = check_watermarks(&current, &next) {
            return Err(Error::new(
                ErrorKind::CatalogCommitConflicts,
                format!("the commit to {ident} was planned on an older table: {why}"),
            )
            .with_retryable(true));
        }
        let location = next.metadata_location_result()?.to_string();
        next.metadata()
            .write_to(&self.file_io, &MetadataLocation::from_str(&location)?)
            .await?;
        let input = table_input(ident.name(), next.metadata(), &location, Some(&previous))?;
        let updated = self
            .client
            .update_table()
            .database_name(&database)
            .table_input(input)
            .version_id(version)
            .skip_archive(true)
            .send()
            .await;
        match updated {
            Ok(_) => Ok(next),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_concurrent_modification_exception()) =>
            {
                // The metadata written for the lost commit is never
                // referenced: remove it.
                let _ = self.file_io.delete(&location).await;
                Err(Error::new(
                    ErrorKind::CatalogCommitConflicts,
                    format!("the Glue table {ident} changed since it was read"),
                )
                .with_retryable(true))
            }
            Err(e) => Err(glue_error("cannot update", &ident, &e)),
        }
    }
}
