//! The memory bombs of hostile input run through the real
//! `kinesis-to-parquet` binary, a child process polling a local Lambda
//! Runtime API, under the memory of a 256 MB function: each invocation must
//! end with an answer (its bad records dead letters in S3, its good ones in
//! the lake), never with the process killed or aborted.
//!
//! The limit is a memory cgroup where the machine lets the tests create one
//! (Lambda limits resident memory the same way), otherwise an address-space
//! limit (`ulimit -v`), which is stricter; each test prints which.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use integration_tests::{
    dead_letters_under, function_binary, kinesis_event, kpl_record, moto, parquet_objects,
    s3_with_bucket, REGION,
};
use lake_tools::function_process::{Answer, FunctionProcess, MemoryLimit};
use lake_tools::kinesis_event::{sequence_number, stream_arn, StreamRecord};
use serde_json::Value;
use telemetry_lake::config::vars;

/// The function's memory, as Lambda gives it in `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
const MEMORY_MB: u64 = 256;

/// A kinesis-to-parquet process under a 256 MB limit, writing to `bucket`.
struct Function {
    process: FunctionProcess,
    limit: MemoryLimit,
}

impl Function {
    fn start(bucket: &str, settings: &[(&str, &str)]) -> Function {
        let limit = MemoryLimit::lambda_like(MEMORY_MB << 20);
        println!("{}", limit.describe());
        let mut env: HashMap<String, String> = [
            ("AWS_ENDPOINT_URL", moto()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_LAMBDA_FUNCTION_NAME", "kinesis-to-parquet"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            (vars::LAKE_BUCKET, bucket),
            (vars::LAKE_PREFIX, "raw/v"),
            (vars::DEAD_LETTER_PREFIX, "dead-letters/v"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let process = FunctionProcess::spawn(&function_binary("kinesis-to-parquet"), &env, &limit)
            .expect("the function starts");
        Function { process, limit }
    }

    /// Invokes the function with `payloads` as one shard's records; the
    /// batch item failures it answered.
    fn invoke(&mut self, payloads: &[Vec<u8>]) -> Vec<Value> {
        let arrival = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let records: Vec<StreamRecord> = payloads
            .iter()
            .enumerate()
            .map(|(i, data)| StreamRecord {
                data: data.clone(),
                partition_key: format!("p{i}"),
                arrival,
                sequence_number: sequence_number(0, i as u64),
            })
            .collect();
        let event = kinesis_event(
            &stream_arn(REGION, "bombs"),
            "shardId-000000000000",
            &records,
        );
        let answer = self
            .process
            .invoke(&event, Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("{} gave no answer: {e}", self.limit.describe()));
        if let Some(peak) = self.limit.peak_bytes() {
            println!("peak resident memory so far: {} MiB", peak >> 20);
        }
        match answer {
            Answer::Response(r) => r["batchItemFailures"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            Answer::Error(e) => panic!("the function reported an error: {e}"),
        }
    }
}

fn ventilator_doc(id: usize) -> String {
    serde_json::json!({
        "ventilatorid": id, "eventtime": "2026-11-22 09:59:00",
        "serialnumber": format!("SN-{id}"), "pressurecontrol": 20, "o2stats": 95,
        "minutevolume": 6, "manufacturer": "Acme"
    })
    .to_string()
}

fn ventilator_schema() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/ventilator.schema.json"
    ))
    .expect("the shipped schema")
}

async fn lake_rows(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    parquet_objects(s3, bucket, "raw/v/")
        .await
        .values()
        .flatten()
        .map(|b| b.num_rows())
        .sum()
}

#[tokio::test]
async fn a_normal_batch_of_ten_thousand_records_lands_under_the_limit() {
    let (s3, bucket) = s3_with_bucket("memory-normal").await;
    let schema = ventilator_schema();
    let mut f = Function::start(&bucket, &[(vars::SCHEMA, &schema)]);
    let payloads: Vec<Vec<u8>> = (0..10_000)
        .map(|i| ventilator_doc(i).into_bytes())
        .collect();
    let failures = f.invoke(&payloads);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(lake_rows(&s3, &bucket).await, 10_000);
    assert!(dead_letters_under(&s3, &bucket, "dead-letters/v/")
        .await
        .is_empty());
}

/// One KPL aggregate of 2,500 xz user records, each inflating to almost
/// 1 MiB of good readings (2.5 GB, 17 million readings in all), and a plain
/// record after it. The documents budget (one per 512 bytes of the decode
/// budget, a quarter of 256 MB) lets 131,072 readings through; the user
/// record it runs out in is one dead letter naming its first reading not
/// read, every later one (and the plain record) a dead letter too, none
/// inflated past the bytes budget; all `payload_too_large`, their bytes kept.
#[tokio::test]
async fn a_kpl_aggregate_of_xz_bombs_is_cut_at_the_invocation_budget() {
    let (s3, bucket) = s3_with_bucket("memory-kpl").await;
    let schema = ventilator_schema();
    let mut f = Function::start(&bucket, &[(vars::SCHEMA, &schema)]);
    let line = ventilator_doc(7);
    let per_record = ((1 << 20) - 1) / (line.len() + 1);
    let inflated = format!("{line}\n").repeat(per_record);
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(inflated.as_bytes()).unwrap();
    let xz = xz.finish().unwrap();
    let users: Vec<&[u8]> = (0..2_500).map(|_| xz.as_slice()).collect();
    let aggregate = kpl_record(&users);
    assert!(aggregate.len() < 1 << 20, "{}", aggregate.len());
    let plain = ventilator_doc(8).into_bytes();
    let failures = f.invoke(&[aggregate, plain.clone()]);
    assert!(failures.is_empty(), "{failures:?}");

    let documents = (MEMORY_MB << 20) as usize / 4 / 512;
    assert_eq!(lake_rows(&s3, &bucket).await, documents);
    let whole = documents / per_record;
    let mut letters = dead_letters_under(&s3, &bucket, "dead-letters/v/").await;
    letters.sort_by_key(|l| (l.sequence_number.clone(), l.sub_sequence_number));
    assert!(letters.iter().all(|l| l.reason == "payload_too_large"));
    let got: Vec<(Option<u64>, usize)> = letters
        .iter()
        .map(|l| (l.sub_sequence_number, l.document_index))
        .collect();
    let mut want = vec![(Some(whole as u64), documents - whole * per_record)];
    want.extend((whole as u64 + 1..2_500).map(|i| (Some(i), 0)));
    want.push((None, 0));
    assert_eq!(got, want);
    assert_eq!(letters[0].bytes().unwrap(), xz);
    assert_eq!(letters.last().unwrap().bytes().unwrap(), plain);
}

/// Eight xz user records of a million two-byte bad lines each: the bytes
/// fit the decode budget, but four million dead letters of some hundred
/// bytes would not fit the memory. The documents budget (one per 512 bytes
/// of the 64 MiB decode budget) lets 131,072 through as dead letters, and
/// the rest of each payload is one `payload_too_large` dead letter of the
/// whole payload, naming the first document not read.
#[tokio::test]
async fn a_million_tiny_bad_lines_per_record_are_cut_at_the_documents_budget() {
    let (s3, bucket) = s3_with_bucket("memory-lines").await;
    let schema = ventilator_schema();
    let mut f = Function::start(&bucket, &[(vars::SCHEMA, &schema)]);
    let lines = "x\n".repeat(1 << 19);
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(lines.as_bytes()).unwrap();
    let xz = xz.finish().unwrap();
    let users: Vec<&[u8]> = (0..8).map(|_| xz.as_slice()).collect();
    let failures = f.invoke(&[kpl_record(&users)]);
    assert!(failures.is_empty(), "{failures:?}");

    let documents = (MEMORY_MB << 20) as usize / 4 / 512;
    let letters = dead_letters_under(&s3, &bucket, "dead-letters/v/").await;
    let mut cut: Vec<(Option<u64>, usize)> = letters
        .iter()
        .filter(|l| l.reason == "payload_too_large")
        .map(|l| (l.sub_sequence_number, l.document_index))
        .collect();
    cut.sort_unstable();
    let mut want = vec![(Some(0), documents)];
    want.extend((1..8).map(|i| (Some(i), 0)));
    assert_eq!(cut, want);
    let bad_lines = letters
        .iter()
        .filter(|l| l.reason == "invalid_json")
        .count();
    assert_eq!(bad_lines, documents);
    assert_eq!(letters.len(), documents + 8);
}

/// The unsigned LEB128 of Avro's zigzag encoding of `v`.
fn zigzag(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// An object container file of `schema` holding `record`, and its header
/// (everything up to the first block).
fn container(schema: &str, record: apache_avro::types::Value, deflate: bool) -> (Vec<u8>, Vec<u8>) {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let codec = if deflate {
        apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default())
    } else {
        apache_avro::Codec::Null
    };
    let mut w = apache_avro::Writer::with_codec(&schema, Vec::new(), codec);
    w.append(record).unwrap();
    let file = w.into_inner().unwrap();
    let sync = file[file.len() - 16..].to_vec();
    let header_len = file.windows(16).position(|w| w == &sync[..]).unwrap() + 16;
    (file[..header_len].to_vec(), file)
}

/// A block of a container file whose header is `header`.
fn block(header: &[u8], count: i64, size: i64, data: &[u8]) -> Vec<u8> {
    let sync = &header[header.len() - 16..];
    [header, &zigzag(count), &zigzag(size), data, sync].concat()
}

fn string_record(fields: &[(&str, apache_avro::types::Value)]) -> apache_avro::types::Value {
    apache_avro::types::Value::Record(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// Container files that would each cost more than the function's memory:
/// a block declaring 512 MiB, a deflate block inflating to 512 MiB, array
/// counts of a million at twenty levels of nesting, an `array<null>` of a
/// billion items, a recursive record. Each is an `invalid_avro` dead letter
/// of its own; the good files around them land.
#[tokio::test]
async fn avro_container_bombs_are_dead_letters_under_the_limit() {
    use apache_avro::types::Value as Avro;
    let (s3, bucket) = s3_with_bucket("memory-avro").await;
    let mut f = Function::start(
        &bucket,
        &[(vars::SCHEMA, "s:string"), (vars::FORMAT, "avro-ocf")],
    );
    const STRINGS: &str = r#"{"type":"record","name":"r","fields":[{"name":"s","type":"string"}]}"#;
    let (header, good) = container(
        STRINGS,
        string_record(&[("s", Avro::String("ok".into()))]),
        false,
    );

    let declared = block(&header, 1, 512 << 20, b"\x04ok");

    let (deflate_header, _) = container(
        STRINGS,
        string_record(&[("s", Avro::String("x".into()))]),
        true,
    );
    let huge: i64 = 512 << 20;
    let mut deflated = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflated.write_all(&zigzag(huge)).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..(huge >> 20) {
        deflated.write_all(&chunk).unwrap();
    }
    let deflated = deflated.finish().unwrap();
    assert!(deflated.len() < 1 << 20, "{}", deflated.len());
    let inflating = block(&deflate_header, 1, deflated.len() as i64, &deflated);

    let mut nested = r#""long""#.to_string();
    for _ in 0..20 {
        nested = format!(r#"{{"type":"array","items":{nested}}}"#);
    }
    let nested_schema = format!(
        r#"{{"type":"record","name":"n","fields":[{{"name":"s","type":"string"}},{{"name":"xs","type":{nested}}}]}}"#
    );
    let (nested_header, _) = container(
        &nested_schema,
        string_record(&[("s", Avro::String("a".into())), ("xs", Avro::Array(vec![]))]),
        false,
    );
    let mut counts = b"\x02a".to_vec();
    for _ in 0..20 {
        counts.extend(zigzag(1_000_000));
    }
    let reserving = block(&nested_header, 1, counts.len() as i64, &counts);

    let nulls_schema = r#"{"type":"record","name":"a","fields":[
        {"name":"s","type":"string"},{"name":"xs","type":{"type":"array","items":"null"}}]}"#;
    let (nulls_header, _) = container(
        nulls_schema,
        string_record(&[("s", Avro::String("a".into())), ("xs", Avro::Array(vec![]))]),
        false,
    );
    let mut billion = b"\x02a".to_vec();
    billion.extend(zigzag(1_000_000_000));
    billion.push(0);
    let nulls = block(&nulls_header, 1, billion.len() as i64, &billion);

    let recursive_schema = r#"{"type":"record","name":"n","fields":[
        {"name":"s","type":"string"},{"name":"next","type":["null","n"]}]}"#;
    let (recursive_header, _) = container(
        recursive_schema,
        string_record(&[
            ("s", Avro::String("a".into())),
            ("next", Avro::Union(0, Box::new(Avro::Null))),
        ]),
        false,
    );
    // 100,000 levels of `next`, each a union branch and a one-byte string.
    let deep = [b"\x02a".as_slice(), &b"\x02\x02a".repeat(100_000), b"\x00"].concat();
    let recursive = block(&recursive_header, 1, deep.len() as i64, &deep);

    let payloads = vec![
        good.clone(),
        declared,
        inflating,
        reserving,
        nulls,
        recursive,
        good,
    ];
    let failures = f.invoke(&payloads);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(lake_rows(&s3, &bucket).await, 2);
    let mut letters = dead_letters_under(&s3, &bucket, "dead-letters/v/").await;
    letters.sort_by(|a, b| a.sequence_number.cmp(&b.sequence_number));
    let got: Vec<(String, String)> = letters
        .iter()
        .map(|l| (l.sequence_number.clone(), l.reason.clone()))
        .collect();
    let want: Vec<(String, String)> = (1..=5)
        .map(|i| (sequence_number(0, i), "invalid_avro".to_string()))
        .collect();
    assert_eq!(got, want, "{letters:#?}");
}
