//! Iceberg's file I/O on the suite's own S3 client.
//!
//! The `iceberg` crate reads and writes table metadata (metadata JSON,
//! manifest lists, manifests) through a [`Storage`]; its S3 implementation
//! lives in another crate, built on opendal and a second HTTP stack. This
//! one is the functions' `aws-sdk-s3` client: the same credentials (the
//! Lambda role's, refreshed by the SDK), endpoint (moto in tests), retries
//! and timeouts as every other S3 call of the suite.
//!
//! Paths are `s3://bucket/key`. The client is process-wide state
//! ([`S3Storage::install`]): `Storage` must be serialisable for the crate,
//! and a client is not.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage,
    StorageConfig, StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

static CLIENT: OnceLock<aws_sdk_s3::Client> = OnceLock::new();

/// Iceberg storage on S3 through the process's S3 client.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct S3Storage;

/// Builds [`S3Storage`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct S3StorageFactory;

impl S3Storage {
    /// Makes `client` the one Iceberg's file I/O uses (the first call wins:
    /// a function builds its clients once per container).
    pub fn install(client: aws_sdk_s3::Client) {
        let _ = CLIENT.set(client);
    }

    /// A `FileIO` on this storage.
    pub fn file_io() -> FileIO {
        FileIOBuilder::new(Arc::new(S3StorageFactory)).build()
    }

    fn client() -> Result<&'static aws_sdk_s3::Client> {
        CLIENT.get().ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                "no S3 client installed for Iceberg's file I/O",
            )
        })
    }
}

/// The bucket and key of an `s3://bucket/key` path.
pub fn split_path(path: &str) -> Result<(&str, &str)> {
    path.strip_prefix("s3://")
        .or_else(|| path.strip_prefix("s3a://"))
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("{path:?} is not an s3://bucket/key path"),
            )
        })
}

fn s3_error<E>(what: &str, path: &str, e: &aws_sdk_s3::error::SdkError<E>) -> Error
where
    E: std::error::Error + 'static,
{
    Error::new(
        ErrorKind::Unexpected,
        format!("{what} {path}: {}", DisplayErrorContext(e)),
    )
}

#[typetag::serde]
impl StorageFactory for S3StorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(S3Storage))
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for S3Storage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (bucket, key) = split_path(path)?;
        match Self::client()?
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(s3_error("cannot look up", path, &e)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (bucket, key) = split_path(path)?;
        let head = Self::client()?
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("cannot look up", path, &e))?;
        Ok(FileMetadata {
            size: head.content_length().unwrap_or(0).max(0) as u64,
        })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        read_range(path, None).await
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        Ok(Box::new(S3FileRead {
            path: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (bucket, key) = split_path(path)?;
        Self::client()?
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(bs.into())
            .send()
            .await
            .map_err(|e| s3_error("cannot write", path, &e))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        Ok(Box::new(S3FileWrite {
            path: path.to_string(),
            buffer: Vec::new(),
            closed: false,
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (bucket, key) = split_path(path)?;
        Self::client()?
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("cannot delete", path, &e))?;
        Ok(())
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        Err(Error::new(
            ErrorKind::FeatureUnsupported,
            format!("deleting everything under {path} is not done here"),
        ))
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(S3Storage), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(S3Storage), path.to_string()))
    }
}

async fn read_range(path: &str, range: Option<Range<u64>>) -> Result<Bytes> {
    let (bucket, key) = split_path(path)?;
    let mut get = S3Storage::client()?.get_object().bucket(bucket).key(key);
    if let Some(r) = &range {
        if r.start >= r.end {
            return Ok(Bytes::new());
        }
        get = get.range(format!("bytes={}-{}", r.start, r.end - 1));
    }
    let out = get
        .send()
        .await
        .map_err(|e| s3_error("cannot read", path, &e))?;
    let body = out.body.collect().await.map_err(|e| {
        Error::new(
            ErrorKind::Unexpected,
            format!("cannot read the body of {path}: {e}"),
        )
    })?;
    Ok(body.into_bytes())
}

struct S3FileRead {
    path: String,
}

#[async_trait]
impl FileRead for S3FileRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        read_range(&self.path, Some(range)).await
    }
}

/// A file written whole on close: Iceberg's metadata files are small.
struct S3FileWrite {
    path: String,
    buffer: Vec<u8>,
    closed: bool,
}

#[async_trait]
impl FileWrite for S3FileWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        if self.closed {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!("{} is already closed", self.path),
            ));
        }
        self.buffer.extend_from_slice(&bs);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!("{} is already closed", self.path),
            ));
        }
        self.closed = true;
        let bytes = Bytes::from(std::mem::take(&mut self.buffer));
        S3Storage.write(&self.path, bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_bucket_and_key() {
        assert_eq!(
            split_path("s3://lake/warehouse/t/metadata/1.json").unwrap(),
            ("lake", "warehouse/t/metadata/1.json")
        );
        for bad in [
            "lake/key",
            "s3://lake",
            "s3:///key",
            "s3://lake/",
            "file:///x",
        ] {
            assert!(split_path(bad).is_err(), "{bad}");
        }
    }
}
