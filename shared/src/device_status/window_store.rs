//! Applying a batch's window aggregates to the windows table, exactly once
//! per record under Lambda retries.
//!
//! One item per (device, window): `pk` = the device, `sk` = the window start
//! (ISO-8601 UTC), with `device`, `window_start`, `window_end`, `expires_at`
//! (TTL), `count` (the readings of every status), per status `count_<status>`,
//! `sum_<metric>_<status>` and `avg_<metric>_<status>` (`count_green`,
//! `sum_o2stats_red`, ...), and one watermark `wm_<shardId>` per shard: the
//! highest sequence number of that shard already counted in the item.
//!
//! Every status of a device's window lives in one item under one watermark,
//! so a reading is counted once in the window whatever status it gets: when
//! the reference ranges change between a failed attempt and its retry, the
//! retry may judge a reading differently, but the reading is at or below the
//! item's watermark and is left out. (With an item per status, a reading
//! judged GREEN, then ORANGE, would be counted in both.)
//!
//! The items are read first (`BatchGetItem`, consistent); the records at or
//! below an item's watermark are left out of its contribution; then one
//! `UpdateItem` per item ADDs counts and sums, SETs averages and watermarks,
//! conditioned on `count` still being what was read. Every applied write
//! changes `count`, so the condition fails when anything (another shard's
//! batch, an overlapping retry) wrote the item in between; the item is then
//! read again and the contribution recomputed, a bounded number of times.
//!
//! A write DynamoDB refuses as invalid (`ValidationException`: a number or
//! a key past what it holds that the decode checks did not foresee) is
//! never retried: the item's records are applied one by one, each refused
//! one is reported (device-status dead-letters it) and the watermark moved
//! past it, so neither this batch nor a retry of it tries it again, and the
//! item's other records count.
//!
//! The watermark relies on the records of a shard reaching the function in
//! order, one batch at a time: `ParallelizationFactor: 1` on the event source
//! mapping. With a higher factor, batches of one shard run concurrently and
//! out of order, and a batch with lower sequence numbers would be dropped as
//! already applied.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use crate::device_status::status::Status;
use crate::device_status::windows::{iso, BatchWindows, Contribution, WindowKey};
use crate::stream::sequence;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_smithy_types::error::display::DisplayErrorContext;
use futures::stream::{self, StreamExt};

/// Attempts of a conditional write before the item is reported failed.
const MAX_CONDITION_ATTEMPTS: usize = 5;
/// Rounds of `BatchGetItem` on unprocessed keys before they are reported failed.
const MAX_READ_ROUNDS: usize = 5;
/// Keys per `BatchGetItem` call (the API's limit).
const BATCH_GET_KEYS: usize = 100;

/// The largest magnitude a reading may have: DynamoDB numbers stop short of
/// 1E+126, and a window sums its readings with room for 10^5 of them.
pub const MAX_READING: f64 = 1e120;
/// The smallest magnitude a reading other than 0 may have: DynamoDB numbers
/// start at 1E-130, and an average divides a sum by the count.
pub const MIN_READING: f64 = 1e-120;
/// DynamoDB's largest partition key, in bytes: the device id is the key.
pub const MAX_DEVICE_BYTES: usize = 2048;

/// Why a reading cannot go to the windows table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unstorable {
    /// The device id is longer than a partition key may be.
    Device { bytes: usize },
    /// Reading `index` cannot be summed and stored as a DynamoDB number.
    Reading { index: usize, value: f64 },
}

/// Checks that a reading of `device` can be written: DynamoDB refuses the
/// whole `UpdateItem` (a `ValidationException`, every time it is retried)
/// for a key past its size or a number past its range, so such a reading
/// is a dead letter at decode instead.
pub fn storable(device: &str, readings: &[f64]) -> Result<(), Unstorable> {
    if device.len() > MAX_DEVICE_BYTES {
        return Err(Unstorable::Device {
            bytes: device.len(),
        });
    }
    for (index, &value) in readings.iter().enumerate() {
        let magnitude = value.abs();
        let in_range = magnitude == 0.0 || (MIN_READING..=MAX_READING).contains(&magnitude);
        if !in_range {
            return Err(Unstorable::Reading { index, value });
        }
    }
    Ok(())
}

/// The partition key attribute of the windows table.
pub const PK: &str = "pk";
/// The sort key attribute of the windows table.
pub const SK: &str = "sk";

type Item = HashMap<String, AttributeValue>;

/// An item and the batch's windows of each status in it.
type ItemWindows<'b> = (ItemKey, Vec<&'b WindowKey>);

/// One conditional `UpdateItem` of a window item.
struct Update {
    expression: String,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// Where a batch's windows are applied, once per record: the windows table
/// ([`WindowStore`]) when the function runs.
pub trait WindowSink {
    /// Applies the batch's contribution to every window it touches.
    fn apply(&self, batch: &BatchWindows) -> impl std::future::Future<Output = ApplyReport>;
}

impl WindowSink for WindowStore {
    async fn apply(&self, batch: &BatchWindows) -> ApplyReport {
        WindowStore::apply(self, batch).await
    }
}

/// The windows table.
#[derive(Debug, Clone)]
pub struct WindowStore {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    /// The metric fields, in the order of the batch's readings.
    pub metrics: Vec<String>,
    /// Window length in seconds.
    pub window_secs: i64,
    /// Seconds an item is kept after its window ends.
    pub retention_secs: i64,
    /// Items written at once.
    pub concurrency: usize,
}

/// One item of the windows table: a device's window, every status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey {
    pub device: String,
    /// Epoch seconds.
    pub start: i64,
}

/// What applying a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Items updated.
    pub written: usize,
    /// Items that already held every record of the batch.
    pub already_applied: usize,
    /// Items that could not be read or written, with the reason.
    pub failed: Vec<(ItemKey, String)>,
    /// The smallest sequence number among the records of the failed items:
    /// every record before it had all its windows applied.
    pub retry_from: Option<String>,
    /// Records whose write the table refused as invalid, by record number
    /// ([`BatchWindows::add`]), with the table's words: counted nowhere,
    /// never retried.
    pub refused: Vec<(u32, String)>,
    /// Conditional writes that found the item changed since it was read,
    /// and were made again on the item read anew.
    pub condition_retries: usize,
}

enum Outcome {
    Written,
    AlreadyApplied,
    Failed(String),
    /// Written one record at a time, but for the records refused.
    Isolated(Vec<(u32, String)>),
}

/// Whether DynamoDB refused a request as invalid: the same request fails
/// the same way every time.
fn is_invalid<E: ProvideErrorMetadata>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool {
    e.code() == Some("ValidationException")
}

impl WindowStore {
    /// Applies every window of `batch`: one item per device and window, with
    /// the batch's windows of each status in it.
    pub async fn apply(&self, batch: &BatchWindows) -> ApplyReport {
        let mut items: BTreeMap<ItemKey, Vec<&WindowKey>> = BTreeMap::new();
        for key in batch.keys() {
            let item = ItemKey {
                device: key.device.clone(),
                start: key.start,
            };
            items.entry(item).or_default().push(key);
        }
        let merged: Vec<ItemWindows> = items.into_iter().collect();
        let mut report = ApplyReport::default();
        let retries = AtomicUsize::new(0);
        let mut read: Vec<(&ItemWindows, Result<Option<Item>, String>)> = Vec::new();
        for chunk in merged.chunks(BATCH_GET_KEYS) {
            let keys: Vec<&ItemKey> = chunk.iter().map(|(k, _)| k).collect();
            let found = self.read_many(&keys).await;
            read.extend(chunk.iter().zip(found));
        }
        let outcomes: Vec<(&ItemWindows, Outcome)> = stream::iter(read)
            .map(|(item, current)| {
                let retries = &retries;
                async move {
                    let outcome = match current {
                        Ok(current) => {
                            self.apply_one(batch, &item.0, &item.1, current, retries)
                                .await
                        }
                        Err(e) => Outcome::Failed(e),
                    };
                    (item, outcome)
                }
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for ((item, statuses), outcome) in outcomes {
            match outcome {
                Outcome::Written => report.written += 1,
                Outcome::AlreadyApplied => report.already_applied += 1,
                Outcome::Isolated(refused) => {
                    report.written += 1;
                    report.refused.extend(refused);
                }
                Outcome::Failed(e) => {
                    for first in statuses.iter().filter_map(|k| batch.first_sequence(k)) {
                        let earlier = report
                            .retry_from
                            .as_deref()
                            .is_none_or(|r| sequence::compare(first, r) == Ordering::Less);
                        if earlier {
                            report.retry_from = Some(first.to_string());
                        }
                    }
                    report.failed.push((item.clone(), e));
                }
            }
        }
        report.condition_retries = retries.into_inner();
        report.failed.sort_by(|a, b| a.0.cmp(&b.0));
        // A record refused in each of its windows is one refusal.
        report.refused.sort_unstable_by_key(|(record, _)| *record);
        report.refused.dedup_by_key(|(record, _)| *record);
        report
    }

    /// Reads up to 100 items, consistently, retrying unprocessed keys.
    async fn read_many(&self, keys: &[&ItemKey]) -> Vec<Result<Option<Item>, String>> {
        let mut found: HashMap<(String, String), Item> = HashMap::new();
        let mut pending: Vec<Item> = keys.iter().map(|k| item_key(k)).collect();
        let mut error = None;
        for round in 0..MAX_READ_ROUNDS {
            if pending.is_empty() {
                break;
            }
            if round > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50 << round)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build();
            let request = match request {
                Ok(r) => r,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            };
            let sent = self
                .client
                .batch_get_item()
                .request_items(&self.table, request.clone())
                .send()
                .await;
            match sent {
                Ok(out) => {
                    for item in out
                        .responses
                        .unwrap_or_default()
                        .remove(&self.table)
                        .unwrap_or_default()
                    {
                        if let (Some(pk), Some(sk)) = (text(&item, PK), text(&item, SK)) {
                            found.insert((pk.to_string(), sk.to_string()), item);
                        }
                    }
                    pending = out
                        .unprocessed_keys
                        .unwrap_or_default()
                        .remove(&self.table)
                        .map(|k| k.keys)
                        .unwrap_or_default();
                }
                Err(e) => {
                    error = Some(format!(
                        "could not read items of {}: {}",
                        self.table,
                        DisplayErrorContext(&e)
                    ));
                    pending = request.keys;
                    break;
                }
            }
        }
        let unread: Vec<(String, String)> = pending
            .iter()
            .filter_map(|k| Some((text(k, PK)?.to_string(), text(k, SK)?.to_string())))
            .collect();
        keys.iter()
            .map(|k| {
                let id = (k.device.clone(), iso(k.start));
                if unread.contains(&id) {
                    Err(error.clone().unwrap_or_else(|| {
                        format!(
                            "{} left the item unprocessed {MAX_READ_ROUNDS} times",
                            self.table
                        )
                    }))
                } else {
                    Ok(found.remove(&id))
                }
            })
            .collect()
    }

    async fn apply_one(
        &self,
        batch: &BatchWindows,
        key: &ItemKey,
        statuses: &[&WindowKey],
        current: Option<Item>,
        retries: &AtomicUsize,
    ) -> Outcome {
        let mut current = current;
        for _ in 0..MAX_CONDITION_ATTEMPTS {
            let item = current.as_ref();
            let contributions: Vec<(Status, Contribution)> = statuses
                .iter()
                .map(|w| {
                    let c = batch.contribution(w, |shard| {
                        item.and_then(|i| text(i, &watermark_attribute(shard)))
                    });
                    (w.status, c)
                })
                .filter(|(_, c)| c.count > 0)
                .collect();
            if contributions.is_empty() {
                return Outcome::AlreadyApplied;
            }
            let update = self.update(key, item, &contributions);
            let result = self.send_update(key, update).await;
            match result {
                Ok(_) => return Outcome::Written,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    tracing::info!(pk = %key.device, sk = %iso(key.start), "window item changed since read; reading again");
                    retries.fetch_add(1, AtomicOrdering::Relaxed);
                    match self.read_one(key).await {
                        Ok(item) => current = item,
                        Err(e) => return Outcome::Failed(e),
                    }
                }
                Err(e) if is_invalid(&e) => {
                    tracing::warn!(pk = %key.device, sk = %iso(key.start), error = %DisplayErrorContext(&e), "the table refused the window item's update; applying its records one by one");
                    return self.apply_one_by_one(batch, key, statuses, retries).await;
                }
                Err(e) => return self.update_failed(key, &e),
            }
        }
        Outcome::Failed(format!(
            "{} {}/{} kept changing under {MAX_CONDITION_ATTEMPTS} conditional writes",
            self.table,
            key.device,
            iso(key.start)
        ))
    }

    /// An update of `key` that failed for good (after the SDK's retries).
    fn update_failed<E: std::error::Error + 'static>(
        &self,
        key: &ItemKey,
        e: &aws_sdk_dynamodb::error::SdkError<E>,
    ) -> Outcome {
        Outcome::Failed(format!(
            "could not update {} {}/{}: {}",
            self.table,
            key.device,
            iso(key.start),
            DisplayErrorContext(e)
        ))
    }

    /// Sends one conditional update of the item `key`.
    async fn send_update(
        &self,
        key: &ItemKey,
        update: Update,
    ) -> Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        >,
    > {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(key)))
            .update_expression(update.expression)
            .condition_expression(update.condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .send()
            .await
    }

    /// Applies the records of an item one at a time, in shard and sequence
    /// order, after the table refused them together: a record refused on
    /// its own is reported, and the watermark is moved past it (a write of
    /// the watermark alone), so that nothing tries it again.
    async fn apply_one_by_one(
        &self,
        batch: &BatchWindows,
        key: &ItemKey,
        statuses: &[&WindowKey],
        retries: &AtomicUsize,
    ) -> Outcome {
        let mut current = match self.read_one(key).await {
            Ok(item) => item,
            Err(e) => return Outcome::Failed(e),
        };
        let mut refused = Vec::new();
        for record in batch.records_of_windows(statuses) {
            let (shard, sequence_number) = batch.record(record);
            let mut refusal: Option<String> = None;
            let mut attempts = 0;
            loop {
                attempts += 1;
                if attempts > MAX_CONDITION_ATTEMPTS {
                    return Outcome::Failed(format!(
                        "{} {}/{} kept changing under {MAX_CONDITION_ATTEMPTS} conditional writes",
                        self.table,
                        key.device,
                        iso(key.start)
                    ));
                }
                let item = current.as_ref();
                let held = item.and_then(|i| text(i, &watermark_attribute(shard)));
                if !sequence::is_after(sequence_number, held) {
                    break;
                }
                let contributions: Vec<(Status, Contribution)> = match &refusal {
                    // The watermark alone, past the refused record.
                    Some(_) => vec![(
                        statuses[0].status,
                        Contribution {
                            count: 0,
                            sums: vec![0.0; self.metrics.len()],
                            watermarks: vec![(shard.to_string(), sequence_number.to_string())],
                        },
                    )],
                    None => statuses
                        .iter()
                        .map(|w| {
                            let c = batch.contribution_of_record(w, record, |s| {
                                item.and_then(|i| text(i, &watermark_attribute(s)))
                            });
                            (w.status, c)
                        })
                        .filter(|(_, c)| c.count > 0)
                        .collect(),
                };
                let update = self.update(key, item, &contributions);
                let result = self.send_update(key, update).await;
                let conflict = match result {
                    Ok(_) => false,
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                    {
                        retries.fetch_add(1, AtomicOrdering::Relaxed);
                        true
                    }
                    Err(e) if refusal.is_none() && is_invalid(&e) => {
                        refusal = Some(DisplayErrorContext(&e).to_string());
                        continue;
                    }
                    Err(e) => return self.update_failed(key, &e),
                };
                match self.read_one(key).await {
                    Ok(item) => current = item,
                    Err(e) => return Outcome::Failed(e),
                }
                if !conflict {
                    break;
                }
            }
            if let Some(why) = refusal {
                tracing::warn!(pk = %key.device, sk = %iso(key.start), shard, sequence_number, error = %why, "the table refused a reading; it counts nowhere");
                refused.push((record, why));
            }
        }
        Outcome::Isolated(refused)
    }

    /// The conditional update that adds each status's `contributions` to
    /// the window item as read (`item`, absent when there is none yet):
    /// counts and sums added, averages and watermarks set, on condition that
    /// the count of every status together is still the one read.
    fn update(
        &self,
        key: &ItemKey,
        item: Option<&Item>,
        contributions: &[(Status, Contribution)],
    ) -> Update {
        let end = key.start + self.window_secs;
        let mut names: HashMap<String, String> = HashMap::new();
        let mut values: HashMap<String, AttributeValue> = HashMap::new();
        let mut set = Vec::new();
        let mut add = Vec::new();
        let mut bind = |name: &str, value: AttributeValue, names: &mut HashMap<String, String>| {
            let i = names.len();
            names.insert(format!("#a{i}"), name.to_string());
            values.insert(format!(":v{i}"), value);
            (format!("#a{i}"), format!(":v{i}"))
        };
        for (attr, value) in [
            ("device", s(&key.device)),
            ("window_start", s(&iso(key.start))),
            ("window_end", s(&iso(end))),
            ("expires_at", n(end + self.retention_secs)),
        ] {
            let (a, v) = bind(attr, value, &mut names);
            set.push(format!("{a} = {v}"));
        }
        let mut total = 0;
        let mut watermarks: Vec<(&str, &str)> = Vec::new();
        for (status, contribution) in contributions {
            if contribution.count == 0 {
                // A watermark moved past a refused record: nothing to add.
                watermarks.extend(
                    contribution
                        .watermarks
                        .iter()
                        .map(|(s, q)| (s.as_str(), q.as_str())),
                );
                continue;
            }
            let status_count = count_attribute(*status);
            let old_count = item.and_then(|i| number(i, &status_count)).unwrap_or(0.0);
            let new_count = old_count + contribution.count as f64;
            let (a, v) = bind(&status_count, n(contribution.count as i64), &mut names);
            add.push(format!("{a} {v}"));
            total += contribution.count;
            for (m, field) in self.metrics.iter().enumerate() {
                let sum_attr = sum_attribute(field, *status);
                let old_sum = item.and_then(|i| number(i, &sum_attr)).unwrap_or(0.0);
                let added = contribution.sums[m];
                let (a, v) = bind(&sum_attr, nf(added), &mut names);
                add.push(format!("{a} {v}"));
                let (a, v) = bind(
                    &avg_attribute(field, *status),
                    nf((old_sum + added) / new_count),
                    &mut names,
                );
                set.push(format!("{a} = {v}"));
            }
            for (shard, seq) in &contribution.watermarks {
                match watermarks.iter_mut().find(|(s, _)| s == shard) {
                    Some((_, highest)) => *highest = sequence::max(highest, seq),
                    None => watermarks.push((shard, seq)),
                }
            }
        }
        for (shard, seq) in watermarks {
            let (a, v) = bind(&watermark_attribute(shard), s(seq), &mut names);
            set.push(format!("{a} = {v}"));
        }
        let (count_name, count_value) = bind("count", n(total as i64), &mut names);
        add.push(format!("{count_name} {count_value}"));
        let condition = match item.and_then(|i| i.get("count")) {
            None => format!("attribute_not_exists({count_name})"),
            Some(old) => {
                values.insert(":old_count".into(), old.clone());
                format!("{count_name} = :old_count")
            }
        };
        Update {
            expression: format!("SET {} ADD {}", set.join(", "), add.join(", ")),
            condition,
            names,
            values,
        }
    }

    async fn read_one(&self, key: &ItemKey) -> Result<Option<Item>, String> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| {
                format!(
                    "could not read {} {}/{}: {}",
                    self.table,
                    key.device,
                    iso(key.start),
                    DisplayErrorContext(&e)
                )
            })
    }
}

/// The attribute holding a shard's watermark.
pub fn watermark_attribute(shard: &str) -> String {
    format!("wm_{shard}")
}

/// The attribute holding the readings of `status` in a window.
pub fn count_attribute(status: Status) -> String {
    format!("count_{}", status_suffix(status))
}

/// The attribute holding the sum of `metric` over the readings of `status`.
pub fn sum_attribute(metric: &str, status: Status) -> String {
    format!("sum_{metric}_{}", status_suffix(status))
}

/// The attribute holding the average of `metric` over the readings of `status`.
pub fn avg_attribute(metric: &str, status: Status) -> String {
    format!("avg_{metric}_{}", status_suffix(status))
}

fn status_suffix(status: Status) -> String {
    status.as_str().to_ascii_lowercase()
}

fn item_key(key: &ItemKey) -> Item {
    HashMap::from([
        (PK.to_string(), s(&key.device)),
        (SK.to_string(), s(&iso(key.start))),
    ])
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A float as a DynamoDB number: Rust prints the shortest text that reads
/// back to the same `f64`, without exponent.
fn nf(v: f64) -> AttributeValue {
    AttributeValue::N(format!("{v}"))
}

fn text<'a>(item: &'a Item, attr: &str) -> Option<&'a str> {
    item.get(attr)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn number(item: &Item, attr: &str) -> Option<f64> {
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_and_keys_past_what_dynamodb_holds_are_unstorable() {
        assert_eq!(storable("1", &[0.0, 95.0, -1e120, 1e-120]), Ok(()));
        for (i, v) in [1e121, -1e300, 1e-121, f64::NAN, f64::INFINITY]
            .into_iter()
            .enumerate()
        {
            let readings = [1.0, v];
            assert!(
                matches!(
                    storable("1", &readings),
                    Err(Unstorable::Reading { index: 1, .. })
                ),
                "{i}: {v}"
            );
        }
        let long = "d".repeat(MAX_DEVICE_BYTES + 1);
        assert_eq!(
            storable(&long, &[1.0]),
            Err(Unstorable::Device {
                bytes: MAX_DEVICE_BYTES + 1
            })
        );
        assert_eq!(storable(&long[1..], &[1.0]), Ok(()));
    }
}
