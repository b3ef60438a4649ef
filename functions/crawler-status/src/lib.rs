//! `crawler-status`: reports a crawler's `State` and the status of its last
//! crawl, and counts the polls so the state machine can bound them. The
//! rest of the workflow's state (the dates in particular) passes through.
//!
//! Input: the workflow's state (`crawler`: "raw" or "transformed", default
//! raw; `crawler_polls`, default 0). Output: the same object with
//! `crawler_state` (READY, RUNNING, STOPPING), `last_crawl_status`
//! (SUCCEEDED, FAILED, CANCELLED, or `null` when it never ran),
//! `last_crawl_error` and `crawler_polls` + 1.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{json, Value};
use telemetry_lake::metrics::{self, Invocation, MetricsOut};
use telemetry_lake::repartition::config::{CrawlerRole, CrawlerStatusConfig};
use telemetry_lake::repartition::task_error::{input_object, string_field, TaskError};

/// The function, built once per container.
pub struct CrawlerStatus {
    config: CrawlerStatusConfig,
    glue: aws_sdk_glue::Client,
    metrics: MetricsOut,
}

impl CrawlerStatus {
    /// Prepares the function.
    pub fn new(config: CrawlerStatusConfig, glue: aws_sdk_glue::Client) -> Self {
        CrawlerStatus {
            config,
            glue,
            metrics: MetricsOut::from_env(|_| None, "crawler-status"),
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
        let metrics = MetricsOut::from_env(&env, "crawler-status");
        Ok(Self::new(
            CrawlerStatusConfig::from_lookup(env)?,
            aws_sdk_glue::Client::new(aws),
        )
        .with_metrics(metrics))
    }

    /// Lambda entry point.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        let mut invocation = Invocation::start(&event.context.request_id);
        let result = self.process(event.payload).await;
        if result.is_ok() {
            invocation.count(metrics::CRAWLER_POLLS, 1);
        }
        self.metrics.emit(&invocation);
        result.map_err(|e| {
            tracing::error!(error = %e, error_type = e.error_type(), "crawler-status failed");
            e.into()
        })
    }

    /// Reads the crawler and returns the state with its status added.
    #[tracing::instrument(skip(self, input))]
    pub async fn process(&self, input: Value) -> Result<Value, TaskError> {
        let mut state = input_object(input)?;
        let role = match string_field(&state, "crawler")? {
            None | Some("raw") => CrawlerRole::Raw,
            Some("transformed") => CrawlerRole::Transformed,
            Some(other) => {
                return Err(TaskError::InvalidInput(format!(
                    "`crawler` is {other:?} (expected \"raw\" or \"transformed\")"
                )))
            }
        };
        let polls = match state.get("crawler_polls") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                TaskError::InvalidInput(format!("`crawler_polls` must be a whole number, not {v}"))
            })?,
        };
        let name = self.config.crawlers.name(role);
        let out = self
            .glue
            .get_crawler()
            .name(name)
            .send()
            .await
            .map_err(|e| TaskError::from_sdk("GetCrawler", &e))?;
        let crawler = out.crawler();
        let crawler_state = crawler
            .and_then(|c| c.state())
            .map_or("READY", |s| s.as_str())
            .to_string();
        let last = crawler.and_then(|c| c.last_crawl());
        let last_status = last
            .and_then(|l| l.status())
            .map(|s| last_crawl_status(s.as_str()));
        let last_error = last.and_then(|l| l.error_message()).map(str::to_string);
        tracing::info!(
            crawler = name,
            state = %crawler_state,
            last_crawl = last_status.unwrap_or("none"),
            polls = polls + 1,
            "crawler polled"
        );
        state.insert("crawler_state".into(), json!(crawler_state));
        state.insert("last_crawl_status".into(), json!(last_status));
        state.insert("last_crawl_error".into(), json!(last_error));
        state.insert("crawler_polls".into(), json!(polls + 1));
        Ok(Value::Object(state))
    }
}

/// `LastCrawl.Status` in Glue's GetCrawler vocabulary: SUCCEEDED, FAILED,
/// CANCELLED. Moto 5.2.5 reports the crawl history's words instead
/// (COMPLETED, STOPPED, as ListCrawls does); they are mapped to the
/// GetCrawler words so the state machine matches one vocabulary.
pub fn last_crawl_status(reported: &str) -> &str {
    match reported {
        "COMPLETED" => "SUCCEEDED",
        "STOPPED" => "CANCELLED",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crawl_history_words_map_to_last_crawl_words() {
        assert_eq!(last_crawl_status("SUCCEEDED"), "SUCCEEDED");
        assert_eq!(last_crawl_status("COMPLETED"), "SUCCEEDED");
        assert_eq!(last_crawl_status("STOPPED"), "CANCELLED");
        assert_eq!(last_crawl_status("FAILED"), "FAILED");
        assert_eq!(last_crawl_status("CANCELLED"), "CANCELLED");
    }
}
