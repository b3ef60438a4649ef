//! Sliding event-time windows and the in-batch aggregation per
//! (device, status, window).
//!
//! A window is `[start, start + size)` with `start` a multiple of the slide
//! (epoch seconds). A record at time `t` belongs to every window containing
//! it: `size / slide` windows. A batch is aggregated in memory first, keeping
//! which record contributed to which window, so that on a retry the records
//! a window already holds (at or below its per-shard watermark) are left
//! out: see [`BatchWindows::contribution`].

use std::collections::HashMap;
use std::ops::Range;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::device_status::status::Status;
use crate::stream::sequence;

/// The window length and slide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    size_secs: i64,
    slide_secs: i64,
}

/// Window sizes that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("window size and slide must be positive (size {size}s, slide {slide}s)")]
    NotPositive { size: i64, slide: i64 },
    #[error("window size {size}s is not a multiple of the slide {slide}s")]
    NotMultiple { size: i64, slide: i64 },
}

impl WindowSpec {
    /// Windows of `size_secs` starting every `slide_secs`.
    pub fn new(size_secs: i64, slide_secs: i64) -> Result<Self, WindowError> {
        if size_secs <= 0 || slide_secs <= 0 {
            return Err(WindowError::NotPositive {
                size: size_secs,
                slide: slide_secs,
            });
        }
        if size_secs % slide_secs != 0 {
            return Err(WindowError::NotMultiple {
                size: size_secs,
                slide: slide_secs,
            });
        }
        Ok(WindowSpec {
            size_secs,
            slide_secs,
        })
    }

    /// The window length in seconds.
    pub fn size_secs(&self) -> i64 {
        self.size_secs
    }

    /// The starts (epoch seconds, ascending) of every window containing the
    /// instant `t_micros` (microseconds since the epoch).
    pub fn starts(&self, t_micros: i64) -> impl Iterator<Item = i64> {
        let t = t_micros.div_euclid(1_000_000);
        let last = t.div_euclid(self.slide_secs) * self.slide_secs;
        let n = self.size_secs / self.slide_secs;
        let slide = self.slide_secs;
        (0..n).rev().map(move |k| last - k * slide)
    }
}

/// An instant (epoch seconds) as ISO-8601 UTC, the form the windows table's
/// sort key and `window_start` / `window_end` hold.
pub fn iso(epoch_secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(epoch_secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One window of one device in one status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowKey {
    pub device: String,
    pub status: Status,
    /// Epoch seconds.
    pub start: i64,
}

/// A good document of the batch: where it sits in the stream (its sequence
/// number is a range of [`BatchWindows::sequences`]).
#[derive(Debug, Clone)]
struct Contributor {
    shard: u32,
    sequence: Range<usize>,
}

/// What a window receives from a batch once the records it already holds
/// are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// Records added.
    pub count: u64,
    /// Per metric, the sum of the added readings.
    pub sums: Vec<f64>,
    /// Per shard with added records, the highest sequence number added: the
    /// window's new watermark for that shard.
    pub watermarks: Vec<(String, String)>,
}

/// A batch's readings grouped by window.
///
/// Nothing is allocated per record but for a window or device seen for the
/// first time: sequence numbers are stored back to back in one string, and
/// each reading's windows are appended to one list. (With a small string per
/// record kept for the whole batch among each record's short-lived
/// decompression buffers, device-status peaked at 135 MB on a 10,000-record
/// gzip batch; 16 MB since, with gzip now inflated in place: BENCHMARKS.md.)
#[derive(Debug, Clone)]
pub struct BatchWindows {
    metrics: usize,
    shards: Vec<String>,
    contributors: Vec<Contributor>,
    sequences: String,
    readings: Vec<f64>,
    /// Device numbers, looked up once per reading.
    device_ids: HashMap<String, u32, foldhash::fast::RandomState>,
    /// Window numbers by (device number, status, start). The key is plain
    /// numbers: the lookups (one per window of each reading) hash and compare
    /// it in the table itself, never following a pointer to a string, and a
    /// new record is pushed onto `members`, not onto a list per window
    /// scattered over the heap (BENCHMARKS.md).
    window_ids: HashMap<(u32, Status, i64), u32, foldhash::fast::RandomState>,
    /// Each window's key, by window number.
    keys: Vec<WindowKey>,
    /// (window number, record) for every record in every window, in the
    /// order added.
    members: Vec<(u32, u32)>,
    /// The records of each window, grouped once when first asked for.
    grouped: std::sync::OnceLock<Grouped>,
}

/// `members` sorted by window (stable): window `w`'s records are
/// `records[offsets[w]..offsets[w + 1]]`.
#[derive(Debug, Clone)]
struct Grouped {
    offsets: Vec<usize>,
    records: Vec<u32>,
}

impl BatchWindows {
    /// An empty batch of readings with `metrics` values each.
    pub fn new(metrics: usize) -> Self {
        BatchWindows {
            metrics,
            shards: Vec::new(),
            contributors: Vec::new(),
            sequences: String::new(),
            readings: Vec::new(),
            device_ids: HashMap::default(),
            window_ids: HashMap::default(),
            keys: Vec::new(),
            members: Vec::new(),
            grouped: std::sync::OnceLock::new(),
        }
    }

    /// Adds one good document: its readings go to the window of `device` in
    /// `status` at each of `starts`. Returns the record's number: the
    /// documents are numbered 0, 1, ... in the order added.
    pub fn add(
        &mut self,
        shard: &str,
        sequence_number: &str,
        device: &str,
        status: Status,
        starts: impl Iterator<Item = i64>,
        readings: &[f64],
    ) -> u32 {
        debug_assert_eq!(readings.len(), self.metrics);
        // A reading added after the windows were read: group them again.
        self.grouped.take();
        let shard = match self.shards.iter().rposition(|s| s == shard) {
            Some(i) => i as u32,
            None => {
                self.shards.push(shard.to_string());
                (self.shards.len() - 1) as u32
            }
        };
        let index = self.contributors.len() as u32;
        let from = self.sequences.len();
        self.sequences.push_str(sequence_number);
        self.contributors.push(Contributor {
            shard,
            sequence: from..self.sequences.len(),
        });
        self.readings.extend_from_slice(readings);
        let device_id = match self.device_ids.get(device) {
            Some(&id) => id,
            None => {
                let id = self.device_ids.len() as u32;
                self.device_ids.insert(device.to_string(), id);
                id
            }
        };
        for start in starts {
            let next = self.keys.len() as u32;
            let window = *self
                .window_ids
                .entry((device_id, status, start))
                .or_insert(next);
            if window == next {
                self.keys.push(WindowKey {
                    device: device.to_string(),
                    status,
                    start,
                });
            }
            self.members.push((window, index));
        }
        index
    }

    /// How many windows the batch touches.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the batch touches no window.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The windows the batch touches, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &WindowKey> {
        let mut keys: Vec<&WindowKey> = self.keys.iter().collect();
        keys.sort_unstable();
        keys.into_iter()
    }

    /// The shards whose records the window receives.
    pub fn shards_of(&self, key: &WindowKey) -> Vec<&str> {
        let mut shards: Vec<u32> = self
            .records_of(key)
            .iter()
            .map(|&i| self.contributors[i as usize].shard)
            .collect();
        shards.sort_unstable();
        shards.dedup();
        shards
            .into_iter()
            .map(|s| self.shards[s as usize].as_str())
            .collect()
    }

    /// The smallest sequence number of the records the window receives:
    /// where Lambda must retry from when the window cannot be written.
    pub fn first_sequence(&self, key: &WindowKey) -> Option<&str> {
        self.records_of(key)
            .iter()
            .map(|&i| self.sequence_of(i))
            .min_by(|a, b| sequence::compare(a, b))
    }

    /// What the window receives, leaving out every record whose sequence
    /// number is at or below `watermark(shard)`: those it already holds.
    pub fn contribution<'w>(
        &self,
        key: &WindowKey,
        watermark: impl Fn(&str) -> Option<&'w str>,
    ) -> Contribution {
        self.contribution_where(key, watermark, |_| true)
    }

    /// As [`BatchWindows::contribution`], of record `record` alone (nothing
    /// when the window does not receive it).
    pub fn contribution_of_record<'w>(
        &self,
        key: &WindowKey,
        record: u32,
        watermark: impl Fn(&str) -> Option<&'w str>,
    ) -> Contribution {
        self.contribution_where(key, watermark, |r| r == record)
    }

    /// The records the windows `keys` receive, each once, by shard and then
    /// sequence number: the order in which they can be applied one by one.
    pub fn records_of_windows(&self, keys: &[&WindowKey]) -> Vec<u32> {
        let mut records: Vec<u32> = keys
            .iter()
            .flat_map(|k| self.records_of(k).iter().copied())
            .collect();
        records.sort_unstable_by(|&a, &b| {
            let (ca, cb) = (
                &self.contributors[a as usize],
                &self.contributors[b as usize],
            );
            ca.shard
                .cmp(&cb.shard)
                .then_with(|| sequence::compare(self.sequence_of(a), self.sequence_of(b)))
        });
        records.dedup();
        records
    }

    /// The shard and sequence number of record `record`.
    pub fn record(&self, record: u32) -> (&str, &str) {
        let c = &self.contributors[record as usize];
        (&self.shards[c.shard as usize], self.sequence_of(record))
    }

    fn contribution_where<'w>(
        &self,
        key: &WindowKey,
        watermark: impl Fn(&str) -> Option<&'w str>,
        keep: impl Fn(u32) -> bool,
    ) -> Contribution {
        let mut count = 0;
        let mut sums = vec![0.0; self.metrics];
        let mut highest: Vec<Option<&str>> = vec![None; self.shards.len()];
        let marks: Vec<Option<&str>> = self.shards.iter().map(|s| watermark(s)).collect();
        for &i in self.records_of(key) {
            let c = &self.contributors[i as usize];
            let seq = self.sequence_of(i);
            if !keep(i) || !sequence::is_after(seq, marks[c.shard as usize]) {
                continue;
            }
            count += 1;
            let at = i as usize * self.metrics;
            for (sum, v) in sums.iter_mut().zip(&self.readings[at..at + self.metrics]) {
                *sum += v;
            }
            let h = &mut highest[c.shard as usize];
            *h = Some(h.map_or(seq, |h| sequence::max(h, seq)));
        }
        let watermarks = highest
            .iter()
            .enumerate()
            .filter_map(|(s, h)| h.map(|h| (self.shards[s].clone(), h.to_string())))
            .collect();
        Contribution {
            count,
            sums,
            watermarks,
        }
    }

    fn sequence_of(&self, contributor: u32) -> &str {
        &self.sequences[self.contributors[contributor as usize].sequence.clone()]
    }

    fn records_of(&self, key: &WindowKey) -> &[u32] {
        let Some(&window) = self
            .device_ids
            .get(&key.device)
            .and_then(|&d| self.window_ids.get(&(d, key.status, key.start)))
        else {
            return &[];
        };
        let grouped = self.grouped.get_or_init(|| self.group());
        let w = window as usize;
        &grouped.records[grouped.offsets[w]..grouped.offsets[w + 1]]
    }

    /// A counting sort of `members` by window, keeping each window's records
    /// in the order they were added.
    fn group(&self) -> Grouped {
        let mut offsets = vec![0; self.keys.len() + 1];
        for &(w, _) in &self.members {
            offsets[w as usize + 1] += 1;
        }
        for w in 1..offsets.len() {
            offsets[w] += offsets[w - 1];
        }
        let mut at = offsets.clone();
        let mut records = vec![0; self.members.len()];
        for &(w, r) in &self.members {
            records[at[w as usize]] = r;
            at[w as usize] += 1;
        }
        Grouped { offsets, records }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(h: u32, m: u32, s: u32) -> i64 {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(h, m, s)
            .unwrap()
            .and_utc();
        t.timestamp_micros()
    }

    #[test]
    fn a_record_lands_in_every_window_containing_it() {
        let w = WindowSpec::new(600, 300).unwrap();
        let starts: Vec<String> = w.starts(micros(10, 7, 30)).map(iso).collect();
        assert_eq!(starts, ["2026-11-23T10:00:00Z", "2026-11-23T10:05:00Z"]);
        // A window's start is inside it, its end is not.
        let starts: Vec<String> = w.starts(micros(10, 5, 0)).map(iso).collect();
        assert_eq!(starts, ["2026-11-23T10:00:00Z", "2026-11-23T10:05:00Z"]);
        let starts: Vec<String> = w.starts(micros(10, 4, 59) + 999_999).map(iso).collect();
        assert_eq!(starts, ["2026-11-23T09:55:00Z", "2026-11-23T10:00:00Z"]);
        // Tumbling windows and three-way overlap.
        let tumbling = WindowSpec::new(300, 300).unwrap();
        assert_eq!(tumbling.starts(micros(10, 7, 0)).count(), 1);
        let three = WindowSpec::new(900, 300).unwrap();
        assert_eq!(three.starts(micros(10, 7, 0)).count(), 3);
        // Before the epoch the floor still goes down.
        let starts: Vec<i64> = w.starts(-1).collect();
        assert_eq!(starts, [-600, -300]);
    }

    #[test]
    fn size_must_be_a_positive_multiple_of_the_slide() {
        assert_eq!(
            WindowSpec::new(600, 400).unwrap_err().to_string(),
            "window size 600s is not a multiple of the slide 400s"
        );
        assert!(WindowSpec::new(0, 300).is_err());
        assert!(WindowSpec::new(600, -1).is_err());
    }

    #[test]
    fn records_at_or_below_the_watermark_are_left_out() {
        let mut b = BatchWindows::new(2);
        let key = WindowKey {
            device: "7".into(),
            status: Status::Green,
            start: 0,
        };
        for (shard, seq, v) in [
            ("a", "8", 1.0),
            ("a", "9", 2.0),
            ("a", "10", 4.0),
            ("b", "3", 8.0),
        ] {
            b.add(
                shard,
                seq,
                "7",
                Status::Green,
                [0].into_iter(),
                &[v, 10.0 * v],
            );
        }
        assert_eq!(b.len(), 1);
        assert_eq!(b.first_sequence(&key), Some("3"));
        assert_eq!(b.shards_of(&key), ["a", "b"]);

        let all = b.contribution(&key, |_| None);
        assert_eq!(all.count, 4);
        assert_eq!(all.sums, [15.0, 150.0]);
        assert_eq!(
            all.watermarks,
            [
                ("a".to_string(), "10".to_string()),
                ("b".to_string(), "3".to_string())
            ]
        );

        // Shard a already applied up to 9 (numerically, not lexically).
        let rest = b.contribution(&key, |s| (s == "a").then_some("9"));
        assert_eq!(rest.count, 2);
        assert_eq!(rest.sums, [12.0, 120.0]);

        let none = b.contribution(&key, |s| Some(if s == "a" { "10" } else { "3" }));
        assert_eq!(none.count, 0);
        assert!(none.watermarks.is_empty());
    }

    #[test]
    fn interleaved_devices_and_statuses_keep_their_own_windows() {
        let mut b = BatchWindows::new(1);
        let key = |device: &str, status, start| WindowKey {
            device: device.into(),
            status,
            start,
        };
        let readings = [
            ("1", Status::Green, 0, 1.0),
            ("2", Status::Red, 300, 2.0),
            ("1", Status::Red, 300, 4.0),
            ("2", Status::Red, 0, 8.0),
            ("1", Status::Green, 300, 16.0),
        ];
        for (i, (device, status, start, v)) in readings.into_iter().enumerate() {
            let seq = (i + 1).to_string();
            b.add(
                "s",
                &seq,
                device,
                status,
                [start, start + 300].into_iter(),
                &[v],
            );
        }
        let keys: Vec<(String, Status, i64)> = b
            .keys()
            .map(|k| (k.device.clone(), k.status, k.start))
            .collect();
        assert_eq!(
            keys,
            [
                ("1".into(), Status::Green, 0),
                ("1".into(), Status::Green, 300),
                ("1".into(), Status::Green, 600),
                ("1".into(), Status::Red, 300),
                ("1".into(), Status::Red, 600),
                ("2".into(), Status::Red, 0),
                ("2".into(), Status::Red, 300),
                ("2".into(), Status::Red, 600),
            ]
        );
        let sum = |b: &BatchWindows, k: &WindowKey| b.contribution(k, |_| None).sums[0];
        assert_eq!(sum(&b, &key("1", Status::Green, 300)), 17.0);
        assert_eq!(sum(&b, &key("2", Status::Red, 300)), 10.0);
        assert_eq!(sum(&b, &key("1", Status::Red, 600)), 4.0);
        assert_eq!(b.first_sequence(&key("2", Status::Red, 300)), Some("2"));
        assert_eq!(b.contribution(&key("3", Status::Red, 0), |_| None).count, 0);
        assert_eq!(b.first_sequence(&key("1", Status::Orange, 0)), None);

        // A reading added after the windows were read is counted too.
        b.add("s", "6", "2", Status::Red, [300].into_iter(), &[32.0]);
        assert_eq!(sum(&b, &key("2", Status::Red, 300)), 42.0);
        assert_eq!(b.len(), 8);
    }
}
