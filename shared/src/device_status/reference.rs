//! Per-device normal ranges from the reference table, and the cache that
//! keeps them for the life of a container.
//!
//! The cache loads the whole table with a paginated Scan on first use and
//! reloads it only when the change flag moved (see [`crate::device_status::change_flag`]).
//! It reads the flag's ETag *before* scanning: a change that lands during
//! the scan writes a newer flag, so the next probe reloads; reading the flag
//! after the scan could miss such a change for good. A probe that fails
//! keeps the loaded data (and probes again on the next call); a load that
//! fails is an error, and the batch is retried whole.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::sync::Mutex;

use crate::device_status::change_flag::{ChangeFlagStore, FlagError, Probe};
use crate::device_status::status::Range;

/// One reading and the reference attributes holding its normal range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    /// The record field holding the reading (`o2stats`).
    pub field: String,
    /// The reference attribute of the lower bound (`o2_stats_min`).
    pub min_attribute: String,
    /// The reference attribute of the upper bound (`o2_stats_max`).
    pub max_attribute: String,
}

/// The normal ranges of every device, one range per metric in metric order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferenceData {
    /// Looked up for every reading: foldhash rather than SipHash.
    ranges: HashMap<String, Vec<Range>, foldhash::fast::RandomState>,
}

/// A reference row that cannot be used; its device is UNKNOWN until fixed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RowError {
    #[error("reference row has no key attribute `{attribute}`")]
    MissingKey { attribute: String },
    #[error("reference row {device}: attribute `{attribute}` is missing or not a number")]
    NotANumber { device: String, attribute: String },
}

/// The reference data could not be loaded: the world's fault, retried.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("could not scan reference table {table}: {message}")]
    Scan { table: String, message: String },
    #[error(transparent)]
    Flag(#[from] FlagError),
}

impl ReferenceData {
    /// Reference data from `(device, ranges)` pairs.
    pub fn from_ranges(rows: impl IntoIterator<Item = (String, Vec<Range>)>) -> Self {
        ReferenceData {
            ranges: rows.into_iter().collect(),
        }
    }

    /// The ranges of `device`, `None` when it has no (usable) row.
    pub fn get(&self, device: &str) -> Option<&[Range]> {
        self.ranges.get(device).map(Vec::as_slice)
    }

    /// How many devices have ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when no device has ranges.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// A key attribute's value as a string: the text of `S` or `N`.
pub fn key_text(value: &AttributeValue) -> Option<&str> {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => Some(s),
        _ => None,
    }
}

/// Reads one reference row into its device and ranges.
pub fn parse_row(
    item: &HashMap<String, AttributeValue>,
    key_attribute: &str,
    metrics: &[MetricSpec],
) -> Result<(String, Vec<Range>), RowError> {
    let device = item
        .get(key_attribute)
        .and_then(key_text)
        .ok_or_else(|| RowError::MissingKey {
            attribute: key_attribute.to_string(),
        })?
        .to_string();
    let number = |attribute: &str| -> Result<f64, RowError> {
        item.get(attribute)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| n.is_finite())
            .ok_or_else(|| RowError::NotANumber {
                device: device.clone(),
                attribute: attribute.to_string(),
            })
    };
    let ranges = metrics
        .iter()
        .map(|m| {
            Ok(Range {
                min: number(&m.min_attribute)?,
                max: number(&m.max_attribute)?,
            })
        })
        .collect::<Result<Vec<_>, RowError>>()?;
    Ok((device, ranges))
}

/// The reference table and how to read its rows.
#[derive(Debug, Clone)]
pub struct ReferenceTable {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    pub key_attribute: String,
    pub metrics: Vec<MetricSpec>,
}

impl ReferenceTable {
    /// Scans the whole table, page by page. Unusable rows are logged (once
    /// per load) and left out, so their devices are UNKNOWN.
    pub async fn load(&self) -> Result<ReferenceData, ReferenceError> {
        let mut ranges = HashMap::default();
        let mut bad = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| ReferenceError::Scan {
                    table: self.table.clone(),
                    message: DisplayErrorContext(&e).to_string(),
                })?;
            for item in page.items() {
                match parse_row(item, &self.key_attribute, &self.metrics) {
                    Ok((device, r)) => {
                        ranges.insert(device, r);
                    }
                    Err(e) => bad.push(e.to_string()),
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        if !bad.is_empty() {
            tracing::warn!(table = %self.table, unusable = bad.len(), first = %bad[0], "reference rows left out");
        }
        Ok(ReferenceData { ranges })
    }
}

/// The reference data of one container, reloaded when the change flag moves.
#[derive(Debug)]
pub struct ReferenceCache {
    table: ReferenceTable,
    flag: ChangeFlagStore,
    check_every: Duration,
    state: Mutex<Option<Loaded>>,
}

#[derive(Debug)]
struct Loaded {
    data: Arc<ReferenceData>,
    flag_etag: Option<String>,
    checked_at: Instant,
    loads: u64,
}

/// Where a batch's reference data comes from: the cached reference table
/// ([`ReferenceCache`]) when the function runs, fixed ranges when they are
/// known up front (the benchmarks).
pub trait ReferenceSource {
    /// The reference data to join the next batch with.
    fn current(
        &self,
    ) -> impl std::future::Future<Output = Result<Arc<ReferenceData>, ReferenceError>>;

    /// How many times the reference data has been loaded (never, for
    /// data given once).
    fn loads(&self) -> impl std::future::Future<Output = u64> {
        async { 0 }
    }
}

impl ReferenceSource for ReferenceCache {
    async fn current(&self) -> Result<Arc<ReferenceData>, ReferenceError> {
        ReferenceCache::current(self).await
    }

    async fn loads(&self) -> u64 {
        ReferenceCache::loads(self).await
    }
}

impl ReferenceSource for Arc<ReferenceData> {
    async fn current(&self) -> Result<Arc<ReferenceData>, ReferenceError> {
        Ok(Arc::clone(self))
    }
}

impl ReferenceCache {
    /// A cache that probes the flag at most once per `check_every`.
    pub fn new(table: ReferenceTable, flag: ChangeFlagStore, check_every: Duration) -> Self {
        ReferenceCache {
            table,
            flag,
            check_every,
            state: Mutex::new(None),
        }
    }

    /// The current reference data: loaded on first use, reloaded when the
    /// flag moved since the last load (probed at most once per interval).
    pub async fn current(&self) -> Result<Arc<ReferenceData>, ReferenceError> {
        let mut state = self.state.lock().await;
        // The flag's ETag to remember when the table must be (re)loaded, read
        // before the table: see the module documentation.
        let reload = match state.as_mut() {
            None => Some(self.flag.etag().await?),
            Some(loaded) if loaded.checked_at.elapsed() < self.check_every => None,
            Some(loaded) => match self.flag.probe(loaded.flag_etag.as_deref()).await {
                Ok(Probe::Unchanged) => {
                    loaded.checked_at = Instant::now();
                    None
                }
                Ok(Probe::Changed(etag)) => Some(etag),
                // A flag that cannot be read does not stop the stream: the
                // batch uses the data loaded, and the next batch probes again.
                Err(e) => {
                    tracing::warn!(error = %e, "change flag unreadable; keeping the loaded reference data");
                    None
                }
            },
        };
        if let Some(flag_etag) = reload {
            let data = match (self.table.load().await, state.as_ref()) {
                (Ok(data), _) => Arc::new(data),
                // A reload that fails does not stop the stream either: the
                // ranges loaded before serve this batch, and as neither the
                // flag's ETag nor the probe time moved, the next batch
                // probes, sees the change and loads again.
                (Err(e), Some(loaded)) => {
                    tracing::warn!(error = %e, "reference reload failed; keeping the loaded reference data");
                    return Ok(Arc::clone(&loaded.data));
                }
                (Err(e), None) => return Err(e),
            };
            let loads = state.as_ref().map_or(0, |l| l.loads) + 1;
            tracing::info!(table = %self.table.table, devices = data.len(), loads, flag_etag = flag_etag.as_deref().unwrap_or(""), "reference data loaded");
            *state = Some(Loaded {
                data,
                flag_etag,
                checked_at: Instant::now(),
                loads,
            });
        }
        match state.as_ref() {
            Some(loaded) => Ok(Arc::clone(&loaded.data)),
            None => Ok(Arc::default()),
        }
    }

    /// How many times the table was scanned.
    pub async fn loads(&self) -> u64 {
        self.state.lock().await.as_ref().map_or(0, |l| l.loads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    fn metrics() -> Vec<MetricSpec> {
        vec![MetricSpec {
            field: "o2stats".into(),
            min_attribute: "o2_stats_min".into(),
            max_attribute: "o2_stats_max".into(),
        }]
    }

    #[test]
    fn rows_are_read_with_numeric_or_string_keys() {
        let item = HashMap::from([
            ("ventilatorid".to_string(), n("12")),
            ("o2_stats_min".to_string(), n("90")),
            ("o2_stats_max".to_string(), n("100.5")),
        ]);
        let (device, ranges) = parse_row(&item, "ventilatorid", &metrics()).unwrap();
        assert_eq!(device, "12");
        assert_eq!(
            ranges,
            [Range {
                min: 90.0,
                max: 100.5
            }]
        );

        let mut item = item;
        item.insert("ventilatorid".into(), AttributeValue::S("v-1".into()));
        assert_eq!(
            parse_row(&item, "ventilatorid", &metrics()).unwrap().0,
            "v-1"
        );
    }

    #[test]
    fn unusable_rows_name_what_is_wrong() {
        let item = HashMap::from([
            ("ventilatorid".to_string(), n("12")),
            ("o2_stats_min".to_string(), AttributeValue::S("low".into())),
            ("o2_stats_max".to_string(), n("100")),
        ]);
        assert_eq!(
            parse_row(&item, "ventilatorid", &metrics())
                .unwrap_err()
                .to_string(),
            "reference row 12: attribute `o2_stats_min` is missing or not a number"
        );
        assert_eq!(
            parse_row(&item, "deviceid", &metrics()).unwrap_err(),
            RowError::MissingKey {
                attribute: "deviceid".into()
            }
        );
    }
}
