//! Committing a batch's data files to an Iceberg table exactly once.
//!
//! Every commit is a fast append whose snapshot summary carries, for every
//! stream and shard that ever committed, the highest sequence number (or
//! Kafka offset) in the table, the shard's watermark, and for each shard it
//! commits the range of records its batch covered
//! ([`crate::lake::iceberg::history`]). The data files, the watermarks and
//! the ranges are one atomic commit, so "these records are in the table"
//! and "the snapshots say so" are never apart.
//!
//! A batch reads the table first and leaves out every record it holds (at
//! or below its shard's watermark and inside a committed range), so a batch
//! delivered again (retried whole, from a reported sequence number,
//! bisected, replayed from the failure queue, or after a timeout whose
//! commit did land) commits nothing twice, and a range Lambda gave up on
//! while the shard went on is written when it is replayed.
//!
//! A commit that loses the optimistic race (another shard committed since
//! the table was read) is retried here, bounded, with jitter, on the table
//! as it now is: the watermarks are merged again from the new snapshot, so
//! another shard's are never moved back. When a commit since the batch was
//! planned covered some of its records (another delivery of the same
//! records committed first), the commit is given up: the caller plans the
//! batch again.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, ErrorKind};

use crate::lake::iceberg::history::{
    batch_of, batch_range, commits_since, overlap, BASE_SNAPSHOT, BATCH_PREFIX,
    PREVIOUS_WATERMARK_PREFIX, WATERMARK_PREFIX,
};
use crate::lake::iceberg::table::committed_watermarks;
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
    /// Since the batch was planned, a commit covered some of its records,
    /// or the snapshot it was planned on left the lineage: plan again.
    #[error("{0}")]
    Overtaken(String),
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

/// Why the batch of `ranges`, planned on the snapshot `planned_on`, must be
/// planned again on `table`: a commit since covered part of a range.
fn overtaken(table: &Table, planned_on: Option<i64>, ranges: &[ShardRange]) -> Option<String> {
    let Some(since) = commits_since(table, planned_on) else {
        return Some(format!(
            "the snapshot the batch was planned on ({planned_on:?}) is no longer the table's"
        ));
    };
    for r in ranges {
        if let Some((first, last)) = since
            .iter()
            .filter_map(|summary| batch_of(summary, &r.key))
            .find(|&committed| overlap(committed, (&r.first, &r.last)))
        {
            return Some(format!(
                "another delivery committed {first}..{last} of {}, inside the batch's {}..{}",
                r.key, r.first, r.last
            ));
        }
    }
    None
}

/// The snapshot properties of a commit on the snapshot `base`: every
/// watermark committed, each range's raised to its last record (a range
/// replayed below its watermark leaves it), each range itself, what each
/// range's watermark moved from and the snapshot planned on (the catalog
/// refuses the commit if the table no longer holds those:
/// [`crate::lake::iceberg::table::check_watermarks`]).
fn snapshot_properties(
    committed: &BTreeMap<String, String>,
    ranges: &[ShardRange],
    base: Option<i64>,
) -> HashMap<String, String> {
    let mut marks = committed.clone();
    let mut props = HashMap::new();
    for r in ranges {
        let previous = committed.get(&r.key).cloned().unwrap_or_default();
        let mark = sequence::max(&previous, &r.last).to_string();
        props.insert(format!("{PREVIOUS_WATERMARK_PREFIX}{}", r.key), previous);
        props.insert(
            format!("{BATCH_PREFIX}{}", r.key),
            batch_range(&r.first, &r.last),
        );
        marks.insert(r.key.clone(), mark);
    }
    props.extend(
        marks
            .into_iter()
            .map(|(k, v)| (format!("{WATERMARK_PREFIX}{k}"), v)),
    );
    props.insert(
        BASE_SNAPSHOT.to_string(),
        base.map(|id| id.to_string()).unwrap_or_default(),
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

/// Commits `files` with the batch's `ranges`, planned on `planned`, to
/// that table. `files` must hold exactly the ranges' records `planned` did
/// not hold, and be named by them: a retry of the same batch writes the
/// same paths.
pub async fn commit_files(
    catalog: &dyn Catalog,
    planned: &Table,
    files: &[DataFile],
    ranges: &[ShardRange],
) -> Result<Committed, CommitError> {
    let ident = planned.identifier();
    let iceberg = |source| CommitError::Iceberg {
        table: ident.to_string(),
        source,
    };
    let mut planned_on = planned.metadata().current_snapshot_id();
    for attempt in 1..=MAX_COMMIT_ATTEMPTS {
        // The first attempt commits on the table the batch was planned on
        // (the catalog refuses it if that is no longer current); a retry
        // reads the table again.
        let table: Table = if attempt == 1 {
            planned.clone()
        } else {
            tokio::time::sleep(pause(attempt)).await;
            catalog.load_table(ident).await.map_err(iceberg)?
        };
        if let Some(why) = overtaken(&table, planned_on, ranges) {
            return Err(CommitError::Overtaken(why));
        }
        // What landed since holds none of the batch's records: the next
        // attempt need only look at what lands after this.
        let base = table.metadata().current_snapshot_id();
        planned_on = base;
        let committed = committed_watermarks(&table);
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
            .set_snapshot_properties(snapshot_properties(&committed, ranges, base))
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
    fn ranges_overlap_when_they_share_a_sequence_number() {
        assert!(overlap(("3", "9"), ("9", "12")));
        assert!(overlap(("3", "20"), ("5", "6")));
        assert!(!overlap(("3", "9"), ("10", "12")));
        // Sequence numbers compare as numbers, not as text.
        assert!(!overlap(("100", "200"), ("3", "99")));
    }

    #[test]
    fn a_commit_carries_every_watermark_forward_and_moves_its_own() {
        let marks = BTreeMap::from([
            ("s/a".to_string(), "20".to_string()),
            ("s/b".to_string(), "7".to_string()),
        ]);
        let props = snapshot_properties(
            &marks,
            &[range("s/b", "8", "12"), range("t/c", "1", "2")],
            Some(42),
        );
        let got: BTreeMap<&str, &str> = props
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([
                ("telemetry-lake.base-snapshot", "42"),
                ("telemetry-lake.batch.s/b", "8..12"),
                ("telemetry-lake.batch.t/c", "1..2"),
                ("telemetry-lake.previous-watermark.s/b", "7"),
                ("telemetry-lake.previous-watermark.t/c", ""),
                ("telemetry-lake.watermark.s/a", "20"),
                ("telemetry-lake.watermark.s/b", "12"),
                ("telemetry-lake.watermark.t/c", "2"),
            ])
        );
    }

    #[test]
    fn a_range_replayed_below_its_watermark_leaves_the_watermark() {
        let marks = BTreeMap::from([("s/a".to_string(), "20".to_string())]);
        let props = snapshot_properties(&marks, &[range("s/a", "5", "8")], None);
        assert_eq!(props["telemetry-lake.watermark.s/a"], "20");
        assert_eq!(props["telemetry-lake.previous-watermark.s/a"], "20");
        assert_eq!(props["telemetry-lake.batch.s/a"], "5..8");
        assert_eq!(props["telemetry-lake.base-snapshot"], "");
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
