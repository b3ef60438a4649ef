//! One stream batch into the Iceberg table, exactly once.
//!
//! 1. Read the table: the watermark of every stream and shard.
//! 2. Leave out the records at or below their shard's watermark (already in
//!    the table); decode the rest, good rows by event hour, bad ones as
//!    dead letters.
//! 3. Write each shard's data files (named by its first and last record)
//!    and its dead letters (keyed by its first record), then commit the
//!    files with the watermarks moved to each shard's last record.
//!
//! Nothing is committed unless every file of the batch was written, so a
//! failed write leaves the table as it was, and the retry (from the first
//! record not committed) writes the same names again. The dead letters are
//! written before the commit: once the records are committed they are
//! never read again, so their dead letters must already be in S3.
//!
//! A commit that lost the race to another shard's is retried with the same
//! files ([`crate::lake::iceberg::commit`]). One overtaken by another
//! delivery of the same records (the shard's own watermark moved into the
//! batch) is planned again from the new watermark; the files written for
//! the overtaken plan are never referenced, and are left to the table's
//! orphan-file removal (Athena `VACUUM`).

use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;
use futures::stream::{self, StreamExt};
use iceberg::spec::Transform;
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};

use crate::config::schema::Schema;
use crate::config::{IcebergSettings, PartitionTransform};
use crate::lake::iceberg::commit::{commit_files, CommitError, Committed, ShardRange};
use crate::lake::iceberg::files::{encode_files, FileNaming, PartitionedRows};
use crate::lake::iceberg::history::shard_history;
use crate::lake::iceberg::storage::split_path;
use crate::lake::iceberg::table::{
    committed_watermarks, data_file_schema, new_table_schema, partition_spec, schema_additions,
    table_properties,
};
use crate::lake::keys::{object_key, IngestHour, StreamPosition};
use crate::lake::parquet::ParquetEncoder;
use crate::lake::writer::{ObjectSink, DEAD_LETTER_EXTENSION};
use crate::stream::dead_letter::{to_json_lines, DeadLetter};
use crate::stream::format::PayloadDecoder;
use crate::stream::observed::Observed;
use crate::stream::sequence;
use crate::stream::source::{decode_record, SourceRecord};

/// Times a batch is planned again after another delivery of its records
/// committed first.
const MAX_PLANS: usize = 3;

/// The Iceberg table a stream function writes, opened at cold start.
#[derive(Debug)]
pub struct IcebergLake {
    catalog: Arc<dyn Catalog>,
    ident: TableIdent,
    table_location: String,
    arrow_schema: Arc<ArrowSchema>,
    encoder: ParquetEncoder,
    partition_name: String,
    transform: PartitionTransform,
    spec_id: i32,
    event_time: usize,
}

/// What writing one batch to the table did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IcebergReport {
    /// Stream records in the batch.
    pub records: usize,
    /// Records left out: already in the table.
    pub skipped: usize,
    /// Good rows committed.
    pub good: usize,
    /// Dead letters written.
    pub bad: usize,
    /// Fields the good records held that the schema does not declare.
    pub undeclared_fields: usize,
    /// CloudWatch Logs control messages read (skipped).
    pub control_messages: usize,
    /// Data files and dead-letter objects written, and their bytes.
    pub objects: usize,
    pub bytes: usize,
    /// The snapshot committed, if any.
    pub snapshot_id: Option<i64>,
    /// Commit attempts (1 unless the commit lost races).
    pub commit_attempts: u32,
    /// Where Lambda must retry from, when something was not committed.
    pub retry_from: Option<String>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// Event and arrival times of the records planned, and the dead
    /// letters by reason.
    pub observed: Observed,
}

/// One shard's part of a batch.
struct ShardPart<'r, 'e> {
    stream: String,
    shard: String,
    records: Vec<&'r SourceRecord<'e>>,
}

/// Cold starts racing to add the same columns: each attempt reloads the
/// table, and the winner's columns leave the others nothing to add.
const MAX_SCHEMA_UPDATES: usize = 4;

/// Adds the declared schema's new optional fields to `table`
/// ([`schema_additions`]), or refuses the declared schema, naming the field.
async fn evolve(catalog: &dyn Catalog, table: Table, declared: &Schema) -> Result<Table, String> {
    let ident = table.identifier().clone();
    let mut table = table;
    let mut last_error = String::new();
    for _ in 0..MAX_SCHEMA_UPDATES {
        let additions =
            schema_additions(declared, table.metadata().current_schema()).map_err(|e| {
                format!("the Iceberg table {ident} cannot take the declared schema: {e}")
            })?;
        if additions.is_empty() {
            return Ok(table);
        }
        let tx = Transaction::new(&table);
        let action = additions
            .iter()
            .fold(tx.update_schema(), |action, (name, field_type)| {
                action.add_column(AddColumn::optional(name, field_type.clone()))
            });
        let committed = match action.apply(tx) {
            Ok(tx) => tx.commit(catalog).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(t) => {
                let names: Vec<&str> = additions.iter().map(|(n, _)| n.as_str()).collect();
                tracing::info!(table = %ident, added = ?names, "added the declared schema's new fields");
                return Ok(t);
            }
            // Lost to another cold start (a conflict, or the column exists
            // by the time the crate re-applied the change): plan again on
            // the table as it is now.
            Err(e) => {
                last_error = e.to_string();
                table = catalog
                    .load_table(&ident)
                    .await
                    .map_err(|e| format!("cannot load the Iceberg table {ident}: {e}"))?;
            }
        }
    }
    Err(format!(
        "cannot add the declared schema's new fields to the Iceberg table {ident}: {last_error}"
    ))
}

impl IcebergLake {
    /// Opens the table of `settings` in `catalog` (the Glue Data Catalog in
    /// Lambda: [`crate::lake::iceberg::catalog::GlueCatalog`]), creating it
    /// (at `location`) from the declared schema when it does not exist, and
    /// checks that the declared fields are its columns with the same types.
    pub async fn open(
        catalog: Arc<dyn Catalog>,
        settings: &IcebergSettings,
        declared: &Schema,
        location: &str,
    ) -> Result<Self, String> {
        let namespace = NamespaceIdent::new(settings.database.clone());
        let ident = TableIdent::new(namespace.clone(), settings.table.clone());
        let transform = match settings.partition {
            PartitionTransform::Hour => Transform::Hour,
            PartitionTransform::Day => Transform::Day,
        };
        let table = match catalog.load_table(&ident).await {
            Ok(t) => t,
            Err(e) if e.kind() == iceberg::ErrorKind::TableNotFound => {
                let schema = new_table_schema(declared).map_err(|e| e.to_string())?;
                let spec = partition_spec(&schema, &settings.partition_field, transform)
                    .map_err(|e| e.to_string())?;
                let creation = TableCreation::builder()
                    .name(settings.table.clone())
                    .location(location.trim_end_matches('/').to_string())
                    .schema(schema)
                    .partition_spec(spec)
                    .properties(table_properties())
                    .build();
                match catalog.create_table(&namespace, creation).await {
                    Ok(t) => t,
                    // Another container created it first.
                    Err(e) if e.kind() == iceberg::ErrorKind::TableAlreadyExists => catalog
                        .load_table(&ident)
                        .await
                        .map_err(|e| e.to_string())?,
                    Err(e) => return Err(format!("cannot create the Iceberg table {ident}: {e}")),
                }
            }
            Err(e) => return Err(format!("cannot load the Iceberg table {ident}: {e}")),
        };
        let table = evolve(catalog.as_ref(), table, declared).await?;
        let metadata = table.metadata();
        let arrow_schema = data_file_schema(declared, metadata.current_schema()).map_err(|e| {
            format!("the Iceberg table {ident} does not fit the declared schema: {e}")
        })?;
        let spec = metadata.default_partition_spec();
        let field = spec
            .fields()
            .first()
            .ok_or_else(|| format!("the Iceberg table {ident} has no partition field"))?;
        let source = metadata
            .current_schema()
            .field_by_id(field.source_id)
            .map(|f| f.name.clone())
            .unwrap_or_default();
        if source != settings.partition_field || field.transform != transform {
            return Err(format!(
                "the Iceberg table {ident} is partitioned by {}({source}), not {}({})",
                field.transform,
                settings.partition.name(),
                settings.partition_field
            ));
        }
        let event_time = declared
            .fields
            .iter()
            .position(|f| f.name == settings.partition_field)
            .ok_or_else(|| format!("field `{}` is not declared", settings.partition_field))?;
        Ok(IcebergLake {
            catalog,
            ident,
            table_location: metadata.location().trim_end_matches('/').to_string(),
            encoder: ParquetEncoder::for_schema(&arrow_schema),
            arrow_schema,
            partition_name: field.name.clone(),
            transform: settings.partition,
            spec_id: spec.spec_id(),
            event_time,
        })
    }

    /// The table.
    pub fn ident(&self) -> &TableIdent {
        &self.ident
    }

    /// Writes and commits a batch (see the module's steps); the report
    /// says where Lambda must retry from when something was not committed.
    pub async fn write<S: ObjectSink>(
        &self,
        records: &[SourceRecord<'_>],
        decoder: &PayloadDecoder,
        sink: &S,
        dead_letter_prefix: &str,
        concurrency: usize,
    ) -> IcebergReport {
        let mut report = IcebergReport {
            records: records.len(),
            ..IcebergReport::default()
        };
        let parts = split_by_shard(records);
        for _ in 0..MAX_PLANS {
            let table = match self.catalog.load_table(&self.ident).await {
                Ok(t) => t,
                Err(e) => {
                    return self.failed(report, records, format!("cannot read the table: {e}"))
                }
            };
            match self
                .plan_and_commit(
                    &parts,
                    &table,
                    decoder,
                    sink,
                    dead_letter_prefix,
                    concurrency,
                )
                .await
            {
                Ok(mut planned) => {
                    report.observed = std::mem::take(&mut planned.observed);
                    report.skipped = planned.skipped;
                    report.good = planned.good;
                    report.bad = planned.bad;
                    report.undeclared_fields = planned.undeclared_fields;
                    report.control_messages = planned.control_messages;
                    report.objects += planned.objects;
                    report.bytes += planned.bytes;
                    match planned.outcome {
                        Ok(Committed::Snapshot { id, attempts }) => {
                            report.snapshot_id = Some(id);
                            report.commit_attempts = attempts;
                            return report;
                        }
                        Ok(Committed::AlreadyThere) => return report,
                        Err(CommitError::Overtaken(why)) => {
                            tracing::info!(table = %self.ident, %why, "planning the batch again");
                        }
                        Err(e) => return self.failed(report, records, e.to_string()),
                    }
                }
                Err(e) => return self.failed(report, records, e),
            }
        }
        self.failed(
            report,
            records,
            format!("overtaken {MAX_PLANS} times by other deliveries of the same records"),
        )
    }

    /// Reports the batch's first record not committed as where to retry.
    fn failed(
        &self,
        mut report: IcebergReport,
        records: &[SourceRecord<'_>],
        error: String,
    ) -> IcebergReport {
        tracing::error!(table = %self.ident, error = %error, "batch not committed; Lambda retries it");
        report.retry_from = records.first().map(|r| r.position.to_string());
        report.error = Some(error);
        report
    }

    /// Decodes what the watermarks leave, writes its files and dead
    /// letters, and commits.
    async fn plan_and_commit<S: ObjectSink>(
        &self,
        parts: &[ShardPart<'_, '_>],
        table: &Table,
        decoder: &PayloadDecoder,
        sink: &S,
        dead_letter_prefix: &str,
        concurrency: usize,
    ) -> Result<Planned, String> {
        let mut planned = Planned::default();
        let mut budget = decoder.budget();
        let mut objects: Vec<Object> = Vec::new();
        let mut data_files = Vec::new();
        let mut ranges = Vec::new();
        let marks = committed_watermarks(table);
        for part in parts {
            let key = format!("{}/{}", part.stream, part.shard);
            let mark = marks.get(&key).map(String::as_str);
            // The lowest record at or below the watermark, if any: only
            // then need the snapshots tell which ranges the table holds.
            let lowest = part
                .records
                .iter()
                .filter(|r| !sequence::is_after(&r.position, mark))
                .map(|r| r.position.as_ref())
                .reduce(sequence::min);
            let fresh: Vec<&SourceRecord<'_>> = match lowest {
                None => part.records.clone(),
                Some(from) => {
                    let history = shard_history(table, &key, from);
                    part.records
                        .iter()
                        .copied()
                        .filter(|r| !history.holds(&r.position))
                        .collect()
                }
            };
            planned.skipped += part.records.len() - fresh.len();
            let Some(first) = fresh.first() else {
                continue;
            };
            // The range the batch covers (a shard's records come in order,
            // so these are its first and last).
            let low = fresh
                .iter()
                .map(|r| r.position.as_ref())
                .fold(first.position.as_ref(), sequence::min);
            let high = fresh
                .iter()
                .map(|r| r.position.as_ref())
                .fold(first.position.as_ref(), sequence::max);
            let mut rows = PartitionedRows::new(
                decoder.schema(),
                Arc::clone(&self.arrow_schema),
                self.event_time,
                self.transform,
            );
            let mut letters: Vec<DeadLetter> = Vec::new();
            let observed = &mut planned.observed;
            for rec in &fresh {
                observed.arrival(rec.arrival);
                decode_record(rec, decoder, &mut budget, &mut letters, |doc| {
                    observed.event_time(&doc.values, Some(self.event_time));
                    rows.push(&doc.values);
                    Ok(())
                });
            }
            observed.dead_letters(&letters);
            planned.good += rows.len();
            planned.bad += letters.len();
            let naming = FileNaming {
                table_location: &self.table_location,
                partition_field: &self.partition_name,
                transform: self.transform,
                partition_spec_id: self.spec_id,
                stream: &part.stream,
                shard: &part.shard,
                first: low,
                last: high,
            };
            for file in encode_files(rows, &self.encoder, &naming)? {
                let (_, key) = split_path(&file.path).map_err(|e| e.to_string())?;
                objects.push(Object {
                    key: key.to_string(),
                    body: file.bytes,
                    content_type: "application/vnd.apache.parquet",
                });
                data_files.push(file.data_file);
            }
            if !letters.is_empty() {
                let pos = StreamPosition {
                    stream: &part.stream,
                    shard: &part.shard,
                    sequence_number: &first.position,
                };
                let key = object_key(
                    dead_letter_prefix,
                    IngestHour::of(first.arrival),
                    &pos,
                    DEAD_LETTER_EXTENSION,
                );
                objects.push(Object {
                    key,
                    body: to_json_lines(&letters),
                    content_type: "application/x-ndjson",
                });
            }
            ranges.push(ShardRange {
                key,
                first: low.to_string(),
                last: high.to_string(),
            });
        }
        planned.undeclared_fields = budget.undeclared_fields();
        planned.control_messages = budget.control_messages();
        if ranges.is_empty() {
            planned.outcome = Ok(Committed::AlreadyThere);
            return Ok(planned);
        }
        let written: Vec<Result<usize, String>> = stream::iter(objects)
            .map(|object| object.put(sink))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for w in written {
            let len = w?;
            planned.objects += 1;
            planned.bytes += len;
        }
        planned.outcome = commit_files(self.catalog.as_ref(), table, &data_files, &ranges).await;
        Ok(planned)
    }
}

/// An object to write: a data file or a shard's dead letters.
struct Object {
    key: String,
    body: Vec<u8>,
    content_type: &'static str,
}

impl Object {
    /// Writes it; its size.
    async fn put<S: ObjectSink>(self, sink: &S) -> Result<usize, String> {
        let len = self.body.len();
        sink.put(self.key, self.body, self.content_type)
            .await
            .map(|()| len)
            .map_err(|e| e.to_string())
    }
}

/// What one plan of a batch did.
struct Planned {
    skipped: usize,
    good: usize,
    bad: usize,
    undeclared_fields: usize,
    /// CloudWatch Logs control messages read (skipped).
    control_messages: usize,
    objects: usize,
    bytes: usize,
    observed: Observed,
    outcome: Result<Committed, CommitError>,
}

impl Default for Planned {
    fn default() -> Self {
        Planned {
            skipped: 0,
            good: 0,
            bad: 0,
            undeclared_fields: 0,
            control_messages: 0,
            objects: 0,
            bytes: 0,
            observed: Observed::default(),
            outcome: Ok(Committed::AlreadyThere),
        }
    }
}

/// The records of each stream and shard (Kafka topic and partition), in
/// the order they came.
fn split_by_shard<'r, 'e>(records: &'r [SourceRecord<'e>]) -> Vec<ShardPart<'r, 'e>> {
    let mut parts: Vec<ShardPart<'r, 'e>> = Vec::new();
    for rec in records {
        match parts
            .iter_mut()
            .find(|p| p.stream == rec.stream && p.shard == rec.shard)
        {
            Some(p) => p.records.push(rec),
            None => parts.push(ShardPart {
                stream: rec.stream.to_string(),
                shard: rec.shard.to_string(),
                records: vec![rec],
            }),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    /// Lambda's runtime runs the handler's future on a multi-threaded
    /// runtime: it must be `Send` whatever the lifetimes of its borrows.
    #[allow(dead_code)]
    fn a_batch_write_is_send<S: ObjectSink>(
        lake: &IcebergLake,
        records: &[SourceRecord<'_>],
        decoder: &PayloadDecoder,
        sink: &S,
    ) {
        assert_send(lake.write(records, decoder, sink, "dead-letters", 4));
    }
}
