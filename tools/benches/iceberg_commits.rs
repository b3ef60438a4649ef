//! `cargo bench --workspace --bench iceberg_commits -- [--commits N] [--out BENCHMARKS.md]`:
//! what one Iceberg commit costs as the table grows. kinesis-to-parquet
//! with `LAKE_FORMAT=iceberg` commits N batches (1,000 by default) of 100
//! readings each, one after the other, to a table on a moto server, through
//! a proxy that counts every request. For the commits at 1, 10, 100 and N
//! (and the windows around them) it reports the invocation's latency, the
//! S3 and Glue requests it made, and the metadata bytes it wrote (manifest,
//! manifest list, metadata JSON), and at the end the table's metadata on S3.
//!
//! The latencies are moto's (a Python server on this machine), so they say
//! how the cost grows, not what Glue and S3 take; the request counts and
//! bytes are the client's and hold anywhere.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{TimeZone, Utc};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::kinesis_event::{event_json, sequence_number, stream_arn, StreamRecord};
use lake_tools::moto::{repo_root, s3_client, sdk_config, MotoOptions, MotoServer};
use lake_tools::proxy;
use lake_tools::runtime::invoke_stream;
use telemetry_lake::config::vars;

const START: &str = "<!-- iceberg-commits:start (written by `make bench`) -->";
const END: &str = "<!-- iceberg-commits:end -->";
const REGION: &str = "us-east-1";
const RECORDS_PER_BATCH: u64 = 100;
/// Commits averaged around each reported one.
const WINDOW: usize = 5;

/// Requests seen by the proxy, by kind (`S3 PUT metadata`, `Glue GetTable`,
/// ...), and the bytes of the metadata objects put.
#[derive(Debug, Default, Clone)]
struct Counts {
    requests: BTreeMap<String, u64>,
    metadata_bytes: u64,
}

impl Counts {
    fn minus(&self, before: &Counts) -> Counts {
        let requests = self
            .requests
            .iter()
            .map(|(k, v)| (k.clone(), v - before.requests.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        Counts {
            requests,
            metadata_bytes: self.metadata_bytes - before.metadata_bytes,
        }
    }
    fn total(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// A proxy to `upstream` counting what passes, on a free port.
async fn counting_proxy(upstream: String, counts: Arc<Mutex<Counts>>) -> String {
    let listener = tokio::net::TcpListener::bind(proxy::loopback_any_port())
        .await
        .expect("bind the proxy");
    let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
    let client = proxy::upstream_client();
    tokio::spawn(proxy::serve(listener, move |req| {
        let (client, upstream, counts) = (client.clone(), upstream.clone(), Arc::clone(&counts));
        async move {
            let req = proxy::BufferedRequest::read(req).await;
            let kind = match req.header("x-amz-target") {
                Some(target) => format!("Glue {}", target.rsplit('.').next().unwrap_or(target)),
                None => {
                    let path = req.path_and_query();
                    let part = if path.contains("/metadata/") {
                        "metadata"
                    } else if path.contains("/data/") {
                        "data file"
                    } else {
                        "other"
                    };
                    format!("S3 {} {part}", req.parts.method)
                }
            };
            {
                let mut c = counts.lock().expect("counts");
                if kind == "S3 PUT metadata" {
                    c.metadata_bytes += req.body.len() as u64;
                }
                *c.requests.entry(kind).or_default() += 1;
            }
            proxy::forward(&client, &upstream, req).await
        }
    }));
    endpoint
}

/// Batch `n`: readings of 100 devices at one event minute, shard 0, as
/// the JSON Lambda delivers.
fn batch(n: u64) -> Vec<u8> {
    let arrival = Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap();
    let minute = n % (24 * 60);
    let records: Vec<StreamRecord> = (0..RECORDS_PER_BATCH)
        .map(|i| StreamRecord {
            data: serde_json::json!({
                "ventilatorid": i, "serialnumber": format!("SN-{i}"),
                "eventtime": format!("2026-11-22 {:02}:{:02}:00", minute / 60, minute % 60),
                "pressurecontrol": 20, "o2stats": 95, "minutevolume": 6, "manufacturer": "Acme"
            })
            .to_string()
            .into_bytes(),
            partition_key: i.to_string(),
            arrival,
            sequence_number: sequence_number(0, n * RECORDS_PER_BATCH + i),
        })
        .collect();
    let json = event_json(
        &stream_arn(REGION, "vent"),
        "shardId-000000000000",
        &records,
    );
    serde_json::to_vec(&json).expect("a Kinesis event")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let commits: usize = value("--commits").map_or(1000, |n| n.parse().expect("N is a number"));
    let out = value("--out");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let md = rt.block_on(run(commits));
    match out {
        Some(path) => {
            let text = std::fs::read_to_string(&path).expect("read --out");
            let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
                panic!("{path} has no {START} … {END} markers");
            };
            let new = format!("{}{START}\n{md}{}", &text[..a], &text[b..]);
            std::fs::write(&path, new).expect("write --out");
        }
        None => print!("{md}"),
    }
}

async fn run(commits: usize) -> String {
    let moto = MotoServer::start(&MotoOptions::default()).expect("moto (make setup)");
    let counts: Arc<Mutex<Counts>> = Arc::default();
    let endpoint = counting_proxy(moto.endpoint.clone(), Arc::clone(&counts)).await;
    let direct = sdk_config(&moto.endpoint, REGION).await;
    let (bucket, database) = ("iceberg-bench", "bench");
    s3_client(&direct)
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    aws_sdk_glue::Client::new(&direct)
        .create_database()
        .database_input(
            aws_sdk_glue::types::DatabaseInput::builder()
                .name(database)
                .build()
                .expect("database input"),
        )
        .send()
        .await
        .expect("database");
    let schema = std::fs::read_to_string(repo_root().join("config/ventilator.schema.json"))
        .expect("the shipped schema");
    let env = BTreeMap::from([
        (vars::LAKE_BUCKET, bucket.to_string()),
        (vars::LAKE_PREFIX, "warehouse/readings".to_string()),
        (vars::DEAD_LETTER_PREFIX, "dead-letters".to_string()),
        (vars::SCHEMA, schema),
        (vars::LAKE_FORMAT, "iceberg".to_string()),
        (vars::ICEBERG_TABLE, format!("{database}.readings")),
        (vars::ICEBERG_PARTITION, "hour(eventtime)".to_string()),
    ]);
    let sdk = sdk_config(&endpoint, REGION).await;
    let f = KinesisToParquet::load(|k| env.get(k).cloned(), &sdk)
        .await
        .expect("cold start");

    let mut samples: Vec<(f64, Counts)> = Vec::with_capacity(commits);
    for n in 0..commits as u64 {
        let before = counts.lock().expect("counts").clone();
        let started = Instant::now();
        let handled = invoke_stream(&batch(n), |e| f.handle(e))
            .await
            .expect("handled");
        let secs = started.elapsed().as_secs_f64();
        let summary = &handled.summary;
        assert_eq!(summary.good, RECORDS_PER_BATCH as usize, "{summary:?}");
        assert!(summary.snapshot_id.is_some(), "{summary:?}");
        let after = counts.lock().expect("counts").clone();
        samples.push((secs, after.minus(&before)));
    }

    let metadata: Vec<_> =
        lake_tools::lake_reader::list(&s3_client(&direct), bucket, "warehouse/readings/metadata")
            .await
            .expect("list the metadata");
    let metadata_total: i64 = metadata.iter().map(|o| o.size).sum();

    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n{commits} commits of {RECORDS_PER_BATCH} readings each, one after the other, to one \
         table on moto (`cargo bench --bench iceberg_commits`). Each row: the mean over \
         {WINDOW} commits from the one named.\n"
    );
    let _ = writeln!(
        md,
        "| commit | latency (ms) | requests | of which | metadata written (bytes) |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---|---:|");
    let mut points: Vec<usize> = [1, 10, 100, commits.saturating_sub(WINDOW - 1)]
        .into_iter()
        .filter(|&p| p >= 1 && p + WINDOW - 1 <= commits)
        .collect();
    points.dedup();
    for p in points {
        let window = &samples[p - 1..p - 1 + WINDOW];
        let n = WINDOW as f64;
        let latency = window.iter().map(|(s, _)| s).sum::<f64>() / n * 1e3;
        let requests = window.iter().map(|(_, c)| c.total()).sum::<u64>() as f64 / n;
        let bytes = window.iter().map(|(_, c)| c.metadata_bytes).sum::<u64>() as f64 / n;
        let kinds = window[0]
            .1
            .requests
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            md,
            "| {p} | {latency:.1} | {requests:.1} | {kinds} | {bytes:.0} |"
        );
    }
    let _ = writeln!(
        md,
        "\nAfter {commits} commits the table's metadata is {} objects, {metadata_total} bytes.\n",
        metadata.len()
    );
    // Per billion records: one commit per batch of a shard, a batch of the
    // template's default size holding one event hour (one data file).
    let template = lake_tools::template::Template::load(&repo_root().join("template.yaml"))
        .expect("template.yaml");
    let batch_size: u64 = template
        .parameter_default("BatchSize")
        .and_then(|b| b.parse().ok())
        .expect("BatchSize's default");
    let commits_per_billion = 1_000_000_000 / batch_size;
    let last = &samples[samples.len().saturating_sub(WINDOW)..];
    let mut per_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, c) in last {
        for (k, v) in &c.requests {
            *per_kind.entry(k.as_str()).or_default() += v;
        }
    }
    let millions =
        |per_window: u64| per_window as f64 / last.len() as f64 * commits_per_billion as f64 / 1e6;
    let kinds = per_kind
        .iter()
        .map(|(k, v)| format!("{:.1} M {k}", millions(*v)))
        .collect::<Vec<_>>()
        .join(", ");
    let total: u64 = per_kind.values().sum();
    let _ = writeln!(
        md,
        "Per billion records at the template's default `BatchSize` ({batch_size}, one commit per \
         batch of a shard: {commits_per_billion} commits; computed from the last {} commits' \
         requests, with one event hour per batch): {:.1} M requests, {kinds}.\n",
        last.len(),
        millions(total)
    );
    md
}
