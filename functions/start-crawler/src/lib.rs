//! `start-crawler`: the first task of the repartition workflow (and its
//! last, on the transformed table). It works out the days to process,
//! starts the crawler (with the Hive layout; the Iceberg layout's tables
//! need none, and the plan says `crawl: false`), and returns the run's
//! plan, which becomes the state the rest of the workflow reads.
//!
//! Input (all optional): `{"request": {"date": "YYYY-MM-DD"} | {"from": ..,
//! "to": ..} | {} (yesterday and the `LATE_ARRIVAL_DAYS` before it),
//! "crawler": "raw" | "transformed"}, "started_at": RFC 3339,
//! "execution": id}`. The state machine passes the execution's input as
//! `request`, its start time as `started_at` (so a retried task computes the
//! same "yesterday" even after midnight) and its id as `execution` (returned
//! as `run_id`, part of the queries' idempotency tokens). A bare request object (no `request` key) is taken
//! as the request. A crawler that is already running is not an error.

use chrono::{DateTime, NaiveDate, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use telemetry_lake::metrics::{self, Invocation, MetricsOut};
use telemetry_lake::repartition::config::{CrawlerRole, Polling, StartCrawlerConfig};
use telemetry_lake::repartition::dates::{resolve, scheduled_range, DateRequest};
use telemetry_lake::repartition::task_error::{input_object, string_field, TaskError};

/// Keys a request may hold.
const REQUEST_KEYS: [&str; 4] = ["date", "from", "to", "crawler"];

/// What the workflow carries from here on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPlan {
    /// First day to repartition.
    pub from: NaiveDate,
    /// Last day to repartition (inclusive).
    pub to: NaiveDate,
    /// Every day of the range.
    pub dates: Vec<NaiveDate>,
    /// Which crawler was started.
    pub crawler: CrawlerRole,
    /// Its name (empty when none was started).
    pub crawler_name: String,
    /// A crawler was started and the workflow waits for it: false with the
    /// Iceberg layout (`LAKE_FORMAT` `iceberg`), whose tables are their own
    /// catalog.
    pub crawl: bool,
    /// It was already running (another run or its schedule started it).
    pub already_running: bool,
    /// Wait and poll limits for the state machine.
    #[serde(flatten)]
    pub polling: Polling,
    /// Polls of the crawler so far (crawler-status counts them).
    pub crawler_polls: u32,
    /// The Step Functions execution, part of the queries' idempotency
    /// tokens (absent when invoked outside a state machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// The function, built once per container.
pub struct StartCrawler {
    config: StartCrawlerConfig,
    glue: aws_sdk_glue::Client,
    metrics: MetricsOut,
}

impl StartCrawler {
    /// Prepares the function.
    pub fn new(config: StartCrawlerConfig, glue: aws_sdk_glue::Client) -> Self {
        StartCrawler {
            config,
            glue,
            metrics: MetricsOut::from_env(|_| None, "start-crawler"),
        }
    }

    /// The same function writing its metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: MetricsOut) -> Self {
        self.metrics = metrics;
        self
    }

    /// The function as it runs in Lambda and in the local run: the
    /// configuration read through `env`, the clients from `aws`.
    pub fn load(
        env: impl Fn(&str) -> Option<String>,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, telemetry_lake::config::ConfigError> {
        let metrics = MetricsOut::from_env(&env, "start-crawler");
        Ok(Self::new(
            StartCrawlerConfig::from_lookup(env)?,
            aws_sdk_glue::Client::new(aws),
        )
        .with_metrics(metrics))
    }

    /// Lambda entry point.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<RunPlan, Diagnostic> {
        let mut invocation = Invocation::start(&event.context.request_id);
        let result = self.process(event.payload).await;
        if let Ok(plan) = &result {
            let started = usize::from(plan.crawl && !plan.already_running);
            invocation.count(metrics::CRAWLERS_STARTED, started);
        }
        self.metrics.emit(&invocation);
        result.map_err(|e| {
            tracing::error!(error = %e, error_type = e.error_type(), "start-crawler failed");
            e.into()
        })
    }

    /// Validates the input, starts the crawler and returns the plan.
    #[tracing::instrument(skip(self))]
    pub async fn process(&self, input: Value) -> Result<RunPlan, TaskError> {
        let (request, role, started_at, run_id) = parse_input(input)?;
        let now = started_at.unwrap_or_else(Utc::now);
        // A request naming no day is the schedule's: yesterday and the
        // late-arrival days before it. A named day or range is run as given.
        let range = if request == DateRequest::default() {
            scheduled_range(self.config.time_zone, now, self.config.late_arrival_days)
        } else {
            resolve(
                &request,
                self.config.time_zone,
                now,
                self.config.max_range_days,
            )
            .map_err(|e| TaskError::InvalidInput(e.to_string()))?
        };
        let (crawler_name, crawl, already_running) = match &self.config.crawlers {
            None => {
                tracing::info!(from = %range.from, to = %range.to, "no crawler: the Iceberg tables are their own catalog");
                (String::new(), false, false)
            }
            Some(crawlers) => {
                let name = crawlers.name(role).to_string();
                let already_running = self.start(&name).await?;
                tracing::info!(
                    crawler = %name,
                    from = %range.from,
                    to = %range.to,
                    already_running,
                    "crawler started"
                );
                (name, true, already_running)
            }
        };
        Ok(RunPlan {
            from: range.from,
            to: range.to,
            dates: range.days(),
            crawler: role,
            crawler_name,
            crawl,
            already_running,
            polling: self.config.polling,
            crawler_polls: 0,
            run_id,
        })
    }

    /// Starts the crawler `name`; true when it was already running.
    async fn start(&self, name: &str) -> Result<bool, TaskError> {
        match self.glue.start_crawler().name(name).send().await {
            Ok(_) => Ok(false),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_crawler_running_exception()) =>
            {
                Ok(true)
            }
            Err(e) => Err(TaskError::from_sdk("StartCrawler", &e)),
        }
    }
}

/// What the input asks for: the days, the crawler, the reference time and
/// the run.
pub type ParsedInput = (
    DateRequest,
    CrawlerRole,
    Option<DateTime<Utc>>,
    Option<String>,
);

/// Reads the request, the crawler's role, the reference time and the run.
pub fn parse_input(input: Value) -> Result<ParsedInput, TaskError> {
    let mut top = input_object(input)?;
    let run_id = string_field(&top, "execution")?.map(str::to_string);
    let started_at = match string_field(&top, "started_at")? {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|e| {
                    TaskError::InvalidInput(format!(
                        "`started_at` is {s:?}, not an RFC 3339 time: {e}"
                    ))
                })?
                .with_timezone(&Utc),
        ),
    };
    let request = match top.remove("request") {
        Some(inner) => {
            if let Some(other) = top
                .keys()
                .find(|k| !["started_at", "execution"].contains(&k.as_str()))
            {
                return Err(TaskError::InvalidInput(format!("unknown field `{other}`")));
            }
            input_object(inner)?
        }
        None => {
            top.remove("started_at");
            top.remove("execution");
            top
        }
    };
    check_keys(&request)?;
    let role = match string_field(&request, "crawler")? {
        None | Some("raw") => CrawlerRole::Raw,
        Some("transformed") => CrawlerRole::Transformed,
        Some(other) => {
            return Err(TaskError::InvalidInput(format!(
                "`crawler` is {other:?} (expected \"raw\" or \"transformed\")"
            )))
        }
    };
    let field = |name| string_field(&request, name).map(|v| v.map(str::to_string));
    let dates = DateRequest {
        date: field("date")?,
        from: field("from")?,
        to: field("to")?,
    };
    Ok((dates, role, started_at, run_id))
}

fn check_keys(request: &Map<String, Value>) -> Result<(), TaskError> {
    match request.keys().find(|k| !REQUEST_KEYS.contains(&k.as_str())) {
        Some(k) => Err(TaskError::InvalidInput(format!(
            "unknown field `{k}` (expected date, or from and to, and optionally crawler)"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_input_shapes_are_read() {
        let (req, role, at, run) = parse_input(json!({
            "request": {"date": "2026-03-01"},
            "started_at": "2026-03-02T00:30:00.000Z",
            "execution": "arn:aws:states:us-east-1:123456789012:execution:repartition:x"
        }))
        .unwrap();
        assert!(run.unwrap().ends_with(":x"));
        assert_eq!(req.date.as_deref(), Some("2026-03-01"));
        assert_eq!(role, CrawlerRole::Raw);
        assert_eq!(at.unwrap().to_rfc3339(), "2026-03-02T00:30:00+00:00");
        let (req, role, at, _) = parse_input(
            json!({"from": "2026-03-01", "to": "2026-03-02", "crawler": "transformed"}),
        )
        .unwrap();
        assert_eq!(req.to.as_deref(), Some("2026-03-02"));
        assert_eq!(role, CrawlerRole::Transformed);
        assert!(at.is_none());
        assert!(parse_input(Value::Null).is_ok());
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let msg = |v| parse_input(v).unwrap_err().to_string();
        assert!(msg(json!({"data": "2026-03-01"})).contains("unknown field `data`"));
        assert!(msg(json!({"crawler": "lake"})).contains("`crawler` is \"lake\""));
        assert!(msg(json!({"started_at": "yesterday"})).contains("`started_at`"));
        assert!(msg(json!({"date": 20260301})).contains("`date` must be a string"));
        assert!(msg(json!({"request": {}, "extra": 1})).contains("unknown field `extra`"));
    }
}
