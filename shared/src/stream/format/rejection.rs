//! A bad document, or a bad payload, as every format reports it.

use crate::stream::dead_letter::Scope;
use crate::stream::document::RecordError;

/// Why one document (or the whole payload) of a record is a bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection<'b> {
    /// The document's position in the payload (0 for the whole payload).
    pub index: usize,
    /// The machine-readable reason (`invalid_json`, `payload_too_large`, ...).
    pub reason: &'static str,
    /// The reason in words.
    pub detail: String,
    /// Whether `bytes` is the whole payload or one document.
    pub scope: Scope,
    /// The rejected bytes.
    pub bytes: &'b [u8],
    /// The user record's index in a KPL aggregated record, if it was one.
    pub sub_sequence_number: Option<u64>,
}

impl<'b> Rejection<'b> {
    pub(crate) fn document(index: usize, e: &RecordError, bytes: &'b [u8]) -> Self {
        Rejection {
            index,
            reason: e.kind(),
            detail: e.to_string(),
            scope: Scope::Document,
            bytes,
            sub_sequence_number: None,
        }
    }
}
