//! Each stream function invoked on moto, its Embedded Metric Format
//! documents read back and checked against what the test put in and what
//! S3 and DynamoDB hold afterwards: names, units, the `FunctionName` and
//! `Reason` dimensions, and values. The real `kinesis-to-parquet` binary's
//! stdout is read too, as CloudWatch Logs would read it. The workflow tasks'
//! and the scheduler's metrics are checked in `tests/repartition.rs` and
//! `tests/scheduler.rs`, beside their moto set-ups.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use integration_tests::{
    emf_invocations, function_binary, iceberg_env, iceberg_lake, kinesis_event, moto,
    s3_with_bucket, sdk_config, stream_config, test_metrics, DeviceStatusRig, EmfInvocation,
    StreamFunction, REGION,
};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::function_process::{FunctionProcess, MemoryLimit};
use lake_tools::kinesis_event::{sequence_number, stream_arn, StreamRecord};
use lake_tools::telemetry::{generate, TelemetryOptions};
use serde_json::json;
use telemetry_lake::config::vars;
use telemetry_lake::lake::writer::S3Sink;

const SHARD: &str = "shardId-000000000000";

/// The bad payloads of the known batch, by the reason they are dead-lettered
/// with.
const BAD: [(&str, &str); 4] = [
    ("invalid_json", "{not json"),
    (
        "missing_field",
        r#"{"eventtime": "2025-11-22 10:00:00", "serialnumber": "S", "pressurecontrol": 1, "o2stats": 1, "minutevolume": 1, "manufacturer": "M"}"#,
    ),
    (
        "wrong_type",
        r#"{"ventilatorid": "seven", "eventtime": "2025-11-22 10:00:00", "serialnumber": "S", "pressurecontrol": 1, "o2stats": 1, "minutevolume": 1, "manufacturer": "M"}"#,
    ),
    ("not_an_object", "[1, 2]"),
];

/// `n` records (at most 10,000) of one shard, arriving one millisecond
/// apart from `first_arrival`: generated readings, of which every hundredth,
/// from record 50, is one of [`BAD`] in turn (100 of 10,000). Also the
/// newest event time of the good ones.
fn known_batch(first_arrival: DateTime<Utc>, n: usize) -> (Vec<StreamRecord>, DateTime<Utc>) {
    let readings = generate(&TelemetryOptions {
        devices: 50,
        duration: chrono::Duration::minutes(200),
        bad_share: 0.0,
        ..TelemetryOptions::default()
    });
    assert!(readings.len() >= 10_000);
    let mut newest = DateTime::<Utc>::MIN_UTC;
    let records = (0..n)
        .map(|i| {
            let data = if i % 100 == 50 {
                BAD[(i / 100) % BAD.len()].1.as_bytes().to_vec()
            } else {
                // The payload holds the event time to the second.
                newest = newest.max(readings[i].event_time.trunc_subsecs(0));
                readings[i].json.clone().into_bytes()
            };
            StreamRecord {
                data,
                partition_key: format!("p{i}"),
                arrival: first_arrival + chrono::Duration::milliseconds(i as i64),
                sequence_number: sequence_number(0, i as u64),
            }
        })
        .collect();
    (records, newest)
}

/// The one invocation a function's recorded lines hold.
fn only(lines: &[String]) -> EmfInvocation {
    let mut all = emf_invocations(lines);
    assert_eq!(all.len(), 1, "{lines:?}");
    all.remove(0)
}

/// Every object under `bucket`: (count, bytes).
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> (usize, i64) {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list");
    let sizes: Vec<i64> = listed
        .contents()
        .iter()
        .map(|o| o.size().unwrap_or(0))
        .collect();
    (sizes.len(), sizes.iter().sum())
}

/// A value measured at the document's timestamp, from `since`: equal to
/// the milliseconds between them (the event time's microseconds are cut).
fn assert_age(emf: &EmfInvocation, metric: &str, since: DateTime<Utc>) {
    let expected = (emf.timestamp - since.timestamp_millis()) as f64;
    let got = emf.value(metric);
    assert!(
        (got - expected).abs() <= 1.0,
        "{metric}: {got} ms, expected {expected} (the document's time less {since})"
    );
    assert_eq!(emf.metrics[metric].0, "Milliseconds");
}

#[tokio::test]
async fn kinesis_to_parquet_measures_a_batch_of_10000_records_with_100_bad() {
    let (s3, bucket) = s3_with_bucket("emf").await;
    let (metrics, recorded) = test_metrics("stack-KinesisToParquet-1");
    let f = KinesisToParquet::new(stream_config(&bucket), S3Sink::new(s3.clone(), &bucket))
        .with_metrics(metrics);
    let first_arrival = Utc::now() - chrono::Duration::minutes(5);
    let (records, newest_event) = known_batch(first_arrival, 10_000);
    let event = kinesis_event(&stream_arn(REGION, "vent"), SHARD, &records);
    let (summary, response) = f.invoke(&event).await.expect("invoked");
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(summary.good, 9_900);

    let emf = only(&recorded.lines());
    assert_eq!(emf.function, "stack-KinesisToParquet-1");
    let (count, bytes) = objects(&s3, &bucket).await;
    let counts: BTreeMap<&str, f64> = [
        ("Records", 10_000.0),
        ("GoodRows", 9_900.0),
        ("DeadLetters", 100.0),
        ("UndeclaredFields", 0.0),
        ("BatchItemFailures", 0.0),
        ("ObjectsWritten", count as f64),
        ("BytesWritten", bytes as f64),
    ]
    .into();
    for (metric, value) in &counts {
        assert_eq!(emf.value(metric), *value, "{metric}");
    }
    assert!(count >= 2, "Parquet and dead letters: {count} objects");
    assert_eq!(emf.metrics["BytesWritten"].0, "Bytes");
    assert_eq!(emf.metrics["Records"].0, "Count");
    let by_reason: BTreeMap<String, f64> = BAD
        .iter()
        .map(|(reason, _)| (reason.to_string(), 25.0))
        .collect();
    assert_eq!(emf.dead_letters_by_reason, by_reason);
    assert_age(&emf, "EventTimeLag", newest_event);
    assert_age(&emf, "ArrivalToWriteLatency", first_arrival);
    // The Iceberg path's figures are not in a Hive layout's document.
    assert!(!emf.metrics.contains_key("CommitAttempts"));
    assert!(!emf.metrics.contains_key("RecordsAlreadyCommitted"));
}

#[tokio::test]
async fn a_batch_that_could_not_be_written_counts_one_item_failure() {
    let s3 = aws_sdk_s3::Client::new(&sdk_config(moto(), REGION).await);
    let bucket = integration_tests::unique("no-such-bucket");
    let (metrics, recorded) = test_metrics("k2p");
    let f = KinesisToParquet::new(stream_config(&bucket), S3Sink::new(s3, &bucket))
        .with_metrics(metrics);
    let (records, _) = known_batch(Utc::now(), 10);
    let event = kinesis_event(&stream_arn(REGION, "vent"), SHARD, &records);
    let (_, response) = f.invoke(&event).await.expect("invoked");
    assert_eq!(response.batch_item_failures.len(), 1);
    let emf = only(&recorded.lines());
    assert_eq!(emf.value("BatchItemFailures"), 1.0);
    assert_eq!(emf.value("ObjectsWritten"), 0.0);
    assert_eq!(emf.value("Records"), 10.0);
}

#[tokio::test]
async fn the_iceberg_layout_counts_commit_attempts_and_records_already_committed() {
    let (_, bucket, database) = iceberg_lake("emf").await;
    let env = iceberg_env(&bucket, &database);
    let sdk = sdk_config(moto(), REGION).await;
    let (metrics, recorded) = test_metrics("k2p-iceberg");
    let f = KinesisToParquet::load(|name| env.get(name).cloned(), &sdk)
        .await
        .expect("cold start")
        .with_metrics(metrics);
    // Record 50 is the first bad one.
    let (records, newest_event) = known_batch(Utc::now() - chrono::Duration::minutes(1), 60);
    let event = kinesis_event(&stream_arn(REGION, "vent"), SHARD, &records);
    f.invoke(&event).await.expect("first delivery");
    f.invoke(&event).await.expect("second delivery");
    let emf = emf_invocations(&recorded.lines());
    assert_eq!(emf.len(), 2);
    let (first, again) = (&emf[0], &emf[1]);
    assert_eq!(
        [
            first.value("Records"),
            first.value("GoodRows"),
            first.value("DeadLetters"),
            first.value("CommitAttempts"),
            first.value("RecordsAlreadyCommitted"),
        ],
        [60.0, 59.0, 1.0, 1.0, 0.0]
    );
    assert_eq!(
        first.dead_letters_by_reason,
        BTreeMap::from([("invalid_json".to_string(), 1.0)])
    );
    assert_age(first, "EventTimeLag", newest_event);
    // The same records again: nothing decoded, nothing committed.
    assert_eq!(
        [
            again.value("Records"),
            again.value("GoodRows"),
            again.value("DeadLetters"),
            again.value("CommitAttempts"),
            again.value("RecordsAlreadyCommitted"),
            again.value("ObjectsWritten"),
        ],
        [60.0, 0.0, 0.0, 0.0, 60.0, 0.0]
    );
    assert!(again.dead_letters_by_reason.is_empty());
    assert!(!again.metrics.contains_key("EventTimeLag"));
}

/// A reading of `device` at `time` on 2026-11-22.
fn reading(device: i64, time: &str, o2: i64) -> Vec<u8> {
    integration_tests::reading_on("2026-11-22", device, time, o2)
}

#[tokio::test]
async fn device_status_counts_windows_reloads_and_unknown_devices() {
    let mut rig = DeviceStatusRig::new(moto(), 3, Duration::from_secs(5), (90.0, 100.0)).await;
    let (metrics, recorded) = test_metrics("stack-DeviceStatus-1");
    rig.function = rig.function.with_metrics(metrics);
    // Devices 1 and 2 are in the reference table, 9 is not; record 3 is
    // not JSON.
    let payloads = [
        reading(1, "10:01:00", 95),
        reading(2, "10:02:00", 80),
        reading(9, "10:03:00", 95),
        b"{not json".to_vec(),
        reading(9, "10:04:00", 95),
    ];
    let arrival = Utc.with_ymd_and_hms(2026, 11, 22, 10, 5, 0).unwrap();
    let records = integration_tests::records_of(0, 0, arrival, &payloads);
    let event = kinesis_event(&stream_arn(REGION, "vent"), SHARD, &records);
    rig.function.invoke(&event).await.expect("first delivery");
    rig.function.invoke(&event).await.expect("second delivery");
    let items = rig.windows().await.len();
    assert!(items >= 3, "{items} window items");
    let emf = emf_invocations(&recorded.lines());
    assert_eq!(emf.len(), 2);
    let (first, again) = (&emf[0], &emf[1]);
    assert_eq!(first.function, "stack-DeviceStatus-1");
    let newest = Utc.with_ymd_and_hms(2026, 11, 22, 10, 4, 0).unwrap();
    for (emf, written, already, reloads) in [(first, items, 0, 1.0), (again, 0, items, 0.0)] {
        let values = [
            "Records",
            "GoodRows",
            "DeadLetters",
            "UnknownStatusReadings",
            "WindowsWritten",
            "WindowsAlreadyApplied",
            "WindowWriteFailures",
            "ConditionalWriteRetries",
            "ReferenceReloads",
            "BatchItemFailures",
            "ObjectsWritten",
        ]
        .map(|m| emf.value(m));
        assert_eq!(
            values,
            [
                5.0,
                4.0,
                1.0,
                2.0,
                written as f64,
                already as f64,
                0.0,
                0.0,
                reloads,
                0.0,
                1.0
            ]
        );
        assert_eq!(
            emf.dead_letters_by_reason,
            BTreeMap::from([("invalid_json".to_string(), 1.0)])
        );
        assert_age(emf, "EventTimeLag", newest);
        assert_age(emf, "ArrivalToWriteLatency", arrival);
    }
}

#[tokio::test]
async fn reference_change_flag_counts_the_changes_and_the_flag_it_wrote() {
    use telemetry_lake::device_status::change_flag::{ChangeFlagStore, FlagLocation};
    let (s3, bucket) = s3_with_bucket("emf-flag").await;
    let location = FlagLocation {
        bucket: bucket.clone(),
        key: "reference/change-flag.json".into(),
    };
    let (metrics, recorded) = test_metrics("flag");
    let f =
        reference_change_flag::ReferenceChangeFlag::new(ChangeFlagStore::new(s3.clone(), location))
            .with_metrics(metrics);
    let change = |id: &str, key: i64| {
        json!({"eventID": id, "eventName": "MODIFY", "awsRegion": REGION,
               "dynamodb": {"Keys": {"ventilatorid": {"N": key.to_string()}}, "SizeBytes": 10}})
    };
    let event = json!({"Records": [change("1", 7), change("2", 3), change("3", 7)]}).to_string();
    lake_tools::runtime::invoke(event.as_bytes(), |e| f.handle(e))
        .await
        .expect("invoked");
    let emf = only(&recorded.lines());
    assert_eq!(emf.value("ReferenceChanges"), 3.0);
    assert_eq!(emf.value("ChangeFlagsWritten"), 1.0);
    assert_eq!(objects(&s3, &bucket).await.0, 1, "the flag object");
}

#[test]
fn the_real_binary_prints_its_document_to_stdout_apart_from_its_json_logs() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_, bucket) = runtime.block_on(s3_with_bucket("emf-binary"));
    let env = binary_env(&bucket);
    let limit = MemoryLimit::AddressSpace(8 << 30);
    let mut process = FunctionProcess::spawn(&function_binary("kinesis-to-parquet"), &env, &limit)
        .expect("the function starts");
    let (records, _) = known_batch(Utc::now(), 100);
    let event = kinesis_event(&stream_arn(REGION, "vent"), SHARD, &records);
    process
        .invoke(&event, Duration::from_secs(60))
        .expect("an answer");
    // The document and the log line are written before the answer; wait
    // for the pipe's reader to have taken both.
    let stdout = process.stdout_once(
        |out| out.contains("\"_aws\"") && out.contains("batch processed"),
        Duration::from_secs(10),
    );
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .map(str::to_string)
        .collect();
    let emf = only(&lines);
    assert_eq!(emf.function, "stack-KinesisToParquet-9");
    assert_eq!(emf.request_id, "invocation-1");
    assert_eq!(
        [
            emf.value("Records"),
            emf.value("GoodRows"),
            emf.value("DeadLetters")
        ],
        [100.0, 99.0, 1.0]
    );
    // The runtime's own log lines are JSON too, and none holds a document.
    let logged = stdout
        .lines()
        .filter(|l| l.contains("batch processed"))
        .count();
    assert_eq!(logged, 1, "{stdout}");
    assert!(stdout
        .lines()
        .filter(|l| l.contains("batch processed"))
        .all(|l| !l.contains("_aws")));
}

/// The environment Lambda would give the kinesis-to-parquet binary, with
/// its lake in `bucket` on moto.
fn binary_env(bucket: &str) -> HashMap<String, String> {
    [
        ("AWS_ENDPOINT_URL", moto()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_LAMBDA_FUNCTION_NAME", "stack-KinesisToParquet-9"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        (vars::METRICS_NAMESPACE, "Test/Lake"),
        (
            vars::SCHEMA,
            include_str!("../config/ventilator.schema.json"),
        ),
        (vars::LAKE_BUCKET, bucket),
        (vars::LAKE_PREFIX, "raw/v"),
        (vars::DEAD_LETTER_PREFIX, "dead-letters/v"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn the_real_binary_reads_each_body_itself_and_reports_one_that_is_not_an_event() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (s3, bucket) = runtime.block_on(s3_with_bucket("body-binary"));
    let limit = MemoryLimit::AddressSpace(8 << 30);
    let mut process = FunctionProcess::spawn(
        &function_binary("kinesis-to-parquet"),
        &binary_env(&bucket),
        &limit,
    )
    .expect("the function starts");
    // Not a stream batch: the runtime reports the handler's error, and the
    // process goes on serving.
    for body in [&b"{\"Records\": 7}"[..], b"not json", b""] {
        match process.invoke(body, Duration::from_secs(60)) {
            Ok(lake_tools::function_process::Answer::Error(e)) => {
                let message = e["errorMessage"].as_str().unwrap_or_default();
                assert!(
                    message.starts_with(
                        "failed to deserialize the incoming data into the function's payload type"
                    ),
                    "{e}"
                );
            }
            other => panic!("{body:?}: {other:?}"),
        }
    }
    let (records, _) = known_batch(Utc::now(), 100);
    let event = kinesis_event(&stream_arn(REGION, "vent"), SHARD, &records);
    let answer = process
        .invoke(&event, Duration::from_secs(60))
        .expect("an answer");
    assert_eq!(
        answer,
        lake_tools::function_process::Answer::Response(json!({"batchItemFailures": []}))
    );
    let keys = runtime.block_on(integration_tests::object_keys(&s3, &bucket, "raw/v/"));
    assert_eq!(keys.len(), 1, "{keys:?}");
}
