//! Committing a batch's data files to an Iceberg table exactly once.
//!
//! Every commit is a fast append whose snapshot summary carries, for every
//! stream and shard that ever committed, the highest sequence number (or
//! Kafka offset) in the table: the shard's watermark. The data files and
//! the watermarks are one atomic commit, so "these records are in the
//! table" and "the watermark covers them" are never apart.
//!
//! A batch reads the watermarks first and leaves out every record at or
//! below its shard's, so a batch delivered again (retried whole, from a
//! reported sequence number, bisected, replayed from the failure queue, or
//! after a timeout whose commit did land) commits nothing twice.
//!
//! A commit that loses the optimistic race (another shard committed since
//! the table was read) is retried here, bounded, with jitter, on the table
//! as it now is: the watermarks are merged again from the new snapshot, so
//! another shard's are never moved back. When the shard's own watermark has
//! moved into the batch's range (another delivery of the same records
//! committed first), the commit is given up: the caller plans the batch
//! again from the new watermark.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, ErrorKind, TableIdent};

use crate::lake::iceberg::table::{
    committed_watermarks, PREVIOUS_WATERMARK_PREFIX, WATERMARK_PREFIX,
};
use crate::stream::sequence;

/// Attempts of a commit that keeps losing the race.
pub const MAX_COMMIT_ATTEMPTS: u32 = 8;

/// The records of one stream and shard a batch commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    /// `<stream>/<shard>`, the watermark's name.
    pub key: String,
    /// The first and the last sequence number of the batch's records.
    pub first: String,
    pub last: String,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// A new snapshot, after this many attempts.
    Snapshot { id: i64, attempts: u32 },
    /// Every range was already in the table.
    AlreadyThere,
}

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A range's watermark moved into it since the batch was planned: plan
    /// again from these watermarks.
    #[error("the watermark of {key} moved to {committed}, inside the batch")]
    Overtaken {
        key: String,
        committed: String,
        watermarks: BTreeMap<String, String>,
    },
    /// Every attempt lost the race.
    #[error("{attempts} commits to {table} lost the race to other writers")]
    Contended { table: String, attempts: u32 },
    #[error("cannot commit to {table}: {source}")]
    Iceberg {
        table: String,
        #[source]
        source: iceberg::Error,
    },
}

/// How a range stands against the committed watermarks.
fn standing(range: &ShardRange, committed: &BTreeMap<String, String>) -> Standing {
    match committed.get(&range.key) {
        None => Standing::Ahead,
        Some(mark) if !sequence::is_after(&range.last, Some(mark)) => Standing::Committed,
        Some(mark) if sequence::is_after(&range.first, Some(mark)) => Standing::Ahead,
        Some(mark) => Standing::Overlapping(mark.clone()),
    }
}

enum Standing {
    Ahead,
    Committed,
    Overlapping(String),
}

/// The snapshot properties of a commit: every watermark committed, each
/// range's moved to its last record, and what each range's moved from (the
/// catalog refuses the commit if the table no longer holds that:
/// [`crate::lake::iceberg::table::check_watermarks`]).
fn snapshot_properties(
    committed: &BTreeMap<String, String>,
    ranges: &[ShardRange],
) -> HashMap<String, String> {
    let mut marks = committed.clone();
    let mut props = HashMap::new();
    for r in ranges {
        let previous = committed.get(&r.key).cloned().unwrap_or_default();
        props.insert(format!("{PREVIOUS_WATERMARK_PREFIX}{}", r.key), previous);
        marks.insert(r.key.clone(), r.last.clone());
    }
    props.extend(
        marks
            .into_iter()
            .map(|(k, v)| (format!("{WATERMARK_PREFIX}{k}"), v)),
    );
    props
}

/// A jittered pause before attempt `attempt` (from 2): 25 ms doubling, up
/// to 1.6 s, times a factor from 0.5 to 1.5 drawn from the clock.
fn pause(attempt: u32) -> Duration {
    let base = 25u64 << attempt.saturating_sub(2).min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 500 + u64::from(nanos % 1000);
    Duration::from_millis(base * factor / 1000)
}

/// Commits `files` with the batch's `ranges` to the table `ident`.
/// `files` must hold exactly the ranges' records, and be named by them:
/// a retry of the same batch writes the same paths.
pub async fn commit_files(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    files: &[DataFile],
    ranges: &[ShardRange],
) -> Result<Committed, CommitError> {
    let iceberg = |source| CommitError::Iceberg {
        table: ident.to_string(),
        source,
    };
    for attempt in 1..=MAX_COMMIT_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(pause(attempt)).await;
        }
        let table: Table = catalog.load_table(ident).await.map_err(iceberg)?;
        let committed = committed_watermarks(&table);
        let mut all_there = true;
        for r in ranges {
            match standing(r, &committed) {
                Standing::Committed => {}
                Standing::Ahead => all_there = false,
                Standing::Overlapping(mark) => {
                    return Err(CommitError::Overtaken {
                        key: r.key.clone(),
                        committed: mark,
                        watermarks: committed,
                    })
                }
            }
        }
        if all_there {
            return Ok(Committed::AlreadyThere);
        }
        let tx = Transaction::new(&table);
        // The crate's duplicate check (no new file already referenced)
        // reads every manifest of the table, one GET per earlier commit, so
        // a commit's cost would grow with the table. The watermarks above
        // are the stronger check: a record at or below its shard's mark is
        // never in `files`, and the files are named by their records.
        let tx = tx
            .fast_append()
            .with_check_duplicate(false)
            .add_data_files(files.to_vec())
            .set_snapshot_properties(snapshot_properties(&committed, ranges))
            .apply(tx)
            .map_err(iceberg)?;
        match tx.commit(catalog).await {
            Ok(table) => {
                let id = table
                    .metadata()
                    .current_snapshot()
                    .map_or(-1, |s| s.snapshot_id());
                return Ok(Committed::Snapshot {
                    id,
                    attempts: attempt,
                });
            }
            Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                tracing::info!(table = %ident, attempt, "commit lost the race; reading the table again");
            }
            Err(e) => return Err(iceberg(e)),
        }
    }
    Err(CommitError::Contended {
        table: ident.to_string(),
        attempts: MAX_COMMIT_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(key: &str, first: &str, last: &str) -> ShardRange {
        ShardRange {
            key: key.into(),
            first: first.into(),
            last: last.into(),
        }
    }

    #[test]
    fn a_range_is_ahead_committed_or_overlapping_its_watermark() {
        let marks = BTreeMap::from([("s/a".to_string(), "20".to_string())]);
        assert!(matches!(
            standing(&range("s/b", "1", "5"), &marks),
            Standing::Ahead
        ));
        assert!(matches!(
            standing(&range("s/a", "21", "30"), &marks),
            Standing::Ahead
        ));
        assert!(matches!(
            standing(&range("s/a", "3", "20"), &marks),
            Standing::Committed
        ));
        assert!(matches!(
            standing(&range("s/a", "3", "9"), &marks),
            Standing::Committed
        ));
        assert!(matches!(
            standing(&range("s/a", "15", "25"), &marks),
            Standing::Overlapping(m) if m == "20"
        ));
        // Sequence numbers compare as numbers, not as text.
        assert!(matches!(
            standing(&range("s/a", "100", "200"), &marks),
            Standing::Ahead
        ));
    }

    #[test]
    fn a_commit_carries_every_watermark_forward_and_moves_its_own() {
        let marks = BTreeMap::from([
            ("s/a".to_string(), "20".to_string()),
            ("s/b".to_string(), "7".to_string()),
        ]);
        let props = snapshot_properties(&marks, &[range("s/b", "8", "12"), range("t/c", "1", "2")]);
        let got: BTreeMap<&str, &str> = props
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([
                ("telemetry-lake.previous-watermark.s/b", "7"),
                ("telemetry-lake.previous-watermark.t/c", ""),
                ("telemetry-lake.watermark.s/a", "20"),
                ("telemetry-lake.watermark.s/b", "12"),
                ("telemetry-lake.watermark.t/c", "2"),
            ])
        );
    }

    #[test]
    fn pauses_grow_and_stay_bounded() {
        for attempt in 2..20 {
            let p = pause(attempt);
            assert!(
                p >= Duration::from_millis(12) && p <= Duration::from_millis(2400),
                "{p:?}"
            );
        }
    }
}
