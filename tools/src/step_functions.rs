//! Following Step Functions executions to their end.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus;

/// Polls `DescribeExecution` until the execution is no longer RUNNING and
/// returns its final description; an error after `limit`.
pub async fn wait_for_execution(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
    limit: Duration,
) -> Result<DescribeExecutionOutput> {
    let deadline = Instant::now() + limit;
    loop {
        let out = sfn
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .with_context(|| format!("describe execution {execution_arn}"))?;
        if out.status != ExecutionStatus::Running {
            return Ok(out);
        }
        if Instant::now() >= deadline {
            bail!("execution {execution_arn} still RUNNING after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The names of the states the execution entered, in order.
pub async fn states_entered(sfn: &aws_sdk_sfn::Client, execution_arn: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .set_next_token(token)
            .send()
            .await
            .with_context(|| format!("execution history {execution_arn}"))?;
        names.extend(
            page.events
                .iter()
                .filter_map(|e| e.state_entered_event_details.as_ref())
                .map(|d| d.name.clone()),
        );
        token = page.next_token;
        if token.is_none() {
            return Ok(names);
        }
    }
}
