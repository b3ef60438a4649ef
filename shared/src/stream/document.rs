//! Parsing one JSON document into typed values, checked against the schema.
//!
//! The document is read with a serde visitor straight into one slot per
//! declared field: unknown keys are skipped without being built, strings
//! without escapes are borrowed, and nothing goes through `serde_json::Value`.
//! A good record is read once, by sonic-rs, straight into converted values;
//! anything else is read again by serde_json, which names what is wrong
//! (see [`read_fast`]).

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDateTime};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::config::schema::{Field, FieldType, Schema, DEFAULT_TIMESTAMP_FORMAT};

/// A converted value of one field of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Int64(i64),
    Float64(f64),
    Boolean(bool),
    String(Cow<'a, str>),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
}

/// One good document of a payload: its values in schema order, its index
/// in the payload, its bytes as the payload held them (empty when they
/// cannot be cut out, as from a compressed Avro container block), and its
/// sub-sequence number when it came from a KPL user record.
#[derive(Debug, Clone)]
pub struct Document<'b> {
    pub index: usize,
    pub values: Vec<Value<'b>>,
    pub bytes: &'b [u8],
    pub sub_sequence_number: Option<u64>,
    /// Fields the document holds that the schema does not declare (JSON
    /// keys, CSV header columns, Avro writer fields): left out of the row,
    /// counted per batch.
    pub undeclared: usize,
}

impl<'b> Document<'b> {
    /// A document of a payload's own (not from a KPL user record).
    pub fn new(index: usize, values: Vec<Value<'b>>, bytes: &'b [u8]) -> Self {
        Document {
            index,
            values,
            bytes,
            sub_sequence_number: None,
            undeclared: 0,
        }
    }

    /// The document, holding `n` fields the schema does not declare.
    pub fn with_undeclared(mut self, n: usize) -> Self {
        self.undeclared = n;
        self
    }
}

/// Why a document is a bad record.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("payload is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("invalid JSON at line {line} column {column}: {message}")]
    InvalidJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("expected a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    #[error("missing required field `{field}`")]
    MissingField { field: String },
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("field `{field}`: {value} does not fit in a 64-bit integer")]
    OutOfRange { field: String, value: String },
    #[error("field `{field}`: {value:?} is not a timestamp of format {format:?}")]
    InvalidTimestamp {
        field: String,
        value: String,
        format: String,
    },
    #[error("payload holds no JSON document")]
    Empty,
    #[error("invalid CSV at line {line}: {message}")]
    InvalidCsv { line: u64, message: String },
    #[error("CSV line {line} has {found} columns, expected {expected}")]
    WrongColumnCount {
        line: u64,
        expected: usize,
        found: usize,
    },
    #[error("the CSV header has no column `{field}`, which the schema requires")]
    MissingColumn { field: String },
    #[error("invalid Avro data: {message}")]
    InvalidAvro { message: String },
    #[error("the line does not match the grok pattern {pattern:?}")]
    GrokNoMatch { pattern: String },
    #[error("the payload's grok time budget of {budget_ms} ms ran out before this line")]
    GrokTimeBudget { budget_ms: u128 },
    #[error("not a CloudWatch Logs subscription envelope: {message}")]
    InvalidEnvelope { message: String },
}

impl DocumentError {
    /// A stable, machine-readable name of the reason, used to group dead letters.
    pub fn kind(&self) -> &'static str {
        match self {
            DocumentError::InvalidUtf8 { .. } => "invalid_utf8",
            DocumentError::InvalidJson { .. } => "invalid_json",
            DocumentError::NotAnObject { .. } => "not_an_object",
            DocumentError::MissingField { .. } => "missing_field",
            DocumentError::WrongType { .. } => "wrong_type",
            DocumentError::OutOfRange { .. } => "out_of_range",
            DocumentError::InvalidTimestamp { .. } => "invalid_timestamp",
            DocumentError::Empty => "empty_payload",
            DocumentError::InvalidCsv { .. } => "invalid_csv",
            DocumentError::WrongColumnCount { .. } => "wrong_column_count",
            DocumentError::MissingColumn { .. } => "missing_column",
            DocumentError::InvalidAvro { .. } => "invalid_avro",
            DocumentError::GrokNoMatch { .. } => "grok_no_match",
            DocumentError::GrokTimeBudget { .. } => "grok_time_budget_exceeded",
            DocumentError::InvalidEnvelope { .. } => "invalid_envelope",
        }
    }
}

/// What the visitor saw for a field, before conversion to the declared type.
#[derive(Debug)]
enum Raw<'a> {
    Absent,
    Null,
    Int(i64),
    BigInt(String),
    Float(f64),
    Bool(bool),
    Str(Cow<'a, str>),
    Object,
    Array,
}

impl Raw<'_> {
    fn describe(&self) -> String {
        match self {
            Raw::Absent => "nothing".into(),
            Raw::Null => "null".into(),
            Raw::Int(i) => format!("integer {i}"),
            Raw::BigInt(s) => format!("integer {s}"),
            Raw::Float(f) => format!("number {f}"),
            Raw::Bool(b) => format!("boolean {b}"),
            Raw::Str(s) => {
                let shown: String = s.chars().take(40).collect();
                let more = if s.chars().nth(40).is_some() {
                    "…"
                } else {
                    ""
                };
                format!("string {shown:?}{more}")
            }
            Raw::Object => "an object".into(),
            Raw::Array => "an array".into(),
        }
    }
}

/// `bytes` as text, or the offset of its first byte that is not UTF-8.
/// simdutf8 checks good text faster than std; std then finds where bad text
/// goes wrong, which simdutf8's fast check does not say.
pub fn utf8(bytes: &[u8]) -> Result<&str, usize> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| {
        std::str::from_utf8(bytes)
            .err()
            .map_or(0, |e| e.valid_up_to())
    })
}

/// Parses one JSON document into its values, in schema order.
pub fn parse_document<'a>(schema: &Schema, doc: &'a str) -> Result<Vec<Value<'a>>, DocumentError> {
    parse_document_counting(schema, doc, &mut 0)
}

/// As [`parse_document`], adding to `undeclared` the keys of a good
/// document that the schema does not declare (nothing for a bad one).
pub fn parse_document_counting<'a>(
    schema: &Schema,
    doc: &'a str,
    undeclared: &mut usize,
) -> Result<Vec<Value<'a>>, DocumentError> {
    if let Some(values) = read_fast(schema, doc, undeclared) {
        return Ok(values);
    }
    let mut raw: Vec<Raw<'a>> = Vec::with_capacity(schema.fields.len());
    raw.resize_with(schema.fields.len(), || Raw::Absent);
    let mut unknown = 0;
    if let Some(found) =
        read_checked(schema, doc, &mut raw, &mut unknown).map_err(|e| json_error(&e))?
    {
        return Err(DocumentError::NotAnObject { found });
    }
    let values = schema
        .fields
        .iter()
        .zip(raw)
        .map(|(field, raw)| convert(field, raw))
        .collect::<Result<Vec<_>, _>>()?;
    *undeclared += unknown;
    Ok(values)
}

/// A document with an undeclared key and more `{` and `[` bytes than this
/// leaves the fast path. sonic-rs skips a value it does not need
/// recursively, so a deeply nested one (hostile input) would overflow the
/// stack, where serde_json skips iteratively and limits the depth of what
/// it builds. A document with at most this many openers cannot nest deeper
/// than this, so counting them is enough; telemetry documents have one or
/// two. Declared fields need no count: [`FastValue`] refuses an object or
/// an array before reading into it, so only a skipped value can nest.
const FAST_PATH_MAX_OPENERS: usize = 128;

/// The fast path, for good records only: sonic-rs (about 60% of serde_json's
/// time) reads the document straight into converted values, in one pass and
/// one allocation. `None` for anything that is not a good record (invalid
/// JSON, a wrong type, a missing field, a bad timestamp) or was not tried:
/// the reference reader then reads it again, so every rejection and its
/// message are serde_json's and [`convert`]'s, and a bad record costs one
/// more parse.
pub(crate) fn read_fast<'a>(
    schema: &Schema,
    doc: &'a str,
    undeclared: &mut usize,
) -> Option<Vec<Value<'a>>> {
    // sonic-rs skips whatever is not an object by parsing it (recursively)
    // to name it in its error: only an object is tried here.
    if !doc.trim_start().starts_with('{') {
        return None;
    }
    let mut values = vec![Value::Null; schema.fields.len()];
    let mut unknown = 0;
    let mut de = sonic_rs::Deserializer::from_str(doc);
    FastDocument {
        schema,
        doc,
        values: &mut values,
        undeclared: &mut unknown,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .ok()?;
    let complete = schema
        .fields
        .iter()
        .zip(&values)
        .all(|(field, value)| !field.required || *value != Value::Null);
    if !complete {
        return None;
    }
    *undeclared += unknown;
    Some(values)
}

/// True when `doc` has more `{` and `[` bytes than the fast path takes.
/// memchr2 counts with SIMD and stops at the limit; a byte-by-byte count
/// cost as much as a tenth of the parse.
fn too_nested_for_the_fast_path(doc: &str) -> bool {
    memchr::memchr2_iter(b'{', b'[', doc.as_bytes())
        .nth(FAST_PATH_MAX_OPENERS)
        .is_some()
}

/// The reference reader: serde_json, with its recursion limit.
fn read_checked<'a>(
    schema: &Schema,
    doc: &'a str,
    raw: &mut Vec<Raw<'a>>,
    undeclared: &mut usize,
) -> Result<Option<&'static str>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(doc);
    DocumentSeed {
        schema,
        raw,
        undeclared,
    }
    .deserialize(&mut de)
    .and_then(|found| de.end().map(|()| found))
}

fn json_error(e: &serde_json::Error) -> DocumentError {
    // serde_json appends " at line L column C"; keep only the message.
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    DocumentError::InvalidJson {
        line: e.line(),
        column: e.column(),
        message,
    }
}

fn convert<'a>(field: &Field, raw: Raw<'a>) -> Result<Value<'a>, DocumentError> {
    let wrong = |raw: &Raw<'_>| DocumentError::WrongType {
        field: field.name.clone(),
        expected: field.field_type.name(),
        found: raw.describe(),
    };
    Ok(match (&field.field_type, raw) {
        (_, Raw::Absent | Raw::Null) if field.required => {
            return Err(DocumentError::MissingField {
                field: field.name.clone(),
            })
        }
        (_, Raw::Absent | Raw::Null) => Value::Null,
        (FieldType::Int64, Raw::Int(i)) => Value::Int64(i),
        (FieldType::Int64, Raw::BigInt(s)) => {
            return Err(DocumentError::OutOfRange {
                field: field.name.clone(),
                value: s,
            })
        }
        (FieldType::Float64, Raw::Int(i)) => Value::Float64(i as f64),
        (FieldType::Float64, Raw::Float(f)) => Value::Float64(f),
        (FieldType::Boolean, Raw::Bool(b)) => Value::Boolean(b),
        (FieldType::String, Raw::Str(s)) => Value::String(s),
        (FieldType::Timestamp, Raw::Str(s)) => Value::Timestamp(parse_timestamp(field, &s)?),
        (_, other) => return Err(wrong(&other)),
    })
}

/// Converts one textual value (a CSV column, a grok capture) to the field's
/// type. An absent or empty value is null: a bad record when the field is
/// required.
pub fn convert_text<'a>(
    field: &Field,
    text: Option<Cow<'a, str>>,
) -> Result<Value<'a>, DocumentError> {
    let text = match text {
        Some(t) if !t.is_empty() => t,
        _ if field.required => {
            return Err(DocumentError::MissingField {
                field: field.name.clone(),
            })
        }
        _ => return Ok(Value::Null),
    };
    let wrong = |t: &str| DocumentError::WrongType {
        field: field.name.clone(),
        expected: field.field_type.name(),
        found: Raw::Str(Cow::Borrowed(t)).describe(),
    };
    Ok(match field.field_type {
        FieldType::String => Value::String(text),
        FieldType::Timestamp => Value::Timestamp(parse_timestamp(field, &text)?),
        FieldType::Int64 => {
            let t = text.trim();
            match t.parse::<i64>() {
                Ok(i) => Value::Int64(i),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
                    ) =>
                {
                    return Err(DocumentError::OutOfRange {
                        field: field.name.clone(),
                        value: t.to_string(),
                    })
                }
                Err(_) => return Err(wrong(&text)),
            }
        }
        FieldType::Float64 => match text.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Value::Float64(f),
            _ => return Err(wrong(&text)),
        },
        FieldType::Boolean => match text.trim() {
            t if t.eq_ignore_ascii_case("true") => Value::Boolean(true),
            t if t.eq_ignore_ascii_case("false") => Value::Boolean(false),
            _ => return Err(wrong(&text)),
        },
    })
}

/// Parses a timestamp string with the field's format, in microseconds.
pub(crate) fn parse_timestamp(field: &Field, s: &str) -> Result<i64, DocumentError> {
    let format = field.timestamp_format();
    // Years 1 to 9999 only: chrono takes year 0,
    // negative and five-digit years, which Athena's and Hive's TIMESTAMP and
    // the lake's year partitions cannot hold; such a reading is bad data.
    let in_years = |t: NaiveDateTime| {
        (1..=9999)
            .contains(&t.year())
            .then(|| t.and_utc().timestamp_micros())
    };
    let chrono = || {
        NaiveDateTime::parse_from_str(s, format)
            .ok()
            .and_then(in_years)
    };
    let micros = if format.eq_ignore_ascii_case("rfc3339") {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|t| in_years(t.naive_utc()))
    } else if format == DEFAULT_TIMESTAMP_FORMAT {
        parse_default_format(s).or_else(chrono)
    } else {
        chrono()
    };
    micros.ok_or_else(|| DocumentError::InvalidTimestamp {
        field: field.name.clone(),
        value: s.chars().take(64).collect(),
        format: format.to_string(),
    })
}

/// The first and last microsecond of the years a timestamp may fall in
/// (1 to 9999, as [`parse_timestamp`] takes them).
const FIRST_MICROS: i64 = -62_135_596_800_000_000; // 0001-01-01T00:00:00Z
const LAST_MICROS: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z

/// Checks a timestamp given as a number (an Avro `timestamp-micros` or
/// `timestamp-millis`) against the years a text timestamp may have, so a
/// record is good or bad for the same reason in every format. `shown` is
/// the value as the record gave it, `format` its logical type.
pub(crate) fn timestamp_in_range(
    field: &Field,
    micros: Option<i64>,
    shown: impl FnOnce() -> String,
    format: &str,
) -> Result<i64, DocumentError> {
    micros
        .filter(|t| (FIRST_MICROS..=LAST_MICROS).contains(t))
        .ok_or_else(|| DocumentError::InvalidTimestamp {
            field: field.name.clone(),
            value: shown(),
            format: format.to_string(),
        })
}

/// Parses the default `YYYY-MM-DD HH:MM:SS` of years 1 to 9999 directly,
/// in microseconds: chrono interprets the format string on every call,
/// which costs more than the rest of a record's conversion. Anything this
/// does not take falls back to chrono, so both paths accept exactly the
/// same strings.
fn parse_default_format(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':';
    if !shape_ok {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    // A leap second (`:60`) is chrono's to read.
    if year == 0 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let seconds =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3_600 + minute * 60 + second);
    Some(seconds * 1_000_000)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`, for years from 1): years counted
/// from March, so the leap day ends one.
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let year = i64::from(if month <= 2 { year - 1 } else { year });
    let (era, year_of_era) = (year / 400, year % 400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Reads a top-level document: an object fills `raw`; anything else returns
/// the name of what was found.
struct DocumentSeed<'s, 'a> {
    schema: &'s Schema,
    raw: &'s mut Vec<Raw<'a>>,
    undeclared: &'s mut usize,
}

impl<'de, 's> DeserializeSeed<'de> for DocumentSeed<'s, 'de> {
    type Value = Option<&'static str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 's> Visitor<'de> for DocumentSeed<'s, 'de> {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed(self.schema))? {
            match key {
                Some(i) => self.raw[i] = map.next_value_seed(RawSeed)?,
                None => {
                    *self.undeclared += 1;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(None)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some("an array"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some("a string"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some("a number"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some("a boolean"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some("null"))
    }
}

/// Reads an object key as the index of its declared field, without copying it.
struct KeySeed<'s>(&'s Schema);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.index_of(v.as_bytes()))
    }
}

/// Reads one field value of any JSON type into a [`Raw`].
struct RawSeed;

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = Raw<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RawSeed {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or_else(|_| Raw::BigInt(v.to_string()), Raw::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Raw::Float(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Null)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Object)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Array)
    }
}

/// The fast path's top-level document: an object, each declared field's
/// value converted by [`FastValue`]. Anything else is an error, whose
/// message nobody reads (see [`read_fast`]).
struct FastDocument<'s, 'a> {
    schema: &'s Schema,
    /// The whole document, counted for nesting before a value is skipped.
    doc: &'a str,
    values: &'s mut [Value<'a>],
    undeclared: &'s mut usize,
}

impl<'de> DeserializeSeed<'de> for FastDocument<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FastDocument<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut counted = false;
        while let Some(key) = map.next_key_seed(KeySeed(self.schema))? {
            match key {
                Some(i) => {
                    self.values[i] = map.next_value_seed(FastValue(&self.schema.fields[i]))?
                }
                None => {
                    if !counted {
                        if too_nested_for_the_fast_path(self.doc) {
                            return Err(de::Error::custom("nested too deep to skip"));
                        }
                        counted = true;
                    }
                    *self.undeclared += 1;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// One field's value, taken only when it is what [`convert`] accepts for
/// the field's type, and converted the same way.
struct FastValue<'f>(&'f Field);

impl FastValue<'_> {
    fn int<'a, E: de::Error>(&self, v: i64) -> Result<Value<'a>, E> {
        match self.0.field_type {
            FieldType::Int64 => Ok(Value::Int64(v)),
            FieldType::Float64 => Ok(Value::Float64(v as f64)),
            _ => Err(self.refuse()),
        }
    }

    fn text<'a, E: de::Error>(&self, v: Cow<'a, str>) -> Result<Value<'a>, E> {
        match self.0.field_type {
            FieldType::String => Ok(Value::String(v)),
            FieldType::Timestamp => parse_timestamp(self.0, &v)
                .map(Value::Timestamp)
                .map_err(|_| self.refuse()),
            _ => Err(self.refuse()),
        }
    }

    fn refuse<E: de::Error>(&self) -> E {
        E::custom("not a good value")
    }
}

impl<'de> DeserializeSeed<'de> for FastValue<'_> {
    type Value = Value<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FastValue<'_> {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value of type {}", self.0.field_type.name())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.int(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        // Past i64::MAX is out of range, or a wrong type: the slow path says which.
        let v = i64::try_from(v).map_err(|_| self.refuse())?;
        self.int(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        match self.0.field_type {
            FieldType::Float64 if v.is_finite() => Ok(Value::Float64(v)),
            _ => Err(self.refuse()),
        }
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        match self.0.field_type {
            FieldType::Boolean => Ok(Value::Boolean(v)),
            _ => Err(self.refuse()),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.text(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.text(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.text(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse("id:int64,at:timestamp,name:string,score:float64?,ok:boolean?").unwrap()
    }

    fn parse(doc: &str) -> Result<Vec<Value<'_>>, DocumentError> {
        parse_document(&schema(), doc)
    }

    #[test]
    fn a_good_record_converts_every_type_and_ignores_extras() {
        let v = parse(
            r#"{"extra":{"deep":[1,2]},"name":"Vent\u00e9","id":42,"at":"2020-06-12 14:05:59","score":3,"ok":true}"#,
        )
        .unwrap();
        assert_eq!(v[0], Value::Int64(42));
        assert_eq!(v[1], Value::Timestamp(1_591_970_759_000_000));
        assert_eq!(v[2], Value::String("Venté".into()));
        assert_eq!(v[3], Value::Float64(3.0));
        assert_eq!(v[4], Value::Boolean(true));
    }

    #[test]
    fn undeclared_keys_of_good_documents_are_counted_on_both_paths() {
        let schema = schema();
        let good = r#"{"id":1,"at":"2020-06-12 14:05:59","name":"a","x":1,"y":{"z":2}}"#;
        let mut n = 0;
        parse_document_counting(&schema, good, &mut n).unwrap();
        assert_eq!(n, 2, "the fast path counts top-level keys only");
        // Past the fast path's limit of openers, serde_json reads it.
        let deep = format!(
            r#"{{"id":1,"at":"2020-06-12 14:05:59","name":"a","w":[{}]}}"#,
            vec!["{}"; 200].join(",")
        );
        assert!(read_fast(&schema, &deep, &mut 0).is_none());
        parse_document_counting(&schema, &deep, &mut n).unwrap();
        assert_eq!(n, 3);
        // A bad document counts nothing.
        let bad = r#"{"id":"one","at":"2020-06-12 14:05:59","name":"a","x":1}"#;
        parse_document_counting(&schema, bad, &mut n).unwrap_err();
        assert_eq!(n, 3);
    }

    #[test]
    fn deep_nesting_anywhere_is_read_without_overflowing_the_stack() {
        let schema = schema();
        let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(100_000), "]".repeat(100_000));
        // In a declared field the fast path refuses the array unread and
        // the reference reader names the wrong type.
        let in_field = format!(
            r#"{{"id":1,"at":"2020-06-12 14:05:59","name":{}}}"#,
            deep("")
        );
        assert!(read_fast(&schema, &in_field, &mut 0).is_none());
        let e = parse_document(&schema, &in_field).unwrap_err();
        assert_eq!(e.kind(), "wrong_type", "{e}");
        // As the whole document, it is not an object.
        let e = parse_document(&schema, &deep("")).unwrap_err();
        assert!(matches!(e, DocumentError::NotAnObject { .. }), "{e}");
        // Under an undeclared key after good fields, it is counted first.
        let skipped = format!(
            r#"{{"id":1,"at":"2020-06-12 14:05:59","name":"a","w":{}}}"#,
            deep("")
        );
        assert!(read_fast(&schema, &skipped, &mut 0).is_none());
        let v = parse_document(&schema, &skipped).unwrap();
        assert_eq!(
            v[..3],
            [
                Value::Int64(1),
                Value::Timestamp(1_591_970_759_000_000),
                Value::String("a".into())
            ]
        );
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let v = parse(r#"{"id":1,"at":"2020-06-12 14:05:59","name":"a","score":null}"#).unwrap();
        assert_eq!(v[3], Value::Null);
        assert_eq!(v[4], Value::Null);
    }

    #[test]
    fn each_kind_of_bad_record_names_what_is_wrong() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"at":"2020-06-12 14:05:59","name":"a"}"#,
                "missing_field",
                "`id`",
            ),
            (
                r#"{"id":null,"at":"2020-06-12 14:05:59","name":"a"}"#,
                "missing_field",
                "`id`",
            ),
            (
                r#"{"id":"7","at":"2020-06-12 14:05:59","name":"a"}"#,
                "wrong_type",
                "expected int64, found string \"7\"",
            ),
            (
                r#"{"id":1.5,"at":"2020-06-12 14:05:59","name":"a"}"#,
                "wrong_type",
                "found number 1.5",
            ),
            (
                r#"{"id":1,"at":"2020-06-12 14:05:59","name":5}"#,
                "wrong_type",
                "field `name`",
            ),
            (
                r#"{"id":1,"at":"2020-06-12 14:05:59","name":{}}"#,
                "wrong_type",
                "found an object",
            ),
            (
                r#"{"id":18446744073709551615,"at":"2020-06-12 14:05:59","name":"a"}"#,
                "out_of_range",
                "18446744073709551615",
            ),
            (
                r#"{"id":1,"at":"2020-13-12 14:05:59","name":"a"}"#,
                "invalid_timestamp",
                "`at`",
            ),
            (
                r#"{"id":1,"at":"yesterday","name":"a"}"#,
                "invalid_timestamp",
                "%Y-%m-%d %H:%M:%S",
            ),
            (r#"{"id":1,"#, "invalid_json", "EOF"),
            (r#"{"id":1} trailing"#, "invalid_json", "trailing"),
            (r#"[1,2]"#, "not_an_object", "an array"),
            (r#"17"#, "not_an_object", "a number"),
        ];
        for (doc, kind, needle) in cases {
            let err = parse(doc).expect_err(doc);
            assert_eq!(err.kind(), *kind, "{doc}: {err}");
            assert!(
                err.to_string().contains(needle),
                "{doc}: {err} lacks {needle}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_skipped_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let doc = format!("{{\"x\":{deep}}}");
        assert_eq!(parse(&doc).unwrap_err().kind(), "missing_field");
        let doc = format!("{{\"id\":{deep},\"at\":\"2020-06-12 14:05:59\",\"name\":\"a\"}}");
        assert_eq!(
            parse(&doc).unwrap_err().to_string(),
            "field `id`: expected int64, found an array"
        );
    }

    /// What serde_json alone makes of a document (the reference reader).
    fn checked(doc: &str) -> Result<Vec<Value<'_>>, DocumentError> {
        let schema = schema();
        let mut raw: Vec<Raw<'_>> = Vec::new();
        raw.resize_with(schema.fields.len(), || Raw::Absent);
        match read_checked(&schema, doc, &mut raw, &mut 0).map_err(|e| json_error(&e))? {
            Some(found) => Err(DocumentError::NotAnObject { found }),
            None => schema
                .fields
                .iter()
                .zip(raw)
                .map(|(f, r)| convert(f, r))
                .collect(),
        }
    }

    #[test]
    fn the_fast_path_gives_what_serde_json_gives() {
        let at = r#""at":"2020-06-12 14:05:59""#;
        let docs = [
            format!(r#"{{"id":1,{at},"name":"a"}}"#),
            format!(r#" {{ "id" : -9223372036854775808 , {at} , "name" : "\"q\" \u00e9\n" }} "#),
            format!(r#"{{"id":9223372036854775808,{at},"name":"a"}}"#),
            format!(r#"{{"id":18446744073709551616,{at},"name":"a"}}"#),
            format!(r#"{{"id":1,{at},"name":"a","score":1e-7,"ok":false}}"#),
            format!(r#"{{"id":1,{at},"name":"a","score":12345678901234567890}}"#),
            format!(r#"{{"id":1,{at},"name":"a","x":[{{"y":[1,{{}}]}}],"id":2}}"#),
            format!(r#"{{"id":1,{at},"name":"\ud83d\ude00"}}"#),
            format!(r#"{{"id":1,{at},"name":"\ud800"}}"#),
            format!(r#"{{"id":1,{at},"name":"a","score":1e400}}"#),
            format!(r#"{{"id":01,{at},"name":"a"}}"#),
            format!(r#"{{"id":1,{at},"name":"a",}}"#),
            format!("{{\"id\":1,{at},\"name\":\"a\tb\"}}"),
            format!(r#"{{"id":1,{at},"name":"a"}} {{}}"#),
            format!(r#"{{"id":1,{at},"name":"a","score":2.5,"ok":null}}"#),
            format!(r#"{{"id":1,{at},"name":"a","score":-0.0,"ok":true}}"#),
            format!(r#"{{"id":"1",{at},"name":"a"}}"#),
            format!(r#"{{"id":1.0,{at},"name":"a"}}"#),
            format!(r#"{{"id":true,{at},"name":"a"}}"#),
            format!(r#"{{"id":null,{at},"name":"a"}}"#),
            format!(r#"{{{at},"name":"a"}}"#),
            r#"{"id":1,"at":"2020-06-12T14:05:59","name":"a"}"#.to_string(),
            r#"{"id":1,"at":"2020-06-12 14:05:5\u0039","name":"a"}"#.to_string(),
            r#"{"id":1,"at":12,"name":"a"}"#.to_string(),
            format!(r#"{{"id":1,{at},"name":"a","ok":"true"}}"#),
            format!(r#"{{"id":1,{at},"name":"a","ok":1}}"#),
            format!(r#"{{"id":1,{at},"name":["a"]}}"#),
            format!(r#"{{"id":1,{at},"name":"a","id":"x"}}"#),
            format!(r#"{{"id":"x",{at},"name":"a","id":3}}"#),
            "".to_string(),
            "null".to_string(),
            "[]".to_string(),
        ];
        let mut slow_good = Vec::new();
        for doc in &docs {
            let reference = checked(doc);
            assert_eq!(parse(doc), reference, "{doc}");
            // The fast path gives the same values or nothing, and nothing
            // for every bad record.
            match (read_fast(&schema(), doc, &mut 0), reference) {
                (Some(fast), Ok(values)) => assert_eq!(fast, values, "{doc}"),
                (None, Ok(_)) => slow_good.push(doc.as_str()),
                (Some(fast), Err(e)) => panic!("{doc}: fast path took {fast:?}, not {e}"),
                (None, Err(_)) => {}
            }
        }
        // Only a good value after a bad one under the same key needs the
        // reference reader to be kept.
        assert_eq!(
            slow_good,
            [format!(r#"{{"id":"x",{at},"name":"a","id":3}}"#)],
        );
        // The messages are serde_json's: the rejected document is read again.
        assert_eq!(
            parse(r#"{"id":1,"#).unwrap_err().to_string(),
            "invalid JSON at line 1 column 8: EOF while parsing a value"
        );
    }

    #[test]
    fn many_openers_take_the_checked_path_only_when_a_value_is_skipped() {
        let brackets = "[".repeat(FAST_PATH_MAX_OPENERS + 1);
        // Nothing is skipped: the openers are in a string, read as it is.
        let doc = format!(r#"{{"id":1,"at":"2020-06-12 14:05:59","name":"{brackets}"}}"#);
        let fast = read_fast(&schema(), &doc, &mut 0).expect("the fast path reads it");
        assert_eq!(fast[2], Value::String(brackets.clone().into()));
        // An undeclared key's value is skipped: the document is counted
        // first, and the reference reader takes it.
        let doc = format!(r#"{{"id":1,"at":"2020-06-12 14:05:59","name":"{brackets}","x":0}}"#);
        assert!(read_fast(&schema(), &doc, &mut 0).is_none());
        assert_eq!(parse(&doc).unwrap()[2], Value::String(brackets.into()));
    }

    #[test]
    fn the_fast_default_format_agrees_with_chrono() {
        for s in [
            "2020-06-12 14:05:59",
            "2024-02-29 23:59:59",
            "2026-02-29 00:00:00",
            "2026-12-31 24:00:00",
            "2026-13-01 00:00:00",
            "2026-01-01 00:60:00",
            "0000-01-01 00:00:00",
            "9999-12-31 23:59:59",
            "2026-1-01 00:00:00",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00:0x",
            "+2026-01-01 00:00:00",
            "2026-01-01 00:00:00 ",
            "0001-01-01 00:00:00",
            "1969-12-31 23:59:59",
            "1970-01-01 00:00:00",
            "1900-02-29 00:00:00",
            "2000-02-29 12:00:00",
            "2100-03-01 00:00:00",
            "2026-04-31 00:00:00",
            "2026-00-10 00:00:00",
            "2026-01-00 00:00:00",
            "2026-12-31 23:59:60",
        ] {
            let fast = parse_default_format(s);
            let slow = NaiveDateTime::parse_from_str(s, DEFAULT_TIMESTAMP_FORMAT)
                .ok()
                .filter(|t| (1..=9999).contains(&t.year()))
                .map(|t| t.and_utc().timestamp_micros());
            if let Some(t) = fast {
                assert_eq!(Some(t), slow, "{s}");
            }
            assert_eq!(fast.or(slow), slow, "{s}");
        }
        // Every day of years around the leap rules, against chrono.
        for (first, last) in [
            (1, 4),
            (1896, 1904),
            (1996, 2004),
            (2096, 2104),
            (9996, 9999),
        ] {
            let mut day = chrono::NaiveDate::from_ymd_opt(first, 1, 1).unwrap();
            while day.year() <= last {
                let text = format!("{} 07:08:09", day.format("%Y-%m-%d"));
                let expected = day
                    .and_hms_opt(7, 8, 9)
                    .unwrap()
                    .and_utc()
                    .timestamp_micros();
                assert_eq!(parse_default_format(&text), Some(expected), "{text}");
                let Some(next) = day.succ_opt() else { break };
                day = next;
            }
        }
        assert_eq!(
            parse_default_format("0001-01-01 00:00:00"),
            Some(FIRST_MICROS)
        );
        assert_eq!(
            parse_default_format("9999-12-31 23:59:59"),
            Some(LAST_MICROS - 999_999)
        );
    }

    #[test]
    fn text_values_convert_to_every_type_and_name_what_is_wrong() {
        let s = schema();
        let c = |i: usize, t: &'static str| convert_text(&s.fields[i], Some(Cow::Borrowed(t)));
        assert_eq!(c(0, " 42 ").unwrap(), Value::Int64(42));
        assert_eq!(
            c(1, "2020-06-12 14:05:59").unwrap(),
            Value::Timestamp(1_591_970_759_000_000)
        );
        assert_eq!(c(2, "x, y").unwrap(), Value::String("x, y".into()));
        assert_eq!(c(3, "3.5").unwrap(), Value::Float64(3.5));
        assert_eq!(c(4, "TRUE").unwrap(), Value::Boolean(true));
        assert_eq!(c(3, "").unwrap(), Value::Null);
        assert_eq!(convert_text(&s.fields[4], None).unwrap(), Value::Null);
        assert_eq!(c(0, "").unwrap_err().kind(), "missing_field");
        assert_eq!(
            c(0, "seven").unwrap_err().to_string(),
            "field `id`: expected int64, found string \"seven\""
        );
        assert_eq!(
            c(0, "99999999999999999999").unwrap_err().kind(),
            "out_of_range"
        );
        assert_eq!(c(3, "NaN").unwrap_err().kind(), "wrong_type");
        assert_eq!(c(4, "yes").unwrap_err().kind(), "wrong_type");
        assert_eq!(c(1, "noon").unwrap_err().kind(), "invalid_timestamp");
    }

    #[test]
    fn rfc3339_format_is_supported() {
        let s = Schema::parse("t:timestamp(rfc3339)").unwrap();
        let v = parse_document(&s, r#"{"t":"2020-06-12T16:05:59+02:00"}"#).unwrap();
        assert_eq!(v[0], Value::Timestamp(1_591_970_759_000_000));
    }
}
