//! Counting the AWS requests a client makes: a proxy in front of moto,
//! one per client, that tells each request's service and operation from
//! the request itself (the `X-Amz-Target` header of the JSON protocols,
//! the method and query of S3's REST one) and adds up requests, the bytes
//! sent and, for DynamoDB, the request units the call is billed.
//!
//! What it sees is what the client sends, so the counts hold on AWS as on
//! moto; only the latencies are moto's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::proxy::{self, BufferedRequest};

/// What the requests of one kind added up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub requests: u64,
    /// Request bodies (an S3 PUT's object, a DynamoDB call's JSON).
    pub bytes_sent: u64,
    /// DynamoDB's billed request units (read or write, by the kind); zero
    /// for other services.
    pub units: f64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.bytes_sent += other.bytes_sent;
        self.units += other.units;
    }
}

/// Requests of one client, by kind (`S3 PUT`, `DynamoDB UpdateItem`, ...).
pub type Tallies = BTreeMap<String, Tally>;

/// Adds `more` into `into`.
pub fn merge(into: &mut Tallies, more: &Tallies) {
    for (kind, t) in more {
        into.entry(kind.clone()).or_default().add(t);
    }
}

/// Counting proxies, one per client label, all counting into one table.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, Tallies>>>,
    endpoints: Arc<Mutex<BTreeMap<String, String>>>,
}

impl RequestCounter {
    /// The endpoint of a proxy to `upstream` counting under `label`: one
    /// proxy per label, started by the first call (on the current Tokio
    /// runtime, which must outlive the clients using it).
    pub async fn endpoint(&self, upstream: &str, label: &str) -> Result<String> {
        if let Some(e) = self.lock_endpoints().get(label) {
            return Ok(e.clone());
        }
        let listener = tokio::net::TcpListener::bind(proxy::loopback_any_port())
            .await
            .context("binding a counting proxy")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let client = proxy::upstream_client();
        let (counts, upstream, label_owned) = (
            Arc::clone(&self.counts),
            upstream.to_string(),
            label.to_string(),
        );
        tokio::spawn(proxy::serve(listener, move |req| {
            let (client, upstream, counts, label) = (
                client.clone(),
                upstream.clone(),
                Arc::clone(&counts),
                label_owned.clone(),
            );
            async move {
                let req = BufferedRequest::read(req).await;
                let (kind, tally) = classify(&req);
                counts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(label)
                    .or_default()
                    .entry(kind)
                    .or_default()
                    .add(&tally);
                proxy::forward(&client, &upstream, req).await
            }
        }));
        Ok(self
            .lock_endpoints()
            .entry(label.to_string())
            .or_insert(endpoint)
            .clone())
    }

    /// Every label's requests so far.
    pub fn counts(&self) -> BTreeMap<String, Tallies> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The service as the request's SigV4 credential scope names it
/// (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
fn signed_service(req: &BufferedRequest) -> Option<String> {
    let auth = req.header("authorization")?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(3).map(str::to_string)
}

/// A service's name as its pricing page calls it.
fn service_name(signed: &str) -> String {
    match signed {
        "s3" => "S3",
        "dynamodb" => "DynamoDB",
        "glue" => "Glue",
        "athena" => "Athena",
        "states" => "Step Functions",
        "kinesis" => "Kinesis",
        "sqs" => "SQS",
        "lambda" => "Lambda",
        "s3tables" => "S3 Tables",
        other => other,
    }
    .to_string()
}

/// A request's kind and what it counts for.
pub fn classify(req: &BufferedRequest) -> (String, Tally) {
    let service = service_name(&signed_service(req).unwrap_or_else(|| "unsigned".into()));
    let operation = match req.header("x-amz-target") {
        Some(target) => target.rsplit('.').next().unwrap_or(target).to_string(),
        None if service == "S3" => s3_operation(req).to_string(),
        None => req.parts.method.to_string(),
    };
    let units = if service == "DynamoDB" {
        dynamodb_units(&operation, &req.body)
    } else {
        0.0
    };
    let tally = Tally {
        requests: 1,
        bytes_sent: req.body.len() as u64,
        units,
    };
    (format!("{service} {operation}"), tally)
}

/// S3's request classes as its pricing page groups them: PUT, COPY, POST
/// and LIST in one price, GET and the other reads in another.
fn s3_operation(req: &BufferedRequest) -> &'static str {
    let query = req.parts.uri.query().unwrap_or("");
    let listing = query.split('&').any(|p| p == "list-type=2")
        || (req.parts.method == hyper::Method::GET
            && req.parts.uri.path().trim_matches('/').split('/').count() == 1);
    match req.parts.method.as_str() {
        "GET" if listing => "LIST",
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" if req.header("x-amz-copy-source").is_some() => "COPY",
        "PUT" => "PUT",
        "POST" => "POST",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

/// The request units a DynamoDB call is billed (on-demand): a write of an
/// item up to 1 KB is one write unit, two in a transaction; an eventually
/// consistent read of up to 4 KB half a read unit, a strongly consistent
/// one a whole unit. Items are counted from the request; their sizes are
/// taken as within those limits (the suite's items are a few hundred
/// bytes). A Scan or Query is billed by the data it reads, which the
/// request does not show: it counts as one unit per call, a floor.
fn dynamodb_units(operation: &str, body: &[u8]) -> f64 {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0.0;
    };
    let read = |consistent: bool| if consistent { 1.0 } else { 0.5 };
    let consistent = json["ConsistentRead"].as_bool().unwrap_or(false);
    let len = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len) as f64;
    match operation {
        "PutItem" | "UpdateItem" | "DeleteItem" => 1.0,
        "GetItem" => read(consistent),
        "BatchWriteItem" => json["RequestItems"]
            .as_object()
            .map_or(0.0, |t| t.values().map(len).sum()),
        "BatchGetItem" => json["RequestItems"].as_object().map_or(0.0, |t| {
            t.values()
                .map(|table| {
                    let c = table["ConsistentRead"].as_bool().unwrap_or(false);
                    len(&table["Keys"]) * read(c)
                })
                .sum()
        }),
        "TransactWriteItems" => 2.0 * len(&json["TransactItems"]),
        "TransactGetItems" => 2.0 * len(&json["TransactItems"]),
        "Query" | "Scan" => 1.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> BufferedRequest {
        let mut b = hyper::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).expect("a request").into_parts();
        BufferedRequest {
            parts,
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    fn auth(service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKID/20261202/us-east-1/{service}/aws4_request, \
             SignedHeaders=host, Signature=abc"
        )
    }

    #[test]
    fn s3_requests_are_grouped_as_priced() {
        let s3 = auth("s3");
        let h = [("authorization", s3.as_str())];
        let cases = [
            ("PUT", "http://x/bucket/a/b.parquet", "S3 PUT"),
            ("GET", "http://x/bucket/a/b.parquet", "S3 GET"),
            ("GET", "http://x/bucket?list-type=2&prefix=a", "S3 LIST"),
            ("GET", "http://x/bucket/", "S3 LIST"),
            ("HEAD", "http://x/bucket/a", "S3 HEAD"),
            ("DELETE", "http://x/bucket/a", "S3 DELETE"),
        ];
        for (method, uri, kind) in cases {
            assert_eq!(classify(&request(method, uri, &h, "")).0, kind, "{uri}");
        }
        let copy = [
            ("authorization", s3.as_str()),
            ("x-amz-copy-source", "/bucket/a"),
        ];
        assert_eq!(
            classify(&request("PUT", "http://x/bucket/b", &copy, "")).0,
            "S3 COPY"
        );
        let (_, t) = classify(&request("PUT", "http://x/bucket/k", &h, "12345"));
        assert_eq!(
            t,
            Tally {
                requests: 1,
                bytes_sent: 5,
                units: 0.0
            }
        );
    }

    #[test]
    fn json_protocol_requests_are_named_by_their_target() {
        let glue = auth("glue");
        let h = [
            ("authorization", glue.as_str()),
            ("x-amz-target", "AWSGlue.UpdateTable"),
        ];
        assert_eq!(
            classify(&request("POST", "http://x/", &h, "{}")).0,
            "Glue UpdateTable"
        );
        let states = auth("states");
        let h = [
            ("authorization", states.as_str()),
            ("x-amz-target", "AWSStepFunctions.StartExecution"),
        ];
        assert_eq!(
            classify(&request("POST", "http://x/", &h, "{}")).0,
            "Step Functions StartExecution"
        );
    }

    #[test]
    fn dynamodb_calls_count_their_billed_units() {
        let ddb = auth("dynamodb");
        let call = |target: &str, body: &str| {
            let target = format!("DynamoDB_20120810.{target}");
            let h = [
                ("authorization", ddb.as_str()),
                ("x-amz-target", target.as_str()),
            ];
            classify(&request("POST", "http://x/", &h, body)).1.units
        };
        assert_eq!(call("UpdateItem", "{}"), 1.0);
        assert_eq!(call("GetItem", "{}"), 0.5);
        assert_eq!(call("GetItem", r#"{"ConsistentRead":true}"#), 1.0);
        assert_eq!(
            call(
                "BatchGetItem",
                r#"{"RequestItems":{"t":{"Keys":[{},{},{}]},"u":{"Keys":[{}],"ConsistentRead":true}}}"#
            ),
            2.5
        );
        assert_eq!(
            call("BatchWriteItem", r#"{"RequestItems":{"t":[{},{}]}}"#),
            2.0
        );
        assert_eq!(
            call("TransactWriteItems", r#"{"TransactItems":[{},{},{}]}"#),
            6.0
        );
        assert_eq!(call("Scan", "{}"), 1.0);
    }

    #[test]
    fn merging_adds_kind_by_kind() {
        let t = |requests, units| Tally {
            requests,
            bytes_sent: requests * 10,
            units,
        };
        let mut a = Tallies::from([("S3 PUT".to_string(), t(2, 0.0))]);
        let b = Tallies::from([
            ("S3 PUT".to_string(), t(3, 0.0)),
            ("DynamoDB UpdateItem".to_string(), t(4, 4.0)),
        ]);
        merge(&mut a, &b);
        assert_eq!(a["S3 PUT"], t(5, 0.0));
        assert_eq!(a["DynamoDB UpdateItem"], t(4, 4.0));
    }
}
