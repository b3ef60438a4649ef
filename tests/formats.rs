//! Input formats, schema sources and producers of the stream functions,
//! against S3 and Glue on moto: what lands in the lake (rows read back from
//! Parquet) and in the dead letters, for CSV, Avro datums, Avro container
//! files, Grok and CloudWatch Logs subscription envelopes, compressed or not; a schema read from a Glue table;
//! KPL-aggregated records; and Lambda's Kafka event.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use apache_avro::types::Value as Avro;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use integration_tests::{
    dead_letters_under, kpl_record, moto, parquet_objects, s3_with_bucket, sdk_config, unique,
    Fault, FaultProxy, StreamFunction, REGION,
};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::kinesis_event::{sequence_number, stream_arn, StreamRecord};
use lake_tools::lake_reader;
use lake_tools::runtime::invoke_stream;
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake::writer::S3Sink;
use telemetry_lake::stream::dead_letter::{DeadLetter, Scope};

const LAKE_PREFIX: &str = "raw/metrics";
const DL_PREFIX: &str = "dead-letters/metrics";
const SCHEMA: &str = "id:int64,at:timestamp,name:string,score:float64?";
const SHARD: &str = "shardId-000000000000";

/// The function configured as its environment would configure it.
fn function(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    env: &[(&str, &str)],
) -> KinesisToParquet<S3Sink> {
    let mut vars: HashMap<String, String> = [
        ("LAKE_BUCKET", bucket),
        ("LAKE_PREFIX", LAKE_PREFIX),
        ("DEAD_LETTER_PREFIX", DL_PREFIX),
        ("SCHEMA", SCHEMA),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in env {
        vars.insert(k.to_string(), v.to_string());
    }
    let config = StreamConfig::from_lookup(|k| vars.get(k).cloned()).expect("configuration");
    KinesisToParquet::new(config, S3Sink::new(s3.clone(), bucket))
}

fn arrival(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, minute, 0).unwrap()
}

/// A Kinesis event of one shard with one record per payload.
fn event(stream: &str, payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<String>) {
    let records: Vec<StreamRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, data)| StreamRecord {
            data: data.clone(),
            partition_key: format!("p{i}"),
            arrival: arrival(i as u32),
            sequence_number: sequence_number(0, i as u64),
        })
        .collect();
    let seqs = records.iter().map(|r| r.sequence_number.clone()).collect();
    (
        integration_tests::kinesis_event(&stream_arn(REGION, stream), SHARD, &records),
        seqs,
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn micros(t: &str) -> i64 {
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

/// One lake row: (id, event time µs, name, score).
type Row = (i64, i64, String, Option<f64>);

fn row(id: i64, at: &str, name: &str, score: Option<f64>) -> Row {
    (id, micros(at), name.to_string(), score)
}

fn rows_of(batch: &RecordBatch) -> Vec<Row> {
    let id = batch.column(0).as_primitive::<Int64Type>();
    let at = batch.column(1).as_primitive::<TimestampMicrosecondType>();
    let name = batch.column(2).as_string::<i32>();
    let score = batch.column(3).as_primitive::<Float64Type>();
    (0..batch.num_rows())
        .map(|r| {
            (
                id.value(r),
                at.value(r),
                name.value(r).to_string(),
                (!score.is_null(r)).then(|| score.value(r)),
            )
        })
        .collect()
}

/// Every Parquet object of the lake with its rows.
async fn lake(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Vec<Row>> {
    parquet_objects(s3, bucket, LAKE_PREFIX)
        .await
        .into_iter()
        .map(|(key, batches)| (key, batches.iter().flat_map(rows_of).collect()))
        .collect()
}

/// All rows of the lake, in key then row order.
async fn all_rows(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<Row> {
    lake(s3, bucket).await.into_values().flatten().collect()
}

/// Every dead letter, in key then line order.
async fn dead_letters(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<DeadLetter> {
    dead_letters_under(s3, bucket, DL_PREFIX).await
}

/// A dead letter reduced to (sequence number, document index, reason, scope, bytes).
fn summary(l: &DeadLetter) -> (String, usize, String, Scope, String) {
    (
        l.sequence_number.clone(),
        l.document_index,
        l.reason.clone(),
        l.scope,
        String::from_utf8_lossy(&l.bytes().unwrap()).into_owned(),
    )
}

/// A dead letter reduced to (sequence number, document index, reason, scope).
fn placed(l: &DeadLetter) -> (String, usize, String, Scope) {
    (
        l.sequence_number.clone(),
        l.document_index,
        l.reason.clone(),
        l.scope,
    )
}

fn letter(
    seq: &str,
    index: usize,
    reason: &str,
    scope: Scope,
    bytes: &str,
) -> (String, usize, String, Scope, String) {
    (
        seq.to_string(),
        index,
        reason.to_string(),
        scope,
        bytes.to_string(),
    )
}

async fn run(f: &KinesisToParquet<S3Sink>, event: &[u8]) {
    let (summary, response) = f.invoke(event).await.expect("invoked");
    assert!(response.batch_item_failures.is_empty(), "{summary:?}");
}

// -------------------------------------------------------------------- CSV --

#[tokio::test]
async fn csv_without_a_header_follows_the_schema_order_and_each_bad_line_is_dead_lettered() {
    let (s3, bucket) = s3_with_bucket("csv").await;
    let f = function(&s3, &bucket, &[("FORMAT", "csv")]);
    let (event, seq) = event(
        "csv",
        &[
            b"1,2020-06-12 14:05:59,\"Smith, \"\"J\"\"\",2.5\r\n2,2020-06-12 14:06:00,plain,\n".to_vec(),
            gzip(b"3,2020-06-12 14:07:00,zipped,0.5\n"),
            b"4,2020-06-12 14:08:00,short\nfive,2020-06-12 14:08:00,x,1\n,2020-06-12 14:08:00,x,1\n6,2020-06-12 14:09:00,ok,\n".to_vec(),
            b"7,12/06/2020,x,1\n".to_vec(),
            vec![0x1f, 0x8b, 8, 0, 1, 2, 3],
            b"  \n".to_vec(),
        ],
    );
    run(&f, &event).await;

    assert_eq!(
        all_rows(&s3, &bucket).await,
        vec![
            row(1, "2020-06-12 14:05:59", "Smith, \"J\"", Some(2.5)),
            row(2, "2020-06-12 14:06:00", "plain", None),
            row(3, "2020-06-12 14:07:00", "zipped", Some(0.5)),
            row(6, "2020-06-12 14:09:00", "ok", None),
        ]
    );
    let got: Vec<_> = dead_letters(&s3, &bucket)
        .await
        .iter()
        .map(summary)
        .collect();
    let gz = String::from_utf8_lossy(&[0x1f, 0x8b, 8, 0, 1, 2, 3]).into_owned();
    assert_eq!(
        got,
        vec![
            letter(
                &seq[2],
                0,
                "wrong_column_count",
                Scope::Document,
                "4,2020-06-12 14:08:00,short"
            ),
            letter(
                &seq[2],
                1,
                "wrong_type",
                Scope::Document,
                "five,2020-06-12 14:08:00,x,1"
            ),
            letter(
                &seq[2],
                2,
                "missing_field",
                Scope::Document,
                ",2020-06-12 14:08:00,x,1"
            ),
            letter(
                &seq[3],
                0,
                "invalid_timestamp",
                Scope::Document,
                "7,12/06/2020,x,1"
            ),
            letter(&seq[4], 0, "decompression_failed", Scope::Payload, &gz),
            letter(&seq[5], 0, "empty_payload", Scope::Payload, "  \n"),
        ]
    );
}

#[tokio::test]
async fn a_csv_line_that_begins_like_a_zlib_header_is_a_row() {
    // `80` passes zlib's two-byte header check (0x3830 is a multiple of 31
    // with deflate's method nibble): as CSV it is device 80.
    let (s3, bucket) = s3_with_bucket("csv-zlib-like").await;
    let f = function(&s3, &bucket, &[("FORMAT", "csv")]);
    let (event, _) = event(
        "csv",
        &[b"80,2020-06-12 14:05:59,device 80,1.5\n81,2020-06-12 14:06:00,next,\n".to_vec()],
    );
    run(&f, &event).await;
    assert_eq!(
        all_rows(&s3, &bucket).await,
        vec![
            row(80, "2020-06-12 14:05:59", "device 80", Some(1.5)),
            row(81, "2020-06-12 14:06:00", "next", None),
        ]
    );
    assert!(dead_letters(&s3, &bucket).await.is_empty());
}

#[tokio::test]
async fn csv_with_a_header_maps_columns_by_name_and_a_missing_required_column_rejects_the_payload()
{
    let (s3, bucket) = s3_with_bucket("csvh").await;
    let f = function(
        &s3,
        &bucket,
        &[
            ("FORMAT", "csv"),
            ("CSV_HEADER", "true"),
            ("CSV_DELIMITER", ";"),
        ],
    );
    let (event, seq) = event(
        "csvh",
        &[
            b"name;extra;id;at;score\nalpha;x;1;2020-06-12 14:05:59;1.25\nbeta;y;2;2020-06-12 14:05:59;\n".to_vec(),
            gzip(b"at;id;name\n2020-06-12 14:05:59;3;gamma\n2020-06-12 14:05:59;4\n"),
            b"name;at\nnoid;2020-06-12 14:05:59\n".to_vec(),
        ],
    );
    let (batch, response) = f.invoke(&event).await.expect("invoked");
    assert!(response.batch_item_failures.is_empty(), "{batch:?}");
    // The `extra` column of the two good rows of the first payload.
    assert_eq!(batch.undeclared_fields, 2, "{batch:?}");
    assert_eq!(
        all_rows(&s3, &bucket).await,
        vec![
            row(1, "2020-06-12 14:05:59", "alpha", Some(1.25)),
            row(2, "2020-06-12 14:05:59", "beta", None),
            row(3, "2020-06-12 14:05:59", "gamma", None),
        ]
    );
    let got: Vec<_> = dead_letters(&s3, &bucket)
        .await
        .iter()
        .map(summary)
        .collect();
    assert_eq!(
        got,
        vec![
            letter(
                &seq[1],
                1,
                "wrong_column_count",
                Scope::Document,
                "2020-06-12 14:05:59;4"
            ),
            letter(
                &seq[2],
                0,
                "missing_column",
                Scope::Payload,
                "name;at\nnoid;2020-06-12 14:05:59\n"
            ),
        ]
    );
}

// ------------------------------------------------------------------- Avro --

const AVRO_WRITER: &str = r#"{"type":"record","name":"metric","fields":[
    {"name":"id","type":["null","long"]},
    {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"name","type":"string"},
    {"name":"score","type":["null","double"],"default":null}]}"#;

fn avro_record(id: Option<i64>, at: &str, name: &str, score: Option<f64>) -> Avro {
    let union = |v: Option<Avro>| match v {
        Some(v) => Avro::Union(1, Box::new(v)),
        None => Avro::Union(0, Box::new(Avro::Null)),
    };
    Avro::Record(vec![
        ("id".into(), union(id.map(Avro::Long))),
        ("at".into(), Avro::TimestampMillis(micros(at) / 1000)),
        ("name".into(), Avro::String(name.into())),
        ("score".into(), union(score.map(Avro::Double))),
    ])
}

#[tokio::test]
async fn avro_datums_are_read_with_the_declared_writer_schema() {
    let (s3, bucket) = s3_with_bucket("avro").await;
    let f = function(
        &s3,
        &bucket,
        &[("FORMAT", "avro"), ("AVRO_SCHEMA", AVRO_WRITER)],
    );
    let writer = apache_avro::Schema::parse_str(AVRO_WRITER).unwrap();
    let datum = |r: Avro| apache_avro::to_avro_datum(&writer, r).unwrap();
    let mut two = datum(avro_record(
        Some(1),
        "2020-06-12 14:05:59",
        "alpha",
        Some(0.5),
    ));
    two.extend(datum(avro_record(
        Some(2),
        "2020-06-12 14:06:00",
        "beta",
        None,
    )));
    let no_id = datum(avro_record(None, "2020-06-12 14:06:00", "anon", None));
    let mut truncated = datum(avro_record(Some(4), "2020-06-12 14:06:00", "cut", None));
    truncated.truncate(truncated.len() - 2);
    let (event, seq) = event(
        "avro",
        &[
            two,
            zstd::encode_all(
                &datum(avro_record(
                    Some(3),
                    "2020-06-12 14:07:00",
                    "zstd",
                    Some(3.0),
                ))[..],
                3,
            )
            .unwrap(),
            no_id.clone(),
            truncated.clone(),
        ],
    );
    run(&f, &event).await;
    assert_eq!(
        all_rows(&s3, &bucket).await,
        vec![
            row(1, "2020-06-12 14:05:59", "alpha", Some(0.5)),
            row(2, "2020-06-12 14:06:00", "beta", None),
            row(3, "2020-06-12 14:07:00", "zstd", Some(3.0)),
        ]
    );
    let letters = dead_letters(&s3, &bucket).await;
    let got: Vec<(String, String, Vec<u8>)> = letters
        .iter()
        .map(|l| {
            (
                l.sequence_number.clone(),
                l.reason.clone(),
                l.bytes().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (seq[2].clone(), "missing_field".to_string(), no_id),
            (seq[3].clone(), "invalid_avro".to_string(), truncated),
        ]
    );
    assert!(letters[0].detail.contains("`id`"), "{}", letters[0].detail);
}

#[tokio::test]
async fn avro_container_files_carry_their_schema_and_several_records() {
    let (s3, bucket) = s3_with_bucket("ocf").await;
    let f = function(&s3, &bucket, &[("FORMAT", "avro-ocf")]);
    let writer = apache_avro::Schema::parse_str(AVRO_WRITER).unwrap();
    let file = |records: Vec<Avro>| {
        let mut w = apache_avro::Writer::new(&writer, Vec::new());
        for r in records {
            w.append(r).unwrap();
        }
        w.into_inner().unwrap()
    };
    let other = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"m","fields":[{"name":"id","type":"string"},{"name":"at","type":"string"},{"name":"name","type":"string"}]}"#,
    )
    .unwrap();
    let mut w = apache_avro::Writer::new(&other, Vec::new());
    w.append(Avro::Record(vec![
        ("id".into(), Avro::String("5".into())),
        ("at".into(), Avro::String("2020-06-12 14:05:59".into())),
        ("name".into(), Avro::String("text id".into())),
    ]))
    .unwrap();
    let (event, seq) = event(
        "ocf",
        &[
            file(vec![
                avro_record(Some(1), "2020-06-12 14:05:59", "alpha", None),
                avro_record(None, "2020-06-12 14:05:59", "anon", None),
                avro_record(Some(2), "2020-06-12 14:05:59", "beta", Some(2.0)),
            ]),
            gzip(&file(vec![avro_record(
                Some(3),
                "2020-06-12 14:05:59",
                "gzipped",
                None,
            )])),
            w.into_inner().unwrap(),
            b"Obj\x01 not really".to_vec(),
        ],
    );
    run(&f, &event).await;
    assert_eq!(
        all_rows(&s3, &bucket).await,
        vec![
            row(1, "2020-06-12 14:05:59", "alpha", None),
            row(2, "2020-06-12 14:05:59", "beta", Some(2.0)),
            row(3, "2020-06-12 14:05:59", "gzipped", None),
        ]
    );
    let got: Vec<(String, usize, String, Scope)> = dead_letters(&s3, &bucket)
        .await
        .iter()
        .map(placed)
        .collect();
    assert_eq!(
        got,
        vec![
            (seq[0].clone(), 1, "missing_field".into(), Scope::Document),
            (seq[2].clone(), 0, "wrong_type".into(), Scope::Document),
            (seq[3].clone(), 0, "invalid_avro".into(), Scope::Payload),
        ]
    );
}

// ------------------------------------------------------------------- Grok --

#[tokio::test]
async fn grok_lines_fill_fields_by_capture_name_with_custom_patterns() {
    let (s3, bucket) = s3_with_bucket("grok").await;
    let f = function(
        &s3,
        &bucket,
        &[
            ("FORMAT", "grok"),
            (
                "GROK_PATTERN",
                "%{METRIC_ID:id} %{DATESTAMP_LAKE:at} name=%{WORD:name}( score=%{NUMBER:score})?",
            ),
            (
                "GROK_CUSTOM_PATTERNS",
                "METRIC_ID [0-9]+\nDATESTAMP_LAKE %{YEAR}-%{MONTHNUM}-%{MONTHDAY} %{TIME}",
            ),
        ],
    );
    let (event, seq) = event(
        "grok",
        &[
            b"1 2020-06-12 14:05:59 name=alpha score=0.75\n2 2020-06-12 14:06:00 name=beta\n"
                .to_vec(),
            gzip(b"3 2020-06-12 14:07:00 name=gamma score=2\n"),
            b"garbage line\n99999999999999999999 2020-06-12 14:07:00 name=big\n".to_vec(),
        ],
    );
    run(&f, &event).await;
    assert_eq!(
        all_rows(&s3, &bucket).await,
        vec![
            row(1, "2020-06-12 14:05:59", "alpha", Some(0.75)),
            row(2, "2020-06-12 14:06:00", "beta", None),
            row(3, "2020-06-12 14:07:00", "gamma", Some(2.0)),
        ]
    );
    let got: Vec<_> = dead_letters(&s3, &bucket)
        .await
        .iter()
        .map(summary)
        .collect();
    assert_eq!(
        got,
        vec![
            letter(&seq[2], 0, "grok_no_match", Scope::Document, "garbage line"),
            letter(
                &seq[2],
                1,
                "out_of_range",
                Scope::Document,
                "99999999999999999999 2020-06-12 14:07:00 name=big"
            ),
        ]
    );
}

// -------------------------------------------------------- CloudWatch Logs --

/// The lake's rows with their log group and stream (columns 4 and 5).
async fn rows_with_groups(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(Row, String, String)> {
    let mut out = Vec::new();
    for batch in parquet_objects(s3, bucket, LAKE_PREFIX)
        .await
        .values()
        .flatten()
    {
        let group = batch.column(4).as_string::<i32>();
        let stream = batch.column(5).as_string::<i32>();
        for (r, row) in rows_of(batch).into_iter().enumerate() {
            out.push((row, group.value(r).to_string(), stream.value(r).to_string()));
        }
    }
    out
}

#[tokio::test]
async fn cloudwatch_logs_envelopes_land_one_row_per_log_event_and_a_retry_rewrites_the_same_objects(
) {
    use lake_tools::cloudwatch_logs::{control_message, data_message, gzip, LogEvent};
    let (s3, bucket) = s3_with_bucket("cwl").await;
    let f = function(
        &s3,
        &bucket,
        &[
            ("FORMAT", "cloudwatch-logs"),
            (
                "SCHEMA",
                "id:int64,at:timestamp,name:string,score:float64?,loggroup:string,logstream:string",
            ),
            ("LOG_TIMESTAMP_FIELD", "at"),
        ],
    );
    let at = |t: &str| micros(t) / 1000;
    let ward3 = data_message(
        "/ward-3/ventilators",
        "vent-7",
        &[
            LogEvent::new(
                at("2026-11-22 09:59:00"),
                0,
                r#"{"id":1,"name":"alpha","score":0.5}"#,
            ),
            // Malformed among good ones: dead-lettered alone.
            LogEvent::new(
                at("2026-11-22 09:59:01"),
                1,
                r#"{"id":"two","name":"beta"}"#,
            ),
            LogEvent::new(
                at("2026-11-22 09:59:02"),
                2,
                "{\"id\":3,\"name\":\"gamma\"}\n",
            ),
        ],
    );
    let ward4 = data_message(
        "/ward-4/ventilators",
        "vent-9",
        &[LogEvent::new(
            at("2026-11-22 09:58:00"),
            0,
            r#"{"id":4,"name":"delta"}"#,
        )],
    );
    let (event, seq) = event(
        "cwl",
        &[
            gzip(&ward3),
            gzip(&ward4),
            gzip(&control_message(at("2026-11-22 09:57:00"))),
            // Not an envelope, and not gzip: the record a producer writing
            // readings straight to the stream would put.
            br#"{"id":5,"at":"2026-11-22 09:57:00","name":"epsilon"}"#.to_vec(),
            // gzip that does not inflate.
            gzip(&ward4)[..20].to_vec(),
        ],
    );
    let (first, response) = f.invoke(&event).await.expect("invoked");
    assert!(response.batch_item_failures.is_empty(), "{first:?}");
    assert_eq!(
        (first.records, first.good, first.bad, first.control_messages),
        (5, 3, 3, 1)
    );
    let ward = |n| {
        (
            format!("/ward-{n}/ventilators"),
            format!("vent-{}", if n == 3 { 7 } else { 9 }),
        )
    };
    let with = |row: Row, n| (row, ward(n).0, ward(n).1);
    assert_eq!(
        rows_with_groups(&s3, &bucket).await,
        vec![
            with(row(1, "2026-11-22 09:59:00", "alpha", Some(0.5)), 3),
            with(row(3, "2026-11-22 09:59:02", "gamma", None), 3),
            with(row(4, "2026-11-22 09:58:00", "delta", None), 4),
        ]
    );
    let letters = dead_letters(&s3, &bucket).await;
    let got: Vec<_> = letters.iter().map(placed).collect();
    assert_eq!(
        got,
        vec![
            (seq[0].clone(), 1, "wrong_type".to_string(), Scope::Document),
            (
                seq[3].clone(),
                0,
                "invalid_envelope".to_string(),
                Scope::Payload
            ),
            (
                seq[4].clone(),
                0,
                "decompression_failed".to_string(),
                Scope::Payload
            ),
        ]
    );
    // The bad event's letter is an envelope of that event alone, with its
    // group: it names where it came from and replays as it is.
    let alone: serde_json::Value = serde_json::from_slice(&letters[0].bytes().unwrap()).unwrap();
    assert_eq!(alone["logGroup"], "/ward-3/ventilators");
    assert_eq!(
        alone["logEvents"][0]["message"],
        r#"{"id":"two","name":"beta"}"#
    );
    assert!(letters[0].detail.contains("`id`"), "{}", letters[0].detail);
    assert_eq!(
        letters[1].bytes().unwrap(),
        br#"{"id":5,"at":"2026-11-22 09:57:00","name":"epsilon"}"#
    );

    // A retried batch rewrites the same objects with the same content.
    let before = lake(&s3, &bucket).await;
    let keys = |s3, bucket| async move { integration_tests::object_keys(s3, bucket, "").await };
    let all_before = keys(&s3, &bucket).await;
    let (again, _) = f.invoke(&event).await.expect("invoked again");
    assert_eq!((again.good, again.bad), (3, 3));
    assert_eq!(keys(&s3, &bucket).await, all_before);
    assert_eq!(lake(&s3, &bucket).await, before);
    assert_eq!(dead_letters(&s3, &bucket).await, letters);
}

// -------------------------------------------------------------------- KPL --

#[tokio::test]
async fn kpl_aggregates_are_split_into_user_records_each_validated_on_its_own() {
    let (s3, bucket) = s3_with_bucket("kpl").await;
    let f = function(&s3, &bucket, &[]);
    let zipped = gzip(br#"{"id":3,"at":"2020-06-12 14:07:00","name":"zipped"}"#);
    let good = kpl_record::<&[u8]>(&[
        br#"{"id":1,"at":"2020-06-12 14:05:59","name":"alpha"}"#,
        br#"{"id":"two","at":"2020-06-12 14:05:59","name":"beta"}"#,
        &zipped,
    ]);
    let mut bad_md5 = kpl_record(&[br#"{"id":9,"at":"2020-06-12 14:05:59","name":"lost"}"#]);
    let last = bad_md5.len() - 1;
    bad_md5[last] ^= 0xff;
    let (event, seq) = event(
        "kpl",
        &[
            good,
            bad_md5.clone(),
            br#"{"id":4,"at":"2020-06-12 14:08:00","name":"plain"}"#.to_vec(),
        ],
    );
    run(&f, &event).await;
    let first = lake(&s3, &bucket).await;
    assert_eq!(
        first.values().flatten().cloned().collect::<Vec<_>>(),
        vec![
            row(1, "2020-06-12 14:05:59", "alpha", None),
            row(3, "2020-06-12 14:07:00", "zipped", None),
            row(4, "2020-06-12 14:08:00", "plain", None),
        ]
    );
    let letters = dead_letters(&s3, &bucket).await;
    let got: Vec<(String, Option<u64>, String, Scope)> = letters
        .iter()
        .map(|l| {
            (
                l.sequence_number.clone(),
                l.sub_sequence_number,
                l.reason.clone(),
                l.scope,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                seq[0].clone(),
                Some(1),
                "wrong_type".into(),
                Scope::Document
            ),
            (seq[1].clone(), None, "kpl_bad_md5".into(), Scope::Payload),
        ]
    );
    assert_eq!(letters[1].bytes().unwrap(), bad_md5);
    assert!(letters[1].detail.contains("MD5"), "{}", letters[1].detail);

    // The same batch again (a retry) rewrites the same objects, no more.
    run(&f, &event).await;
    assert_eq!(lake(&s3, &bucket).await, first);
    assert_eq!(dead_letters(&s3, &bucket).await, letters);
}

// ------------------------------------------------------------------ Kafka --

const KAFKA_EVENT: &str = include_str!("fixtures/kafka_event.json");

#[tokio::test]
async fn a_kafka_event_lands_under_topic_partition_and_offset_keys_and_twice_is_once() {
    let (s3, bucket) = s3_with_bucket("kafka").await;
    let f = function(&s3, &bucket, &[]);
    let out = invoke_stream(KAFKA_EVENT.as_bytes(), |e| f.handle(e))
        .await
        .expect("processed");
    assert_eq!(serde_json::to_value(&out).unwrap(), serde_json::json!({}));

    let hour = "ingest_year=2026/ingest_month=11/ingest_day=28/ingest_hour=10";
    let listed: Vec<String> = integration_tests::object_keys(&s3, &bucket, "").await;
    assert_eq!(
        listed,
        vec![
            format!("{DL_PREFIX}/{hour}/ventilator-metrics.1.41.jsonl"),
            format!("{LAKE_PREFIX}/{hour}/ventilator-metrics.0.17.snappy.parquet"),
            format!("{LAKE_PREFIX}/{hour}/ventilator-metrics.1.41.snappy.parquet"),
        ]
    );
    let first = lake(&s3, &bucket).await;
    assert_eq!(
        first.values().flatten().cloned().collect::<Vec<_>>(),
        vec![
            row(1, "2026-11-22 10:40:00", "alpha", None),
            row(2, "2026-11-22 10:40:00", "beta", Some(0.25)),
            row(3, "2026-11-22 10:40:00", "gamma", Some(1.5)),
        ]
    );
    let letters = dead_letters(&s3, &bucket).await;
    let got: Vec<(String, Option<i64>, Option<i64>, String)> = letters
        .iter()
        .map(|l| (l.stream.clone(), l.partition, l.offset, l.reason.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "ventilator-metrics".into(),
                Some(1),
                Some(42),
                "wrong_type".into()
            ),
            (
                "ventilator-metrics".into(),
                Some(1),
                Some(43),
                "empty_payload".into()
            ),
        ]
    );

    // The same event again leaves exactly the same objects.
    invoke_stream(KAFKA_EVENT.as_bytes(), |e| f.handle(e))
        .await
        .expect("processed again");
    let again: Vec<String> = integration_tests::object_keys(&s3, &bucket, "").await;
    assert_eq!(again, listed);
    assert_eq!(lake(&s3, &bucket).await, first);
}

#[tokio::test]
async fn a_kafka_record_with_a_bad_timestamp_is_dead_lettered_alone() {
    // The producer sets a record's timestamp: -1 (none), a fraction, a
    // number past chrono's range, a string, or nothing at all.
    let mut event: serde_json::Value = serde_json::from_str(KAFKA_EVENT).unwrap();
    let partition = event["records"]["ventilator-metrics-1"]
        .as_array_mut()
        .unwrap();
    let good = partition[0].clone();
    let bad = [
        serde_json::json!(-1),
        serde_json::json!(1795860003000.5),
        serde_json::json!(9_000_000_000_000_000_i64),
        serde_json::json!(1e20),
        serde_json::json!("2026-11-22T10:40:00Z"),
        serde_json::Value::Null,
    ];
    for (offset, timestamp) in (44..).zip(bad) {
        let mut r = good.clone();
        r["offset"] = offset.into();
        r["timestamp"] = timestamp;
        partition.push(r);
    }
    let (s3, bucket) = s3_with_bucket("kafka-time").await;
    let f = function(&s3, &bucket, &[]);
    let out = invoke_stream(event.to_string().as_bytes(), |e| f.handle(e))
        .await
        .expect("one bad timestamp does not fail the event");
    assert_eq!(serde_json::to_value(&out).unwrap(), serde_json::json!({}));

    // Every good record lands where it did without them, and each bad one is
    // its own dead letter in its neighbours' hour.
    let hour = "ingest_year=2026/ingest_month=11/ingest_day=28/ingest_hour=10";
    assert_eq!(
        integration_tests::object_keys(&s3, &bucket, "").await,
        vec![
            format!("{DL_PREFIX}/{hour}/ventilator-metrics.1.41.jsonl"),
            format!("{LAKE_PREFIX}/{hour}/ventilator-metrics.0.17.snappy.parquet"),
            format!("{LAKE_PREFIX}/{hour}/ventilator-metrics.1.41.snappy.parquet"),
        ]
    );
    assert_eq!(all_rows(&s3, &bucket).await.len(), 3);
    let got: Vec<(Option<i64>, String)> = dead_letters(&s3, &bucket)
        .await
        .iter()
        .map(|l| (l.offset, l.reason.clone()))
        .collect();
    let mut want = vec![
        (Some(42), "wrong_type".to_string()),
        (Some(43), "empty_payload".to_string()),
    ];
    want.extend((44..50).map(|o| (Some(o), "invalid_kafka_timestamp".to_string())));
    assert_eq!(got, want);
    let letters = dead_letters(&s3, &bucket).await;
    assert!(
        letters[2].detail.contains("no timestamp (-1)"),
        "{letters:?}"
    );
    assert!(letters[4].detail.contains("out of range"), "{letters:?}");
}

#[tokio::test]
async fn a_kafka_batch_that_cannot_be_written_fails_and_its_retry_writes_the_same_keys() {
    let proxy = FaultProxy::start(moto()).await;
    let (s3, bucket) = s3_with_bucket("kafkafail").await;
    let sdk = sdk_config(&proxy.endpoint, REGION).await;
    let faulty = lake_tools::moto::s3_client(&sdk);
    let f = function(&faulty, &bucket, &[]);

    proxy.inject(Fault::s3_put_denied(
        "ventilator-metrics.1.41.snappy.parquet",
    ));
    let err = invoke_stream(KAFKA_EVENT.as_bytes(), |e| f.handle(e))
        .await
        .expect_err("a run was not written");
    assert!(err.to_string().contains("offset 41"), "{err}");

    proxy.heal();
    invoke_stream(KAFKA_EVENT.as_bytes(), |e| f.handle(e))
        .await
        .expect("the retry succeeds");
    let keys: Vec<String> = integration_tests::object_keys(&s3, &bucket, LAKE_PREFIX).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(all_rows(&s3, &bucket).await.len(), 3);
}

// ------------------------------------------------------------- Glue table --

#[tokio::test]
async fn the_schema_is_read_from_a_glue_table_and_used_for_csv() {
    let sdk = sdk_config(moto(), REGION).await;
    let glue = aws_sdk_glue::Client::new(&sdk);
    let database = unique("db").replace('-', "_");
    glue.create_database()
        .database_input(
            aws_sdk_glue::types::DatabaseInput::builder()
                .name(&database)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create database");
    let column = |name: &str, ty: &str| {
        aws_sdk_glue::types::Column::builder()
            .name(name)
            .r#type(ty)
            .build()
            .unwrap()
    };
    glue.create_table()
        .database_name(&database)
        .table_input(
            aws_sdk_glue::types::TableInput::builder()
                .name("metrics")
                .storage_descriptor(
                    aws_sdk_glue::types::StorageDescriptor::builder()
                        .columns(column("id", "bigint"))
                        .columns(column("at", "timestamp"))
                        .columns(column("name", "varchar(64)"))
                        .columns(column("score", "double"))
                        .build(),
                )
                .partition_keys(column("ingest_year", "string"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");

    let (s3, bucket) = s3_with_bucket("glue").await;
    let source = format!("glue:{database}.metrics");
    let vars: HashMap<&str, String> = [
        ("LAKE_BUCKET", bucket.clone()),
        ("LAKE_PREFIX", LAKE_PREFIX.to_string()),
        ("DEAD_LETTER_PREFIX", DL_PREFIX.to_string()),
        ("SCHEMA_SOURCE", source),
        ("FORMAT", "csv".to_string()),
    ]
    .into_iter()
    .collect();
    let config =
        telemetry_lake::config::glue_schema::load_config(|k| vars.get(k).cloned(), || glue.clone())
            .await
            .expect("schema from Glue");
    let names: Vec<String> = config
        .schema
        .fields
        .iter()
        .map(|f| format!("{}:{}", f.name, f.field_type.name()))
        .collect();
    assert_eq!(
        names,
        ["id:int64", "at:timestamp", "name:string", "score:float64"]
    );

    let f = KinesisToParquet::new(config, S3Sink::new(s3.clone(), &bucket));
    let (event, _) = event(
        "glue",
        &[b"1,2020-06-12 14:05:59,alpha,0.5\n2,2020-06-12 14:05:59,,\n".to_vec()],
    );
    run(&f, &event).await;
    // Catalog columns are nullable: the empty name is a null (read as "").
    assert_eq!(
        all_rows(&s3, &bucket).await,
        vec![
            row(1, "2020-06-12 14:05:59", "alpha", Some(0.5)),
            row(2, "2020-06-12 14:05:59", "", None),
        ]
    );
    let key = lake(&s3, &bucket)
        .await
        .into_keys()
        .next()
        .expect("one object");
    let batches =
        lake_reader::parquet_batches(lake_reader::get(&s3, &bucket, &key).await.unwrap()).unwrap();
    let names = batches[0].column(2);
    assert!(batches[0].schema().field(2).is_nullable());
    assert_eq!((names.is_null(0), names.is_null(1)), (false, true));

    // A table that does not exist fails the cold start, naming it.
    let mut missing = vars.clone();
    missing.insert("SCHEMA_SOURCE", format!("glue:{database}.nope"));
    let err = telemetry_lake::config::glue_schema::load_config(
        |k| missing.get(k).cloned(),
        || glue.clone(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(&format!("{database}.nope")),
        "{err}"
    );
}
