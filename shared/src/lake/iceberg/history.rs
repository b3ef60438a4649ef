//! Which records of a shard the table holds, read from its snapshots.
//!
//! A shard's records usually reach the table in order, so its watermark
//! (the highest sequence number committed) would say alone that everything
//! at or below it is in. Lambda breaks that order once: when it gives up a
//! range (retries or record age exhausted), it sends the range to the
//! on-failure destination and goes on, and a later batch commits above it.
//! The given-up range is then a hole below the watermark, and a replay of it
//! must write it.
//!
//! So every commit also records, for each shard it commits, the range of
//! records its batch covered (`telemetry-lake.batch.<stream>/<shard>` =
//! `<first>..<last>`), and a record at or below the watermark is in the
//! table only when a snapshot still kept holds it in its range. Below what
//! the kept snapshots tell (the older ones expired by maintenance), the
//! watermark rules again: kept snapshots must reach back as far as the
//! stream keeps records, so that every replayable range is still told.
//!
//! Each commit also names the snapshot it was planned on
//! (`telemetry-lake.base-snapshot`): two deliveries of the same hole leave
//! the watermark where it was, so only that tells the catalog that the
//! second was planned before the first landed
//! ([`crate::lake::iceberg::table::check_watermarks`]).

use std::collections::HashMap;

use iceberg::table::Table;

use crate::stream::sequence::{self, compare};

/// Snapshot summary properties holding the highest sequence number (or
/// Kafka offset) committed per stream and shard: `<prefix><stream>/<shard>`.
pub const WATERMARK_PREFIX: &str = "telemetry-lake.watermark.";

/// Snapshot summary properties holding, for each shard a commit moves, the
/// watermark it moved from (empty: none): `<prefix><stream>/<shard>`.
pub const PREVIOUS_WATERMARK_PREFIX: &str = "telemetry-lake.previous-watermark.";

/// Snapshot summary properties holding the range of a shard's records the
/// snapshot's batch covered: `<prefix><stream>/<shard>` = `<first>..<last>`.
pub const BATCH_PREFIX: &str = "telemetry-lake.batch.";

/// The snapshot summary property naming the snapshot a commit was planned
/// on (empty: the table had none).
pub const BASE_SNAPSHOT: &str = "telemetry-lake.base-snapshot";

/// The batch-range property's value.
pub fn batch_range(first: &str, last: &str) -> String {
    format!("{first}..{last}")
}

/// What the kept snapshots say about one shard's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardHistory {
    /// The watermark: nothing above it is in the table.
    pub mark: Option<String>,
    /// The ranges the kept snapshots' batches covered.
    pub ranges: Vec<(String, String)>,
    /// At or below this, the snapshots that would tell are gone (or were
    /// written before commits recorded their ranges): such records count
    /// as in the table.
    pub horizon: Option<String>,
}

impl ShardHistory {
    /// True when the record at `position` is in the table.
    pub fn holds(&self, position: &str) -> bool {
        if sequence::is_after(position, self.mark.as_deref()) {
            return false;
        }
        !sequence::is_after(position, self.horizon.as_deref())
            || self
                .ranges
                .iter()
                .any(|(first, last)| within(position, first, last))
    }
}

fn within(position: &str, first: &str, last: &str) -> bool {
    compare(position, first).is_ge() && compare(position, last).is_le()
}

/// The snapshots of the current lineage, newest first: each one's id and
/// summary properties. It ends at the table's first snapshot or at one
/// whose parent maintenance expired.
pub fn lineage(table: &Table) -> Vec<(i64, &HashMap<String, String>)> {
    let metadata = table.metadata();
    let mut snapshots = Vec::new();
    let mut next = metadata.current_snapshot();
    while let Some(snapshot) = next {
        snapshots.push((
            snapshot.snapshot_id(),
            &snapshot.summary().additional_properties,
        ));
        next = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    snapshots
}

/// The summaries of the snapshots committed after the snapshot `base`
/// (all, when the table had none), newest first; `None` when `base` is no
/// longer on the current lineage.
pub fn commits_since(table: &Table, base: Option<i64>) -> Option<Vec<&HashMap<String, String>>> {
    let mut since = Vec::new();
    for (id, summary) in lineage(table) {
        if Some(id) == base {
            return Some(since);
        }
        since.push(summary);
    }
    base.is_none().then_some(since)
}

/// The range of the shard `key` (`<stream>/<shard>`) a snapshot's batch
/// covered, if it committed that shard.
pub fn batch_of<'s>(summary: &'s HashMap<String, String>, key: &str) -> Option<(&'s str, &'s str)> {
    summary
        .get(&format!("{BATCH_PREFIX}{key}"))
        .and_then(|v| v.split_once(".."))
}

/// True when the ranges `a` and `b` share a sequence number.
pub fn overlap(a: (&str, &str), b: (&str, &str)) -> bool {
    compare(a.0, b.1).is_le() && compare(b.0, a.1).is_le()
}

/// What the table's kept snapshots say about the shard `key`
/// (`<stream>/<shard>`), enough to tell about every record from `from` on.
pub fn shard_history(table: &Table, key: &str, from: &str) -> ShardHistory {
    let summaries: Vec<&HashMap<String, String>> =
        lineage(table).into_iter().map(|(_, s)| s).collect();
    history_of(&summaries, key, from)
}

/// [`shard_history`] over summaries, newest first.
pub fn history_of(summaries: &[&HashMap<String, String>], key: &str, from: &str) -> ShardHistory {
    let watermark = format!("{WATERMARK_PREFIX}{key}");
    let previous = format!("{PREVIOUS_WATERMARK_PREFIX}{key}");
    let mut history = ShardHistory::default();
    let mut oldest: Option<&HashMap<String, String>> = None;
    // Snapshots of other engines (Athena's OPTIMIZE, a pyiceberg append)
    // carry no watermarks and are passed over.
    for summary in summaries
        .iter()
        .copied()
        .filter(|s| s.keys().any(|k| k.starts_with(WATERMARK_PREFIX)))
    {
        let Some(mark) = summary.get(&watermark) else {
            // The shard had not committed yet: nothing older holds it.
            return history;
        };
        if history.mark.is_none() {
            history.mark = Some(mark.clone());
        }
        if !summary.contains_key(BASE_SNAPSHOT) {
            // Written before commits recorded their ranges: its watermark
            // is all it tells.
            history.horizon = Some(mark.clone());
            return history;
        }
        if compare(mark, from).is_lt() {
            // Ranges end at or below their snapshot's watermark, and
            // watermarks only grow: nothing older reaches `from`.
            return history;
        }
        if let Some((first, last)) = batch_of(summary, key) {
            history.ranges.push((first.to_string(), last.to_string()));
        }
        oldest = Some(summary);
    }
    // Every kept snapshot told: below the oldest, the watermark it moved
    // from (none when the shard's first commit is kept).
    history.horizon = oldest.and_then(|s| {
        match batch_of(s, key) {
            Some(_) => s.get(&previous),
            None => s.get(&watermark),
        }
        .filter(|m| !m.is_empty())
        .cloned()
    });
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(props: &[(&str, &str)]) -> HashMap<String, String> {
        let mut s: HashMap<String, String> = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.insert(BASE_SNAPSHOT.into(), "1".into());
        s
    }

    /// A commit of `first..last` on shard `s/a` moving its watermark from
    /// `previous` to `mark`.
    fn commit(first: &str, last: &str, previous: &str, mark: &str) -> HashMap<String, String> {
        suite(&[
            ("telemetry-lake.watermark.s/a", mark),
            ("telemetry-lake.previous-watermark.s/a", previous),
            ("telemetry-lake.batch.s/a", &batch_range(first, last)),
        ])
    }

    #[test]
    fn a_range_given_up_below_the_watermark_is_not_held() {
        // 1..4 committed, 5..8 given up, 9..12 committed.
        let newest = commit("9", "12", "4", "12");
        let oldest = commit("1", "4", "", "4");
        let h = history_of(&[&newest, &oldest], "s/a", "1");
        assert_eq!(h.mark.as_deref(), Some("12"));
        assert_eq!(h.horizon, None);
        let held: Vec<bool> = (1..=14).map(|n| h.holds(&n.to_string())).collect();
        assert_eq!(
            held,
            [
                true, true, true, true, false, false, false, false, true, true, true, true, false,
                false
            ]
        );
        // Once the hole is filled (the watermark stays), it is held.
        let fill = commit("5", "8", "12", "12");
        let h = history_of(&[&fill, &newest, &oldest], "s/a", "1");
        assert!((1..=12).all(|n| h.holds(&n.to_string())));
    }

    #[test]
    fn below_the_oldest_kept_snapshot_the_watermark_rules() {
        // The snapshot of 1..4 expired: the oldest kept moved the mark from 4.
        let newest = commit("9", "12", "6", "12");
        let older = commit("5", "6", "4", "6");
        let h = history_of(&[&newest, &older], "s/a", "1");
        assert_eq!(h.horizon.as_deref(), Some("4"));
        assert!(h.holds("3") && h.holds("4") && h.holds("5"));
        assert!(!h.holds("7") && !h.holds("8"));
        // A kept snapshot of another shard only: its watermark of s/a.
        let other = suite(&[
            ("telemetry-lake.watermark.s/a", "6"),
            ("telemetry-lake.watermark.s/b", "3"),
            ("telemetry-lake.batch.s/b", "1..3"),
        ]);
        let h = history_of(&[&newest, &other], "s/a", "1");
        assert_eq!(h.horizon.as_deref(), Some("6"));
        assert!(h.holds("6") && !h.holds("7"));
    }

    #[test]
    fn the_walk_stops_where_nothing_older_can_hold_the_records() {
        let newest = commit("9", "12", "8", "12");
        let middle = commit("5", "8", "4", "8");
        // Not read: its watermark is below `from`.
        let oldest = commit("1", "4", "", "4");
        let h = history_of(&[&newest, &middle, &oldest], "s/a", "9");
        assert_eq!(h.ranges, vec![("9".into(), "12".into())]);
        assert_eq!(h.horizon, None);
        assert!(!h.holds("13"));
    }

    #[test]
    fn other_engines_snapshots_are_passed_over_and_older_ones_rule_by_watermark() {
        let optimize = HashMap::from([("added-data-files".to_string(), "1".to_string())]);
        let newest = commit("9", "12", "4", "12");
        let legacy = HashMap::from([("telemetry-lake.watermark.s/a".to_string(), "4".to_string())]);
        let h = history_of(&[&optimize, &newest, &legacy], "s/a", "1");
        assert_eq!(h.mark.as_deref(), Some("12"));
        assert_eq!(h.horizon.as_deref(), Some("4"));
        assert!(h.holds("2") && !h.holds("6") && h.holds("10"));
        // A shard the table never saw holds nothing.
        let h = history_of(&[&newest], "s/z", "1");
        assert_eq!(h, ShardHistory::default());
        assert!(!h.holds("1"));
    }
}
