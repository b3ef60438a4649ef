//! Hostile input: what an attacker or a broken
//! producer can put on the stream, and values that reach other systems.
//!
//! * A bounded `proptest` fuzz of the shared decode path (`decode_payload`:
//!   KPL framing, decompression, UTF-8, JSON, schema validation): it never
//!   panics, and every document is either a row of the schema's width or a
//!   rejection with a known reason and words.
//! * Explicit cases: compression bombs of every codec stopped by the
//!   decompressed-size cap, 100k-deep JSON, huge numbers, invalid UTF-8,
//!   timestamps out of range, a 1 MB record; and the same batch through the
//!   real `kinesis-to-parquet` handler into moto S3, where each lands as a
//!   dead letter with its reason (or, for the 1 MB record, as a row).
//! * CloudWatch Logs envelopes: fuzzed messages inside real envelopes give
//!   each event the outcome its message alone would have as JSON; damaged
//!   and hostile envelopes (deep nesting, thousands of tiny events, a bomb) are
//!   named rejections, through the decode path and the handler.
//! * Values that reach SQL, execution names and object keys: hostile dates,
//!   table names, provider names and stream positions are rejected with an
//!   error naming the field, or encoded so they cannot leave their place.

use std::io::Write;

use chrono::{TimeZone, Utc};
use integration_tests::{s3_with_bucket, StreamFunction};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::kinesis_event::{sequence_number, stream_arn, StreamRecord};
use lake_tools::lake_reader;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence, RngAlgorithm};
use telemetry_lake::config::schema::Schema;
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake::keys::{object_key, IngestHour, StreamPosition};
use telemetry_lake::lake::writer::S3Sink;
use telemetry_lake::repartition::dates::{resolve, DateError, DateRequest};
use telemetry_lake::repartition::queries::{
    Repartition, SqlError, SqlTemplate, Tables, DEFAULT_TEMPLATE,
};
use telemetry_lake::scheduler::schedule::execution_name;
use telemetry_lake::stream::decompress::{decompress, Codec, DecompressError};
use telemetry_lake::stream::format::{Format, PayloadDecoder};
use telemetry_lake::stream::source::decode_payload;

const SCHEMA_JSON: &str = include_str!("../config/ventilator.schema.json");
/// Kinesis' record limit, the functions' default cap.
const CAP: usize = 1024 * 1024;

/// Every reason a document or payload may be rejected for.
const KNOWN_REASONS: [&str; 21] = [
    "invalid_envelope",
    "invalid_csv",
    "wrong_column_count",
    "missing_column",
    "invalid_avro",
    "grok_no_match",
    "grok_time_budget_exceeded",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "invalid_timestamp",
    "empty_payload",
    "payload_too_large",
    "decompression_failed",
    "kpl_truncated",
    "kpl_bad_md5",
    "kpl_invalid_aggregate",
    "invalid_base64",
];

fn decoder() -> PayloadDecoder {
    PayloadDecoder::new(
        Format::Json,
        Schema::parse(SCHEMA_JSON).expect("shipped schema"),
        CAP,
    )
}

/// What one payload gave: per document, `Ok(width)` or `Err((reason, detail))`.
fn outcomes(data: &[u8]) -> Vec<Result<usize, (String, String)>> {
    outcomes_of(&decoder(), data)
}

/// As [`outcomes`], through `d`.
fn outcomes_of(d: &PayloadDecoder, data: &[u8]) -> Vec<Result<usize, (String, String)>> {
    let mut out = Vec::new();
    decode_payload(data, d, &mut d.budget(), |o| {
        out.push(
            o.map(|doc| doc.values.len())
                .map_err(|r| (r.reason.to_string(), r.detail)),
        )
    });
    out
}

/// The one rejection reason of a one-document payload (panics on a row).
fn reason(data: &[u8]) -> String {
    match outcomes(data).as_slice() {
        [Err((reason, detail))] => {
            assert!(!detail.is_empty(), "{reason} without words");
            reason.clone()
        }
        other => panic!("expected one rejection, got {other:?}"),
    }
}

fn good_doc() -> serde_json::Value {
    serde_json::json!({
        "ventilatorid": 7, "eventtime": "2026-11-22 10:00:00", "serialnumber": "S-1",
        "pressurecontrol": 20, "o2stats": 95, "minutevolume": 6, "manufacturer": "Acme"
    })
}

/// A good document with `field` replaced by the raw JSON text `raw`.
fn doc_with(field: &str, raw: &str) -> Vec<u8> {
    let mut doc = good_doc();
    doc[field] = serde_json::Value::String("\u{0}MARK".into());
    doc.to_string().replace("\"\\u0000MARK\"", raw).into_bytes()
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // A fixed seed: CI runs the same cases every time; no files written.
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0010),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------- compression bombs --

fn compress_all(d: &[u8]) -> Vec<(Codec, Vec<u8>)> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(d).expect("gzip");
    let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zl.write_all(d).expect("zlib");
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    bz.write_all(d).expect("bzip2");
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(d).expect("xz");
    vec![
        (Codec::Gzip, gz.finish().expect("gzip")),
        (Codec::Zlib, zl.finish().expect("zlib")),
        (Codec::Zstd, zstd::encode_all(d, 19).expect("zstd")),
        (Codec::Bzip2, bz.finish().expect("bzip2")),
        (Codec::Xz, xz.finish().expect("xz")),
    ]
}

#[test]
fn compression_bombs_are_stopped_by_the_decompressed_size_cap() {
    // 64 MiB of spaces (valid JSON whitespace) packs into a few kB to 64 kB:
    // a ratio of 1,000 to 50,000. The cap is 1 MiB.
    let bomb = vec![b' '; 64 * 1024 * 1024];
    for (codec, packed) in compress_all(&bomb) {
        assert!(
            packed.len() < CAP / 8,
            "{}: {} B",
            codec.name(),
            packed.len()
        );
        // The decoder stops at the cap: the error names the limit and codec,
        // and it read at most cap + 1 bytes (`take(cap + 1)` in stream/decompress.rs).
        assert_eq!(
            decompress(&packed, CAP),
            Err(DecompressError::TooLarge {
                limit: CAP,
                codec: Some(codec)
            }),
            "{}",
            codec.name()
        );
        // Through the shared path: one payload-wide dead letter.
        let got = outcomes(&packed);
        assert_eq!(got.len(), 1, "{}", codec.name());
        let (reason, detail) = got[0].clone().unwrap_err();
        assert_eq!(reason, "payload_too_large", "{}", codec.name());
        assert!(
            detail.contains("1048576") && detail.contains(codec.name()),
            "{detail}"
        );
    }
    // Exactly at the cap is accepted, one byte over is not: the bound is exact.
    let at_cap = vec![b' '; CAP];
    let mut over = at_cap.clone();
    over.push(b' ');
    for (codec, packed) in compress_all(&at_cap) {
        assert_eq!(
            decompress(&packed, CAP).map(|b| b.len()),
            Ok(CAP),
            "{}",
            codec.name()
        );
    }
    for (codec, packed) in compress_all(&over) {
        assert!(
            matches!(
                decompress(&packed, CAP),
                Err(DecompressError::TooLarge { .. })
            ),
            "{}",
            codec.name()
        );
    }
    // A bomb inside a bomb inflates once only: the inner bomb is binary.
    let inner = compress_all(&bomb).remove(0).1;
    let outer = compress_all(&inner).remove(0).1;
    assert_eq!(reason(&outer), "invalid_utf8");
}

// ----------------------------------------------------------- explicit cases --

#[test]
fn deeply_nested_json_is_rejected_without_overflowing_the_stack() {
    let arrays = "[".repeat(100_000);
    assert_eq!(reason(arrays.as_bytes()), "invalid_json");
    let objects = "{\"a\":".repeat(100_000);
    assert_eq!(reason(objects.as_bytes()), "invalid_json");
    // Deep nesting under a declared field, and under an unknown one.
    let under_declared = doc_with("serialnumber", &"[".repeat(100_000));
    assert_eq!(reason(&under_declared), "invalid_json");
    // Under an unknown key, a closed 100k-deep value is valid JSON: it is
    // skipped without recursion (serde_json ignores values iteratively) and
    // the document is a row.
    let mut unknown = good_doc().to_string();
    unknown.insert_str(
        1,
        &format!("\"extra\":{}0{},", "[".repeat(100_000), "]".repeat(100_000)),
    );
    assert_eq!(outcomes(unknown.as_bytes()), vec![Ok(7)]);
    // The same, left open, is invalid JSON.
    let mut open = good_doc().to_string();
    open.insert_str(1, &format!("\"extra\":{}", "[".repeat(100_000)));
    assert_eq!(reason(open.as_bytes()), "invalid_json");
}

#[test]
fn huge_numbers_are_rejected_naming_the_field() {
    // Past u64 (and below i64), serde_json reads a number as a float: it is
    // then a float where an integer is declared.
    for (raw, want) in [
        ("1e400", "invalid_json"),
        ("9223372036854775808", "out_of_range"),
        ("18446744073709551615", "out_of_range"),
        ("18446744073709551616", "wrong_type"),
        ("-9223372036854775809", "wrong_type"),
        ("123456789012345678901234567890", "wrong_type"),
        ("1.5", "wrong_type"),
    ] {
        let got = outcomes(&doc_with("ventilatorid", raw));
        let [Err((reason, detail))] = got.as_slice() else {
            panic!("{raw}: {got:?}");
        };
        assert_eq!(reason, want, "{raw}: {detail}");
        if want != "invalid_json" {
            assert!(detail.contains("ventilatorid"), "{raw}: {detail}");
        }
    }
    // The extremes that do fit are rows.
    for raw in ["9223372036854775807", "-9223372036854775808"] {
        assert_eq!(
            outcomes(&doc_with("ventilatorid", raw)),
            vec![Ok(7)],
            "{raw}"
        );
    }
}

#[test]
fn invalid_utf8_is_rejected_with_its_offset() {
    let mut bytes = good_doc().to_string().into_bytes();
    let at = bytes.len() - 3;
    bytes[at] = 0xff;
    let got = outcomes(&bytes);
    let [Err((why, detail))] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(why, "invalid_utf8");
    assert!(detail.contains(&format!("offset {at}")), "{detail}");
    // A lone surrogate escape is valid UTF-8 text but not a valid string.
    assert_eq!(
        reason(&doc_with("serialnumber", "\"\\ud800\"")),
        "invalid_json"
    );
}

#[test]
fn timestamps_out_of_range_are_rejected_naming_the_field() {
    for raw in [
        "\"0000-01-01 00:00:00\"",
        "\"99999-01-01 00:00:00\"",
        "\"-0001-01-01 00:00:00\"",
        "\"+10000-01-01 00:00:00\"",
        "\"2026-02-30 00:00:00\"",
        "\"2026-11-22 24:00:00\"",
        "\"2026-11-22 10:00:00'; DROP TABLE x; --\"",
        "-62135596800",
    ] {
        let got = outcomes(&doc_with("eventtime", raw));
        let [Err((reason, detail))] = got.as_slice() else {
            panic!("{raw}: {got:?}");
        };
        assert!(
            reason == "invalid_timestamp" || reason == "wrong_type",
            "{raw}: {reason} {detail}"
        );
        assert!(detail.contains("eventtime"), "{raw}: {detail}");
    }
    // The edges of the accepted range are rows.
    for raw in ["\"0001-01-01 00:00:00\"", "\"9999-12-31 23:59:59\""] {
        assert_eq!(outcomes(&doc_with("eventtime", raw)), vec![Ok(7)], "{raw}");
    }
}

#[test]
fn a_one_megabyte_record_is_a_row_and_one_byte_more_is_a_dead_letter() {
    let fill = |n: usize| {
        let mut doc = good_doc();
        let base = doc.to_string().len() - "S-1".len();
        doc["serialnumber"] = serde_json::Value::String("x".repeat(n - base));
        doc.to_string().into_bytes()
    };
    let exactly = fill(CAP);
    assert_eq!(exactly.len(), CAP);
    assert_eq!(outcomes(&exactly), vec![Ok(7)]);
    assert_eq!(reason(&fill(CAP + 1)), "payload_too_large");
}

// --------------------------------------------------------------- the fuzzer --

/// Pieces of JSON and of the formats the decoder recognises, glued at random
/// so the fuzzer reaches past the first byte of the parsers.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\n",
    " ",
    "null",
    "true",
    "-",
    "0",
    "1e400",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "\"ventilatorid\":",
    "\"eventtime\":",
    "\"serialnumber\":",
    "\"manufacturer\":",
    "\"pressurecontrol\":",
    "\"o2stats\":",
    "\"minutevolume\":",
    "\"2026-11-22 10:00:00\"",
    "\"0000-01-01 00:00:00\"",
    "7",
    "\"S\"",
    "'; DROP TABLE t; --",
    "../",
    "\u{202e}",
    "\u{fffd}",
];

fn fragment_soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..64)
        .prop_map(|parts| parts.concat().into_bytes())
}

/// A good document with one field swapped for a random JSON value.
fn mutated_doc() -> impl Strategy<Value = Vec<u8>> {
    let fields = [
        "ventilatorid",
        "eventtime",
        "serialnumber",
        "pressurecontrol",
        "o2stats",
        "minutevolume",
        "manufacturer",
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| serde_json::json!(f).to_string()),
        ".{0,40}".prop_map(|s| serde_json::Value::String(s).to_string()),
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
    ];
    (prop::sample::select(fields.to_vec()), value).prop_map(|(f, v)| doc_with(f, &v))
}

/// Raw bytes, sometimes behind a codec's or the KPL's magic bytes.
fn magic_prefixed() -> impl Strategy<Value = Vec<u8>> {
    let magic: Vec<&'static [u8]> = vec![
        b"",
        &[0x1f, 0x8b],
        &[0x28, 0xb5, 0x2f, 0xfd],
        b"BZh9",
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
        b"\xff\x06\x00\x00sNaPpY",
        &[0x78, 0x9c],
        &[0xf3, 0x89, 0x9a, 0xc2],
    ];
    (
        prop::sample::select(magic),
        prop::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(m, rest)| [m, &rest[..]].concat())
}

fn check_outcomes(data: &[u8]) -> Result<(), TestCaseError> {
    check_outcomes_of(&decoder(), data)
}

fn check_outcomes_of(d: &PayloadDecoder, data: &[u8]) -> Result<(), TestCaseError> {
    let got = outcomes_of(d, data);
    prop_assert!(!got.is_empty(), "a payload must give at least one outcome");
    for o in got {
        match o {
            Ok(width) => prop_assert_eq!(width, 7),
            Err((reason, detail)) => {
                prop_assert!(KNOWN_REASONS.contains(&reason.as_str()), "{}", reason);
                prop_assert!(!detail.is_empty());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(256))]

    #[test]
    fn fuzz_arbitrary_bytes_never_panic(data in magic_prefixed()) {
        check_outcomes(&data)?;
    }

    #[test]
    fn fuzz_json_fragments_never_panic(data in fragment_soup()) {
        check_outcomes(&data)?;
    }

    #[test]
    fn fuzz_mutated_documents_are_rows_or_named_rejections(data in mutated_doc()) {
        check_outcomes(&data)?;
        // Compressed, the outcome is the same as plain.
        let packed = compress_all(&data).remove(0).1;
        prop_assert_eq!(outcomes(&packed), outcomes(&data));
    }
}

// ---------------------------------------------------- the other formats --

/// A decoder of `format` for the shipped schema.
fn decoder_of(format: Format) -> PayloadDecoder {
    PayloadDecoder::new(
        format,
        Schema::parse(SCHEMA_JSON).expect("shipped schema"),
        CAP,
    )
}

fn csv_decoder() -> PayloadDecoder {
    decoder_of(Format::Csv(Default::default()))
}

fn grok_decoder() -> PayloadDecoder {
    let pattern = telemetry_lake::stream::format::GrokPattern::compile(
        "%{INT:ventilatorid} (?<eventtime>[0-9: -]+)\\|%{WORD:serialnumber} %{INT:pressurecontrol} \
         %{INT:o2stats} %{INT:minutevolume} %{WORD:manufacturer}",
        "",
    )
    .expect("grok pattern");
    decoder_of(Format::Grok(std::sync::Arc::new(pattern)))
}

fn avro_writer() -> telemetry_lake::stream::format::AvroWriterSchema {
    telemetry_lake::stream::format::AvroWriterSchema::parse(lake_tools::bench::AVRO_SCHEMA)
        .expect("writer schema")
}

/// A good reading as an Avro record of the bench's writer schema.
fn avro_reading(id: i64) -> apache_avro::types::Value {
    use apache_avro::types::Value as A;
    A::Record(vec![
        ("ventilatorid".into(), A::Long(id)),
        ("eventtime".into(), A::String("2026-11-22 10:00:00".into())),
        ("serialnumber".into(), A::String("S-1".into())),
        ("pressurecontrol".into(), A::Long(20)),
        ("o2stats".into(), A::Long(95)),
        ("minutevolume".into(), A::Long(6)),
        ("manufacturer".into(), A::String("Acme".into())),
    ])
}

/// Good bytes of a format with random bytes overwritten, and a random cut.
fn damaged(good: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = good.len();
    (prop::collection::vec((0..len, any::<u8>()), 0..6), 0..=len).prop_map(move |(flips, cut)| {
        let mut bytes = good.clone();
        for (at, b) in flips {
            bytes[at] = b;
        }
        bytes.truncate(cut.max(1));
        bytes
    })
}

/// CSV-ish lines: fields, quotes, delimiters and line ends at random.
fn csv_soup() -> impl Strategy<Value = Vec<u8>> {
    let parts = vec![
        "7",
        ",",
        "\"",
        "\"\"",
        "\n",
        "\r\n",
        "2026-11-22 10:00:00",
        "S-1",
        "Acme",
        "-",
        "99999999999999999999",
        "1e400",
        "",
        " ",
        "\u{0}",
        "\u{202e}",
    ];
    prop::collection::vec(prop::sample::select(parts), 0..80).prop_map(|p| p.concat().into_bytes())
}

/// A KPL aggregate with a valid MD5 of random user records: the protobuf
/// and every user record's decode are reached.
fn kpl_soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8).prop_map(|users| {
        let mut with_good = users;
        with_good.push(good_doc().to_string().into_bytes());
        integration_tests::kpl_record(&with_good)
    })
}

proptest! {
    #![proptest_config(proptest_config(128))]

    #[test]
    fn fuzz_csv_is_rows_or_named_rejections(data in prop_oneof![csv_soup(), magic_prefixed()]) {
        check_outcomes_of(&csv_decoder(), &data)?;
    }

    #[test]
    fn fuzz_grok_is_rows_or_named_rejections(data in prop_oneof![csv_soup(), fragment_soup()]) {
        check_outcomes_of(&grok_decoder(), &data)?;
    }

    #[test]
    fn fuzz_avro_datums_are_rows_or_named_rejections(
        data in prop_oneof![
            damaged(apache_avro::to_avro_datum(avro_writer().schema(), avro_reading(7)).unwrap()),
            magic_prefixed(),
        ]
    ) {
        check_outcomes_of(&decoder_of(Format::AvroDatum(std::sync::Arc::new(avro_writer()))), &data)?;
    }

    #[test]
    fn fuzz_avro_container_files_are_rows_or_named_rejections(
        data in prop_oneof![
            damaged({
                let schema = avro_writer().schema().clone();
                let mut w = apache_avro::Writer::new(&schema, Vec::new());
                for id in 0..5 {
                    w.append(avro_reading(id)).unwrap();
                }
                w.into_inner().unwrap()
            }),
            magic_prefixed(),
        ]
    ) {
        check_outcomes_of(&decoder_of(Format::AvroFile), &data)?;
    }

    #[test]
    fn fuzz_kpl_aggregates_with_a_valid_md5_are_rows_or_named_rejections(data in kpl_soup()) {
        check_outcomes(&data)?;
        // The good user record is always a row.
        prop_assert!(outcomes(&data).contains(&Ok(7)));
    }
}

// ---------------------------------------------------- CloudWatch Logs --

use lake_tools::cloudwatch_logs::{data_message, gzip, LogEvent};
use telemetry_lake::stream::format::{CloudWatchLogs, EnvelopeFields, MessageFormat};

/// CloudWatch Logs envelopes of JSON messages, for the shipped schema (which
/// declares none of the envelope's fields: each row is its message's).
fn cloudwatch_logs_decoder(cap: usize) -> PayloadDecoder {
    PayloadDecoder::new(
        Format::CloudWatchLogs(std::sync::Arc::new(CloudWatchLogs {
            message: MessageFormat::Json,
            fields: EnvelopeFields::default(),
        })),
        Schema::parse(SCHEMA_JSON).expect("shipped schema"),
        cap,
    )
}

/// The JSON of an envelope holding `messages`, one log event each.
fn envelope_of(messages: &[Vec<u8>]) -> Vec<u8> {
    let events: Vec<LogEvent> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| LogEvent::new(1_764_000_000_000, i, String::from_utf8_lossy(m)))
        .collect();
    data_message("/ward-3/ventilators", "vent-7", &events)
}

/// Messages a broken producer could log: mutated readings, JSON soup, and
/// good readings.
fn log_messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let message = prop_oneof![
        mutated_doc(),
        fragment_soup(),
        Just(good_doc().to_string().into_bytes()),
    ];
    prop::collection::vec(message, 0..12)
}

proptest! {
    #![proptest_config(proptest_config(128))]

    #[test]
    fn fuzz_log_events_have_the_outcome_of_their_message_alone(messages in log_messages()) {
        let d = cloudwatch_logs_decoder(CAP);
        let envelope = envelope_of(&messages);
        let got = outcomes_of(&d, &gzip(&envelope));
        // Each event is one outcome, in order: what JSON makes of its
        // message (as the envelope carried it: lossy UTF-8) when that is one
        // document.
        prop_assert_eq!(got.len(), messages.len());
        for (outcome, message) in got.iter().zip(&messages) {
            let text = String::from_utf8_lossy(message);
            match outcomes(text.as_bytes()).as_slice() {
                [alone] if !text.trim().is_empty() && !text.trim().contains('\n') => {
                    prop_assert_eq!(outcome, alone);
                }
                _ => match outcome {
                    Ok(width) => prop_assert_eq!(*width, 7),
                    Err((reason, _)) => {
                        prop_assert!(KNOWN_REASONS.contains(&reason.as_str()), "{}", reason)
                    }
                },
            }
        }
        // Uncompressed (a replayed dead letter), the outcome is the same.
        prop_assert_eq!(outcomes_of(&d, &envelope), got);
    }

    #[test]
    fn fuzz_damaged_envelopes_are_rows_or_named_rejections(
        data in prop_oneof![
            damaged(envelope_of(&[good_doc().to_string().into_bytes(), b"{}".to_vec()])),
            damaged(gzip(&envelope_of(&[good_doc().to_string().into_bytes()]))),
            magic_prefixed(),
            fragment_soup(),
        ]
    ) {
        check_outcomes_of(&cloudwatch_logs_decoder(CAP), &data)?;
    }
}

#[test]
fn hostile_envelopes_are_named_rejections() {
    let d = cloudwatch_logs_decoder(CAP);
    let one = |data: &[u8]| match outcomes_of(&d, data).as_slice() {
        [Err((reason, detail))] => {
            assert!(!detail.is_empty());
            reason.clone()
        }
        other => panic!("expected one rejection, got {other:?}"),
    };
    // Deep nesting in a field the reader skips, and in the events' place.
    let deep = format!(
        r#"{{"messageType":"DATA_MESSAGE","x":{}}}"#,
        "[".repeat(100_000)
    );
    assert_eq!(one(&gzip(deep.as_bytes())), "invalid_envelope");
    let deep = format!(
        r#"{{"messageType":"DATA_MESSAGE","logEvents":{}}}"#,
        "[".repeat(100_000)
    );
    assert_eq!(one(deep.as_bytes()), "invalid_envelope");
    // A message nested 100k deep is that event's rejection alone.
    let nested = "[".repeat(100_000).into_bytes();
    let got = outcomes_of(
        &d,
        &gzip(&envelope_of(&[nested, good_doc().to_string().into_bytes()])),
    );
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].clone().unwrap_err().0, "invalid_json");
    assert_eq!(got[1], Ok(7));
    // A bomb: 64 MiB of spaces before the envelope.
    let mut bomb = vec![b' '; 64 * 1024 * 1024];
    bomb.extend_from_slice(&envelope_of(&[good_doc().to_string().into_bytes()]));
    assert_eq!(one(&gzip(&bomb)), "payload_too_large");
    // Wrong types where the envelope's fields are.
    for bad in [
        r#"{"messageType":7}"#,
        r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":"soon","message":"{}"}]}"#,
        r#"{"messageType":"DATA_MESSAGE","logEvents":{}}"#,
    ] {
        assert_eq!(one(&gzip(bad.as_bytes())), "invalid_envelope", "{bad}");
    }
}

#[test]
fn an_envelope_of_thousands_of_tiny_events_stops_at_the_documents_budget() {
    // 3,000 empty messages (about 110 bytes an event, 330 kB in all) against
    // a budget of 1,000 documents (and 512 kB): the events past it are one
    // dead letter of the payload, from the first event not read.
    let d = cloudwatch_logs_decoder(4 * CAP)
        .with_invocation_budget(1_000 * telemetry_lake::stream::format::BYTES_PER_DOCUMENT);
    let events: Vec<LogEvent> = (0..3_000).map(|i| LogEvent::new(1, i, "")).collect();
    let data = gzip(&data_message("g", "s", &events));
    let mut budget = d.budget();
    let mut rejected = Vec::new();
    let mut seen = 0;
    decode_payload(&data, &d, &mut budget, |o| {
        seen += 1;
        if let Err(r) = o {
            rejected.push((r.index, r.reason, r.scope));
        }
    });
    assert_eq!(seen, 1_001);
    assert_eq!(rejected.len(), 1_001);
    assert_eq!(
        rejected.last().copied(),
        Some((
            1_000,
            "payload_too_large",
            telemetry_lake::stream::dead_letter::Scope::Payload
        ))
    );
}

// ------------------------------------------ the same, through the handler --

#[tokio::test]
async fn hostile_records_become_dead_letters_with_reasons_in_s3() {
    let (s3, bucket) = s3_with_bucket("hostile").await;
    let config = StreamConfig {
        max_payload_bytes: CAP,
        write_concurrency: 2,
        ..integration_tests::stream_config(&bucket)
    };
    let f = KinesisToParquet::new(config, S3Sink::new(s3.clone(), &bucket));
    let bomb = compress_all(&vec![b' '; 16 * 1024 * 1024]).remove(2).1;
    let mut bad_utf8 = good_doc().to_string().into_bytes();
    bad_utf8[5] = 0xc3;
    let payloads: Vec<(Vec<u8>, &str)> = vec![
        (bomb, "payload_too_large"),
        ("[".repeat(100_000).into_bytes(), "invalid_json"),
        (doc_with("ventilatorid", "1e400"), "invalid_json"),
        (
            doc_with("ventilatorid", "18446744073709551615"),
            "out_of_range",
        ),
        (bad_utf8, "invalid_utf8"),
        (
            doc_with("eventtime", "\"99999-01-01 00:00:00\""),
            "invalid_timestamp",
        ),
        (
            doc_with("eventtime", "\"0000-01-01 00:00:00\""),
            "invalid_timestamp",
        ),
        (vec![b'x'; CAP + 1], "payload_too_large"),
        (good_doc().to_string().into_bytes(), "good"),
    ];
    let letters = lands_as_reasons(&f, &s3, &bucket, &payloads).await;
    // The raw bytes are kept for replay: the bomb's compressed bytes, not
    // its 16 MiB of output.
    assert_eq!(letters[0].bytes().unwrap(), payloads[0].0);
}

/// Puts each payload through the handler as a record of one event, and
/// checks that each lands as a dead letter with its reason, or (`good`) as
/// a row; gives the dead letters in sequence order.
async fn lands_as_reasons(
    f: &KinesisToParquet<S3Sink>,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    payloads: &[(Vec<u8>, &str)],
) -> Vec<telemetry_lake::stream::dead_letter::DeadLetter> {
    let arrival = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let records: Vec<StreamRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, (data, _))| StreamRecord {
            data: data.clone(),
            partition_key: format!("p{i}"),
            arrival,
            sequence_number: sequence_number(0, i as u64),
        })
        .collect();
    let event = integration_tests::kinesis_event(
        &stream_arn("us-east-1", "hostile"),
        "shardId-000000000000",
        &records,
    );
    let (_, response) = f
        .invoke(&event)
        .await
        .expect("the handler never fails on bad data");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let mut letters = Vec::new();
    for o in lake_reader::list(s3, bucket, "dead-letters/v/")
        .await
        .unwrap()
    {
        let bytes = lake_reader::get(s3, bucket, &o.key).await.unwrap();
        letters.extend(lake_reader::dead_letters(&bytes).unwrap());
    }
    letters.sort_by(|a, b| a.sequence_number.cmp(&b.sequence_number));
    let got: Vec<(String, String)> = letters
        .iter()
        .map(|l| (l.sequence_number.clone(), l.reason.clone()))
        .collect();
    let want: Vec<(String, String)> = payloads
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| *r != "good")
        .map(|(i, (_, r))| (sequence_number(0, i as u64), r.to_string()))
        .collect();
    assert_eq!(got, want);
    let mut rows = 0;
    for o in lake_reader::list(s3, bucket, "raw/v/").await.unwrap() {
        let bytes = lake_reader::get(s3, bucket, &o.key).await.unwrap();
        rows += lake_reader::parquet_batches(bytes)
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>();
    }
    assert_eq!(rows, payloads.iter().filter(|(_, r)| *r == "good").count());
    letters
}

#[tokio::test]
async fn hostile_cloudwatch_logs_records_become_dead_letters_with_reasons_in_s3() {
    let (s3, bucket) = s3_with_bucket("hostile-cwl").await;
    let config = StreamConfig {
        max_payload_bytes: CAP,
        format: cloudwatch_logs_decoder(CAP).format().clone(),
        ..integration_tests::stream_config(&bucket)
    };
    let f = KinesisToParquet::new(config, S3Sink::new(s3.clone(), &bucket));
    let good = good_doc().to_string().into_bytes();
    let mut bomb = vec![b' '; 16 * 1024 * 1024];
    bomb.extend_from_slice(&envelope_of(std::slice::from_ref(&good)));
    let deep = format!(
        r#"{{"messageType":"DATA_MESSAGE","x":{}}}"#,
        "[".repeat(100_000)
    );
    let payloads: Vec<(Vec<u8>, &str)> = vec![
        (gzip(&bomb), "payload_too_large"),
        (gzip(deep.as_bytes()), "invalid_envelope"),
        (
            gzip(&envelope_of(std::slice::from_ref(&good)))[..30].to_vec(),
            "decompression_failed",
        ),
        (
            gzip(&envelope_of(&["[".repeat(100_000).into_bytes()])),
            "invalid_json",
        ),
        (good.clone(), "invalid_envelope"),
        (gzip(&envelope_of(&[good])), "good"),
    ];
    let letters = lands_as_reasons(&f, &s3, &bucket, &payloads).await;
    assert_eq!(letters[0].bytes().unwrap(), payloads[0].0);
}

// ------------------------------------------- values that reach other systems --

/// Strings an attacker would try wherever a name or date is accepted.
fn hostile_strings() -> Vec<String> {
    vec![
        "'".into(),
        "\"".into(),
        "2026-11-22'; DROP TABLE lake; --".into(),
        "2026-11-22\n".into(),
        "../../etc/passwd".into(),
        "a/b".into(),
        "\0".into(),
        "\r\n".into(),
        "\u{202e}gnp.exe".into(),
        "日本語".into(),
        "x".repeat(10_000),
        "".into(),
        " ".into(),
        "${jndi:ldap://x}".into(),
        "%2e%2e%2f".into(),
    ]
}

#[test]
fn hostile_dates_never_reach_the_sql() {
    let zone = "UTC".parse().expect("zone");
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap();
    for h in hostile_strings() {
        for (request, field) in [
            (
                DateRequest {
                    date: Some(h.clone()),
                    ..DateRequest::default()
                },
                "date",
            ),
            (
                DateRequest {
                    from: Some(h.clone()),
                    to: Some("2026-11-20".into()),
                    ..DateRequest::default()
                },
                "from",
            ),
            (
                DateRequest {
                    from: Some("2026-11-20".into()),
                    to: Some(h.clone()),
                    ..DateRequest::default()
                },
                "to",
            ),
        ] {
            match resolve(&request, zone, now, 31) {
                Err(e @ DateError::InvalidDate { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(&format!("`{field}`")), "{text}");
                }
                other => panic!("{h:?} as {field}: {other:?}"),
            }
        }
    }
}

#[test]
fn hostile_table_names_are_rejected_and_rendered_sql_holds_only_dates() {
    let template = SqlTemplate::parse(DEFAULT_TEMPLATE).expect("template");
    let good = Tables {
        database: "lake".into(),
        source: "raw".into(),
        target: "hourly".into(),
        reference: "devices".into(),
    };
    for h in hostile_strings() {
        for which in 0..4 {
            let mut t = good.clone();
            let (slot, what) = match which {
                0 => (&mut t.database, "database"),
                1 => (&mut t.source, "source table"),
                2 => (&mut t.target, "target table"),
                _ => (&mut t.reference, "reference table"),
            };
            *slot = h.clone();
            match Repartition::new(template.clone(), t, 100, 1) {
                Err(SqlError::BadIdentifier { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{h:?} as {what}: {other:?}"),
            }
        }
    }
    // What does reach the SQL: checked names and chrono-formatted dates only,
    // over the widest dates chrono can hold.
    let r = Repartition::new(template, good, 100, 24).expect("repartition");
    let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).expect("day");
    for (from, to) in [
        (day(1, 1, 1), day(1, 1, 2)),
        (day(9999, 12, 30), day(9999, 12, 31)),
        (chrono::NaiveDate::MAX, chrono::NaiveDate::MAX),
    ] {
        let sql = r
            .render(telemetry_lake::repartition::dates::DateRange { from, to })
            .expect("render");
        let timestamps: Vec<&str> = sql
            .split("TIMESTAMP '")
            .skip(1)
            .filter_map(|rest| rest.split_once('\'').map(|(literal, _)| literal))
            .collect();
        assert_eq!(timestamps.len(), 3, "{sql}");
        for t in timestamps {
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_digit() || b" -:+".contains(&b)),
                "a timestamp literal in the SQL is not a time: {t:?}"
            );
        }
    }
}

#[test]
fn hostile_provider_names_give_valid_distinct_execution_names() {
    let slot = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    let mut names = hostile_strings();
    names.extend(["a.b", "a:b", "a_b", "a b"].map(String::from));
    for h in names {
        let name = execution_name(&h, slot);
        assert!(
            !name.is_empty() && name.len() <= 80,
            "{h:?} → {} chars",
            name.len()
        );
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{h:?} → {name:?}"
        );
        assert!(name.ends_with("-20261122T1000Z"), "{name}");
        assert_eq!(execution_name(&h, slot), name, "deterministic");
        if let Some(before) = seen.insert(name.clone(), h.clone()) {
            panic!("{before:?} and {h:?} share the execution name {name}");
        }
    }
}

#[test]
fn hostile_stream_positions_cannot_steer_a_key_out_of_its_prefix() {
    let hour = IngestHour::of(Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap());
    let hostile = hostile_strings();
    for h in &hostile {
        for part in 0..3 {
            let mut v = ["stream", "shardId-000000000000", "1"];
            v[part] = h;
            let pos = StreamPosition {
                stream: v[0],
                shard: v[1],
                sequence_number: v[2],
            };
            for (prefix, ext) in [("raw/v", "snappy.parquet"), ("dead-letters/v", "jsonl")] {
                let key = object_key(prefix, hour, &pos, ext);
                let rest = key
                    .strip_prefix(&format!("{prefix}/{}/", hour.path()))
                    .unwrap_or_else(|| panic!("{h:?}: {key}"));
                assert!(!rest.contains('/'), "{h:?}: {key}");
                assert!(!key.contains(".."), "{h:?}: {key}");
                assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{h:?}: {key:?}");
                assert!(key.len() <= 1024, "S3's key limit: {}", key.len());
            }
        }
    }
}
