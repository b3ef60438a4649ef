//! `kinesis-to-parquet` against S3 on moto: what lands in the lake and the
//! dead letters, and what happens when writes fail and Lambda retries.

use std::collections::BTreeMap;
use std::io::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::RecordBatch;
use base64::Engine;
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use integration_tests::{
    dead_letters_under, failures, moto, parquet_objects, s3_client, s3_with_bucket, sdk_config,
    unique, Fault, FaultProxy, StreamFunction, REGION,
};
use kinesis_to_parquet::{BatchSummary, KinesisToParquet};
use lake_tools::kinesis_event::{sequence_number, stream_arn, StreamRecord};
use lake_tools::lake_reader;
use lake_tools::telemetry::{generate, TelemetryOptions};
use serde::Deserialize;
use serde_json::Value;
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake::writer::S3Sink;
use telemetry_lake::stream::dead_letter::Scope;

const LAKE_PREFIX: &str = "raw/ventilator_metrics";
const DL_PREFIX: &str = "dead-letters/ventilator_metrics";

fn config(bucket: &str, max_payload_bytes: usize) -> StreamConfig {
    StreamConfig {
        lake_prefix: LAKE_PREFIX.to_string(),
        dead_letter_prefix: DL_PREFIX.to_string(),
        max_payload_bytes,
        ..integration_tests::stream_config(bucket)
    }
}

fn function(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    max_payload_bytes: usize,
) -> KinesisToParquet<S3Sink> {
    KinesisToParquet::new(
        config(bucket, max_payload_bytes),
        S3Sink::new(s3.clone(), bucket),
    )
}

// ---------------------------------------------------------------- fixture --

#[derive(Deserialize)]
struct Fixture {
    stream_arn: String,
    shard: String,
    max_payload_bytes: usize,
    records: Vec<FixtureRecord>,
}

#[derive(Deserialize)]
struct FixtureRecord {
    arrival: DateTime<Utc>,
    expect: Vec<String>,
    #[serde(default)]
    docs: Vec<Value>,
    text: Option<String>,
    base64: Option<String>,
    compression: Option<String>,
    pad_to: Option<usize>,
}

impl FixtureRecord {
    fn payload(&self) -> Vec<u8> {
        if let Some(b) = &self.base64 {
            return base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("fixture base64");
        }
        let mut text = match &self.text {
            Some(t) => t.clone(),
            None => self
                .docs
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        };
        if let Some(n) = self.pad_to {
            while text.len() < n {
                text.push(' ');
            }
        }
        match self.compression.as_deref() {
            None => text.into_bytes(),
            Some("gzip") => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(text.as_bytes()).expect("gzip");
                e.finish().expect("gzip")
            }
            Some("zstd") => zstd::encode_all(text.as_bytes(), 3).expect("zstd"),
            Some(other) => panic!("unknown compression {other}"),
        }
    }
}

fn load_fixture() -> (Fixture, Vec<StreamRecord>, Vec<u8>) {
    let fx: Fixture =
        serde_json::from_str(include_str!("fixtures/mixed_batch.json")).expect("fixture");
    let records: Vec<StreamRecord> = fx
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| StreamRecord {
            data: r.payload(),
            partition_key: format!("p{i}"),
            arrival: r.arrival,
            sequence_number: sequence_number(3, i as u64),
        })
        .collect();
    let event = to_event(&fx.stream_arn, &fx.shard, &records);
    (fx, records, event)
}

fn to_event(arn: &str, shard: &str, records: &[StreamRecord]) -> Vec<u8> {
    integration_tests::kinesis_event(arn, shard, records)
}

// ------------------------------------------------------------ reading back --

/// One lake row: (id, event time µs, serial, pressure, o2, volume, manufacturer).
type Row = (i64, i64, String, i64, i64, i64, String);

fn rows_of(batch: &RecordBatch) -> Vec<Row> {
    let i = |c: usize| batch.column(c).as_primitive::<Int64Type>().clone();
    let s = |c: usize| batch.column(c).as_string::<i32>().clone();
    let t = batch
        .column(1)
        .as_primitive::<TimestampMicrosecondType>()
        .clone();
    let (id, serial, pc, o2, mv, man) = (i(0), s(2), i(3), i(4), i(5), s(6));
    (0..batch.num_rows())
        .map(|r| {
            (
                id.value(r),
                t.value(r),
                serial.value(r).to_string(),
                pc.value(r),
                o2.value(r),
                mv.value(r),
                man.value(r).to_string(),
            )
        })
        .collect()
}

fn expected_row(doc: &Value) -> Row {
    let micros =
        NaiveDateTime::parse_from_str(doc["eventtime"].as_str().unwrap(), "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_micros();
    (
        doc["ventilatorid"].as_i64().unwrap(),
        micros,
        doc["serialnumber"].as_str().unwrap().to_string(),
        doc["pressurecontrol"].as_i64().unwrap(),
        doc["o2stats"].as_i64().unwrap(),
        doc["minutevolume"].as_i64().unwrap(),
        doc["manufacturer"].as_str().unwrap().to_string(),
    )
}

/// Every object under a prefix with its rows (Parquet) or lines (dead letters).
async fn lake_rows(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Vec<Row>> {
    parquet_objects(s3, bucket, LAKE_PREFIX)
        .await
        .into_iter()
        .map(|(key, batches)| (key, batches.iter().flat_map(rows_of).collect()))
        .collect()
}

/// How many rows the lake's Parquet objects hold in all.
async fn lake_row_count(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    lake_rows(s3, bucket).await.values().map(Vec::len).sum()
}

fn hour_key(prefix: &str, hour: u32, stream: &str, shard: &str, seq: &str, ext: &str) -> String {
    format!("{prefix}/ingest_year=2026/ingest_month=11/ingest_day=22/ingest_hour={hour:02}/{stream}.{shard}.{seq}.{ext}")
}

// ------------------------------------------------------------------ tests --

#[tokio::test]
async fn a_mixed_batch_lands_exactly_the_expected_rows_and_dead_letters() {
    let (s3, bucket) = s3_with_bucket("lake").await;
    let (fx, records, event) = load_fixture();
    let f = function(&s3, &bucket, fx.max_payload_bytes);

    let (_, response) = f.invoke(&event).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    // Objects: one Parquet and one dead-letter object per arrival hour,
    // keyed by the first sequence number of the hour's run.
    let shard = fx.shard.as_str();
    let (s0, s3rd) = (sequence_number(3, 0), sequence_number(3, 3));
    let keys: Vec<String> = integration_tests::object_keys(&s3, &bucket, "").await;
    let mut expected_keys = vec![
        hour_key(DL_PREFIX, 10, "ventilators", shard, &s0, "jsonl"),
        hour_key(DL_PREFIX, 11, "ventilators", shard, &s3rd, "jsonl"),
        hour_key(LAKE_PREFIX, 10, "ventilators", shard, &s0, "snappy.parquet"),
        hour_key(
            LAKE_PREFIX,
            11,
            "ventilators",
            shard,
            &s3rd,
            "snappy.parquet",
        ),
    ];
    expected_keys.sort();
    assert_eq!(keys, expected_keys);

    // Rows: every good document, value by value, in stream order per hour.
    let mut want: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for (i, r) in fx.records.iter().enumerate() {
        let key = if i < 3 {
            &expected_keys[2]
        } else {
            &expected_keys[3]
        };
        for (doc, expect) in r.docs.iter().zip(&r.expect) {
            if expect == "good" {
                want.entry(key.clone()).or_default().push(expected_row(doc));
            }
        }
    }
    let got = lake_rows(&s3, &bucket).await;
    assert_eq!(got, want);
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 7);

    // Types: the declared schema, with the event time as a timestamp.
    let bytes = lake_reader::get(&s3, &bucket, &expected_keys[3])
        .await
        .unwrap();
    let batches = lake_reader::parquet_batches(bytes.clone()).unwrap();
    let types: Vec<String> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            "ventilatorid:Int64",
            "eventtime:Timestamp(µs)",
            "serialnumber:Utf8",
            "pressurecontrol:Int64",
            "o2stats:Int64",
            "minutevolume:Int64",
            "manufacturer:Utf8"
        ]
    );
    let meta: BTreeMap<String, String> = lake_reader::parquet_metadata(bytes)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(meta["telemetry_lake.first_sequence_number"], s3rd);
    assert_eq!(
        meta["telemetry_lake.last_sequence_number"],
        sequence_number(3, records.len() as u64 - 1)
    );

    // Column statistics: min and max of every column in the footer.
    let bytes = lake_reader::get(&s3, &bucket, &expected_keys[3])
        .await
        .unwrap();
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes).unwrap();
    let md = parquet::file::reader::FileReader::metadata(&reader);
    let first_column = md.row_group(0).column(0);
    assert_eq!(
        first_column.compression(),
        parquet::basic::Compression::SNAPPY
    );
    let ids = first_column
        .statistics()
        .expect("statistics on ventilatorid");
    match ids {
        parquet::file::statistics::Statistics::Int64(v) => {
            assert_eq!(
                (v.min_opt(), v.max_opt()),
                (Some(&3), Some(&9223372036854775807))
            );
        }
        other => panic!("ventilatorid statistics are {other:?}"),
    }

    // Dead letters: every bad document with its reason and bytes.
    let mut got_dl = Vec::new();
    for key in &expected_keys[..2] {
        let bytes = lake_reader::get(&s3, &bucket, key).await.unwrap();
        for l in lake_reader::dead_letters(&bytes).unwrap() {
            assert_eq!(l.shard, shard);
            assert_eq!(l.stream, "ventilators");
            assert!(!l.detail.is_empty());
            let i = records
                .iter()
                .position(|r| r.sequence_number == l.sequence_number)
                .unwrap();
            let original = match (l.scope, &fx.records[i].text) {
                (Scope::Payload, _) => records[i].data.clone(),
                (Scope::Document, Some(text)) => text.trim().as_bytes().to_vec(),
                (Scope::Document, None) => fx.records[i].docs[l.document_index]
                    .to_string()
                    .into_bytes(),
            };
            assert_eq!(l.bytes().unwrap(), original, "bytes of {}", l.reason);
            got_dl.push((i, l.document_index, l.reason));
        }
    }
    let want_dl: Vec<(usize, usize, String)> = fx
        .records
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.expect
                .iter()
                .enumerate()
                .filter(|(_, e)| *e != "good")
                .map(move |(d, e)| (i, d, e.clone()))
        })
        .collect();
    assert_eq!(got_dl, want_dl);
}

#[tokio::test]
async fn an_event_in_lambdas_own_json_shape_is_processed() {
    let (s3, bucket) = s3_with_bucket("lake").await;
    let event = include_bytes!("fixtures/kinesis_event.json");
    let (summary, response) = function(&s3, &bucket, 1 << 20)
        .invoke(event)
        .await
        .expect("invoked");
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (summary.records, summary.good, summary.bad, summary.objects),
        (2, 2, 0, 1)
    );
    let rows: Vec<Row> = lake_rows(&s3, &bucket)
        .await
        .into_values()
        .flatten()
        .collect();
    assert_eq!(rows[0].0, 21);
    assert_eq!(rows[1].6, "3M");
    assert_eq!(
        rows[0].1,
        Utc.with_ymd_and_hms(2026, 11, 22, 8, 15, 0)
            .unwrap()
            .timestamp_micros()
    );
}

#[tokio::test]
async fn running_the_same_event_twice_leaves_the_same_objects() {
    let (s3, bucket) = s3_with_bucket("lake").await;
    let (fx, _, event) = load_fixture();
    let f = function(&s3, &bucket, fx.max_payload_bytes);
    f.invoke(&event).await.expect("invoked");
    let first = lake_reader::list(&s3, &bucket, "").await.unwrap();
    let first_rows = lake_rows(&s3, &bucket).await;
    f.invoke(&event).await.expect("invoked");
    assert_eq!(lake_reader::list(&s3, &bucket, "").await.unwrap(), first);
    assert_eq!(lake_rows(&s3, &bucket).await, first_rows);
}

#[tokio::test]
async fn a_missing_bucket_fails_the_batch_from_its_first_record() {
    let sdk = sdk_config(moto(), REGION).await;
    let s3 = s3_client(&sdk);
    let (_, records, event) = load_fixture();
    let missing = unique("missing");
    let (summary, response) = function(&s3, &missing, 2048)
        .invoke(&event)
        .await
        .expect("invoked");
    assert_eq!(
        failures(&response),
        vec![records[0].sequence_number.clone()]
    );
    assert_eq!(summary.objects, 0);
}

#[tokio::test]
async fn denied_writes_are_retried_whole_without_duplicates() {
    let (moto_s3, bucket) = s3_with_bucket("lake").await;
    let proxy = FaultProxy::start(moto()).await;
    let s3 = s3_client(&sdk_config(&proxy.endpoint, REGION).await);
    proxy.inject(Fault::s3_put_denied(&bucket));

    let (fx, records, event) = load_fixture();
    let f = function(&s3, &bucket, fx.max_payload_bytes);
    let (summary, response) = f.invoke(&event).await.expect("invoked");
    assert_eq!(
        failures(&response),
        vec![records[0].sequence_number.clone()]
    );
    assert_eq!(summary.objects, 0);
    assert!(proxy.injected() >= 4);
    assert!(lake_reader::list(&moto_s3, &bucket, "")
        .await
        .unwrap()
        .is_empty());

    proxy.heal();
    let (summary, response) = f.invoke(&event).await.expect("invoked");
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(summary.objects, 4);
    let rows = lake_row_count(&moto_s3, &bucket).await;
    assert_eq!(rows, 7);
}

/// Good telemetry from one shard arriving over three hours (10:40 to 12:20).
fn three_hours(n: usize, seq_offset: u64) -> Vec<StreamRecord> {
    let opts = TelemetryOptions {
        devices: 5,
        bad_share: 0.0,
        seed: 11,
        ..Default::default()
    };
    let start = Utc.with_ymd_and_hms(2026, 11, 22, 10, 40, 0).unwrap();
    generate(&opts)
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(i, r)| StreamRecord {
            data: r.json.into_bytes(),
            partition_key: r.device.to_string(),
            arrival: start + Duration::seconds(i as i64 * 100 * 60 / n as i64),
            sequence_number: sequence_number(0, seq_offset + i as u64),
        })
        .collect()
}

async fn assert_each_record_once(s3: &aws_sdk_s3::Client, bucket: &str, records: &[StreamRecord]) {
    let rows: Vec<Row> = lake_rows(s3, bucket)
        .await
        .into_values()
        .flatten()
        .collect();
    let mut got: Vec<(i64, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    let mut want: Vec<(i64, i64)> = records
        .iter()
        .map(|r| {
            let doc: Value = serde_json::from_slice(&r.data).unwrap();
            let row = expected_row(&doc);
            (row.0, row.1)
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "row count");
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_failed_hour_is_retried_from_its_first_record_without_duplicates() {
    let (moto_s3, bucket) = s3_with_bucket("lake").await;
    let proxy = FaultProxy::start(moto()).await;
    let s3 = s3_client(&sdk_config(&proxy.endpoint, REGION).await);
    let arn = stream_arn(REGION, "ventilators");
    let all = three_hours(130, 0);
    let first_batch = &all[..100];

    proxy.inject(Fault::s3_put_denied("ingest_hour=11"));
    let f = function(&s3, &bucket, 1 << 20);
    let (summary, response) = f
        .invoke(&to_event(&arn, "shardId-000000000000", first_batch))
        .await
        .expect("invoked");
    let hour_11 = first_batch
        .iter()
        .position(|r| r.arrival.format("%H").to_string() == "11")
        .unwrap();
    assert_eq!(
        failures(&response),
        vec![first_batch[hour_11].sequence_number.clone()]
    );
    assert_eq!(summary.good, 100);

    // Lambda checkpoints before the reported record and retries from it, with
    // a batch that may now reach further into the shard.
    proxy.heal();
    let retry = &all[hour_11..];
    let (_, response) = f
        .invoke(&to_event(&arn, "shardId-000000000000", retry))
        .await
        .expect("invoked");
    assert!(response.batch_item_failures.is_empty());
    assert_each_record_once(&moto_s3, &bucket, &all).await;
}

#[tokio::test]
async fn a_bisected_batch_neither_loses_nor_duplicates_rows() {
    let (s3, bucket) = s3_with_bucket("lake").await;
    let arn = stream_arn(REGION, "ventilators");
    let all = three_hours(90, 500);
    let f = function(&s3, &bucket, 1 << 20);

    // The whole batch was written, then the invocation timed out; Lambda
    // bisects and retries each half.
    let whole: BatchSummary = f
        .invoke(&to_event(&arn, "shardId-000000000000", &all))
        .await
        .expect("invoked")
        .0;
    assert_eq!(whole.good, 90);
    let (left, right) = all.split_at(37);
    f.invoke(&to_event(&arn, "shardId-000000000000", left))
        .await
        .expect("invoked");
    f.invoke(&to_event(&arn, "shardId-000000000000", right))
        .await
        .expect("invoked");
    assert_each_record_once(&s3, &bucket, &all).await;
}

#[tokio::test]
async fn a_bisected_half_sent_to_the_on_failure_queue_heals_when_replayed() {
    let (s3, bucket) = s3_with_bucket("lake").await;
    let arn = stream_arn(REGION, "ventilators");
    let all = three_hours(90, 900);
    let f = function(&s3, &bucket, 1 << 20);
    let shard = "shardId-000000000000";

    // Written whole, then the invocation timed out; the first half of the
    // bisected batch keeps failing until Lambda sends its range to the
    // on-failure destination, and only the second half is written.
    f.invoke(&to_event(&arn, shard, &all))
        .await
        .expect("invoked");
    let (left, right) = all.split_at(37);
    f.invoke(&to_event(&arn, shard, right))
        .await
        .expect("invoked");
    let rows = lake_row_count(&s3, &bucket).await;
    assert!(
        rows > all.len(),
        "the unreplayed state holds the documented duplicate ({rows} rows)"
    );

    // The operator replays the failed range (shard, first and last sequence
    // number from the queue's message).
    f.invoke(&to_event(&arn, shard, left))
        .await
        .expect("invoked");
    assert_each_record_once(&s3, &bucket, &all).await;
}

#[tokio::test]
async fn s3_throttling_is_retried_by_the_sdk_and_the_batch_succeeds() {
    let (moto_s3, bucket) = s3_with_bucket("lake").await;
    let proxy = FaultProxy::start(moto()).await;
    let s3 = s3_client(&sdk_config(&proxy.endpoint, REGION).await);
    proxy.inject(
        Fault::s3_put(
            &format!("/{bucket}/"),
            503,
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
        )
        .times(2),
    );
    let (fx, _, event) = load_fixture();
    let (summary, response) = function(&s3, &bucket, fx.max_payload_bytes)
        .invoke(&event)
        .await
        .expect("invoked");
    assert_eq!(proxy.injected(), 2);
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(summary.objects, 4);
    let rows = lake_row_count(&moto_s3, &bucket).await;
    assert_eq!(rows, 7);
}

#[tokio::test]
async fn a_fractional_arrival_time_is_read_to_the_millisecond_and_chooses_the_hour() {
    let (s3, bucket) = s3_with_bucket("lake").await;
    let f = function(&s3, &bucket, 1 << 20);
    let event = integration_tests::fractional_arrival_event();
    let (summary, response) = f.invoke(&event).await.expect("invoked");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!((summary.good, summary.bad), (2, 1));

    let keys: Vec<String> = integration_tests::object_keys(&s3, &bucket, "").await;
    let shard = "shardId-000000000000";
    assert_eq!(
        keys,
        vec![
            hour_key(DL_PREFIX, 10, "vent", shard, "1", "jsonl"),
            hour_key(LAKE_PREFIX, 10, "vent", shard, "1", "snappy.parquet"),
            hour_key(LAKE_PREFIX, 11, "vent", shard, "3", "snappy.parquet"),
        ]
    );
    let letters = dead_letters_under(&s3, &bucket, DL_PREFIX).await;
    assert_eq!(
        letters
            .iter()
            .map(|l| (l.sequence_number.as_str(), l.arrival_time.as_str()))
            .collect::<Vec<_>>(),
        [("2", "2026-11-22T10:59:59.120Z")]
    );
}
