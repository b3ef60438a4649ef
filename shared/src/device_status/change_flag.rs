//! The reference table's change flag: one S3 object, never deleted, holding
//! a version that grows by one with every batch of changes.
//!
//! The writer reads the flag and writes `version + 1` with a conditional PUT
//! (`If-Match` the ETag it read, or `If-None-Match: *` when there is no flag
//! yet), retrying on `412 Precondition Failed`, so concurrent writers never
//! lose a version. Readers remember the ETag they saw and probe with a
//! conditional GET (`If-None-Match`): `304 Not Modified` costs no body.
//! Because the flag is never deleted, every reader instance sees every
//! change, unlike the seed's delete-after-read, where the first reader to
//! delete the flag hides the change from the others.

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::config::env::required;
use crate::config::vars::{CHANGE_FLAG_BUCKET, CHANGE_FLAG_KEY};
use crate::config::ConfigError;

/// How many times a writer retries after losing a race to another writer.
const MAX_PUBLISH_ATTEMPTS: usize = 10;

/// The flag's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeFlag {
    /// Grows by one with every published batch of changes.
    pub version: u64,
    /// The keys changed by the latest batch, each once.
    pub changed_keys: Vec<String>,
    /// When the flag was written, RFC 3339 UTC.
    pub updated_at: String,
}

/// Where the flag lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagLocation {
    pub bucket: String,
    pub key: String,
}

/// The flag's key when [`CHANGE_FLAG_KEY`] is unset: the same for the
/// function that writes the flag and the one that reads it.
pub const DEFAULT_CHANGE_FLAG_KEY: &str = "reference/change-flag.json";

impl FlagLocation {
    /// Where the flag lives, from [`CHANGE_FLAG_BUCKET`] and
    /// [`CHANGE_FLAG_KEY`] read through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(FlagLocation {
            bucket: required(&get, CHANGE_FLAG_BUCKET)?,
            key: required(&get, CHANGE_FLAG_KEY)
                .unwrap_or_else(|_| DEFAULT_CHANGE_FLAG_KEY.to_string()),
        })
    }
}

/// The flag could not be read or written: the world's fault, retried.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("could not read s3://{bucket}/{key}: {message}")]
    Read {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("could not write s3://{bucket}/{key}: {message}")]
    Write {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("s3://{bucket}/{key} is not a change flag: {message}")]
    Malformed {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("s3://{bucket}/{key} kept changing under {attempts} attempts to write it")]
    Contended {
        bucket: String,
        key: String,
        attempts: usize,
    },
}

/// What a probe of the flag found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Same ETag as last seen (or still no flag).
    Unchanged,
    /// The flag moved; its new ETag (`None` if it disappeared).
    Changed(Option<String>),
}

/// Reads and writes the change flag.
#[derive(Debug, Clone)]
pub struct ChangeFlagStore {
    client: aws_sdk_s3::Client,
    location: FlagLocation,
}

impl ChangeFlagStore {
    /// A store for the flag at `location`, with a client built once per container.
    pub fn new(client: aws_sdk_s3::Client, location: FlagLocation) -> Self {
        ChangeFlagStore { client, location }
    }

    /// The flag's location.
    pub fn location(&self) -> &FlagLocation {
        &self.location
    }

    /// The flag and its ETag, `None` when there is no flag yet.
    pub async fn read(&self) -> Result<Option<(String, ChangeFlag)>, FlagError> {
        let FlagLocation { bucket, key } = &self.location;
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.read_error(DisplayErrorContext(&e).to_string())),
        };
        let etag = out.e_tag.clone().unwrap_or_default();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| self.read_error(e.to_string()))?
            .into_bytes();
        let flag = serde_json::from_slice(&body).map_err(|e| FlagError::Malformed {
            bucket: bucket.clone(),
            key: key.clone(),
            message: e.to_string(),
        })?;
        Ok(Some((etag, flag)))
    }

    /// The flag's current ETag, `None` when there is no flag yet.
    pub async fn etag(&self) -> Result<Option<String>, FlagError> {
        match self.probe(None).await? {
            Probe::Changed(etag) => Ok(etag),
            Probe::Unchanged => Ok(None),
        }
    }

    /// Whether the flag moved since the reader saw `seen` (an ETag, `None`
    /// for "no flag"): a conditional GET, answered `304` without a body
    /// when nothing changed.
    pub async fn probe(&self, seen: Option<&str>) -> Result<Probe, FlagError> {
        let FlagLocation { bucket, key } = &self.location;
        let mut get = self.client.get_object().bucket(bucket).key(key);
        if let Some(etag) = seen {
            get = get.if_none_match(etag);
        }
        match get.send().await {
            Ok(out) => {
                let etag = out.e_tag.clone();
                if etag.is_some() && etag.as_deref() == seen {
                    Ok(Probe::Unchanged)
                } else {
                    Ok(Probe::Changed(etag))
                }
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) => {
                Ok(Probe::Unchanged)
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(match seen {
                None => Probe::Unchanged,
                Some(_) => Probe::Changed(None),
            }),
            Err(e) => Err(self.read_error(DisplayErrorContext(&e).to_string())),
        }
    }

    /// Writes the next version of the flag naming `changed_keys`, retrying
    /// when another writer got there first. Returns the flag written.
    pub async fn publish(
        &self,
        changed_keys: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<ChangeFlag, FlagError> {
        let FlagLocation { bucket, key } = &self.location;
        for _ in 0..MAX_PUBLISH_ATTEMPTS {
            let current = self.read().await?;
            let flag = ChangeFlag {
                version: current.as_ref().map_or(0, |(_, f)| f.version) + 1,
                changed_keys: changed_keys.clone(),
                updated_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            };
            let body = serde_json::to_vec(&flag).map_err(|e| self.write_error(e.to_string()))?;
            let put = self
                .client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(body));
            let put = match &current {
                Some((etag, _)) => put.if_match(etag),
                None => put.if_none_match("*"),
            };
            match put.send().await {
                Ok(_) => return Ok(flag),
                // 412: another writer moved the flag; 409: a concurrent
                // conditional write is in flight. Read again and retry.
                Err(e)
                    if e.raw_response()
                        .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) =>
                {
                    tracing::info!(bucket = %bucket, key = %key, "change flag moved under us; retrying");
                }
                Err(e) => return Err(self.write_error(DisplayErrorContext(&e).to_string())),
            }
        }
        Err(FlagError::Contended {
            bucket: bucket.clone(),
            key: key.clone(),
            attempts: MAX_PUBLISH_ATTEMPTS,
        })
    }

    fn read_error(&self, message: String) -> FlagError {
        FlagError::Read {
            bucket: self.location.bucket.clone(),
            key: self.location.key.clone(),
            message,
        }
    }

    fn write_error(&self, message: String) -> FlagError {
        FlagError::Write {
            bucket: self.location.bucket.clone(),
            key: self.location.key.clone(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_is_required_and_the_key_has_a_default() {
        assert_eq!(
            FlagLocation::from_lookup(|_| None).unwrap_err().to_string(),
            "environment variable CHANGE_FLAG_BUCKET is not set"
        );
        let loc = FlagLocation::from_lookup(|n| (n == CHANGE_FLAG_BUCKET).then(|| "b".to_string()))
            .unwrap();
        assert_eq!(
            (loc.bucket.as_str(), loc.key.as_str()),
            ("b", DEFAULT_CHANGE_FLAG_KEY)
        );
    }
}
