//! Reading the lake back: object listings, Parquet rows and dead letters.

use anyhow::{Context, Result};
use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use telemetry_lake::stream::dead_letter::DeadLetter;

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: i64,
}

/// Every object under `prefix`, in key order.
pub async fn list(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
        for o in page.contents() {
            out.push(ObjectInfo {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or(0),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The bytes of an object.
pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Bytes> {
    let obj = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("getting s3://{bucket}/{key}"))?;
    Ok(obj
        .body
        .collect()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
        .into_bytes())
}

/// The record batches of a Parquet object.
pub fn parquet_batches(bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// The key-value metadata of a Parquet object's footer.
pub fn parquet_metadata(bytes: Bytes) -> Result<Vec<(String, String)>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    Ok(kv
        .into_iter()
        .map(|kv| (kv.key, kv.value.unwrap_or_default()))
        .collect())
}

/// The dead letters of a JSON-lines object.
pub fn dead_letters(bytes: &[u8]) -> Result<Vec<DeadLetter>> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).context("parsing a dead letter"))
        .collect()
}
