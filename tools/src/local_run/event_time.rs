//! The event-time table of a local run, made by the queries the repartition
//! workflow started. Moto's Athena accepts queries and runs none, so each
//! one is run here, unchanged, in DuckDB (`scripts/run_duckdb.py`, the
//! engine the tests run that SQL in) over the catalog as Athena would see
//! it: the raw lake downloaded from moto as a hive-partitioned view, the
//! reference table from the devices' normal ranges, and the target table
//! with the columns and partition keys of its Glue definition. The rows are
//! written back where Athena would write them, Parquet under the target
//! table's location, one prefix per event-time partition.
//!
//! The Hive layout only: with the Iceberg layout the workflow's `MERGE
//! INTO` reads Iceberg tables, which this catalog does not hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use serde_json::Value;

use crate::lake_reader;
use crate::moto::repo_root;

/// What the queries wrote, read back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventTimeTable {
    /// Where the rows were computed: DuckDB, not Athena.
    pub engine: String,
    /// `database.table`, and where its objects are.
    pub table: String,
    pub uri: String,
    /// The queries run.
    pub queries: usize,
    pub rows: usize,
    /// Parquet objects written under the table's location.
    pub objects: usize,
    /// Rows per partition (`year=2026/month=3/day=1/hour=0`).
    pub partitions: BTreeMap<String, usize>,
    /// Rows per status.
    pub by_status: BTreeMap<String, usize>,
    /// The columns, and every row (ordered by device and event time).
    pub columns: Vec<String>,
    pub all_rows: Vec<Vec<Value>>,
}

/// The names the queries use.
pub struct Catalog<'a> {
    pub database: &'a str,
    pub source: &'a str,
    pub target: &'a str,
    pub reference: &'a str,
    /// The bucket and prefix of the raw lake.
    pub lake_bucket: &'a str,
    pub lake_prefix: &'a str,
    /// The DynamoDB table of the devices' normal ranges.
    pub reference_items: &'a str,
}

/// Runs `queries` (Athena query execution ids, in the order they were
/// started) in DuckDB and writes their rows where Athena would.
pub async fn run(
    sdk: &aws_config::SdkConfig,
    catalog: &Catalog<'_>,
    queries: &[String],
) -> Result<EventTimeTable> {
    let dir = std::env::temp_dir().join(format!(
        "local-run-event-time-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    ));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(sdk, catalog, queries, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// [`run`], with `dir` to work in.
async fn run_in(
    sdk: &aws_config::SdkConfig,
    catalog: &Catalog<'_>,
    queries: &[String],
    dir: &Path,
) -> Result<EventTimeTable> {
    let s3 = &crate::moto::s3_client(sdk);
    let glue = &aws_sdk_glue::Client::new(sdk);
    let athena = aws_sdk_athena::Client::new(sdk);
    let lake = dir.join("lake");
    for o in lake_reader::list(s3, catalog.lake_bucket, catalog.lake_prefix).await? {
        let path = lake.join(&o.key);
        std::fs::create_dir_all(path.parent().unwrap_or(&lake))?;
        std::fs::write(
            &path,
            lake_reader::get(s3, catalog.lake_bucket, &o.key).await?,
        )?;
    }
    let reference = glue_table(glue, catalog.database, catalog.reference).await?;
    let target = glue_table(glue, catalog.database, catalog.target).await?;
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let ranges = reference_rows(&ddb, catalog.reference_items, &reference.columns).await?;
    put_reference(s3, &reference, &ranges).await?;

    let setup = format!(
        "CREATE SCHEMA {db};\n\
         CREATE VIEW {db}.{source} AS SELECT * FROM read_parquet('{lake}/**/*.parquet', \
         hive_partitioning = true, hive_types_autocast = false);\n\
         CREATE TABLE {db}.{reference} ({reference_columns});\n{insert}\
         CREATE TABLE {db}.{target} ({target_columns});\n",
        db = catalog.database,
        source = catalog.source,
        reference = catalog.reference,
        target = catalog.target,
        lake = lake.join(catalog.lake_prefix).display(),
        reference_columns = column_list(&reference.columns),
        insert = if ranges.is_empty() {
            String::new()
        } else {
            let tuples: Vec<String> = ranges.iter().map(|row| sql_tuple(row)).collect();
            format!(
                "INSERT INTO {}.{} VALUES {};\n",
                catalog.database,
                catalog.reference,
                tuples.join(", ")
            )
        },
        target_columns =
            column_list(&[target.columns.clone(), target.partition_keys.clone()].concat()),
    );
    let mut statements = Vec::new();
    for id in queries {
        let out = athena
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .with_context(|| format!("reading query {id}"))?;
        let sql = out
            .query_execution()
            .and_then(|q| q.query())
            .with_context(|| format!("query {id} has no text"))?;
        statements.push(sql.to_string());
    }
    let Some((first, rest)) = statements.split_first() else {
        bail!("the workflow started no query");
    };
    let out_dir = dir.join("out");
    let keys: Vec<&str> = target
        .partition_keys
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let export = format!(
        "COPY {}.{} TO '{}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY ({}))",
        catalog.database,
        catalog.target,
        out_dir.display(),
        keys.iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let order = target
        .columns
        .iter()
        .take(2)
        .map(|(n, _)| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let query = format!(
        "SELECT * FROM {}.{} ORDER BY {order}",
        catalog.database, catalog.target
    );
    let write = |name: &str, text: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let mut cmd = std::process::Command::new(repo_root().join(".venv/bin/python"));
    cmd.arg(repo_root().join("scripts/run_duckdb.py"))
        .arg(write("setup.sql", &setup)?)
        .arg(write("statement-0.sql", first)?)
        .arg(write("query.sql", &query)?);
    for (i, sql) in rest.iter().enumerate() {
        cmd.arg("--then")
            .arg(write(&format!("statement-{}.sql", i + 1), sql)?);
    }
    cmd.arg("--then").arg(write("export.sql", &export)?);
    let out = cmd
        .output()
        .context("running .venv/bin/python (make setup installs duckdb)")?;
    if !out.status.success() {
        bail!(
            "DuckDB failed on the workflow's queries: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let result: Value = serde_json::from_slice(&out.stdout).context("DuckDB's JSON")?;
    let columns: Vec<String> = result["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    let all_rows: Vec<Vec<Value>> = result["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_array().cloned())
        .collect();

    let (bucket, prefix) = split_s3(&target.location)?;
    let mut objects = 0;
    for file in files_under(&out_dir)? {
        let relative = file.strip_prefix(&out_dir)?.to_string_lossy().to_string();
        let key = format!("{}/{relative}", prefix.trim_end_matches('/'));
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .body(std::fs::read(&file)?.into())
            .send()
            .await
            .with_context(|| format!("writing s3://{bucket}/{key}"))?;
        objects += 1;
    }
    let at = |name: &str| columns.iter().position(|c| c == name);
    let mut partitions: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for row in &all_rows {
        let partition: Vec<String> = keys
            .iter()
            .filter_map(|k| Some(format!("{k}={}", row.get(at(k)?)?)))
            .collect();
        *partitions.entry(partition.join("/")).or_default() += 1;
        if let Some(status) = at("status").and_then(|i| row[i].as_str()) {
            *by_status.entry(status.to_string()).or_default() += 1;
        }
    }
    Ok(EventTimeTable {
        engine: "DuckDB".into(),
        table: format!("{}.{}", catalog.database, catalog.target),
        uri: target.location.clone(),
        queries: statements.len(),
        rows: all_rows.len(),
        objects,
        partitions,
        by_status,
        columns,
        all_rows,
    })
}

/// A Glue table's columns, partition keys (name, Glue type) and location.
struct GlueTable {
    columns: Vec<(String, String)>,
    partition_keys: Vec<(String, String)>,
    location: String,
}

async fn glue_table(glue: &aws_sdk_glue::Client, database: &str, name: &str) -> Result<GlueTable> {
    let out = glue
        .get_table()
        .database_name(database)
        .name(name)
        .send()
        .await
        .with_context(|| format!("reading the Glue table {database}.{name}"))?;
    let table = out.table().context("no table")?;
    let pairs = |columns: &[aws_sdk_glue::types::Column]| {
        columns
            .iter()
            .map(|c| {
                (
                    c.name().to_string(),
                    c.r#type().unwrap_or("string").to_string(),
                )
            })
            .collect()
    };
    let storage = table.storage_descriptor();
    Ok(GlueTable {
        columns: pairs(storage.map(|s| s.columns()).unwrap_or_default()),
        partition_keys: pairs(table.partition_keys()),
        location: storage
            .and_then(|s| s.location())
            .unwrap_or_default()
            .to_string(),
    })
}

/// `name TYPE, ...` in DuckDB's words for Glue's types.
fn column_list(columns: &[(String, String)]) -> String {
    columns
        .iter()
        .map(|(name, glue_type)| {
            let t = match glue_type.as_str() {
                "bigint" => "BIGINT",
                "int" | "integer" => "INTEGER",
                "double" => "DOUBLE",
                "float" => "FLOAT",
                "boolean" => "BOOLEAN",
                "timestamp" => "TIMESTAMP",
                "date" => "DATE",
                _ => "VARCHAR",
            };
            format!("\"{name}\" {t}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reference table's rows, its columns' values in order, read from
/// the DynamoDB table device-status reads (the same ranges): each column an
/// attribute.
async fn reference_rows(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    columns: &[(String, String)],
) -> Result<Vec<Vec<Value>>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut rows: Vec<Vec<Value>> = super::summary::scan_items(ddb, table)
        .await?
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(name, _)| match item.get(name) {
                    Some(AttributeValue::N(n)) => serde_json::from_str(n).unwrap_or(Value::Null),
                    Some(AttributeValue::S(s)) => Value::String(s.clone()),
                    _ => Value::Null,
                })
                .collect()
        })
        .collect();
    rows.sort_by_key(|r| r.first().map(ToString::to_string));
    Ok(rows)
}

/// A row as a SQL tuple.
fn sql_tuple(row: &[Value]) -> String {
    let values: Vec<String> = row
        .iter()
        .map(|v| match v {
            Value::String(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Null => "NULL".into(),
            other => other.to_string(),
        })
        .collect();
    format!("({})", values.join(", "))
}

/// Writes the reference rows where the reference table's location says
/// Athena reads them: one JSON object per line.
async fn put_reference(
    s3: &aws_sdk_s3::Client,
    table: &GlueTable,
    rows: &[Vec<Value>],
) -> Result<()> {
    let (bucket, prefix) = split_s3(&table.location)?;
    let mut body = String::new();
    for row in rows {
        let object: serde_json::Map<String, Value> = table
            .columns
            .iter()
            .zip(row)
            .map(|((name, _), v)| (name.clone(), v.clone()))
            .collect();
        body.push_str(&Value::Object(object).to_string());
        body.push('\n');
    }
    let key = format!("{}/ranges.json", prefix.trim_end_matches('/'));
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(body.into_bytes().into())
        .send()
        .await
        .with_context(|| format!("writing s3://{bucket}/{key}"))?;
    Ok(())
}

/// `s3://bucket/prefix/` as (bucket, prefix).
fn split_s3(uri: &str) -> Result<(&str, &str)> {
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .with_context(|| format!("{uri} is not s3://BUCKET/PREFIX"))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files_under(&path)?);
        } else {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
