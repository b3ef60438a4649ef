//! The operator's commands on moto: `replay-dead-letters` puts the dead
//! letters that the current schema accepts back on the stream, and counts
//! those it still refuses; `smoke` follows its readings through the local
//! stack, and stops at a missing lake bucket.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use integration_tests::{
    kinesis_event, moto, reading_on, records_of, s3_with_bucket, sdk_config, stream_config, unique,
    StreamFunction, REGION,
};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::dead_letter_replay::{decoder_from, replay, Report, Selection};
use lake_tools::kinesis_event::stream_arn;
use telemetry_lake::config::schema::Schema;
use telemetry_lake::config::vars;
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake::writer::S3Sink;

const SHIPPED: &str = include_str!("../config/ventilator.schema.json");

/// A stream on moto, and every record on it.
async fn stream(kinesis: &aws_sdk_kinesis::Client) -> String {
    let name = unique("replayed");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(1)
        .send()
        .await
        .expect("stream");
    name
}

async fn records_on(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, Vec<u8>)> {
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("shards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator");
        let got = kinesis
            .get_records()
            .shard_iterator(iterator.shard_iterator().unwrap())
            .send()
            .await
            .expect("records");
        out.extend(got.records().iter().map(|r| {
            (
                r.partition_key().unwrap_or_default().to_string(),
                r.data().as_ref().to_vec(),
            )
        }));
    }
    out
}

#[tokio::test]
async fn dead_letters_the_fixed_schema_accepts_go_back_on_the_stream_and_the_rest_are_counted() {
    let (s3, bucket) = s3_with_bucket("replay-dl").await;
    let sdk = sdk_config(moto(), REGION).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    // The deployed schema wrongly requires `ward`, which no producer sends:
    // every reading is dead-lettered `missing_field`; one record is not JSON.
    let strict = SHIPPED.replacen(
        r#""fields": ["#,
        r#""fields": [{"name": "ward", "type": "string", "required": true},"#,
        1,
    );
    let f = KinesisToParquet::new(
        StreamConfig {
            schema: Schema::parse(&strict).expect("schema"),
            ..stream_config(&bucket)
        },
        S3Sink::new(s3.clone(), &bucket),
    );
    let mut payloads: Vec<Vec<u8>> = (1..=6)
        .map(|i| reading_on("2026-11-23", i, &format!("10:0{i}:00"), 95))
        .collect();
    payloads.insert(3, b"{not json".to_vec());
    let at = |h| Utc.with_ymd_and_hms(2026, 11, 23, h, 0, 0).unwrap();
    // Four records arrive at 10:00, three at 11:00.
    let mut records = records_of(0, 0, at(10), &payloads[..4]);
    records.extend(records_of(0, 4, at(11), &payloads[4..]));
    let event = kinesis_event(
        &stream_arn(REGION, "vent"),
        "shardId-000000000000",
        &records,
    );
    let (summary, _) = f.invoke(&event).await.expect("invoked");
    assert_eq!((summary.good, summary.bad), (0, 7));

    let name = stream(&kinesis).await;
    // The fix is deployed: the shipped schema, without `ward`.
    let decoder =
        decoder_from(|k| (k == vars::SCHEMA).then(|| SHIPPED.to_string())).expect("the decoder");
    let all = Selection {
        bucket: bucket.clone(),
        prefix: "dead-letters/v/".into(),
        ..Selection::default()
    };
    let dry = replay(&s3, &kinesis, &name, &all, Some(&decoder), true)
        .await
        .expect("dry run");
    let expected = Report {
        read: 7,
        selected: 7,
        sent: 6,
        still_failing: [("invalid_json".to_string(), 1)].into(),
        unreadable: 0,
    };
    assert_eq!(dry, expected);
    assert!(
        records_on(&kinesis, &name).await.is_empty(),
        "a dry run puts nothing"
    );

    // Only those that arrived at 11:00, then the rest: each reading once.
    let later = Selection {
        from: Some(at(11)),
        ..all.clone()
    };
    let sent = replay(&s3, &kinesis, &name, &later, Some(&decoder), false)
        .await
        .expect("replay");
    assert_eq!((sent.selected, sent.sent), (3, 3));
    let earlier = Selection {
        to: Some(at(11)),
        ..all.clone()
    };
    let sent = replay(&s3, &kinesis, &name, &earlier, Some(&decoder), false)
        .await
        .expect("replay");
    assert_eq!((sent.selected, sent.sent), (4, 3));
    assert_eq!(sent.still_failing, [("invalid_json".to_string(), 1)].into());
    let on_stream = records_on(&kinesis, &name).await;
    let data: BTreeSet<Vec<u8>> = on_stream.iter().map(|(_, d)| d.clone()).collect();
    let good: BTreeSet<Vec<u8>> = payloads
        .iter()
        .filter(|p| p.as_slice() != b"{not json")
        .cloned()
        .collect();
    assert_eq!(on_stream.len(), 6);
    assert_eq!(data, good);
    assert!(on_stream
        .iter()
        .all(|(key, _)| key.starts_with("shardId-000000000000/")));

    // By reason, unchecked: the record that is not JSON goes as it is.
    let bad_json = Selection {
        reasons: vec!["invalid_json".into()],
        ..all
    };
    let report = replay(&s3, &kinesis, &name, &bad_json, None, true)
        .await
        .expect("dry run");
    assert_eq!((report.selected, report.sent), (1, 1));
}

/// The local stack of a small local run, with both stream consumers
/// polling every shard (Lambda's event source mappings) while `work` runs.
async fn with_local_mappings<T>(
    done: &lake_tools::local_run::LocalRun,
    sdk: &aws_config::SdkConfig,
    work: impl std::future::Future<Output = T>,
) -> T {
    use lake_tools::event_source::{MappingSettings, ShardPoller};
    use lake_tools::local_run::functions::{Consumers, LocalMetrics};
    use lake_tools::local_run::stack::ids;
    use lake_tools::runtime::invoke_stream;
    let stack = &done.stack;
    let consumers = Consumers::new(stack, &LocalMetrics::default())
        .await
        .expect("the consumers");
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    let (stream, arn) = (stack.name(ids::STREAM), stack.attribute(ids::STREAM, "Arn"));
    let shards = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .expect("shards");
    let settings = MappingSettings {
        batch_size: 500,
        maximum_retry_attempts: 10,
    };
    let (mut k2p, mut ds) = (Vec::new(), Vec::new());
    for shard in shards.shards() {
        let id = shard.shard_id();
        k2p.push(
            ShardPoller::open(&kinesis, &stream, &arn, id, &settings)
                .await
                .expect("poller"),
        );
        ds.push(
            ShardPoller::open(&kinesis, &stream, &arn, id, &settings)
                .await
                .expect("poller"),
        );
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let consumers = &consumers;
    let mappings = async {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            for p in &mut k2p {
                p.drain(&kinesis, |event| async move {
                    let out =
                        invoke_stream(&event, |e| consumers.kinesis_to_parquet.handle(e)).await?;
                    Ok(out.response)
                })
                .await
                .expect("kinesis-to-parquet's mapping");
            }
            for p in &mut ds {
                p.drain(&kinesis, |event| async move {
                    let out = invoke_stream(&event, |e| consumers.device_status.handle(e)).await?;
                    Ok(out.response)
                })
                .await
                .expect("device-status's mapping");
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let work = async {
        let out = work.await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    };
    tokio::join!(work, mappings).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_finds_its_readings_in_the_lake_and_the_windows_of_the_local_stack() {
    use lake_tools::local_run::{run, Options};
    use lake_tools::smoke::{self, Targets};
    let options = Options {
        devices: 2,
        minutes: 5,
        providers: 1,
        ticks: 1,
        quiet: true,
        ..Options::default()
    };
    let done = run(&options).await.expect("local run");
    let sdk = integration_tests::sdk_config(&done.moto.endpoint, &options.region).await;
    let targets = Targets::from_outputs(&done.stack.outputs()).expect("the outputs it needs");
    let stages = with_local_mappings(&done, &sdk, async {
        smoke::run(&sdk, &targets, 120, std::time::Duration::from_secs(60)).await
    })
    .await
    .expect("the smoke test passes");
    let found: Vec<(&str, &str)> = stages
        .iter()
        .map(|s| (s.name.as_str(), s.found.as_str()))
        .collect();
    let today = Utc::now().date_naive();
    assert_eq!(
        found,
        [
            ("put on the stream", "120 readings"),
            ("in the lake", "120 of 120 rows"),
            ("in the windows table", "5 of 5 devices"),
            ("repartition", format!("{today}: SUCCEEDED").as_str()),
        ]
    );
}

#[test]
fn smoke_exits_non_zero_naming_the_lake_bucket_when_it_is_missing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sdk = runtime.block_on(sdk_config(moto(), REGION));
    let stream = runtime.block_on(stream(&aws_sdk_kinesis::Client::new(&sdk)));
    let bucket = unique("no-lake");
    let outputs = serde_json::json!([
        {"OutputKey": "StreamName", "OutputValue": stream},
        {"OutputKey": "LakeBucketName", "OutputValue": bucket},
        {"OutputKey": "LakeUri", "OutputValue": format!("s3://{bucket}/raw/v/")},
        {"OutputKey": "DeviceStatusWindowsTableName", "OutputValue": "windows"},
        {"OutputKey": "RepartitionStateMachineArn", "OutputValue": "arn:aws:states:us-east-1:123456789012:stateMachine:x"},
    ]);
    let file = std::env::temp_dir().join(format!("{}.json", unique("outputs")));
    std::fs::write(&file, outputs.to_string()).unwrap();
    let out = std::process::Command::new(integration_tests::function_binary("smoke"))
        .arg("--outputs")
        .arg(&file)
        .env("AWS_ENDPOINT_URL", moto())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("smoke runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("the lake bucket {bucket} does not exist")),
        "{stderr}"
    );
    // Nothing was put on the stream.
    let on_stream = runtime.block_on(records_on(&aws_sdk_kinesis::Client::new(&sdk), &stream));
    assert!(on_stream.is_empty());
}

#[tokio::test]
async fn a_log_events_dead_letter_replays_as_an_envelope_the_function_reads() {
    use lake_tools::cloudwatch_logs::{data_message, gzip, LogEvent};
    let (s3, bucket) = s3_with_bucket("replay-cwl").await;
    let sdk = sdk_config(moto(), REGION).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let strict = SHIPPED.replacen(
        r#""fields": ["#,
        r#""fields": [{"name": "ward", "type": "string", "required": true},"#,
        1,
    );
    let format = || {
        telemetry_lake::config::format_from(&|k: &str| {
            (k == vars::FORMAT).then(|| "cloudwatch-logs".to_string())
        })
        .expect("the format")
    };
    let function = |schema: &str| {
        KinesisToParquet::new(
            StreamConfig {
                schema: Schema::parse(schema).expect("schema"),
                format: format(),
                ..stream_config(&bucket)
            },
            S3Sink::new(s3.clone(), &bucket),
        )
    };
    let message = |i: i64| String::from_utf8(reading_on("2026-11-23", i, "10:00:00", 95)).unwrap();
    let events = [
        LogEvent::new(1_763_892_000_000, 0, message(1)),
        LogEvent::new(1_763_892_000_001, 1, "{not json"),
        LogEvent::new(1_763_892_000_002, 2, message(2)),
    ];
    let envelope = gzip(&data_message("/ward-3/ventilators", "vent-1", &events));
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let event = |payloads: &[Vec<u8>]| {
        kinesis_event(
            &stream_arn(REGION, "vent"),
            "shardId-000000000000",
            &records_of(0, 0, at, payloads),
        )
    };
    let (summary, _) = function(&strict)
        .invoke(&event(&[envelope]))
        .await
        .expect("invoked");
    assert_eq!((summary.good, summary.bad), (0, 3));

    // The fix: the shipped schema. Each event's letter is checked on its own.
    let name = stream(&kinesis).await;
    let decoder = decoder_from(|k| match k {
        vars::SCHEMA => Some(SHIPPED.to_string()),
        vars::FORMAT => Some("cloudwatch-logs".to_string()),
        _ => None,
    })
    .expect("the decoder");
    let all = Selection {
        bucket: bucket.clone(),
        prefix: "dead-letters/v/".into(),
        ..Selection::default()
    };
    let sent = replay(&s3, &kinesis, &name, &all, Some(&decoder), false)
        .await
        .expect("replay");
    assert_eq!((sent.selected, sent.sent), (3, 2));
    assert_eq!(sent.still_failing, [("invalid_json".to_string(), 1)].into());

    // What went back on the stream is two one-event envelopes, which the
    // fixed function lands as the two readings.
    let replayed: Vec<Vec<u8>> = records_on(&kinesis, &name)
        .await
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(replayed.len(), 2);
    let (summary, _) = function(SHIPPED)
        .invoke(&event(&replayed))
        .await
        .expect("invoked");
    assert_eq!((summary.good, summary.bad), (2, 0));
}
