//! The repartition queries: the SQL rendered from `sql/repartition.sql`, a
//! range of days split into queries that each write at most N partitions,
//! their deterministic `ClientRequestToken`, and the status of a set of
//! queries reduced to one answer for the state machine.
//!
//! Pure logic: no AWS types. The template's placeholders are `{{name}}`;
//! values come from checked identifiers and chrono dates only.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Days, NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::repartition::dates::DateRange;

/// The template shipped with the functions (the Hive layout's
/// `INSERT INTO`).
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../sql/repartition.sql");

/// The Iceberg layout's template: `MERGE INTO` the event-time table.
pub const ICEBERG_TEMPLATE: &str = include_str!("../../../sql/repartition_iceberg.sql");

/// Every placeholder a Hive-layout template must use, and the only ones it
/// may use.
pub const PLACEHOLDERS: [&str; 8] = [
    "database",
    "source_table",
    "target_table",
    "reference_table",
    "ingest_partitions",
    "window_start",
    "range_start",
    "range_end",
];

/// The lake layout a template reads: which placeholders it must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LakeLayout {
    /// The raw lake by arrival hour: the query picks the arrival days
    /// (`ingest_partitions`) and appends to the target.
    Hive,
    /// The Iceberg table, already by event time: every placeholder but
    /// `ingest_partitions`.
    Iceberg,
}

impl LakeLayout {
    /// The placeholders a template of this layout must use, and the only
    /// ones it may use.
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            LakeLayout::Hive => &PLACEHOLDERS,
            LakeLayout::Iceberg => &ICEBERG_PLACEHOLDERS,
        }
    }

    /// The template shipped for this layout.
    pub fn default_template(self) -> &'static str {
        match self {
            LakeLayout::Hive => DEFAULT_TEMPLATE,
            LakeLayout::Iceberg => ICEBERG_TEMPLATE,
        }
    }
}

const ICEBERG_PLACEHOLDERS: [&str; 7] = [
    "database",
    "source_table",
    "target_table",
    "reference_table",
    "window_start",
    "range_start",
    "range_end",
];

/// Athena's limit on the partitions one `INSERT INTO` may write.
pub const DEFAULT_MAX_PARTITIONS_PER_QUERY: u32 = 100;
/// The target is partitioned by hour: 24 partitions per day.
pub const PARTITIONS_PER_DAY: u32 = 24;
/// Default look-back feeding the moving averages across midnight.
pub const DEFAULT_LOOKBACK_HOURS: u32 = 1;
/// The longest look-back: the ingest days read cover one day before the range.
pub const MAX_LOOKBACK_HOURS: u32 = 24;

/// A template or table name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("the SQL template uses unknown placeholder {{{{{name}}}}} (known: {known})")]
    UnknownPlaceholder { name: String, known: String },
    #[error("the SQL template never uses placeholder {{{{{0}}}}}")]
    MissingPlaceholder(&'static str),
    #[error("the SQL template has an unclosed `{{{{` at byte {0}")]
    Unclosed(usize),
    #[error("no value for placeholder {{{{{0}}}}}")]
    MissingValue(String),
    #[error("{what} {name:?} is not a table or database name (letters, digits and _ only, 1 to 255 characters)")]
    BadIdentifier { what: &'static str, name: String },
    #[error("max partitions per query is {0}: at least {PARTITIONS_PER_DAY} (one day of hourly partitions) is needed")]
    TooFewPartitions(u32),
    #[error("look-back of {0} hours is more than the {MAX_LOOKBACK_HOURS} allowed")]
    LookbackTooLong(u32),
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Placeholder(String),
}

/// A parsed SQL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlTemplate {
    pieces: Vec<Piece>,
}

impl SqlTemplate {
    /// Parses a Hive-layout template ([`SqlTemplate::parse_for`]).
    pub fn parse(text: &str) -> Result<Self, SqlError> {
        Self::parse_for(text, LakeLayout::Hive)
    }

    /// Parses `text`, failing on a placeholder unknown to `layout`, unused
    /// or unclosed.
    pub fn parse_for(text: &str, layout: LakeLayout) -> Result<Self, SqlError> {
        let known = layout.placeholders();
        let mut pieces = Vec::new();
        let mut used = BTreeSet::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            let close = rest[open..]
                .find("}}")
                .ok_or(SqlError::Unclosed(offset + open))?;
            let name = rest[open + 2..open + close].trim();
            if !known.contains(&name) {
                return Err(SqlError::UnknownPlaceholder {
                    name: name.to_string(),
                    known: known.join(", "),
                });
            }
            pieces.push(Piece::Text(rest[..open].to_string()));
            pieces.push(Piece::Placeholder(name.to_string()));
            used.insert(name.to_string());
            offset += open + close + 2;
            rest = &rest[open + close + 2..];
        }
        pieces.push(Piece::Text(rest.to_string()));
        if let Some(missing) = known.iter().find(|p| !used.contains(**p)) {
            return Err(SqlError::MissingPlaceholder(missing));
        }
        Ok(SqlTemplate { pieces })
    }

    /// Fills every placeholder from `values`, failing on one without a value.
    pub fn render(&self, values: &BTreeMap<&str, String>) -> Result<String, SqlError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Placeholder(name) => out.push_str(
                    values
                        .get(name.as_str())
                        .ok_or_else(|| SqlError::MissingValue(name.clone()))?,
                ),
            }
        }
        Ok(out)
    }
}

/// The Glue names the query reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// The Glue database holding the three tables.
    pub database: String,
    /// The raw lake's table (partitioned by ingest time).
    pub source: String,
    /// The repartitioned table (partitioned by event time).
    pub target: String,
    /// The devices' normal ranges.
    pub reference: String,
}

impl Tables {
    /// Checks that every name is a plain identifier.
    pub fn validate(&self) -> Result<(), SqlError> {
        for (what, name) in [
            ("database", &self.database),
            ("source table", &self.source),
            ("target table", &self.target),
            ("reference table", &self.reference),
        ] {
            let ok = !name.is_empty()
                && name.len() <= 255
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(SqlError::BadIdentifier {
                    what,
                    name: name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// One query to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedQuery {
    /// The days it writes.
    pub range: DateRange,
    /// The rendered SQL.
    pub sql: String,
    /// Its idempotency token for `StartQueryExecution`.
    pub client_request_token: String,
}

/// Renders and splits the repartition queries.
#[derive(Debug, Clone)]
pub struct Repartition {
    template: SqlTemplate,
    tables: Tables,
    max_partitions_per_query: u32,
    lookback_hours: u32,
}

impl Repartition {
    /// Checks the names and limits.
    pub fn new(
        template: SqlTemplate,
        tables: Tables,
        max_partitions_per_query: u32,
        lookback_hours: u32,
    ) -> Result<Self, SqlError> {
        tables.validate()?;
        if max_partitions_per_query < PARTITIONS_PER_DAY {
            return Err(SqlError::TooFewPartitions(max_partitions_per_query));
        }
        if lookback_hours > MAX_LOOKBACK_HOURS {
            return Err(SqlError::LookbackTooLong(lookback_hours));
        }
        Ok(Repartition {
            template,
            tables,
            max_partitions_per_query,
            lookback_hours,
        })
    }

    /// The tables the SQL reads and writes.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Days one query may cover: 4 for 100 partitions.
    pub fn days_per_query(&self) -> u64 {
        u64::from(self.max_partitions_per_query / PARTITIONS_PER_DAY)
    }

    /// The SQL writing the days of `range`.
    pub fn render(&self, range: DateRange) -> Result<String, SqlError> {
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN);
        let start = midnight(range.from);
        let end = midnight(next_day(range.to));
        let window_start = start - chrono::Duration::hours(i64::from(self.lookback_hours));
        let fmt = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
        let values = BTreeMap::from([
            ("database", self.tables.database.clone()),
            ("source_table", self.tables.source.clone()),
            ("target_table", self.tables.target.clone()),
            ("reference_table", self.tables.reference.clone()),
            (
                "ingest_partitions",
                ingest_partition_predicate(window_start.date(), next_day(range.to)),
            ),
            ("window_start", fmt(window_start)),
            ("range_start", fmt(start)),
            ("range_end", fmt(end)),
        ]);
        self.template.render(&values)
    }

    /// The queries covering `range`, each writing at most the configured
    /// number of partitions, with their tokens for `workgroup` and `run`.
    pub fn plan(
        &self,
        range: DateRange,
        workgroup: &str,
        run: &str,
    ) -> Result<Vec<PlannedQuery>, SqlError> {
        range
            .chunks(self.days_per_query())
            .into_iter()
            .map(|chunk| {
                let sql = self.render(chunk)?;
                Ok(PlannedQuery {
                    range: chunk,
                    client_request_token: client_request_token(workgroup, run, &sql),
                    sql,
                })
            })
            .collect()
    }
}

fn next_day(d: NaiveDate) -> NaiveDate {
    d.checked_add_days(Days::new(1)).unwrap_or(d)
}

/// The predicate selecting the ingest-day partitions `first..=last` of the
/// raw lake (`ingest_year=YYYY/ingest_month=MM/ingest_day=DD`, string
/// partition values as Glue crawlers catalogue them).
pub fn ingest_partition_predicate(first: NaiveDate, last: NaiveDate) -> String {
    DateRange {
        from: first,
        to: last.max(first),
    }
    .days()
    .iter()
    .map(|d| {
        format!(
            "(r.ingest_year = '{}' AND r.ingest_month = '{}' AND r.ingest_day = '{}')",
            d.format("%Y"),
            d.format("%m"),
            d.format("%d")
        )
    })
    .collect::<Vec<_>>()
    .join("\n        OR ")
}

/// `StartQueryExecution`'s idempotency token: the hex SHA-256 of the
/// workgroup, the run and the SQL (64 characters; Athena takes 32 to 128).
/// The same query started again in the same workgroup by the same run (a
/// retried task) carries the same token, so Athena returns the first
/// execution instead of running it twice. The run (the Step Functions
/// execution) is part of it so that a deliberate rerun of a day by a new
/// execution is a new query rather than a replay of the old one's answer.
pub fn client_request_token(workgroup: &str, run: &str, sql: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [workgroup, run] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.update(sql.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What Athena says about one query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryState {
    /// The query execution id.
    pub id: String,
    /// `QUEUED`, `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub state: String,
    /// Athena's `StateChangeReason`, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The state of a set of queries, as the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OverallState {
    /// Every query succeeded.
    Succeeded,
    /// At least one query failed or was cancelled.
    Failed,
    /// None failed and some are still queued or running.
    Running,
}

/// The queries' states reduced to one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueriesReport {
    /// The overall state.
    pub state: OverallState,
    /// Queries that succeeded.
    pub succeeded: usize,
    /// Queries queued or running (or in a state this code does not know).
    pub running: usize,
    /// Queries that failed or were cancelled, with Athena's reason.
    pub failed: Vec<QueryState>,
    /// One line naming each failed query and its reason, when any failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// Reduces the queries' states: any failure wins, then anything unfinished.
pub fn aggregate(states: &[QueryState]) -> QueriesReport {
    let failed: Vec<QueryState> = states
        .iter()
        .filter(|s| matches!(s.state.as_str(), "FAILED" | "CANCELLED"))
        .cloned()
        .collect();
    let succeeded = states.iter().filter(|s| s.state == "SUCCEEDED").count();
    let running = states.len() - succeeded - failed.len();
    let cause = (!failed.is_empty()).then(|| {
        failed
            .iter()
            .map(|f| {
                format!(
                    "query {} {}: {}",
                    f.id,
                    f.state,
                    f.reason.as_deref().unwrap_or("no reason given")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    });
    let state = if !failed.is_empty() {
        OverallState::Failed
    } else if running > 0 {
        OverallState::Running
    } else {
        OverallState::Succeeded
    };
    QueriesReport {
        state,
        succeeded,
        running,
        failed,
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn tables() -> Tables {
        Tables {
            database: "telemetry".into(),
            source: "ventilator_metrics".into(),
            target: "ventilator_metrics_by_event_time".into(),
            reference: "ventilator_reference".into(),
        }
    }

    fn repartition(max: u32) -> Repartition {
        let template = SqlTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        Repartition::new(template, tables(), max, 1).unwrap()
    }

    #[test]
    fn the_shipped_template_renders_dates_and_partitions() {
        let sql = repartition(100)
            .render(DateRange::day(d("2026-03-01")))
            .unwrap();
        assert!(!sql.contains("{{"), "{sql}");
        assert!(sql.contains(r#"INSERT INTO "telemetry"."ventilator_metrics_by_event_time""#));
        assert!(sql.contains(r#"FROM "telemetry"."ventilator_metrics" AS r"#));
        assert!(sql.contains("r.eventtime >= TIMESTAMP '2026-02-28 23:00:00'"));
        assert!(sql.contains("r.eventtime < TIMESTAMP '2026-03-02 00:00:00'"));
        assert!(sql.contains("a.eventtime >= TIMESTAMP '2026-03-01 00:00:00'"));
        // Ingest days: the look-back's day, the day itself, the day after.
        for day in [
            ("2026", "02", "28"),
            ("2026", "03", "01"),
            ("2026", "03", "02"),
        ] {
            assert!(
                sql.contains(&format!(
                    "(r.ingest_year = '{}' AND r.ingest_month = '{}' AND r.ingest_day = '{}')",
                    day.0, day.1, day.2
                )),
                "{day:?} missing"
            );
        }
        assert_eq!(sql.matches("r.ingest_year =").count(), 3);
    }

    #[test]
    fn a_year_boundary_renders_the_right_days() {
        let sql = repartition(100)
            .render(DateRange::day(d("2027-01-01")))
            .unwrap();
        assert!(sql.contains("TIMESTAMP '2026-12-31 23:00:00'"));
        assert!(sql.contains("TIMESTAMP '2027-01-02 00:00:00'"));
        assert!(sql
            .contains("r.ingest_year = '2026' AND r.ingest_month = '12' AND r.ingest_day = '31'"));
    }

    #[test]
    fn ten_days_split_into_three_queries_of_at_most_100_partitions() {
        let range = DateRange {
            from: d("2026-02-25"),
            to: d("2026-03-06"),
        };
        let r = repartition(100);
        assert_eq!(r.days_per_query(), 4);
        let plan = r.plan(range, "repartition", "run-1").unwrap();
        let days: Vec<u64> = plan.iter().map(|q| q.range.len_days()).collect();
        assert_eq!(days, [4, 4, 2]);
        assert!(days.iter().all(|d| d * 24 <= 100));
        assert_eq!(plan[1].range.from, d("2026-03-01"));
        // Tokens differ per query and are valid Athena tokens.
        let tokens: BTreeSet<&str> = plan
            .iter()
            .map(|q| q.client_request_token.as_str())
            .collect();
        assert_eq!(tokens.len(), 3);
        assert!(tokens.iter().all(|t| t.len() == 64));
        // Smaller limits give smaller queries.
        assert_eq!(repartition(48).plan(range, "w", "run-1").unwrap().len(), 5);
        assert_eq!(repartition(24).plan(range, "w", "run-1").unwrap().len(), 10);
    }

    #[test]
    fn tokens_are_deterministic_per_workgroup_and_sql() {
        let a = client_request_token("wg", "run-1", "SELECT 1");
        assert_eq!(a, client_request_token("wg", "run-1", "SELECT 1"));
        assert_ne!(a, client_request_token("wg2", "run-1", "SELECT 1"));
        assert_ne!(a, client_request_token("wg", "run-2", "SELECT 1"));
        assert_ne!(a, client_request_token("wg", "run-1", "SELECT 2"));
        // Parts are separated: moving text between them changes the token.
        assert_ne!(
            client_request_token("wg", "run", "SELECT 1"),
            client_request_token("wg", "ru", "nSELECT 1")
        );
        // The SHA-256 of two NUL bytes (empty parts) pins the algorithm.
        assert_eq!(
            client_request_token("", "", ""),
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
        );
    }

    #[test]
    fn bad_templates_and_names_are_rejected_clearly() {
        let with_extra = format!("{DEFAULT_TEMPLATE} AND {{{{bucket}}}}");
        assert!(matches!(
            SqlTemplate::parse(&with_extra),
            Err(SqlError::UnknownPlaceholder { name, .. }) if name == "bucket"
        ));
        // The Iceberg layout's source has no arrival partitions to pick.
        let err = SqlTemplate::parse_for(DEFAULT_TEMPLATE, LakeLayout::Iceberg).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the SQL template uses unknown placeholder {{ingest_partitions}} (known: database, \
             source_table, target_table, reference_table, window_start, range_start, range_end)"
        );
        let err = SqlTemplate::parse(ICEBERG_TEMPLATE).unwrap_err();
        assert_eq!(err, SqlError::MissingPlaceholder("ingest_partitions"));
        assert!(SqlTemplate::parse_for(ICEBERG_TEMPLATE, LakeLayout::Iceberg).is_ok());
        let without = DEFAULT_TEMPLATE.replace("{{range_start}}", "2026-01-01 00:00:00");
        let err = SqlTemplate::parse(&without).unwrap_err();
        assert_eq!(err, SqlError::MissingPlaceholder("range_start"));
        assert_eq!(
            err.to_string(),
            "the SQL template never uses placeholder {{range_start}}"
        );
        assert!(matches!(
            SqlTemplate::parse("SELECT {{database"),
            Err(SqlError::Unclosed(7))
        ));
        let template = SqlTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        assert_eq!(
            template.render(&BTreeMap::new()),
            Err(SqlError::MissingValue("database".into()))
        );
        let mut bad = tables();
        bad.target = "x\"; DROP TABLE y; --".into();
        assert!(matches!(
            Repartition::new(template.clone(), bad, 100, 1),
            Err(SqlError::BadIdentifier {
                what: "target table",
                ..
            })
        ));
        assert_eq!(
            Repartition::new(template.clone(), tables(), 23, 1).unwrap_err(),
            SqlError::TooFewPartitions(23)
        );
        assert_eq!(
            Repartition::new(template, tables(), 100, 25).unwrap_err(),
            SqlError::LookbackTooLong(25)
        );
    }

    #[test]
    fn statuses_aggregate_failure_first_then_running() {
        let q = |id: &str, state: &str, reason: Option<&str>| QueryState {
            id: id.into(),
            state: state.into(),
            reason: reason.map(str::to_string),
        };
        let all_ok = aggregate(&[q("a", "SUCCEEDED", None), q("b", "SUCCEEDED", None)]);
        assert_eq!(
            (all_ok.state, all_ok.succeeded, all_ok.cause),
            (OverallState::Succeeded, 2, None)
        );
        let running = aggregate(&[q("a", "SUCCEEDED", None), q("b", "QUEUED", None)]);
        assert_eq!((running.state, running.running), (OverallState::Running, 1));
        let failed = aggregate(&[
            q("a", "RUNNING", None),
            q("b", "FAILED", Some("HIVE_BAD_DATA: bad row")),
            q("c", "CANCELLED", None),
        ]);
        assert_eq!(failed.state, OverallState::Failed);
        assert_eq!(failed.failed.len(), 2);
        assert_eq!(
            failed.cause.as_deref(),
            Some("query b FAILED: HIVE_BAD_DATA: bad row; query c CANCELLED: no reason given")
        );
        assert_eq!(aggregate(&[]).state, OverallState::Succeeded);
    }
}
