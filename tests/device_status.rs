//! `device-status` and `reference-change-flag` against DynamoDB, DynamoDB
//! Streams and S3 on moto: statuses, sliding windows, exactly-once counting
//! under Lambda retries, the change flag reaching two consumers, dead
//! letters and throttling.

use std::collections::{BTreeMap, HashMap};

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use chrono::{NaiveDateTime, TimeZone, Utc};
use device_status::DeviceStatus;
use integration_tests::{
    dead_letters_under, failures, kpl_record, moto, s3_client, sdk_config, unique, window_items,
    Fault, FaultProxy, StreamFunction, REGION,
};
use lake_tools::kinesis_event::{sequence_number, stream_arn, StreamRecord};
use reference_change_flag::ReferenceChangeFlag;
use serde_json::{json, Value};
use telemetry_lake::config::vars::SCHEMA;
use telemetry_lake::config::vars::{
    CHANGE_FLAG_BUCKET, CHANGE_FLAG_CHECK_SECONDS, DEAD_LETTER_BUCKET, REFERENCE_TABLE,
    WINDOWS_TABLE, WRITE_CONCURRENCY,
};
use telemetry_lake::device_status::change_flag::{
    ChangeFlag, ChangeFlagStore, FlagLocation, Probe,
};
use telemetry_lake::device_status::config::DeviceStatusConfig;
use telemetry_lake::device_status::reference::{ReferenceCache, ReferenceTable};
use telemetry_lake::lake::writer::S3Sink;
use telemetry_lake::stream::dead_letter::{DeadLetter, Scope};

const SCHEMA_JSON: &str = include_str!("../config/ventilator.schema.json");
const FLAG_KEY: &str = "reference/change-flag.json";
const DAY: i64 = 86_400;

// ------------------------------------------------------------------ setup --

/// A reference table (with a KEYS_ONLY stream), a windows table and a bucket
/// for the change flag and the dead letters, all new.
struct Setup {
    dynamodb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    reference_table: String,
    windows_table: String,
    bucket: String,
    /// More configuration (the record format, for example).
    env: Vec<(&'static str, String)>,
}

/// Normal ranges (o2stats, pressurecontrol, minutevolume), inclusive.
type Ranges = [(f64, f64); 3];

const RANGES: Ranges = [(90.0, 100.0), (10.0, 20.0), (5.0, 8.0)];

impl Setup {
    async fn new() -> Self {
        let sdk = sdk_config(moto(), REGION).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let s3 = s3_client(&sdk);
        let (reference_table, windows_table, bucket) = (
            unique("reference"),
            unique("windows"),
            unique("device-status"),
        );
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("bucket");
        let attr = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .expect("attribute")
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .expect("key")
        };
        dynamodb
            .create_table()
            .table_name(&reference_table)
            .attribute_definitions(attr("ventilatorid", ScalarAttributeType::N))
            .key_schema(key("ventilatorid", KeyType::Hash))
            .billing_mode(BillingMode::PayPerRequest)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::KeysOnly)
                    .build()
                    .expect("stream"),
            )
            .send()
            .await
            .expect("reference table");
        dynamodb
            .create_table()
            .table_name(&windows_table)
            .attribute_definitions(attr("pk", ScalarAttributeType::S))
            .attribute_definitions(attr("sk", ScalarAttributeType::S))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("windows table");
        Setup {
            dynamodb,
            s3,
            reference_table,
            windows_table,
            bucket,
            env: Vec::new(),
        }
    }

    async fn put_ranges(&self, device: i64, r: Ranges) {
        let n = |v: f64| AttributeValue::N(v.to_string());
        self.dynamodb
            .put_item()
            .table_name(&self.reference_table)
            .item("ventilatorid", AttributeValue::N(device.to_string()))
            .item("o2_stats_min", n(r[0].0))
            .item("o2_stats_max", n(r[0].1))
            .item("pressure_control_min", n(r[1].0))
            .item("pressure_control_max", n(r[1].1))
            .item("minute_volume_min", n(r[2].0))
            .item("minute_volume_max", n(r[2].1))
            .send()
            .await
            .expect("put reference row");
    }

    fn config(&self) -> DeviceStatusConfig {
        let mut vars = HashMap::from([
            (REFERENCE_TABLE, self.reference_table.clone()),
            (WINDOWS_TABLE, self.windows_table.clone()),
            (CHANGE_FLAG_BUCKET, self.bucket.clone()),
            (DEAD_LETTER_BUCKET, self.bucket.clone()),
            (CHANGE_FLAG_CHECK_SECONDS, "0".to_string()),
            // One write at a time, in window order: which write a fault hits is known.
            (WRITE_CONCURRENCY, "1".to_string()),
            (SCHEMA, SCHEMA_JSON.to_string()),
        ]);
        vars.extend(self.env.iter().cloned());
        DeviceStatusConfig::from_lookup(|k| vars.get(k).cloned()).expect("config")
    }

    fn flag_store(&self, s3: aws_sdk_s3::Client) -> ChangeFlagStore {
        ChangeFlagStore::new(
            s3,
            FlagLocation {
                bucket: self.bucket.clone(),
                key: FLAG_KEY.to_string(),
            },
        )
    }

    /// A consumer instance with its own cache, its DynamoDB calls going to
    /// `endpoint` (moto or a fault proxy) with `max_attempts` SDK attempts.
    async fn consumer_via(&self, endpoint: &str, max_attempts: u32) -> DeviceStatus<S3Sink> {
        self.consumer_with(endpoint, max_attempts, self.s3.clone())
            .await
    }

    /// A consumer instance as [`Setup::consumer_via`], reading the change
    /// flag with `flag_s3`.
    async fn consumer_with(
        &self,
        endpoint: &str,
        max_attempts: u32,
        flag_s3: aws_sdk_s3::Client,
    ) -> DeviceStatus<S3Sink> {
        self.consumer_of(self.config(), endpoint, max_attempts, flag_s3)
            .await
    }

    /// A consumer instance of `config`, as [`Setup::consumer_with`].
    async fn consumer_of(
        &self,
        config: DeviceStatusConfig,
        endpoint: &str,
        max_attempts: u32,
        flag_s3: aws_sdk_s3::Client,
    ) -> DeviceStatus<S3Sink> {
        let sdk = sdk_config(endpoint, REGION).await;
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .retry_config(
                    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                        .with_max_attempts(max_attempts),
                )
                .build(),
        );
        let table = ReferenceTable {
            client: dynamodb.clone(),
            table: config.reference_table.clone(),
            key_attribute: config.reference_key_attribute.clone(),
            metrics: config.metrics.clone(),
        };
        let cache = ReferenceCache::new(table, self.flag_store(flag_s3), config.change_flag_check);
        let sink = S3Sink::new(self.s3.clone(), &self.bucket);
        DeviceStatus::new(&config, cache, dynamodb, sink).expect("function")
    }

    async fn consumer(&self) -> DeviceStatus<S3Sink> {
        self.consumer_via(moto(), 3).await
    }

    /// Every window item, keyed by (pk, window start).
    async fn windows(&self) -> BTreeMap<(String, String), Window> {
        window_items(&self.dynamodb, &self.windows_table)
            .await
            .into_iter()
            .map(|(key, i)| {
                let s = |a: &str| i[a].as_s().expect(a).clone();
                let n = |a: &str| i[a].as_n().expect(a).parse::<f64>().expect(a);
                let w = Window {
                    device: s("device"),
                    status: s("status"),
                    window_end: s("window_end"),
                    count: n("count") as u64,
                    avgs: [
                        n("avg_o2stats"),
                        n("avg_pressurecontrol"),
                        n("avg_minutevolume"),
                    ],
                    sums: [
                        n("sum_o2stats"),
                        n("sum_pressurecontrol"),
                        n("sum_minutevolume"),
                    ],
                    expires_at: n("expires_at") as i64,
                    watermarks: i
                        .iter()
                        .filter(|(k, _)| k.starts_with("wm_"))
                        .map(|(k, v)| (k.clone(), v.as_s().expect("wm").clone()))
                        .collect(),
                };
                (key, w)
            })
            .collect()
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        dead_letters_under(&self.s3, &self.bucket, "dead-letters/device-status/").await
    }

    async fn flag(&self) -> ChangeFlag {
        self.flag_store(self.s3.clone())
            .read()
            .await
            .expect("read flag")
            .expect("flag exists")
            .1
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Window {
    device: String,
    status: String,
    window_end: String,
    count: u64,
    avgs: [f64; 3],
    sums: [f64; 3],
    expires_at: i64,
    watermarks: BTreeMap<String, String>,
}

// ---------------------------------------------------------------- records --

/// One reading: device, event time (`HH:MM:SS` on 2026-11-23), o2stats,
/// pressurecontrol, minutevolume.
#[derive(Debug, Clone, Copy)]
struct Reading {
    device: i64,
    time: &'static str,
    o2: i64,
    pressure: i64,
    volume: i64,
}

fn r(device: i64, time: &'static str, o2: i64, pressure: i64, volume: i64) -> Reading {
    Reading {
        device,
        time,
        o2,
        pressure,
        volume,
    }
}

impl Reading {
    fn doc(&self) -> Value {
        json!({
            "ventilatorid": self.device,
            "eventtime": format!("2026-11-23 {}", self.time),
            "serialnumber": format!("SN-{}", self.device),
            "pressurecontrol": self.pressure,
            "o2stats": self.o2,
            "minutevolume": self.volume,
            "manufacturer": "Acme",
        })
    }

    fn epoch(&self) -> i64 {
        NaiveDateTime::parse_from_str(&format!("2026-11-23 {}", self.time), "%Y-%m-%d %H:%M:%S")
            .expect("time")
            .and_utc()
            .timestamp()
    }

    fn values(&self) -> [f64; 3] {
        [self.o2 as f64, self.pressure as f64, self.volume as f64]
    }
}

/// A Kinesis event of payloads on `shard`, with sequence numbers from `first`.
fn event(shard: u32, first: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    let arrival = Utc.with_ymd_and_hms(2026, 11, 23, 10, 30, 0).unwrap();
    let records: Vec<StreamRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, data)| StreamRecord {
            data: data.clone(),
            partition_key: "pk".into(),
            arrival,
            sequence_number: sequence_number(shard, first + i as u64),
        })
        .collect();
    integration_tests::kinesis_event(
        &stream_arn(REGION, "telemetry"),
        &format!("shardId-{shard:012}"),
        &records,
    )
}

fn readings_event(shard: u32, first: u64, readings: &[Reading]) -> Vec<u8> {
    let payloads: Vec<Vec<u8>> = readings
        .iter()
        .map(|r| r.doc().to_string().into_bytes())
        .collect();
    event(shard, first, &payloads)
}

// -------------------------------------------------------------- expected --

/// What the windows table must hold, computed here from the readings and the
/// statuses the test states: every 10-minute window starting at a multiple of
/// 5 minutes that contains the reading.
fn expected(readings: &[(Reading, &str)]) -> BTreeMap<(String, String), (u64, [f64; 3])> {
    let mut out: BTreeMap<(String, String), (u64, [f64; 3])> = BTreeMap::new();
    for (reading, status) in readings {
        let t = reading.epoch();
        for start in (t - 900..=t).filter(|s| s % 300 == 0 && *s <= t && t < s + 600) {
            let key = (
                format!("{}#{status}", reading.device),
                Utc.timestamp_opt(start, 0)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            );
            let e = out.entry(key).or_insert((0, [0.0; 3]));
            e.0 += 1;
            for (s, v) in e.1.iter_mut().zip(reading.values()) {
                *s += v;
            }
        }
    }
    out
}

/// Asserts the windows table holds exactly `expected` (counts, sums and
/// averages), with ends and TTLs derived from each start.
async fn assert_windows(setup: &Setup, readings: &[(Reading, &str)]) {
    let expected = expected(readings);
    let actual = setup.windows().await;
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "window items"
    );
    for (key, (count, sums)) in &expected {
        let w = &actual[key];
        assert_eq!(w.count, *count, "count of {key:?}");
        let (device, status) = key.0.split_once('#').unwrap();
        assert_eq!((w.device.as_str(), w.status.as_str()), (device, status));
        assert_eq!(&w.sums, sums, "sums of {key:?}");
        for (m, (actual, sum)) in w.avgs.iter().zip(sums).enumerate() {
            let avg = sum / *count as f64;
            assert!(
                (actual - avg).abs() < 1e-9,
                "avg {m} of {key:?}: {actual} != {avg}"
            );
        }
        let start = chrono::DateTime::parse_from_rfc3339(&key.1)
            .unwrap()
            .timestamp();
        let end = Utc.timestamp_opt(start + 600, 0).unwrap();
        assert_eq!(w.window_end, end.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        assert_eq!(w.expires_at, start + 600 + 7 * DAY, "TTL of {key:?}");
    }
}

// ------------------------------------------------------------------ tests --

#[tokio::test]
async fn statuses_counts_and_averages_per_window() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    setup
        .put_ranges(2, [(80.0, 85.0), (1.0, 2.0), (1.0, 1.0)])
        .await;
    let function = setup.consumer().await;

    let readings = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:03:10", 90, 20, 8), "GREEN"), // every bound is inclusive
        (r(1, "10:04:59", 100, 10, 5), "GREEN"),
        (r(1, "10:06:00", 101, 15, 6), "ORANGE"), // one out
        (r(1, "10:06:30", 101, 21, 6), "ORANGE"), // two out
        (r(1, "10:07:30", 80, 30, 2), "RED"),     // all out
        (r(1, "10:12:00", 89, 9, 9), "RED"),
        (r(2, "10:05:00", 82, 2, 1), "GREEN"), // on a window boundary
        (r(2, "10:09:59", 82, 3, 1), "ORANGE"),
        (r(3, "10:02:00", 95, 15, 6), "UNKNOWN"), // no reference row
        (r(3, "10:08:00", 1, 1, 1), "UNKNOWN"),
    ];
    let plain: Vec<Reading> = readings.iter().map(|(r, _)| *r).collect();
    let (summary, response) = function
        .invoke(&readings_event(0, 1, &plain))
        .await
        .expect("process");
    assert!(failures(&response).is_empty());
    assert_eq!((summary.records, summary.good, summary.bad), (11, 11, 0));
    assert_eq!(summary.unknown_devices, 1);
    assert_windows(&setup, &readings).await;

    // The RED reading at 10:07:30 is in both windows that contain it.
    let w = setup.windows().await;
    let red_1000 = &w[&("1#RED".to_string(), "2026-11-23T10:00:00Z".to_string())];
    let red_1005 = &w[&("1#RED".to_string(), "2026-11-23T10:05:00Z".to_string())];
    assert_eq!((red_1000.count, red_1000.avgs), (1, [80.0, 30.0, 2.0]));
    assert_eq!(red_1005.count, 2);
    assert_eq!(red_1005.avgs, [84.5, 19.5, 5.5]);
    // The window item records how far shard 0 has been applied.
    assert_eq!(
        red_1005.watermarks,
        BTreeMap::from([("wm_shardId-000000000000".to_string(), sequence_number(0, 7))])
    );
}

#[tokio::test]
async fn the_same_batch_twice_counts_once() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let function = setup.consumer().await;
    let readings = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:06:00", 101, 15, 6), "ORANGE"),
        (r(1, "10:07:00", 96, 16, 7), "GREEN"),
    ];
    let plain: Vec<Reading> = readings.iter().map(|(r, _)| *r).collect();
    let batch = readings_event(0, 1, &plain);
    let (first, _) = function.invoke(&batch).await.expect("first");
    // Five status windows in three items: 09:55 (GREEN), 10:00 (GREEN and
    // ORANGE), 10:05 (GREEN and ORANGE).
    assert_eq!(first.windows.written, 3);
    let (second, response) = function.invoke(&batch).await.expect("retry");
    assert!(failures(&response).is_empty());
    assert_eq!(
        (second.windows.written, second.windows.already_applied),
        (0, 3)
    );
    assert_windows(&setup, &readings).await;
}

#[tokio::test]
async fn a_retry_from_the_reported_checkpoint_with_more_records_counts_each_once() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    setup.put_ranges(2, RANGES).await;
    let proxy = FaultProxy::start(moto()).await;
    // One SDK attempt: the single injected throttle fails exactly one write.
    let function = setup.consumer_via(&proxy.endpoint, 1).await;

    let first = [
        (r(2, "10:01:00", 95, 15, 6), "GREEN"),
        (r(2, "10:02:00", 50, 50, 50), "RED"),
        (r(1, "10:03:00", 95, 15, 6), "GREEN"), // the only record of 1#GREEN 09:55
        (r(2, "10:04:00", 96, 16, 7), "GREEN"),
        (r(1, "10:08:00", 97, 17, 7), "GREEN"),
        (r(2, "10:09:00", 101, 15, 6), "ORANGE"),
    ];
    let plain: Vec<Reading> = first.iter().map(|(r, _)| *r).collect();
    // Windows are written in key order; 1#GREEN 09:55 comes first and fails.
    proxy.inject(
        Fault::aws_json(
            "DynamoDB_20120810.UpdateItem",
            400,
            "ProvisionedThroughputExceededException",
        )
        .times(1),
    );
    let (summary, response) = function
        .invoke(&readings_event(0, 1, &plain))
        .await
        .expect("process");
    assert_eq!(proxy.injected(), 1);
    assert_eq!(summary.windows.failed.len(), 1);
    assert_eq!(summary.windows.failed[0].0.device, "1");
    // Lambda retries from the failed window's first record, the third.
    assert_eq!(failures(&response), [sequence_number(0, 3)]);
    let partial = setup.windows().await;
    assert!(!partial.contains_key(&("1#GREEN".to_string(), "2026-11-23T09:55:00Z".to_string())));
    let g = &partial[&("1#GREEN".to_string(), "2026-11-23T10:00:00Z".to_string())];
    assert_eq!(
        g.count, 2,
        "the window that did not fail holds both readings"
    );

    // Lambda redelivers from the checkpoint, with records that arrived since.
    let retry = [
        first[2],
        first[3],
        first[4],
        first[5],
        (r(1, "10:04:00", 91, 11, 5), "GREEN"),
        (r(2, "10:11:00", 40, 40, 40), "RED"),
    ];
    let plain: Vec<Reading> = retry.iter().map(|(r, _)| *r).collect();
    let (summary, response) = function
        .invoke(&readings_event(0, 3, &plain))
        .await
        .expect("retry");
    assert!(
        failures(&response).is_empty(),
        "{:?}",
        summary.windows.failed
    );
    let mut all = first.to_vec();
    all.extend_from_slice(&retry[4..]);
    assert_windows(&setup, &all).await;
}

#[tokio::test]
async fn batches_from_two_shards_add_up() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let a = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:02:00", 93, 12, 5), "GREEN"),
    ];
    let b = [
        (r(1, "10:03:00", 99, 19, 8), "GREEN"),
        (r(1, "10:06:00", 101, 15, 6), "ORANGE"),
    ];
    let (fa, fb) = (setup.consumer().await, setup.consumer().await);
    let plain = |x: &[(Reading, &str)]| x.iter().map(|(r, _)| *r).collect::<Vec<_>>();
    // The same sequence numbers on both shards: watermarks are per shard.
    fa.invoke(&readings_event(0, 1, &plain(&a)))
        .await
        .expect("shard 0");
    fb.invoke(&readings_event(1, 1, &plain(&b)))
        .await
        .expect("shard 1");
    let all: Vec<(Reading, &str)> = a.iter().chain(&b).copied().collect();
    assert_windows(&setup, &all).await;
    let w = setup.windows().await;
    let g = &w[&("1#GREEN".to_string(), "2026-11-23T10:00:00Z".to_string())];
    assert_eq!(g.count, 3);
    // The item's watermarks cover every status of the window: shard 1's
    // ORANGE reading at 10:06 is its second record.
    assert_eq!(
        g.watermarks,
        BTreeMap::from([
            ("wm_shardId-000000000000".to_string(), sequence_number(0, 2)),
            ("wm_shardId-000000000001".to_string(), sequence_number(1, 2)),
        ])
    );
}

#[tokio::test]
async fn a_window_written_since_it_was_read_is_read_again() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let a = [(r(1, "10:01:00", 95, 15, 6), "GREEN")];
    let b = [(r(1, "10:02:00", 91, 11, 6), "GREEN")];
    let plain = |x: &[(Reading, &str)]| x.iter().map(|(r, _)| *r).collect::<Vec<_>>();
    setup
        .consumer()
        .await
        .invoke(&readings_event(0, 1, &plain(&a)))
        .await
        .expect("shard 0");

    // Shard 1's consumer reads the two windows before shard 0 wrote them: a
    // stale BatchGetItem answer saying they do not exist. Its conditional
    // writes fail, it reads each item again and adds to what is there.
    let proxy = FaultProxy::start(moto()).await;
    proxy.inject(
        Fault {
            method: "POST",
            path_contains: "/".into(),
            target: Some("DynamoDB_20120810.BatchGetItem".into()),
            status: 200,
            content_type: "application/x-amz-json-1.0",
            body: json!({"Responses": {setup.windows_table.clone(): []}, "UnprocessedKeys": {}})
                .to_string(),
            times: None,
            request_body_contains: None,
        }
        .times(1),
    );
    let function = setup.consumer_via(&proxy.endpoint, 1).await;
    let (summary, response) = function
        .invoke(&readings_event(1, 1, &plain(&b)))
        .await
        .expect("shard 1");
    assert_eq!(proxy.injected(), 1);
    assert!(failures(&response).is_empty());
    assert_eq!(summary.windows.written, 2);
    let all: Vec<(Reading, &str)> = a.iter().chain(&b).copied().collect();
    assert_windows(&setup, &all).await;
}

/// A reading as a CSV line in the schema's column order.
fn csv_line(r: &Reading) -> String {
    format!(
        "{},2026-11-23 {},SN-{},{},{},{},Acme",
        r.device, r.time, r.device, r.pressure, r.o2, r.volume
    )
}

#[tokio::test]
async fn csv_records_in_kpl_aggregates_go_through_the_shared_decode_path() {
    let mut setup = Setup::new().await;
    setup.env.push(("FORMAT", "csv".to_string()));
    setup.put_ranges(1, RANGES).await;
    let function = setup.consumer().await;
    let good = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:02:00", 50, 15, 6), "ORANGE"),
        (r(1, "10:03:00", 95, 15, 6), "GREEN"),
    ];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, csv_line(&good[1].0).as_bytes()).unwrap();
    let mut bad_md5 = kpl_record(&[csv_line(&good[0].0).into_bytes()]);
    let last = bad_md5.len() - 1;
    bad_md5[last] ^= 1;
    let payloads = vec![
        kpl_record(&[
            csv_line(&good[0].0).into_bytes(),
            b"1,2026-11-23 10:01:30,SN-1,high,95,6,Acme".to_vec(),
            gz.finish().unwrap(),
        ]),
        bad_md5,
        csv_line(&good[2].0).into_bytes(),
    ];
    let (summary, response) = function
        .invoke(&event(0, 1, &payloads))
        .await
        .expect("process");
    assert!(failures(&response).is_empty());
    assert_eq!((summary.records, summary.good, summary.bad), (3, 3, 2));
    assert_windows(&setup, &good).await;
    let letters: Vec<(String, Option<u64>, String)> = setup
        .dead_letters()
        .await
        .iter()
        .map(|l| {
            (
                l.sequence_number.clone(),
                l.sub_sequence_number,
                l.reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        letters,
        [
            (sequence_number(0, 1), Some(1), "wrong_type".to_string()),
            (sequence_number(0, 2), None, "kpl_bad_md5".to_string()),
        ]
    );
}

/// A Lambda Kafka event (MSK) of `payloads` on partition 0 of `topic`, from offset 100.
fn kafka_event(topic: &str, payloads: &[Vec<u8>]) -> Value {
    use base64::Engine;
    let records: Vec<Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "topic": topic, "partition": 0, "offset": 100 + i,
                "timestamp": 1_795_860_000_000_i64, "timestampType": "CREATE_TIME",
                "key": null, "headers": [],
                "value": base64::engine::general_purpose::STANDARD.encode(p),
            })
        })
        .collect();
    json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/telemetry/abc-1",
        "records": { format!("{topic}-0"): records },
    })
}

#[tokio::test]
async fn a_kafka_event_is_counted_once_even_when_delivered_twice() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let function = setup.consumer().await;
    let good = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:02:00", 50, 15, 6), "ORANGE"),
    ];
    let event = kafka_event(
        "telemetry",
        &[
            good[0].0.doc().to_string().into_bytes(),
            b"{\"ventilatorid\": 1".to_vec(),
            good[1].0.doc().to_string().into_bytes(),
        ],
    );
    for _ in 0..2 {
        let body = serde_json::to_vec(&event).unwrap();
        let out = lake_tools::runtime::invoke_stream(&body, |e| function.handle(e))
            .await
            .expect("processed");
        assert_eq!(serde_json::to_value(&out).unwrap(), json!({}));
    }
    assert_windows(&setup, &good).await;
    let got: Vec<String> = setup
        .dead_letters()
        .await
        .iter()
        .map(|l| {
            format!(
                "{}/{}/{:?}/{:?}/{}",
                l.stream, l.shard, l.partition, l.offset, l.reason
            )
        })
        .collect();
    assert_eq!(got, ["telemetry/0/Some(0)/Some(101)/invalid_json"]);
}

#[tokio::test]
async fn bad_records_are_dead_lettered_and_the_good_ones_count() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let function = setup.consumer().await;
    let good = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:02:00", 50, 15, 6), "ORANGE"),
    ];
    let mut missing = good[0].0.doc();
    missing.as_object_mut().unwrap().remove("o2stats");
    let mut wrong = good[0].0.doc();
    wrong["pressurecontrol"] = json!("high");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, good[1].0.doc().to_string().as_bytes()).unwrap();
    let payloads = vec![
        good[0].0.doc().to_string().into_bytes(),
        b"{\"ventilatorid\": 1, ".to_vec(),
        missing.to_string().into_bytes(),
        gz.finish().unwrap(),
        wrong.to_string().into_bytes(),
        Vec::new(),
    ];
    let (summary, response) = function
        .invoke(&event(0, 1, &payloads))
        .await
        .expect("process");
    assert!(failures(&response).is_empty());
    assert_eq!((summary.records, summary.good, summary.bad), (6, 2, 4));
    assert_eq!(summary.dead_letter_objects, 1);
    assert_windows(&setup, &good).await;

    let letters = setup.dead_letters().await;
    let reasons: Vec<(String, &str)> = letters
        .iter()
        .map(|l| (l.sequence_number.clone(), l.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (sequence_number(0, 2), "invalid_json"),
            (sequence_number(0, 3), "missing_field"),
            (sequence_number(0, 5), "wrong_type"),
            (sequence_number(0, 6), "empty_payload"),
        ]
    );
    assert!(
        letters[1].detail.contains("o2stats"),
        "{}",
        letters[1].detail
    );
    assert_eq!(
        letters[1].bytes().unwrap(),
        missing.to_string().into_bytes()
    );
}

#[tokio::test]
async fn values_dynamodb_refuses_are_dead_lettered_at_decode_and_the_rest_count() {
    let mut setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    // Device ids as strings and o2stats as a float, so that both can be
    // past what DynamoDB holds.
    setup.env.push((
        "SCHEMA",
        "ventilatorid:string,eventtime:timestamp,serialnumber:string,\
         pressurecontrol:int64,o2stats:float64,minutevolume:int64,manufacturer:string"
            .to_string(),
    ));
    let function = setup.consumer().await;
    let good = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:02:00", 96, 15, 6), "GREEN"),
    ];
    let doc = |r: &Reading| {
        let mut d = r.doc();
        d["ventilatorid"] = json!(r.device.to_string());
        d
    };
    let with = |field: &str, value: Value| {
        let mut d = doc(&good[0].0);
        d[field] = value;
        d.to_string().into_bytes()
    };
    let payloads = vec![
        doc(&good[0].0).to_string().into_bytes(),
        with("o2stats", json!(1e300)),
        with("o2stats", json!(-1e-200)),
        with("ventilatorid", json!("d".repeat(3000))),
        doc(&good[1].0).to_string().into_bytes(),
    ];
    let (summary, response) = function
        .invoke(&event(0, 1, &payloads))
        .await
        .expect("process");
    assert!(failures(&response).is_empty());
    assert_eq!((summary.records, summary.good, summary.bad), (5, 2, 3));
    assert_windows(&setup, &good).await;

    let letters = setup.dead_letters().await;
    let got: Vec<(String, &str, Scope)> = letters
        .iter()
        .map(|l| (l.sequence_number.clone(), l.reason.as_str(), l.scope))
        .collect();
    assert_eq!(
        got,
        [
            (sequence_number(0, 2), "out_of_range", Scope::Document),
            (sequence_number(0, 3), "out_of_range", Scope::Document),
            (sequence_number(0, 4), "out_of_range", Scope::Document),
        ]
    );
    assert!(
        letters[0].detail.contains("field `o2stats`: 1e300"),
        "{}",
        letters[0].detail
    );
    assert!(
        letters[1].detail.contains("-1e-200"),
        "{}",
        letters[1].detail
    );
    assert!(
        letters[2]
            .detail
            .contains("field `ventilatorid`: the device id is 3000 bytes"),
        "{}",
        letters[2].detail
    );
    // The dead letter holds the refused document itself.
    assert_eq!(letters[0].bytes().unwrap(), payloads[1]);
}

/// A record of an Avro container file has no bytes of its own to keep (its
/// block may be deflated): a refused one is kept as the JSON of its values.
#[tokio::test]
async fn a_refused_container_file_record_is_kept_as_the_json_of_its_values() {
    use apache_avro::types::Value as Avro;
    let mut setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    setup.env.push((
        SCHEMA,
        "ventilatorid:int64,eventtime:timestamp,serialnumber:string,\
         pressurecontrol:int64,o2stats:float64,minutevolume:int64,manufacturer:string"
            .to_string(),
    ));
    setup.env.push(("FORMAT", "avro-ocf".to_string()));
    let function = setup.consumer().await;
    let writer = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"reading","fields":[
            {"name":"ventilatorid","type":"long"},{"name":"eventtime","type":"string"},
            {"name":"serialnumber","type":"string"},{"name":"pressurecontrol","type":"long"},
            {"name":"o2stats","type":"double"},{"name":"minutevolume","type":"long"},
            {"name":"manufacturer","type":"string"}]}"#,
    )
    .unwrap();
    let reading = |o2: f64| {
        Avro::Record(vec![
            ("ventilatorid".into(), Avro::Long(1)),
            (
                "eventtime".into(),
                Avro::String("2026-11-23 10:01:00".into()),
            ),
            ("serialnumber".into(), Avro::String("SN-1".into())),
            ("pressurecontrol".into(), Avro::Long(15)),
            ("o2stats".into(), Avro::Double(o2)),
            ("minutevolume".into(), Avro::Long(6)),
            ("manufacturer".into(), Avro::String("Acme".into())),
        ])
    };
    let mut w = apache_avro::Writer::with_codec(
        &writer,
        Vec::new(),
        apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default()),
    );
    w.append(reading(95.0)).unwrap();
    w.append(reading(1e300)).unwrap();
    let file = w.into_inner().unwrap();
    let (summary, response) = function
        .invoke(&event(0, 1, &[file]))
        .await
        .expect("process");
    assert!(failures(&response).is_empty());
    assert_eq!((summary.good, summary.bad), (1, 1));
    assert_windows(&setup, &[(r(1, "10:01:00", 95, 15, 6), "GREEN")]).await;
    let letters = setup.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].reason.as_str(), letters[0].document_index),
        ("out_of_range", 1)
    );
    let kept: Value = serde_json::from_slice(&letters[0].bytes().unwrap()).unwrap();
    assert_eq!(
        kept,
        json!({
            "ventilatorid": 1, "eventtime": "2026-11-23T10:01:00+00:00",
            "serialnumber": "SN-1", "pressurecontrol": 15, "o2stats": 1e300,
            "minutevolume": 6, "manufacturer": "Acme"
        })
    );
}

/// A reading the table refuses as invalid in spite of the decode checks (a
/// `ValidationException`, injected here for every update that carries it):
/// not retried, it is a dead letter of its own and counts nowhere, the
/// readings beside it in the same windows count, and a retry of the batch
/// neither counts nor dead-letters anything again.
#[tokio::test]
async fn a_reading_the_table_refuses_is_a_dead_letter_and_its_neighbours_count() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let proxy = FaultProxy::start(moto()).await;
    // Every update whose sums hold the reading of 7e15.
    proxy.inject(
        Fault::aws_json("DynamoDB_20120810.UpdateItem", 400, "ValidationException")
            .body_contains("70000000000"),
    );
    let function = setup.consumer_via(&proxy.endpoint, 3).await;
    let good = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:02:00", 96, 15, 6), "GREEN"),
    ];
    let payloads = vec![
        good[0].0.doc().to_string().into_bytes(),
        r(1, "10:01:30", 7_000_000_000_000_000, 15, 6)
            .doc()
            .to_string()
            .into_bytes(),
        good[1].0.doc().to_string().into_bytes(),
    ];
    for attempt in 0..2 {
        let (summary, response) = function
            .invoke(&event(0, 1, &payloads))
            .await
            .expect("process");
        assert!(failures(&response).is_empty(), "attempt {attempt}");
        assert!(summary.windows.failed.is_empty(), "{:?}", summary.windows);
        // Refused once, in each of its windows; the retry leaves it out.
        assert_eq!(
            summary.windows.refused.len(),
            1 - attempt,
            "{:?}",
            summary.windows
        );
        assert_windows(&setup, &good).await;
        let letters = setup.dead_letters().await;
        assert_eq!(letters.len(), 1, "attempt {attempt}: {letters:?}");
        assert_eq!(
            (
                letters[0].sequence_number.as_str(),
                letters[0].reason.as_str(),
                letters[0].document_index
            ),
            (sequence_number(0, 2).as_str(), "window_store_refused", 0)
        );
        assert!(
            letters[0].detail.contains("ValidationException"),
            "{}",
            letters[0].detail
        );
        assert_eq!(letters[0].bytes().unwrap(), payloads[1]);
    }
    assert!(proxy.injected() > 0);
}

#[tokio::test]
async fn a_throttled_table_yields_batch_item_failures_and_the_retry_counts_once() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let proxy = FaultProxy::start(moto()).await;
    let function = setup.consumer_via(&proxy.endpoint, 2).await;
    let readings = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:06:00", 101, 15, 6), "ORANGE"),
    ];
    let plain: Vec<Reading> = readings.iter().map(|(r, _)| *r).collect();
    let batch = readings_event(0, 1, &plain);
    proxy.inject(Fault::aws_json(
        "DynamoDB_20120810.UpdateItem",
        400,
        "ProvisionedThroughputExceededException",
    ));
    let (summary, response) = function.invoke(&batch).await.expect("process");
    // The items 09:55, 10:00 (GREEN and ORANGE) and 10:05.
    assert_eq!(summary.windows.failed.len(), 3);
    assert!(summary.windows.failed[0]
        .1
        .contains("ProvisionedThroughputExceeded"));
    // Each of the 3 writes tried twice (the SDK retries throttling).
    assert_eq!(proxy.injected(), 6);
    assert_eq!(failures(&response), [sequence_number(0, 1)]);
    assert!(setup.windows().await.is_empty());

    proxy.heal();
    let (_, response) = function.invoke(&batch).await.expect("retry");
    assert!(failures(&response).is_empty());
    let (_, response) = function.invoke(&batch).await.expect("retried again");
    assert!(failures(&response).is_empty());
    assert_windows(&setup, &readings).await;
}

// ------------------------------------------------------- reference changes --

/// Reads the reference table's stream on moto's DynamoDB Streams API,
/// remembering where it stopped, and hands out Lambda events.
struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    iterator: Option<String>,
}

impl StreamReader {
    async fn open(table: &str) -> Self {
        let sdk = sdk_config(moto(), REGION).await;
        let client = aws_sdk_dynamodbstreams::Client::new(&sdk);
        let streams = client
            .list_streams()
            .table_name(table)
            .send()
            .await
            .expect("list streams");
        let stream_arn = streams.streams()[0].stream_arn().expect("arn").to_string();
        StreamReader {
            client,
            stream_arn,
            iterator: None,
        }
    }

    /// The records written since the last call, as the Lambda event.
    async fn next_event(&mut self) -> DynamoDbEvent {
        let iterator = match self.iterator.take() {
            Some(it) => it,
            None => {
                let described = self
                    .client
                    .describe_stream()
                    .stream_arn(&self.stream_arn)
                    .send()
                    .await
                    .expect("describe stream");
                let shard = described
                    .stream_description()
                    .expect("description")
                    .shards()[0]
                    .shard_id()
                    .expect("shard")
                    .to_string();
                self.client
                    .get_shard_iterator()
                    .stream_arn(&self.stream_arn)
                    .shard_id(shard)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .expect("shard iterator")
                    .shard_iterator
                    .expect("iterator")
            }
        };
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await
            .expect("get records");
        self.iterator = out.next_shard_iterator.clone();
        let records: Vec<Value> = out
            .records()
            .iter()
            .map(|rec| {
                let d = rec.dynamodb().expect("stream record");
                let keys: serde_json::Map<String, Value> = d
                    .keys()
                    .expect("keys")
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            aws_sdk_dynamodbstreams::types::AttributeValue::N(n) => json!({"N": n}),
                            aws_sdk_dynamodbstreams::types::AttributeValue::S(s) => json!({"S": s}),
                            other => panic!("unexpected key type {other:?}"),
                        };
                        (k.clone(), v)
                    })
                    .collect();
                json!({
                    "eventID": rec.event_id(),
                    "eventName": rec.event_name().expect("name").as_str(),
                    "eventVersion": rec.event_version(),
                    "eventSource": rec.event_source(),
                    "awsRegion": rec.aws_region(),
                    "eventSourceARN": self.stream_arn,
                    "dynamodb": {
                        "Keys": keys,
                        "SequenceNumber": d.sequence_number(),
                        "SizeBytes": d.size_bytes(),
                        "StreamViewType": d.stream_view_type().expect("view").as_str(),
                    },
                })
            })
            .collect();
        serde_json::from_value(json!({ "Records": records })).expect("dynamodb event")
    }
}

#[tokio::test]
async fn a_reference_change_reaches_two_consumer_instances() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    setup.put_ranges(2, RANGES).await;
    let mut stream = StreamReader::open(&setup.reference_table).await;
    let flagger = ReferenceChangeFlag::new(setup.flag_store(setup.s3.clone()));

    // The initial inserts go through the flag function too.
    let inserts = stream.next_event().await;
    assert_eq!(inserts.records.len(), 2);
    assert_eq!(inserts.records[0].event_name, "INSERT");
    let flag = flagger
        .process(&inserts)
        .await
        .expect("flag")
        .expect("published");
    assert_eq!(
        (flag.version, flag.changed_keys.clone()),
        (1, vec!["1".to_string(), "2".to_string()])
    );

    // The probe is a conditional GET that moto answers 304 while the flag
    // has not moved.
    let store = setup.flag_store(setup.s3.clone());
    let (etag_v1, _) = store.read().await.expect("read").expect("flag");
    assert_eq!(
        store.probe(Some(&etag_v1)).await.expect("probe"),
        Probe::Unchanged
    );

    let consumers = [setup.consumer().await, setup.consumer().await];
    let reading = r(1, "10:01:00", 95, 15, 6);
    let mut statuses = Vec::new();
    for (i, c) in consumers.iter().enumerate() {
        let (s, _) = c
            .invoke(&readings_event(i as u32, 1, &[reading]))
            .await
            .expect("before the change");
        statuses.push(s.by_status.keys().map(|s| s.as_str()).collect::<Vec<_>>());
        // A second batch probes the flag (304 Not Modified) and keeps the cache.
        c.invoke(&readings_event(i as u32, 2, &[]))
            .await
            .expect("empty");
        assert_eq!(c.cache().loads().await, 1);
    }
    assert_eq!(statuses, [["GREEN"], ["GREEN"]]);

    // The operator narrows device 1's o2stats range: 95 is now out of range.
    setup
        .dynamodb
        .update_item()
        .table_name(&setup.reference_table)
        .key("ventilatorid", AttributeValue::N("1".into()))
        .update_expression("SET o2_stats_max = :m")
        .expression_attribute_values(":m", AttributeValue::N("94".into()))
        .send()
        .await
        .expect("update reference row");
    let change = stream.next_event().await;
    assert_eq!(change.records.len(), 1);
    assert_eq!(change.records[0].event_name, "MODIFY");
    flagger.process(&change).await.expect("flag");
    let flag = setup.flag().await;
    assert_eq!(
        (flag.version, flag.changed_keys),
        (2, vec!["1".to_string()])
    );
    let moved = store.probe(Some(&etag_v1)).await.expect("probe");
    assert!(
        matches!(&moved, Probe::Changed(Some(etag)) if *etag != etag_v1),
        "{moved:?}"
    );

    for (i, c) in consumers.iter().enumerate() {
        let (s, _) = c
            .invoke(&readings_event(i as u32, 3, &[reading]))
            .await
            .expect("after the change");
        assert_eq!(
            s.by_status.keys().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["ORANGE"]
        );
        assert_eq!(c.cache().loads().await, 2, "consumer {i} reloaded once");
    }
    let w = setup.windows().await;
    assert_eq!(
        w[&("1#GREEN".to_string(), "2026-11-23T10:00:00Z".to_string())].count,
        2
    );
    assert_eq!(
        w[&("1#ORANGE".to_string(), "2026-11-23T10:00:00Z".to_string())].count,
        2
    );
}

#[tokio::test]
async fn a_flag_writer_that_loses_a_race_retries_with_the_next_version() {
    let setup = Setup::new().await;
    let proxy = FaultProxy::start(moto()).await;
    let sdk = sdk_config(&proxy.endpoint, REGION).await;
    let flagger = ReferenceChangeFlag::new(setup.flag_store(s3_client(&sdk)));
    let event = |key: &str| -> DynamoDbEvent {
        serde_json::from_value(json!({"Records": [{
            "eventID": "1", "eventName": "MODIFY", "awsRegion": REGION,
            "dynamodb": {"Keys": {"ventilatorid": {"N": key}}, "SizeBytes": 1}
        }]}))
        .unwrap()
    };
    flagger.process(&event("1")).await.expect("first");
    // Another writer moved the flag between our read and our write: S3
    // answers 412 to the conditional PUT, and the writer reads again.
    proxy.inject(
        Fault::s3_put(
            FLAG_KEY,
            412,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>PreconditionFailed</Code>\
             <Message>At least one of the pre-conditions you specified did not hold</Message></Error>",
        )
        .times(1),
    );
    let flag = flagger
        .process(&event("7"))
        .await
        .expect("second")
        .expect("flag");
    assert_eq!(proxy.injected(), 1);
    assert_eq!(flag.version, 2);
    assert_eq!(setup.flag().await.changed_keys, ["7"]);
    // An empty batch publishes nothing.
    let empty: DynamoDbEvent = serde_json::from_value(json!({"Records": []})).unwrap();
    assert_eq!(flagger.process(&empty).await.expect("empty"), None);
    assert_eq!(setup.flag().await.version, 2);
}

/// The statuses a batch counted readings under.
fn statuses(s: &device_status::BatchSummary) -> Vec<String> {
    s.by_status.keys().map(|s| s.as_str().to_string()).collect()
}

/// Narrows device 1's o2stats range to 90–94 in the reference table and
/// moves the change flag, as the table's stream would.
async fn narrow_device_1_and_move_the_flag(setup: &Setup) {
    setup
        .put_ranges(1, [(90.0, 94.0), (10.0, 20.0), (5.0, 8.0)])
        .await;
    let flagger = ReferenceChangeFlag::new(setup.flag_store(setup.s3.clone()));
    let change: DynamoDbEvent = serde_json::from_value(json!({"Records": [{
        "eventID": "1", "eventName": "MODIFY", "awsRegion": REGION,
        "dynamodb": {"Keys": {"ventilatorid": {"N": "1"}}, "SizeBytes": 1}
    }]}))
    .unwrap();
    flagger.process(&change).await.expect("flag");
}

#[tokio::test]
async fn an_unreadable_change_flag_keeps_the_loaded_reference_data() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let proxy = FaultProxy::start(moto()).await;
    let flag_s3 = s3_client(&sdk_config(&proxy.endpoint, REGION).await);
    let function = setup.consumer_with(moto(), 3, flag_s3).await;
    let reading = r(1, "10:01:00", 95, 15, 6);
    let (s, _) = function
        .invoke(&readings_event(0, 1, &[reading]))
        .await
        .expect("first batch");
    assert_eq!(statuses(&s), ["GREEN"]);

    // The range changes and the flag says so, but S3 fails every GET of it.
    narrow_device_1_and_move_the_flag(&setup).await;
    proxy.inject(Fault {
        method: "GET",
        path_contains: FLAG_KEY.to_string(),
        target: None,
        status: 500,
        content_type: "application/xml",
        body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>\
               <Message>We encountered an internal error.</Message></Error>"
            .to_string(),
        times: None,
        request_body_contains: None,
    });
    let (s, response) = function
        .invoke(&readings_event(0, 2, &[reading]))
        .await
        .expect("the batch goes on with the loaded data");
    assert!(proxy.injected() > 0);
    assert!(failures(&response).is_empty());
    assert_eq!(statuses(&s), ["GREEN"]);
    assert_eq!(function.cache().loads().await, 1);

    // Once the flag can be read, the next batch reloads.
    proxy.heal();
    let (s, _) = function
        .invoke(&readings_event(0, 3, &[reading]))
        .await
        .expect("after healing");
    assert_eq!(statuses(&s), ["ORANGE"]);
    assert_eq!(function.cache().loads().await, 2);
}

#[tokio::test]
async fn a_failed_reload_keeps_the_loaded_reference_data_and_the_next_batch_reloads() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let proxy = FaultProxy::start(moto()).await;
    let function = setup.consumer_via(&proxy.endpoint, 1).await;
    let reading = r(1, "10:01:00", 95, 15, 6);
    let (s, _) = function
        .invoke(&readings_event(0, 1, &[reading]))
        .await
        .expect("first batch");
    assert_eq!(statuses(&s), ["GREEN"]);

    // The range changes and the flag says so, but the table's Scan fails.
    narrow_device_1_and_move_the_flag(&setup).await;
    proxy.inject(Fault::aws_json(
        "DynamoDB_20120810.Scan",
        400,
        "ProvisionedThroughputExceededException",
    ));
    let (s, response) = function
        .invoke(&readings_event(0, 2, &[reading]))
        .await
        .expect("the batch goes on with the loaded data");
    assert!(proxy.injected() > 0);
    assert!(failures(&response).is_empty());
    assert_eq!(statuses(&s), ["GREEN"]);
    assert_eq!(function.cache().loads().await, 1);

    // Once the table can be read, the next batch reloads.
    proxy.heal();
    let (s, _) = function
        .invoke(&readings_event(0, 3, &[reading]))
        .await
        .expect("after healing");
    assert_eq!(statuses(&s), ["ORANGE"]);
    assert_eq!(function.cache().loads().await, 2);
}

#[tokio::test]
async fn an_unreadable_reference_table_fails_the_batch_for_lambda_to_retry() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let proxy = FaultProxy::start(moto()).await;
    let function = setup.consumer_via(&proxy.endpoint, 1).await;
    let readings = [(r(1, "10:01:00", 95, 15, 6), "GREEN")];
    let batch = readings_event(0, 1, &[readings[0].0]);
    proxy.inject(Fault::aws_json(
        "DynamoDB_20120810.Scan",
        400,
        "ProvisionedThroughputExceededException",
    ));
    let err = function
        .invoke(&batch)
        .await
        .expect_err("no reference data");
    let message = err.to_string();
    assert!(
        message.contains(&setup.reference_table)
            && message.contains("ProvisionedThroughputExceeded"),
        "{message}"
    );
    assert!(setup.windows().await.is_empty());

    proxy.heal();
    let (_, response) = function.invoke(&batch).await.expect("retried batch");
    assert!(failures(&response).is_empty());
    assert_windows(&setup, &readings).await;
}

// ------------------------------------------------------------- Glue table --

#[tokio::test]
async fn the_schema_is_read_from_a_glue_table_and_the_fields_read_are_required() {
    use aws_sdk_glue::types::{Column, DatabaseInput, StorageDescriptor, TableInput};
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let glue = aws_sdk_glue::Client::new(&sdk_config(moto(), REGION).await);
    let database = unique("db").replace('-', "_");
    glue.create_database()
        .database_input(DatabaseInput::builder().name(&database).build().unwrap())
        .send()
        .await
        .expect("create database");
    let column = |name: &str, ty: &str| Column::builder().name(name).r#type(ty).build().unwrap();
    // The ventilator table as a catalog holds it (every column nullable),
    // with an ingest partition key that is not part of the records.
    let mut columns = StorageDescriptor::builder();
    for (name, ty) in [
        ("ventilatorid", "bigint"),
        ("eventtime", "timestamp"),
        ("serialnumber", "string"),
        ("pressurecontrol", "int"),
        ("o2stats", "bigint"),
        ("minutevolume", "bigint"),
        ("manufacturer", "varchar(64)"),
    ] {
        columns = columns.columns(column(name, ty));
    }
    glue.create_table()
        .database_name(&database)
        .table_input(
            TableInput::builder()
                .name("ventilators")
                .storage_descriptor(columns.build())
                .partition_keys(column("ingest_year", "string"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");

    let vars = |source: String| {
        HashMap::from([
            (REFERENCE_TABLE, setup.reference_table.clone()),
            (WINDOWS_TABLE, setup.windows_table.clone()),
            (CHANGE_FLAG_BUCKET, setup.bucket.clone()),
            (DEAD_LETTER_BUCKET, setup.bucket.clone()),
            (CHANGE_FLAG_CHECK_SECONDS, "0".to_string()),
            ("SCHEMA_SOURCE", source),
        ])
    };
    let glue_vars = vars(format!("glue:{database}.ventilators"));
    let config = DeviceStatusConfig::load(|k| glue_vars.get(k).cloned(), || glue.clone())
        .await
        .expect("configuration with the schema from Glue");
    let fields: Vec<(String, &str, bool)> = config
        .schema
        .fields
        .iter()
        .map(|f| (f.name.clone(), f.field_type.name(), f.required))
        .collect();
    let field = |n: &str, t: &'static str, req: bool| (n.to_string(), t, req);
    assert_eq!(
        fields,
        [
            field("ventilatorid", "int64", true),
            field("eventtime", "timestamp", true),
            field("serialnumber", "string", false),
            field("pressurecontrol", "int64", true),
            field("o2stats", "int64", true),
            field("minutevolume", "int64", true),
            field("manufacturer", "string", false),
        ]
    );

    // The function reads records by the catalog's columns: a reading without
    // a metric is dead-lettered, one without its optional serial number counts.
    let function = setup.consumer_of(config, moto(), 3, setup.s3.clone()).await;
    let good = [
        (r(1, "10:01:00", 95, 15, 6), "GREEN"),
        (r(1, "10:02:00", 50, 15, 6), "ORANGE"),
    ];
    let mut no_serial = good[1].0.doc();
    no_serial.as_object_mut().unwrap().remove("serialnumber");
    let mut no_metric = good[0].0.doc();
    no_metric.as_object_mut().unwrap().remove("minutevolume");
    let payloads = vec![
        good[0].0.doc().to_string().into_bytes(),
        no_metric.to_string().into_bytes(),
        no_serial.to_string().into_bytes(),
    ];
    let (summary, response) = function
        .invoke(&event(0, 1, &payloads))
        .await
        .expect("process");
    assert!(failures(&response).is_empty());
    assert_eq!((summary.records, summary.good, summary.bad), (3, 2, 1));
    assert_windows(&setup, &good).await;
    let letters = setup.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (
            letters[0].sequence_number.as_str(),
            letters[0].reason.as_str()
        ),
        (sequence_number(0, 2).as_str(), "missing_field")
    );
    assert!(
        letters[0].detail.contains("minutevolume"),
        "{}",
        letters[0].detail
    );

    // A table that does not exist, or one whose event time is a string,
    // fails the cold start naming what is wrong.
    let missing = vars(format!("glue:{database}.nope"));
    let err = DeviceStatusConfig::load(|k| missing.get(k).cloned(), || glue.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{database}.nope")), "{err}");
    glue.create_table()
        .database_name(&database)
        .table_input(
            TableInput::builder()
                .name("raw")
                .storage_descriptor(
                    StorageDescriptor::builder()
                        .columns(column("ventilatorid", "bigint"))
                        .columns(column("eventtime", "string"))
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
    let raw = vars(format!("glue:{database}.raw"));
    let err = DeviceStatusConfig::load(|k| raw.get(k).cloned(), || glue.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`eventtime` is string, expected timestamp"),
        "{err}"
    );
}

#[tokio::test]
async fn a_fractional_arrival_time_is_read_to_the_millisecond_and_chooses_the_hour() {
    let setup = Setup::new().await;
    setup.put_ranges(1, RANGES).await;
    let function = setup.consumer().await;
    let event = integration_tests::fractional_arrival_event();
    let (summary, response) = function.invoke(&event).await.expect("invoked");
    assert!(failures(&response).is_empty(), "{response:?}");
    assert_eq!((summary.good, summary.bad), (2, 1));
    let keys: Vec<String> = integration_tests::object_keys(&setup.s3, &setup.bucket, "").await;
    assert_eq!(
        keys,
        ["dead-letters/device-status/ingest_year=2026/ingest_month=11/ingest_day=22/ingest_hour=10/vent.shardId-000000000000.2.jsonl"]
    );
    let letters: Vec<(String, String)> = setup
        .dead_letters()
        .await
        .into_iter()
        .map(|l| (l.sequence_number, l.arrival_time))
        .collect();
    assert_eq!(
        letters,
        [("2".to_string(), "2026-11-22T10:59:59.120Z".to_string())]
    );
}
