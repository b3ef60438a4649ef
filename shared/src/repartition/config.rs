//! Configuration of the repartition workflow's functions, read from the
//! environment at cold start. Every variable they read is named here; a
//! missing or invalid one fails the cold start naming it.

use crate::config::vars::*;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::config::env::{number, positive, required};
use crate::config::{is_iceberg, ConfigError};
use crate::repartition::dates::{
    parse_time_zone, DEFAULT_LATE_ARRIVAL_DAYS, DEFAULT_MAX_RANGE_DAYS, DEFAULT_TIME_ZONE,
};
use crate::repartition::queries::{
    LakeLayout, Repartition, SqlError, SqlTemplate, Tables, DEFAULT_LOOKBACK_HOURS,
    DEFAULT_MAX_PARTITIONS_PER_QUERY,
};

/// Which of the two crawlers a task works on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrawlerRole {
    /// The raw lake, before the queries.
    #[default]
    Raw,
    /// The repartitioned table, after the queries.
    Transformed,
}

/// The two crawlers' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crawlers {
    /// [`RAW_CRAWLER_NAME`].
    pub raw: String,
    /// [`TRANSFORMED_CRAWLER_NAME`].
    pub transformed: String,
}

impl Crawlers {
    /// The name of the crawler playing `role`.
    pub fn name(&self, role: CrawlerRole) -> &str {
        match role {
            CrawlerRole::Raw => &self.raw,
            CrawlerRole::Transformed => &self.transformed,
        }
    }

    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Crawlers {
            raw: required(get, RAW_CRAWLER_NAME)?,
            transformed: required(get, TRANSFORMED_CRAWLER_NAME)?,
        })
    }
}

/// How the state machine polls, handed to it by start-crawler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polling {
    /// [`CRAWLER_WAIT_SECONDS`], default 60.
    pub crawler_wait_seconds: u32,
    /// [`MAX_CRAWLER_POLLS`], default 60.
    pub max_crawler_polls: u32,
    /// [`QUERY_WAIT_SECONDS`], default 30.
    pub query_wait_seconds: u32,
    /// [`MAX_QUERY_POLLS`], default 240.
    pub max_query_polls: u32,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            crawler_wait_seconds: 60,
            max_crawler_polls: 60,
            query_wait_seconds: 30,
            max_query_polls: 240,
        }
    }
}

/// [`LAKE_FORMAT`], default `hive`.
fn lake_layout(get: &impl Fn(&str) -> Option<String>) -> Result<LakeLayout, ConfigError> {
    Ok(if is_iceberg(get)? {
        LakeLayout::Iceberg
    } else {
        LakeLayout::Hive
    })
}

/// Configuration of `start-crawler`.
#[derive(Debug, Clone)]
pub struct StartCrawlerConfig {
    /// The crawlers; none with [`LAKE_FORMAT`] `iceberg`, whose tables are
    /// their own catalog (a run starts no crawler and waits for none).
    pub crawlers: Option<Crawlers>,
    /// [`TIME_ZONE`], default Europe/Brussels.
    pub time_zone: Tz,
    /// [`MAX_RANGE_DAYS`], default 31.
    pub max_range_days: u32,
    /// [`LATE_ARRIVAL_DAYS`], default 1, less than `max_range_days`.
    pub late_arrival_days: u32,
    /// The polling settings passed to the state machine.
    pub polling: Polling,
}

impl StartCrawlerConfig {
    /// Reads the configuration through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let zone = get(TIME_ZONE).unwrap_or_else(|| DEFAULT_TIME_ZONE.to_string());
        let defaults = Polling::default();
        let max_range_days = positive(&get, MAX_RANGE_DAYS, DEFAULT_MAX_RANGE_DAYS)?;
        let late_arrival_days = number(&get, LATE_ARRIVAL_DAYS, DEFAULT_LATE_ARRIVAL_DAYS)?;
        if late_arrival_days >= max_range_days {
            return Err(ConfigError::Invalid {
                name: LATE_ARRIVAL_DAYS,
                reason: format!(
                    "{late_arrival_days} days before yesterday make a scheduled run longer than \
                     MAX_RANGE_DAYS ({max_range_days})"
                ),
            });
        }
        let crawlers = match lake_layout(&get)? {
            LakeLayout::Hive => Some(Crawlers::from_lookup(&get)?),
            LakeLayout::Iceberg => None,
        };
        Ok(StartCrawlerConfig {
            crawlers,
            time_zone: parse_time_zone(&zone).map_err(|e| ConfigError::Invalid {
                name: TIME_ZONE,
                reason: e.to_string(),
            })?,
            max_range_days,
            late_arrival_days,
            polling: Polling {
                crawler_wait_seconds: positive(
                    &get,
                    CRAWLER_WAIT_SECONDS,
                    defaults.crawler_wait_seconds,
                )?,
                max_crawler_polls: positive(&get, MAX_CRAWLER_POLLS, defaults.max_crawler_polls)?,
                query_wait_seconds: positive(
                    &get,
                    QUERY_WAIT_SECONDS,
                    defaults.query_wait_seconds,
                )?,
                max_query_polls: positive(&get, MAX_QUERY_POLLS, defaults.max_query_polls)?,
            },
        })
    }
}

/// Configuration of `crawler-status`.
#[derive(Debug, Clone)]
pub struct CrawlerStatusConfig {
    /// The crawlers.
    pub crawlers: Crawlers,
}

impl CrawlerStatusConfig {
    /// Reads the configuration through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(CrawlerStatusConfig {
            crawlers: Crawlers::from_lookup(&get)?,
        })
    }
}

/// Configuration of `start-queries`.
#[derive(Debug, Clone)]
pub struct StartQueriesConfig {
    /// [`ATHENA_WORKGROUP`].
    pub workgroup: String,
    /// [`GLUE_DATABASE`] (also the queries' execution context).
    pub database: String,
    /// [`MAX_RANGE_DAYS`], default 31.
    pub max_range_days: u32,
    /// The template ([`SQL_TEMPLATE_FILE`] or the built-in one), tables
    /// ([`SOURCE_TABLE`], [`TARGET_TABLE`], [`REFERENCE_TABLE`]), and limits
    /// ([`MAX_PARTITIONS_PER_QUERY`], default 100; [`LOOKBACK_HOURS`], default 1).
    pub repartition: Repartition,
    /// [`DAY_CLAIMS_TABLE`].
    pub claims_table: String,
    /// [`LAKE_FORMAT`], default `hive`: `iceberg` reads the Iceberg table
    /// and writes the event-time table with `MERGE INTO`, so a run's days
    /// are claimed but never emptied.
    pub layout: LakeLayout,
}

impl StartQueriesConfig {
    /// Reads the configuration through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let layout = lake_layout(&get)?;
        let (name, text) = match get(SQL_TEMPLATE_FILE).filter(|p| !p.trim().is_empty()) {
            Some(path) => (
                SQL_TEMPLATE_FILE,
                std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                    name: SQL_TEMPLATE_FILE,
                    reason: format!("cannot read {path}: {e}"),
                })?,
            ),
            None => (SQL_TEMPLATE_FILE, layout.default_template().to_string()),
        };
        let invalid = |name: &'static str| {
            move |e: SqlError| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            }
        };
        let template = SqlTemplate::parse_for(&text, layout).map_err(invalid(name))?;
        let database = required(&get, GLUE_DATABASE)?;
        let tables = Tables {
            database: database.clone(),
            source: required(&get, SOURCE_TABLE)?,
            target: required(&get, TARGET_TABLE)?,
            reference: required(&get, REFERENCE_TABLE)?,
        };
        let repartition = Repartition::new(
            template,
            tables,
            positive(
                &get,
                MAX_PARTITIONS_PER_QUERY,
                DEFAULT_MAX_PARTITIONS_PER_QUERY,
            )?,
            number(&get, LOOKBACK_HOURS, DEFAULT_LOOKBACK_HOURS)?,
        )
        .map_err(|e| {
            let name = match &e {
                SqlError::BadIdentifier { what, .. } => match *what {
                    "database" => GLUE_DATABASE,
                    "source table" => SOURCE_TABLE,
                    "target table" => TARGET_TABLE,
                    _ => REFERENCE_TABLE,
                },
                SqlError::LookbackTooLong(_) => LOOKBACK_HOURS,
                _ => MAX_PARTITIONS_PER_QUERY,
            };
            invalid(name)(e)
        })?;
        Ok(StartQueriesConfig {
            workgroup: required(&get, ATHENA_WORKGROUP)?,
            database,
            max_range_days: positive(&get, MAX_RANGE_DAYS, DEFAULT_MAX_RANGE_DAYS)?,
            repartition,
            claims_table: required(&get, DAY_CLAIMS_TABLE)?,
            layout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::env::lookup_from as lookup;

    #[test]
    fn start_crawler_defaults_and_errors() {
        let base = [(RAW_CRAWLER_NAME, "raw"), (TRANSFORMED_CRAWLER_NAME, "t")];
        let c = StartCrawlerConfig::from_lookup(lookup(&base)).unwrap();
        assert_eq!(c.time_zone, chrono_tz::Europe::Brussels);
        assert_eq!(c.max_range_days, 31);
        assert_eq!(c.late_arrival_days, 1);
        assert_eq!(c.polling, Polling::default());
        let mut bad = base.to_vec();
        bad.extend([(MAX_RANGE_DAYS, "3"), (LATE_ARRIVAL_DAYS, "3")]);
        let err = StartCrawlerConfig::from_lookup(lookup(&bad)).unwrap_err();
        assert!(err.to_string().contains("LATE_ARRIVAL_DAYS"), "{err}");
        assert_eq!(c.crawlers.unwrap().name(CrawlerRole::Transformed), "t");
        let c = StartCrawlerConfig::from_lookup(lookup(&[(LAKE_FORMAT, "iceberg")])).unwrap();
        assert!(c.crawlers.is_none());
        let err = StartCrawlerConfig::from_lookup(lookup(&base[1..])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable RAW_CRAWLER_NAME is not set"
        );
        let mut bad = base.to_vec();
        bad.push((TIME_ZONE, "Mars/Olympus"));
        let err = StartCrawlerConfig::from_lookup(lookup(&bad)).unwrap_err();
        assert!(err.to_string().contains("TIME_ZONE"), "{err}");
        let mut bad = base.to_vec();
        bad.push((MAX_CRAWLER_POLLS, "0"));
        let err = StartCrawlerConfig::from_lookup(lookup(&bad)).unwrap_err();
        assert!(err.to_string().contains("MAX_CRAWLER_POLLS"), "{err}");
    }

    #[test]
    fn start_queries_reads_tables_and_template() {
        let base = [
            (ATHENA_WORKGROUP, "wg"),
            (GLUE_DATABASE, "db"),
            (SOURCE_TABLE, "raw"),
            (TARGET_TABLE, "by_event"),
            (REFERENCE_TABLE, "reference"),
            (DAY_CLAIMS_TABLE, "claims"),
        ];
        let c = StartQueriesConfig::from_lookup(lookup(&base)).unwrap();
        assert_eq!(c.repartition.days_per_query(), 4);
        assert_eq!(c.claims_table, "claims");
        let err = StartQueriesConfig::from_lookup(lookup(&base[..5])).unwrap_err();
        assert!(err.to_string().contains("DAY_CLAIMS_TABLE"), "{err}");
        let mut bad = base.to_vec();
        bad.push((TARGET_TABLE, "by-event"));
        let err = StartQueriesConfig::from_lookup(lookup(&bad)).unwrap_err();
        assert!(
            err.to_string().contains("TARGET_TABLE") && err.to_string().contains("by-event"),
            "{err}"
        );
        let mut bad = base.to_vec();
        bad.push((LOOKBACK_HOURS, "48"));
        let err = StartQueriesConfig::from_lookup(lookup(&bad)).unwrap_err();
        assert!(err.to_string().contains("LOOKBACK_HOURS"), "{err}");
        let mut bad = base.to_vec();
        bad.push((MAX_PARTITIONS_PER_QUERY, "12"));
        let err = StartQueriesConfig::from_lookup(lookup(&bad)).unwrap_err();
        assert!(
            err.to_string().contains("MAX_PARTITIONS_PER_QUERY"),
            "{err}"
        );
        let mut iceberg = base.to_vec();
        iceberg.push((LAKE_FORMAT, "iceberg"));
        let c = StartQueriesConfig::from_lookup(lookup(&iceberg)).unwrap();
        assert_eq!(c.layout, LakeLayout::Iceberg);
        let sql = c
            .repartition
            .render(crate::repartition::dates::DateRange::day(
                chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            ))
            .unwrap();
        assert!(sql.contains("MERGE INTO \"db\".\"by_event\" AS t"), "{sql}");
        assert!(!sql.contains("ingest_"), "{sql}");
        iceberg.push((LAKE_FORMAT, "delta"));
        let err = StartQueriesConfig::from_lookup(lookup(&iceberg)).unwrap_err();
        assert!(err.to_string().contains("LAKE_FORMAT"), "{err}");
        let mut bad = base.to_vec();
        bad.push((SQL_TEMPLATE_FILE, "/nonexistent/repartition.sql"));
        let err = StartQueriesConfig::from_lookup(lookup(&bad)).unwrap_err();
        assert!(err.to_string().contains("SQL_TEMPLATE_FILE"), "{err}");
    }
}
