//! The reference-change-flag function: triggered by the reference table's
//! DynamoDB stream, it writes the next version of the change flag naming the
//! keys the batch changed (see `telemetry_lake::device_status::change_flag`). Consumers
//! probe the flag and reload their reference cache when it moved; the flag is
//! never deleted, so every consumer instance sees every change.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use telemetry_lake::config::ConfigError;
use telemetry_lake::device_status::change_flag::{
    ChangeFlag, ChangeFlagStore, FlagError, FlagLocation,
};
use telemetry_lake::lake::writer::s3_client;
use telemetry_lake::metrics::{self, Invocation, MetricsOut};

/// The changed key of a stream record: its key attributes' values (the
/// text of `S` or `N`), joined by `#` in attribute-name order when the
/// table has a sort key.
pub fn changed_key(record: &EventRecord) -> Option<String> {
    let keys = serde_json::to_value(&record.change.keys).ok()?;
    let map = keys.as_object()?;
    let mut attrs: Vec<(&String, &Value)> = map.iter().collect();
    attrs.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = attrs
        .into_iter()
        .filter_map(|(_, v)| {
            let v = v.as_object()?;
            v.get("S")
                .or_else(|| v.get("N"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| v.values().next().map(Value::to_string))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("#"))
}

/// The keys a batch changed, each once, in first-seen order.
pub fn changed_keys(event: &Event) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for record in &event.records {
        if let Some(k) = changed_key(record) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

/// The function's state, built once per container.
pub struct ReferenceChangeFlag {
    store: ChangeFlagStore,
    metrics: MetricsOut,
}

impl ReferenceChangeFlag {
    /// The function writing the flag through `store`.
    pub fn new(store: ChangeFlagStore) -> Self {
        ReferenceChangeFlag {
            store,
            metrics: MetricsOut::from_env(|_| None, "reference-change-flag"),
        }
    }

    /// The same function writing its metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: MetricsOut) -> Self {
        self.metrics = metrics;
        self
    }

    /// The function as it runs in Lambda and in the local run: the flag's
    /// location read through `env`, the flag written to S3.
    pub fn load(
        env: impl Fn(&str) -> Option<String>,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, ConfigError> {
        let metrics = MetricsOut::from_env(&env, "reference-change-flag");
        let location = FlagLocation::from_lookup(env)?;
        Ok(Self::new(ChangeFlagStore::new(s3_client(aws), location)).with_metrics(metrics))
    }

    /// Handles one DynamoDB stream batch.
    pub async fn handle(&self, event: LambdaEvent<Event>) -> Result<(), lambda_runtime::Error> {
        self.publish(event).await.map(drop)
    }

    /// [`Self::handle`], with the flag it published (the local run shows
    /// its version).
    pub async fn publish(
        &self,
        event: LambdaEvent<Event>,
    ) -> Result<Option<ChangeFlag>, lambda_runtime::Error> {
        let mut invocation = Invocation::start(&event.context.request_id);
        let flag = self.process(&event.payload).await?;
        invocation
            .count(metrics::REFERENCE_CHANGES, event.payload.records.len())
            .count(metrics::CHANGE_FLAGS_WRITTEN, usize::from(flag.is_some()));
        self.metrics.emit(&invocation);
        Ok(flag)
    }

    /// Publishes the next flag for a batch; `None` for an empty batch. An
    /// error fails the batch, and Lambda retries it: a retry publishes one
    /// more version, which only costs consumers one more reload.
    pub async fn process(&self, event: &Event) -> Result<Option<ChangeFlag>, FlagError> {
        if event.records.is_empty() {
            return Ok(None);
        }
        let keys = changed_keys(event);
        let flag = self.store.publish(keys, Utc::now()).await?;
        tracing::info!(
            records = event.records.len(),
            changed_keys = flag.changed_keys.len(),
            version = flag.version,
            bucket = %self.store.location().bucket,
            key = %self.store.location().key,
            "change flag published"
        );
        Ok(Some(flag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deduplicated_in_order() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "Records": [
                {"eventID": "1", "eventName": "MODIFY", "awsRegion": "us-east-1",
                 "dynamodb": {"Keys": {"ventilatorid": {"N": "7"}}, "SizeBytes": 10}},
                {"eventID": "2", "eventName": "INSERT", "awsRegion": "us-east-1",
                 "dynamodb": {"Keys": {"ventilatorid": {"N": "3"}}, "SizeBytes": 10}},
                {"eventID": "3", "eventName": "REMOVE", "awsRegion": "us-east-1",
                 "dynamodb": {"Keys": {"ventilatorid": {"N": "7"}}, "SizeBytes": 10}},
                {"eventID": "4", "eventName": "MODIFY", "awsRegion": "us-east-1",
                 "dynamodb": {"Keys": {"site": {"S": "b"}, "device": {"S": "a"}}, "SizeBytes": 10}}
            ]
        }))
        .unwrap();
        assert_eq!(changed_keys(&event), ["7", "3", "a#b"]);
    }
}
