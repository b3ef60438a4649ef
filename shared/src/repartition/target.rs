//! The repartitioned table's days, before a run writes them: claimed by one
//! execution at a time, then emptied, so that `INSERT INTO` (which appends)
//! writes each day exactly once however often it is run.
//!
//! A claim is an item per day in the claims table (`day`, `execution`,
//! `claimed_at`, `expires_at` for TTL cleanup), put with the condition that
//! the day is unclaimed or claimed by this execution. A day claimed by
//! another execution is taken over only when Step Functions says that
//! execution is no longer running (it succeeded, failed, timed out or was
//! aborted); while it runs, the claim fails with [`TaskError::DayClaimed`],
//! naming the day and the execution. No claim is released: an ended
//! execution's claims are simply taken over, so a run that fails anywhere
//! leaves nothing to clean up.
//!
//! Emptying a day removes its objects under the table's location
//! (`year=Y/month=M/day=D/`, the prefix Athena writes, values unpadded)
//! and its 24 hourly partitions from the Glue catalog.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_glue::types::PartitionValueList;
use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::repartition::task_error::TaskError;

/// How long a claim item stays in the table after it was made (TTL).
const CLAIM_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// Glue's limit of partitions per `BatchDeletePartition`.
const PARTITIONS_PER_DELETE: usize = 25;
/// S3's limit of keys per `DeleteObjects`.
const KEYS_PER_DELETE: usize = 1000;

/// What emptying the days removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Cleared {
    /// Objects deleted under the days' prefixes.
    pub objects: usize,
    /// Catalog partitions deleted.
    pub partitions: usize,
}

/// The key prefix of `day` under the table location's key prefix `base`
/// (empty, or ending in `/`).
pub fn day_prefix(base: &str, day: NaiveDate) -> String {
    format!(
        "{base}year={}/month={}/day={}/",
        day.year(),
        day.month(),
        day.day()
    )
}

/// The catalog values (year, month, day, hour) of `day`'s 24 partitions.
pub fn hour_partitions(day: NaiveDate) -> Vec<Vec<String>> {
    (0..24)
        .map(|hour| {
            vec![
                day.year().to_string(),
                day.month().to_string(),
                day.day().to_string(),
                hour.to_string(),
            ]
        })
        .collect()
}

/// `s3://bucket/prefix/` as (bucket, key prefix ending in `/` or empty).
pub fn split_location(location: &str) -> Option<(String, String)> {
    let rest = location.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    let prefix = match prefix.trim_end_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    Some((bucket.to_string(), prefix))
}

/// The claims table, and where to ask whether a holder still runs.
pub struct DayClaims {
    dynamodb: aws_sdk_dynamodb::Client,
    sfn: aws_sdk_sfn::Client,
    table: String,
}

impl DayClaims {
    /// Claims in `table`.
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        sfn: aws_sdk_sfn::Client,
        table: impl Into<String>,
    ) -> Self {
        DayClaims {
            dynamodb,
            sfn,
            table: table.into(),
        }
    }

    /// Claims every day of `days` for `execution`, in order; the first day
    /// another running execution holds fails the claim (the days claimed
    /// before it stay claimed by this execution, which is about to fail).
    pub async fn claim(
        &self,
        days: &[NaiveDate],
        execution: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TaskError> {
        for day in days {
            self.claim_day(*day, execution, now).await?;
        }
        Ok(())
    }

    async fn claim_day(
        &self,
        day: NaiveDate,
        execution: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TaskError> {
        let mut condition = Condition::FreeOrMine;
        // The claim, then at most two takeovers: a takeover that loses to a
        // third execution's claim reads that one's holder again.
        for _ in 0..3 {
            match self.put(day, execution, now, &condition).await? {
                None => return Ok(()),
                Some(holder) if self.still_running(&holder).await? => {
                    return Err(TaskError::DayClaimed {
                        day: day.to_string(),
                        execution: holder,
                    })
                }
                Some(holder) => {
                    tracing::info!(%day, %holder, "taking over the claim of an ended execution");
                    condition = Condition::HeldBy(holder);
                }
            }
        }
        Err(TaskError::Retryable {
            operation: "claiming the day",
            message: format!("the claim of {day} kept changing hands"),
        })
    }

    /// Puts the claim under `condition`; `Some(holder)` when the day is
    /// held otherwise.
    async fn put(
        &self,
        day: NaiveDate,
        execution: &str,
        now: DateTime<Utc>,
        condition: &Condition,
    ) -> Result<Option<String>, TaskError> {
        let request = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item("day", AttributeValue::S(day.to_string()))
            .item("execution", AttributeValue::S(execution.to_string()))
            .item("claimed_at", AttributeValue::S(now.to_rfc3339()))
            .item(
                "expires_at",
                AttributeValue::N((now.timestamp() + CLAIM_TTL_SECONDS).to_string()),
            )
            .expression_attribute_names("#execution", "execution")
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            );
        let request = match condition {
            Condition::FreeOrMine => request
                .condition_expression("attribute_not_exists(#day) OR #execution = :me")
                .expression_attribute_names("#day", "day")
                .expression_attribute_values(":me", AttributeValue::S(execution.to_string())),
            Condition::HeldBy(holder) => request
                .condition_expression("#execution = :holder")
                .expression_attribute_values(":holder", AttributeValue::S(holder.clone())),
        };
        match request.send().await {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                        failed,
                    ),
                ) => {
                    let holder = match failed.item().and_then(|i| i.get("execution")) {
                        Some(AttributeValue::S(h)) => h.clone(),
                        _ => self.holder(day).await?,
                    };
                    Ok(Some(holder))
                }
                _ => Err(TaskError::from_sdk("PutItem", &e)),
            },
        }
    }

    /// The execution holding `day`, read (for a service that does not send
    /// the item back with the failed condition).
    async fn holder(&self, day: NaiveDate) -> Result<String, TaskError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("day", AttributeValue::S(day.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| TaskError::from_sdk("GetItem", &e))?;
        match out.item().and_then(|i| i.get("execution")) {
            Some(AttributeValue::S(h)) => Ok(h.clone()),
            _ => Ok(String::new()),
        }
    }

    /// Whether Step Functions says `execution` is still running. An
    /// execution it does not know (an id that is not an execution ARN,
    /// or one deleted with its history) runs nothing.
    async fn still_running(&self, execution: &str) -> Result<bool, TaskError> {
        if !execution.starts_with("arn:") {
            return Ok(false);
        }
        match self
            .sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
        {
            Ok(out) => Ok(out.status == aws_sdk_sfn::types::ExecutionStatus::Running),
            Err(e) => match e.as_service_error() {
                Some(
                    aws_sdk_sfn::operation::describe_execution::DescribeExecutionError::ExecutionDoesNotExist(_),
                ) => Ok(false),
                _ => Err(TaskError::from_sdk("DescribeExecution", &e)),
            },
        }
    }
}

enum Condition {
    FreeOrMine,
    HeldBy(String),
}

/// Empties `days` of the Hive table `database.table`: its objects under
/// each day's prefix of the table's location, and the days' partitions.
pub async fn clear_days(
    glue: &aws_sdk_glue::Client,
    s3: &aws_sdk_s3::Client,
    database: &str,
    table: &str,
    days: &[NaiveDate],
) -> Result<Cleared, TaskError> {
    let out = glue
        .get_table()
        .database_name(database)
        .name(table)
        .send()
        .await
        .map_err(|e| TaskError::from_sdk("GetTable", &e))?;
    let location = out
        .table()
        .and_then(|t| t.storage_descriptor())
        .and_then(|s| s.location())
        .unwrap_or_default();
    let (bucket, base) = split_location(location).ok_or_else(|| TaskError::NonRetryable {
        operation: "GetTable",
        message: format!("{database}.{table} has no s3:// location (found {location:?})"),
    })?;
    let mut cleared = Cleared::default();
    for day in days {
        cleared.objects += delete_prefix(s3, &bucket, &day_prefix(&base, *day)).await?;
        cleared.partitions += delete_partitions(glue, database, table, *day).await?;
    }
    Ok(cleared)
}

/// A request of `operation` the SDK refused to build (a required member
/// missing): the program's fault, never the service's.
fn unbuildable(
    operation: &'static str,
) -> impl Fn(aws_smithy_types::error::operation::BuildError) -> TaskError {
    move |e| TaskError::NonRetryable {
        operation,
        message: e.to_string(),
    }
}

async fn delete_prefix(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<usize, TaskError> {
    let mut deleted = 0;
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| TaskError::from_sdk("ListObjectsV2", &e))?;
        let keys: Vec<String> = page
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        for chunk in keys.chunks(KEYS_PER_DELETE) {
            let objects = chunk
                .iter()
                .map(|k| {
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key(k)
                        .build()
                        .map_err(unbuildable("DeleteObjects"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(unbuildable("DeleteObjects"))?;
            let out = s3
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| TaskError::from_sdk("DeleteObjects", &e))?;
            if let Some(first) = out.errors().first() {
                return Err(TaskError::Retryable {
                    operation: "DeleteObjects",
                    message: format!(
                        "{} of {} keys under s3://{bucket}/{prefix} not deleted, the first {:?}: {}",
                        out.errors().len(),
                        chunk.len(),
                        first.key().unwrap_or_default(),
                        first.message().unwrap_or_default()
                    ),
                });
            }
            deleted += chunk.len();
        }
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return Ok(deleted);
        }
    }
}

async fn delete_partitions(
    glue: &aws_sdk_glue::Client,
    database: &str,
    table: &str,
    day: NaiveDate,
) -> Result<usize, TaskError> {
    let mut deleted = 0;
    for chunk in hour_partitions(day).chunks(PARTITIONS_PER_DELETE) {
        let values = chunk
            .iter()
            .map(|v| {
                PartitionValueList::builder()
                    .set_values(Some(v.clone()))
                    .build()
                    .map_err(unbuildable("BatchDeletePartition"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = glue
            .batch_delete_partition()
            .database_name(database)
            .table_name(table)
            .set_partitions_to_delete(Some(values))
            .send()
            .await
            .map_err(|e| TaskError::from_sdk("BatchDeletePartition", &e))?;
        // A partition that does not exist is what the day should be.
        let missing = |e: &&aws_sdk_glue::types::PartitionError| {
            e.error_detail()
                .and_then(|d| d.error_code())
                .is_some_and(|c| c == "EntityNotFoundException")
        };
        let errors = out.errors();
        if let Some(e) = errors.iter().find(|e| !missing(e)) {
            return Err(TaskError::Retryable {
                operation: "BatchDeletePartition",
                message: format!(
                    "partition {:?} of {database}.{table}: {}",
                    e.partition_values(),
                    e.error_detail()
                        .and_then(|d| d.error_message())
                        .unwrap_or_default()
                ),
            });
        }
        deleted += chunk.len() - errors.iter().filter(missing).count();
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_the_prefix_and_the_partitions_athena_writes() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(
            day_prefix("transformed/t/", day),
            "transformed/t/year=2026/month=3/day=1/"
        );
        assert_eq!(day_prefix("", day), "year=2026/month=3/day=1/");
        let parts = hour_partitions(day);
        assert_eq!(parts.len(), 24);
        assert_eq!(parts[0], ["2026", "3", "1", "0"]);
        assert_eq!(parts[23], ["2026", "3", "1", "23"]);
    }

    #[test]
    fn locations_split_into_bucket_and_prefix() {
        assert_eq!(
            split_location("s3://lake/transformed/t/"),
            Some(("lake".into(), "transformed/t/".into()))
        );
        assert_eq!(
            split_location("s3://lake/transformed/t"),
            Some(("lake".into(), "transformed/t/".into()))
        );
        assert_eq!(
            split_location("s3://lake"),
            Some(("lake".into(), String::new()))
        );
        assert_eq!(
            split_location("s3://lake/"),
            Some(("lake".into(), String::new()))
        );
        assert_eq!(split_location("/local/path"), None);
        assert_eq!(split_location("s3:///x"), None);
    }
}
