//! Records written by the Kinesis Producer Library (KPL) with aggregation:
//! one Kinesis record holding many user records.
//!
//! Layout: the magic bytes `F3 89 9A C2`, a protobuf `AggregatedRecord`, and
//! the MD5 digest of the protobuf bytes. A record with the magic bytes but a
//! wrong digest or an unreadable body is a bad record as a whole (the KCL
//! would pass it on as one opaque record; here it could only fail the
//! schema, so it is dead-lettered with the precise reason instead).
//!
//! A user record's position is its Kinesis record's sequence number plus its
//! index in `records` (the sub-sequence number). Objects stay keyed by the
//! Kinesis sequence number: Lambda checkpoints and retries whole Kinesis
//! records, so every user record of an aggregate always lands in the same
//! run and keys stay idempotent.

use md5::{Digest, Md5};
use prost::Message;

/// The leading bytes of an aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The length of the MD5 trailer.
const DIGEST_LEN: usize = 16;

/// The protobuf body of an aggregated record (the KPL's `messages.proto`).
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecord>,
}

/// One user record of an aggregate.
#[derive(Clone, PartialEq, Message)]
pub struct UserRecord {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// A user record's tag.
#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Why an aggregated record cannot be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KplError {
    #[error("KPL aggregated record is too short to hold its MD5 trailer ({len} bytes)")]
    Truncated { len: usize },
    #[error(
        "KPL aggregated record fails its MD5 check (trailer {expected}, body digests to {actual})"
    )]
    BadDigest { expected: String, actual: String },
    #[error("KPL aggregated record body is not a valid AggregatedRecord: {message}")]
    BadBody { message: String },
    #[error("KPL aggregated record holds no user records")]
    NoUserRecords,
}

impl KplError {
    /// The dead-letter reason.
    pub fn kind(&self) -> &'static str {
        match self {
            KplError::Truncated { .. } => "kpl_truncated",
            KplError::BadDigest { .. } => "kpl_bad_md5",
            KplError::BadBody { .. } | KplError::NoUserRecords => "kpl_invalid_aggregate",
        }
    }
}

/// True when a payload starts with the KPL magic bytes.
pub fn is_aggregated(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// Reads an aggregated record (the caller checked [`is_aggregated`]).
pub fn deaggregate(data: &[u8]) -> Result<AggregatedRecord, KplError> {
    let rest = &data[MAGIC.len().min(data.len())..];
    if rest.len() < DIGEST_LEN {
        return Err(KplError::Truncated { len: data.len() });
    }
    let (body, trailer) = rest.split_at(rest.len() - DIGEST_LEN);
    let digest = Md5::digest(body);
    if digest.as_slice() != trailer {
        return Err(KplError::BadDigest {
            expected: hex(trailer),
            actual: hex(digest.as_slice()),
        });
    }
    let aggregate = AggregatedRecord::decode(body).map_err(|e| KplError::BadBody {
        message: e.to_string(),
    })?;
    // An aggregate of nothing would vanish without a row or a dead letter.
    if aggregate.records.is_empty() {
        return Err(KplError::NoUserRecords);
    }
    Ok(aggregate)
}

/// Encodes `record` as the KPL writes it: magic bytes, protobuf body, MD5 of
/// the body (for producers and tests; the inverse of [`deaggregate`]).
pub fn frame(record: &AggregatedRecord) -> Vec<u8> {
    let body = record.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(Md5::digest(&body).as_slice());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an aggregated record as the KPL writes it.
    fn aggregate(partition_key: &str, payloads: &[Vec<u8>]) -> Vec<u8> {
        frame(&AggregatedRecord {
            partition_key_table: vec![partition_key.to_string()],
            explicit_hash_key_table: Vec::new(),
            records: payloads
                .iter()
                .map(|p| UserRecord {
                    partition_key_index: 0,
                    explicit_hash_key_index: None,
                    data: p.clone(),
                    tags: Vec::new(),
                })
                .collect(),
        })
    }

    #[test]
    fn an_aggregate_round_trips_and_a_bad_digest_or_body_is_named() {
        let packed = aggregate("pk", &[b"one".to_vec(), b"two".to_vec()]);
        assert!(is_aggregated(&packed));
        let agg = deaggregate(&packed).unwrap();
        assert_eq!(agg.partition_key_table, vec!["pk"]);
        let data: Vec<&[u8]> = agg.records.iter().map(|r| r.data.as_slice()).collect();
        assert_eq!(data, vec![&b"one"[..], &b"two"[..]]);

        let mut bad = packed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(deaggregate(&bad).unwrap_err().kind(), "kpl_bad_md5");

        let mut garbage = MAGIC.to_vec();
        let body = [0xff_u8, 0xff, 0xff];
        garbage.extend_from_slice(&body);
        garbage.extend_from_slice(Md5::digest(body).as_slice());
        assert_eq!(
            deaggregate(&garbage).unwrap_err().kind(),
            "kpl_invalid_aggregate"
        );
        assert_eq!(deaggregate(&MAGIC).unwrap_err().kind(), "kpl_truncated");
        // A well-formed aggregate of no user records is bad as a whole.
        let empty = aggregate("pk", &[]);
        assert_eq!(deaggregate(&empty).unwrap_err(), KplError::NoUserRecords);
        assert_eq!(KplError::NoUserRecords.kind(), "kpl_invalid_aggregate");
        assert!(!is_aggregated(b"{\"a\":1}"));
    }
}
