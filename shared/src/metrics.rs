//! What each function measures, written as CloudWatch Embedded Metric
//! Format (EMF): one JSON document per invocation, printed as one line of
//! the function's log, from which CloudWatch Logs extracts the metrics (the
//! convention AWS Lambda Powertools follows: `_aws.CloudWatchMetrics` names
//! the namespace, the dimension sets and each metric's unit; the values are
//! the document's top-level members).
//!
//! Every metric is in the namespace `METRICS_NAMESPACE` (a template
//! parameter) with one dimension, `FunctionName`: Lambda's name of the
//! function (`AWS_LAMBDA_FUNCTION_NAME`), unique per stack, so two stacks
//! in one account never mix their figures. Dead letters are also counted by
//! reason. A document has one value per dimension, so each reason present
//! in the batch gets a document of its own: `DeadLetters` dimensioned by
//! `FunctionName` and `Reason`. The request id rides along as a property (a
//! member no metric names), to find the invocation's other log lines.
//!
//! [`ALL`] lists every metric with the functions that emit it and what it
//! means; `tests/template.rs` checks that the dashboard shows each one and
//! that every alarm watches one of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::config::vars::{AWS_LAMBDA_FUNCTION_NAME, METRICS_NAMESPACE};
use crate::stream::observed::Observed;

/// The namespace when `METRICS_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "TelemetryLake";

/// The dimension every metric carries.
pub const FUNCTION_DIMENSION: &str = "FunctionName";

/// The second dimension of the dead letters counted by reason.
pub const REASON_DIMENSION: &str = "Reason";

/// A metric's CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    /// The unit as CloudWatch names it.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric: its name, unit, the functions that emit it and its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    /// The function crates (`functions/<name>`) that emit it.
    pub functions: &'static [&'static str],
    pub description: &'static str,
}

const STREAM: &[&str] = &["kinesis-to-parquet", "device-status"];
const LAKE: &[&str] = &["kinesis-to-parquet"];
const STATUS: &[&str] = &["device-status"];

/// Declares each metric as a constant and lists them all in [`ALL`].
macro_rules! metrics {
    ($($(#[doc = $doc:literal])+ $name:ident = ($metric:literal, $unit:ident, $functions:expr),)+) => {
        $($(#[doc = $doc])+ pub const $name: Metric = Metric {
            name: $metric,
            unit: Unit::$unit,
            functions: $functions,
            description: concat!($($doc),+),
        };)+

        /// Every metric the functions emit.
        pub const ALL: &[Metric] = &[$($name,)+];
    };
}

metrics! {
    /// Stream records in the batch (a KPL aggregate counts once).
    RECORDS = ("Records", Count, STREAM),
    /// Rows that passed validation and were written (device-status: readings
    /// counted in the windows).
    GOOD_ROWS = ("GoodRows", Count, STREAM),
    /// Dead letters written, in all; also by `Reason`.
    DEAD_LETTERS = ("DeadLetters", Count, STREAM),
    /// Fields the good documents held that the schema does not declare.
    UNDECLARED_FIELDS = ("UndeclaredFields", Count, STREAM),
    /// CloudWatch Logs control messages read: they hold no log events and
    /// are skipped, not dead-lettered.
    CONTROL_MESSAGES = ("ControlMessages", Count, STREAM),
    /// Batch item failures reported to Lambda (the batch is retried from
    /// there; Lambda does not count these as `Errors`).
    BATCH_ITEM_FAILURES = ("BatchItemFailures", Count, STREAM),
    /// Now minus the newest event time of the batch's good rows.
    EVENT_TIME_LAG = ("EventTimeLag", Milliseconds, STREAM),
    /// Now (after the writes) minus the oldest arrival time in the batch.
    ARRIVAL_TO_WRITE_LATENCY = ("ArrivalToWriteLatency", Milliseconds, STREAM),
    /// Objects written: Parquet files and dead-letter objects
    /// (device-status: dead-letter objects).
    OBJECTS_WRITTEN = ("ObjectsWritten", Count, STREAM),
    /// Bytes of the objects written.
    BYTES_WRITTEN = ("BytesWritten", Bytes, LAKE),
    /// Iceberg: records left out because the table already held them (a
    /// retried or replayed batch).
    RECORDS_ALREADY_COMMITTED = ("RecordsAlreadyCommitted", Count, LAKE),
    /// Iceberg: commit attempts (more than one when commits lost races).
    COMMIT_ATTEMPTS = ("CommitAttempts", Count, LAKE),
    /// Window items updated.
    WINDOWS_WRITTEN = ("WindowsWritten", Count, STATUS),
    /// Window items that already held every record of the batch (a retry).
    WINDOWS_ALREADY_APPLIED = ("WindowsAlreadyApplied", Count, STATUS),
    /// Window items that could not be written (the batch is retried).
    WINDOW_WRITE_FAILURES = ("WindowWriteFailures", Count, STATUS),
    /// Conditional writes of window items retried because another writer
    /// changed the item in between.
    CONDITIONAL_WRITE_RETRIES = ("ConditionalWriteRetries", Count, STATUS),
    /// Loads of the reference table (the first, and each after the change
    /// flag moved).
    REFERENCE_RELOADS = ("ReferenceReloads", Count, STATUS),
    /// Readings of devices without reference ranges (status UNKNOWN).
    UNKNOWN_STATUS_READINGS = ("UnknownStatusReadings", Count, STATUS),
    /// Changes of the reference table read from its stream.
    REFERENCE_CHANGES = ("ReferenceChanges", Count, &["reference-change-flag"]),
    /// Change flags written (one per batch with a change).
    CHANGE_FLAGS_WRITTEN = ("ChangeFlagsWritten", Count, &["reference-change-flag"]),
    /// Days a repartition run claims (and empties, in the Hive layout).
    DAYS = ("Days", Count, &["start-queries"]),
    /// Crawlers started.
    CRAWLERS_STARTED = ("CrawlersStarted", Count, &["start-crawler"]),
    /// Athena queries started.
    QUERIES_STARTED = ("QueriesStarted", Count, &["start-queries"]),
    /// Polls of a crawler's state.
    CRAWLER_POLLS = ("CrawlerPolls", Count, &["crawler-status"]),
    /// Polls of the queries' states.
    QUERY_POLLS = ("QueryPolls", Count, &["query-status"]),
    /// Queries found failed or cancelled.
    QUERIES_FAILED = ("QueriesFailed", Count, &["query-status"]),
    /// Providers due at this tick.
    PROVIDERS_DUE = ("ProvidersDue", Count, &["scheduler"]),
    /// Providers whose execution was started.
    PROVIDERS_STARTED = ("ProvidersStarted", Count, &["scheduler"]),
    /// Providers skipped (not due, disabled, or already started).
    PROVIDERS_SKIPPED = ("ProvidersSkipped", Count, &["scheduler"]),
    /// Providers whose ended execution was recorded.
    PROVIDERS_RECONCILED = ("ProvidersReconciled", Count, &["scheduler"]),
    /// Providers that failed to start or to be reconciled.
    PROVIDERS_FAILED = ("ProvidersFailed", Count, &["scheduler"]),
}

/// What one invocation measured, from its start.
#[derive(Debug)]
pub struct Invocation {
    started: Instant,
    request_id: String,
    values: Vec<(Metric, f64)>,
    /// Metrics measured from a time to the document's timestamp.
    ages: Vec<(Metric, DateTime<Utc>)>,
    dead_letters: BTreeMap<String, usize>,
}

impl Invocation {
    /// Starts measuring the invocation `request_id`.
    pub fn start(request_id: &str) -> Self {
        Invocation {
            started: Instant::now(),
            request_id: request_id.to_string(),
            values: Vec::new(),
            ages: Vec::new(),
            dead_letters: BTreeMap::new(),
        }
    }

    /// Milliseconds since the invocation started.
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Sets `metric` to `value` (a later value replaces an earlier one).
    pub fn set(&mut self, metric: Metric, value: f64) -> &mut Self {
        match self.values.iter_mut().find(|(m, _)| m.name == metric.name) {
            Some((_, v)) => *v = value,
            None => self.values.push((metric, value)),
        }
        self
    }

    /// Sets the count `metric`.
    pub fn count(&mut self, metric: Metric, n: usize) -> &mut Self {
        self.set(metric, n as f64)
    }

    /// Sets `metric` to the milliseconds from `since` to the moment the
    /// document is written, when there is a `since` (a batch without good
    /// rows has no event time).
    pub fn age(&mut self, metric: Metric, since: Option<DateTime<Utc>>) -> &mut Self {
        if let Some(since) = since {
            self.ages.retain(|(m, _)| m.name != metric.name);
            self.ages.push((metric, since));
        }
        self
    }

    /// Adds dead letters by reason, and sets [`DEAD_LETTERS`] to the total.
    pub fn dead_letters<'a>(
        &mut self,
        reasons: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> &mut Self {
        for (reason, n) in reasons {
            match self.dead_letters.get_mut(reason) {
                Some(total) => *total += n,
                None => {
                    self.dead_letters.insert(reason.to_string(), n);
                }
            }
        }
        let total = self.dead_letters.values().sum();
        self.count(DEAD_LETTERS, total)
    }

    /// Sets what both stream functions measure of a batch.
    pub fn stream_batch(&mut self, batch: StreamBatch<'_>) -> &mut Self {
        self.count(RECORDS, batch.records)
            .count(GOOD_ROWS, batch.good)
            .dead_letters(batch.observed.reasons())
            .count(UNDECLARED_FIELDS, batch.undeclared_fields)
            .count(CONTROL_MESSAGES, batch.control_messages)
            .count(OBJECTS_WRITTEN, batch.objects)
            .count(BATCH_ITEM_FAILURES, batch.item_failures)
            .age(EVENT_TIME_LAG, batch.observed.newest_event())
            .age(ARRIVAL_TO_WRITE_LATENCY, batch.observed.oldest_arrival())
    }
}

/// What both stream functions measure of a batch.
#[derive(Debug, Clone, Copy)]
pub struct StreamBatch<'a> {
    pub records: usize,
    pub good: usize,
    pub undeclared_fields: usize,
    pub control_messages: usize,
    pub objects: usize,
    /// Batch item failures reported to Lambda (0 or 1: a Kinesis batch
    /// resumes from one record).
    pub item_failures: usize,
    /// Event and arrival times and dead letters by reason.
    pub observed: &'a Observed,
}

/// Where the documents go: the function's log (stdout, which Lambda sends
/// to CloudWatch Logs), kept in memory (the local run shows them, the tests
/// read them back), or rendered and dropped (the benchmarks).
#[derive(Debug, Clone)]
enum Sink {
    Stdout,
    Memory(Arc<Mutex<Vec<String>>>),
    Dropped,
}

/// Writes each invocation's documents, in one namespace, for one function.
#[derive(Debug, Clone)]
pub struct MetricsOut {
    namespace: String,
    function: String,
    sink: Sink,
}

/// The documents a [`MetricsOut::in_memory`] has written, one JSON line each.
#[derive(Debug, Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<String>>>);

impl Recorded {
    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl MetricsOut {
    /// Metrics for `function` (the crate's name, used when Lambda's
    /// `AWS_LAMBDA_FUNCTION_NAME` is unset) in `METRICS_NAMESPACE`, printed
    /// to stdout.
    pub fn from_env(env: impl Fn(&str) -> Option<String>, function: &str) -> Self {
        let set = |name| env(name).filter(|v: &String| !v.trim().is_empty());
        MetricsOut {
            namespace: set(METRICS_NAMESPACE).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            function: set(AWS_LAMBDA_FUNCTION_NAME).unwrap_or_else(|| function.to_string()),
            sink: Sink::Stdout,
        }
    }

    /// The same metrics kept in memory rather than printed.
    pub fn in_memory(self) -> (Self, Recorded) {
        let recorded = Recorded::default();
        let out = MetricsOut {
            sink: Sink::Memory(Arc::clone(&recorded.0)),
            ..self
        };
        (out, recorded)
    }

    /// The same metrics rendered and dropped: what they cost, without a
    /// terminal's cost or output.
    pub fn dropped(self) -> Self {
        MetricsOut {
            sink: Sink::Dropped,
            ..self
        }
    }

    /// Writes the invocation's documents, stamped now; nothing when it
    /// measured nothing (an invocation that failed before its work).
    pub fn emit(&self, invocation: &Invocation) {
        if invocation.values.is_empty() && invocation.ages.is_empty() {
            return;
        }
        let lines = self.documents(invocation, Utc::now());
        match &self.sink {
            Sink::Stdout => {
                // One write of whole lines, so the runtime's own log lines
                // never land inside a document. `print!` (not a handle on
                // stdout) so that a test harness captures it.
                let mut text = lines.join("\n");
                text.push('\n');
                print!("{text}");
            }
            Sink::Memory(kept) => kept.lock().unwrap_or_else(|e| e.into_inner()).extend(lines),
            Sink::Dropped => drop(std::hint::black_box(lines)),
        }
    }

    /// The invocation's documents stamped `now` (its ages measured to
    /// it): its metrics, then one per dead-letter reason.
    pub fn documents(&self, invocation: &Invocation, now: DateTime<Utc>) -> Vec<String> {
        let timestamp = now.timestamp_millis();
        let ages = invocation.ages.iter().map(|(m, since)| {
            let ms = (now - *since).num_milliseconds().max(0);
            (m.name, m.unit, ms as f64)
        });
        let mut main = self.document(
            timestamp,
            &[FUNCTION_DIMENSION],
            invocation
                .values
                .iter()
                .map(|(m, v)| (m.name, m.unit, *v))
                .chain(ages),
        );
        main.insert("RequestId".into(), json!(invocation.request_id));
        let mut documents = vec![Value::Object(main).to_string()];
        for (reason, n) in &invocation.dead_letters {
            let mut doc = self.document(
                timestamp,
                &[FUNCTION_DIMENSION, REASON_DIMENSION],
                [(DEAD_LETTERS.name, DEAD_LETTERS.unit, *n as f64)],
            );
            doc.insert(REASON_DIMENSION.into(), json!(reason));
            doc.insert("RequestId".into(), json!(invocation.request_id));
            documents.push(Value::Object(doc).to_string());
        }
        documents
    }

    fn document(
        &self,
        timestamp: i64,
        dimensions: &[&str],
        values: impl IntoIterator<Item = (&'static str, Unit, f64)>,
    ) -> Map<String, Value> {
        let mut doc = Map::new();
        let mut definitions = Vec::new();
        for (name, unit, value) in values {
            definitions.push(json!({"Name": name, "Unit": unit.name()}));
            doc.insert(name.into(), json!(value));
        }
        doc.insert(FUNCTION_DIMENSION.into(), json!(self.function));
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimensions],
                    "Metrics": definitions,
                }],
            }),
        );
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> (MetricsOut, Recorded) {
        let env = |name: &str| match name {
            "METRICS_NAMESPACE" => Some("Lake/Test".to_string()),
            "AWS_LAMBDA_FUNCTION_NAME" => Some("stack-KinesisToParquet-1".to_string()),
            _ => None,
        };
        MetricsOut::from_env(env, "kinesis-to-parquet").in_memory()
    }

    #[test]
    fn a_document_declares_each_metric_with_its_unit_under_the_function_dimension() {
        let (out, recorded) = out();
        let mut inv = Invocation::start("req-1");
        inv.count(RECORDS, 10)
            .count(GOOD_ROWS, 8)
            .set(BYTES_WRITTEN, 2048.0);
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        inv.age(EVENT_TIME_LAG, Some(now - chrono::Duration::seconds(3)));
        inv.age(ARRIVAL_TO_WRITE_LATENCY, None);
        let lines = out.documents(&inv, now);
        assert_eq!(lines.len(), 1);
        let doc: Value = serde_json::from_str(&lines[0]).unwrap();
        out.emit(&inv);
        assert_eq!(recorded.lines().len(), 1);
        let meta = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(meta["Namespace"], "Lake/Test");
        assert_eq!(meta["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            meta["Metrics"],
            json!([
                {"Name": "Records", "Unit": "Count"},
                {"Name": "GoodRows", "Unit": "Count"},
                {"Name": "BytesWritten", "Unit": "Bytes"},
                {"Name": "EventTimeLag", "Unit": "Milliseconds"},
            ])
        );
        assert_eq!(doc["FunctionName"], "stack-KinesisToParquet-1");
        assert_eq!(doc["Records"], 10.0);
        assert_eq!(doc["EventTimeLag"], 3000.0);
        assert_eq!(doc["RequestId"], "req-1");
        assert!(doc.get("ArrivalToWriteLatency").is_none());
    }

    #[test]
    fn dead_letters_are_counted_in_all_and_by_reason_one_document_each() {
        let (out, recorded) = out();
        let mut inv = Invocation::start("req-2");
        inv.dead_letters([
            ("invalid_json", 1),
            ("missing_field", 1),
            ("invalid_json", 1),
        ]);
        out.emit(&inv);
        let docs: Vec<Value> = recorded
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["DeadLetters"], 3.0);
        let by_reason: Vec<(String, f64)> = docs[1..]
            .iter()
            .map(|d| {
                assert_eq!(
                    d["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                    json!([["FunctionName", "Reason"]])
                );
                (
                    d["Reason"].as_str().unwrap().to_string(),
                    d["DeadLetters"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            by_reason,
            vec![("invalid_json".into(), 2.0), ("missing_field".into(), 1.0)]
        );
    }

    #[test]
    fn an_invocation_that_measured_nothing_writes_nothing() {
        let (out, recorded) = out();
        out.emit(&Invocation::start("req-3"));
        assert!(recorded.lines().is_empty());
    }

    #[test]
    fn the_namespace_and_function_fall_back_when_unset() {
        let out = MetricsOut::from_env(|_| None, "scheduler");
        assert_eq!(
            (out.namespace.as_str(), out.function.as_str()),
            (DEFAULT_NAMESPACE, "scheduler")
        );
    }

    #[test]
    fn every_metric_is_named_once_and_emitted_by_a_function() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(ALL.iter().all(|m| !m.functions.is_empty()));
    }
}
