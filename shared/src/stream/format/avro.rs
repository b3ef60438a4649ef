//! Avro payloads, read with `apache-avro`: binary datums written with a
//! declared writer schema, or object container files carrying their own.
//!
//! A datum must be a record; its fields are found by name. Unions (the usual
//! `["null", T]` of optional fields) are unwrapped; `timestamp-millis` and
//! `timestamp-micros` give timestamps, as do strings in the field's format.

use std::borrow::Cow;

use apache_avro::types::Value as Avro;

use crate::config::schema::{Field, FieldType, Schema};
use crate::stream::dead_letter::Rejection;
use crate::stream::dead_letter::Scope;
use crate::stream::document::{parse_timestamp, timestamp_in_range, DocumentError, Value};

/// The declared writer schema of Avro datums.
#[derive(Debug, Clone)]
pub struct AvroWriterSchema {
    schema: apache_avro::Schema,
}

impl AvroWriterSchema {
    /// Parses an Avro schema (JSON), which must describe a record.
    pub fn parse(json: &str) -> Result<Self, String> {
        let schema = apache_avro::Schema::parse_str(json).map_err(|e| e.to_string())?;
        if !matches!(schema, apache_avro::Schema::Record(_)) {
            return Err("the Avro schema must be a record".to_string());
        }
        Ok(AvroWriterSchema { schema })
    }

    /// Decodes the datums of a payload, one after the other.
    pub(super) fn decode<F>(&self, schema: &Schema, bytes: &[u8], on_document: &mut F)
    where
        F: for<'b> FnMut(Result<Vec<Value<'b>>, Rejection<'b>>),
    {
        let mut rest = bytes;
        let mut index = 0;
        while !rest.is_empty() {
            let before = rest;
            // apache-avro reads a string or bytes value cut short by the end
            // of the payload as null: a datum that no longer matches its
            // writer schema was truncated.
            let read = match apache_avro::from_avro_datum(&self.schema, &mut rest, None) {
                Ok(datum) if datum.validate(&self.schema) => Ok(datum),
                Ok(_) => Err(
                    "the datum ends before its last field or does not match the writer schema"
                        .to_string(),
                ),
                Err(e) => Err(e.to_string()),
            };
            match read {
                Ok(datum) => {
                    let used = &before[..before.len() - rest.len()];
                    emit(schema, index, &datum, used, on_document);
                }
                Err(message) => {
                    // The rest cannot be split into datums any more.
                    let e = DocumentError::InvalidAvro { message };
                    on_document(Err(Rejection::document(index, &e, before)));
                    return;
                }
            }
            index += 1;
        }
    }
}

/// Decodes an object container file: header with the schema, then blocks of
/// records.
pub(super) fn decode_file<F>(schema: &Schema, bytes: &[u8], on_document: &mut F)
where
    F: for<'b> FnMut(Result<Vec<Value<'b>>, Rejection<'b>>),
{
    let reader = match apache_avro::Reader::new(bytes) {
        Ok(reader) => reader,
        Err(e) => {
            let e = DocumentError::InvalidAvro {
                message: format!("not an Avro object container file: {e}"),
            };
            on_document(Err(Rejection {
                index: 0,
                reason: e.kind(),
                detail: e.to_string(),
                scope: Scope::Payload,
                bytes,
                sub_sequence_number: None,
            }));
            return;
        }
    };
    for (index, datum) in reader.enumerate() {
        match datum {
            Ok(datum) => emit(schema, index, &datum, &[], on_document),
            Err(e) => {
                let e = DocumentError::InvalidAvro {
                    message: format!("record {index}: {e}"),
                };
                on_document(Err(Rejection {
                    index,
                    reason: e.kind(),
                    detail: e.to_string(),
                    scope: Scope::Payload,
                    bytes,
                    sub_sequence_number: None,
                }));
                return;
            }
        }
    }
}

/// Converts one datum, rejecting it with `raw` (its bytes, or nothing when
/// they cannot be cut out of a container file block, in which case the
/// dead letter holds the datum as JSON).
fn emit<F>(schema: &Schema, index: usize, datum: &Avro, raw: &[u8], on_document: &mut F)
where
    F: for<'b> FnMut(Result<Vec<Value<'b>>, Rejection<'b>>),
{
    match convert_record(schema, datum) {
        Ok(values) => on_document(Ok(values)),
        Err(e) => {
            let shown;
            let bytes = if raw.is_empty() {
                shown = datum_json(datum);
                shown.as_bytes()
            } else {
                raw
            };
            on_document(Err(Rejection::document(index, &e, bytes)));
        }
    }
}

fn datum_json(datum: &Avro) -> String {
    serde_json::Value::try_from(datum.clone())
        .map(|v| v.to_string())
        .unwrap_or_else(|_| format!("{datum:?}"))
}

fn convert_record<'a>(schema: &Schema, datum: &'a Avro) -> Result<Vec<Value<'a>>, DocumentError> {
    let Avro::Record(fields) = unwrap_union(datum) else {
        return Err(DocumentError::InvalidAvro {
            message: format!("expected a record, found {}", describe(datum)),
        });
    };
    schema
        .fields
        .iter()
        .map(|f| {
            let v = fields
                .iter()
                .find(|(name, _)| *name == f.name)
                .map(|(_, v)| unwrap_union(v));
            convert(f, v)
        })
        .collect()
}

fn unwrap_union(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

fn convert<'a>(field: &Field, v: Option<&'a Avro>) -> Result<Value<'a>, DocumentError> {
    let wrong = |v: &Avro| DocumentError::WrongType {
        field: field.name.clone(),
        expected: field.field_type.name(),
        found: describe(v),
    };
    Ok(match (&field.field_type, v) {
        (_, None | Some(Avro::Null)) if field.required => {
            return Err(DocumentError::MissingField {
                field: field.name.clone(),
            })
        }
        (_, None | Some(Avro::Null)) => Value::Null,
        (FieldType::Int64, Some(Avro::Long(i))) => Value::Int64(*i),
        (FieldType::Int64, Some(Avro::Int(i))) => Value::Int64(i64::from(*i)),
        // NaN and the infinities are not readings: JSON cannot spell them
        // and CSV refuses them, so Avro does too.
        (FieldType::Float64, Some(v @ Avro::Double(x))) if !x.is_finite() => return Err(wrong(v)),
        (FieldType::Float64, Some(v @ Avro::Float(x))) if !x.is_finite() => return Err(wrong(v)),
        (FieldType::Float64, Some(Avro::Double(x))) => Value::Float64(*x),
        (FieldType::Float64, Some(Avro::Float(x))) => Value::Float64(f64::from(*x)),
        (FieldType::Float64, Some(Avro::Long(i))) => Value::Float64(*i as f64),
        (FieldType::Float64, Some(Avro::Int(i))) => Value::Float64(f64::from(*i)),
        (FieldType::Boolean, Some(Avro::Boolean(b))) => Value::Boolean(*b),
        (FieldType::String, Some(Avro::String(s) | Avro::Enum(_, s))) => {
            Value::String(Cow::Borrowed(s))
        }
        (FieldType::Timestamp, Some(Avro::TimestampMicros(t))) => Value::Timestamp(
            timestamp_in_range(field, Some(*t), || format!("{t} µs"), "timestamp-micros")?,
        ),
        (FieldType::Timestamp, Some(Avro::TimestampMillis(t))) => {
            Value::Timestamp(timestamp_in_range(
                field,
                t.checked_mul(1000),
                || format!("{t} ms"),
                "timestamp-millis",
            )?)
        }
        (FieldType::Timestamp, Some(Avro::String(s))) => {
            Value::Timestamp(parse_timestamp(field, s)?)
        }
        (_, Some(other)) => return Err(wrong(other)),
    })
}

fn describe(v: &Avro) -> String {
    match v {
        Avro::Null => "null".into(),
        Avro::Boolean(b) => format!("boolean {b}"),
        Avro::Int(i) => format!("int {i}"),
        Avro::Long(i) => format!("long {i}"),
        Avro::Float(x) => format!("float {x}"),
        Avro::Double(x) => format!("double {x}"),
        Avro::String(s) => {
            let shown: String = s.chars().take(40).collect();
            format!("string {shown:?}")
        }
        Avro::Bytes(_) => "bytes".into(),
        Avro::Fixed(..) => "fixed".into(),
        Avro::Enum(_, s) => format!("enum symbol {s}"),
        Avro::Union(_, inner) => describe(inner),
        Avro::Array(_) => "an array".into(),
        Avro::Map(_) => "a map".into(),
        Avro::Record(_) => "a record".into(),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::super::{Format, PayloadDecoder};
    use super::*;
    use std::sync::Arc;

    const WRITER: &str = r#"{"type":"record","name":"m","fields":[
        {"name":"id","type":"long"},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"name","type":"string"},
        {"name":"score","type":["null","double"],"default":null}]}"#;

    fn schema() -> Schema {
        Schema::parse("id:int64,at:timestamp,name:string,score:float64?").unwrap()
    }

    fn record(id: i64, name: &str, score: Option<f64>) -> Avro {
        Avro::Record(vec![
            ("id".into(), Avro::Long(id)),
            ("at".into(), Avro::TimestampMillis(1_591_970_759_000)),
            ("name".into(), Avro::String(name.into())),
            (
                "score".into(),
                match score {
                    Some(s) => Avro::Union(1, Box::new(Avro::Double(s))),
                    None => Avro::Union(0, Box::new(Avro::Null)),
                },
            ),
        ])
    }

    #[test]
    fn datums_decode_one_after_the_other_and_a_truncated_tail_is_rejected() {
        let writer = AvroWriterSchema::parse(WRITER).unwrap();
        let mut payload =
            apache_avro::to_avro_datum(&writer.schema, record(1, "a", Some(2.5))).unwrap();
        payload.extend(apache_avro::to_avro_datum(&writer.schema, record(2, "b", None)).unwrap());
        let d = PayloadDecoder::new(
            Format::AvroDatum(Arc::new(writer.clone())),
            schema(),
            1 << 20,
        );
        let (rows, bad) = run(&d, &payload);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            rows,
            vec![
                r#"[Int64(1), Timestamp(1591970759000000), String("a"), Float64(2.5)]"#,
                r#"[Int64(2), Timestamp(1591970759000000), String("b"), Null]"#,
            ]
        );
        payload.truncate(payload.len() - 3);
        let (rows, bad) = run(&d, &payload);
        assert_eq!(rows.len(), 1);
        assert_eq!((bad[0].0, bad[0].1.as_str()), (1, "invalid_avro"));
    }

    #[test]
    fn non_finite_numbers_and_timestamps_past_year_9999_are_refused_as_in_json_and_csv() {
        let writer = AvroWriterSchema::parse(WRITER).unwrap();
        let d = PayloadDecoder::new(
            Format::AvroDatum(Arc::new(writer.clone())),
            schema(),
            1 << 20,
        );
        let outcome = |at: i64, score: f64| {
            let mut r = record(1, "a", Some(score));
            if let Avro::Record(fields) = &mut r {
                fields[1].1 = Avro::TimestampMillis(at);
            }
            let (rows, bad) = run(&d, &apache_avro::to_avro_datum(&writer.schema, r).unwrap());
            match (rows.len(), bad.first()) {
                (1, None) => "row".to_string(),
                (_, Some(b)) => b.1.clone(),
                _ => panic!("{rows:?} {bad:?}"),
            }
        };
        let ok_at = 1_591_970_759_000;
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(outcome(ok_at, x), "wrong_type", "{x}");
        }
        assert_eq!(outcome(ok_at, f64::MAX), "row");
        // 0001-01-01 and 9999-12-31 23:59:59.999 are rows; a millisecond
        // either side, or a value whose microseconds overflow, is not.
        let first_ms = -62_135_596_800_000;
        let last_ms = 253_402_300_799_999;
        assert_eq!(outcome(first_ms, 1.0), "row");
        assert_eq!(outcome(last_ms, 1.0), "row");
        for at in [first_ms - 1, last_ms + 1, i64::MAX, i64::MIN] {
            assert_eq!(outcome(at, 1.0), "invalid_timestamp", "{at}");
        }
    }

    #[test]
    fn a_container_file_carries_its_schema_and_bad_fields_name_the_field() {
        let writer = AvroWriterSchema::parse(
            r#"{"type":"record","name":"m","fields":[
                {"name":"id","type":"string"},{"name":"name","type":"string"}]}"#,
        )
        .unwrap();
        let mut w = apache_avro::Writer::new(&writer.schema, Vec::new());
        w.append(Avro::Record(vec![
            ("id".into(), Avro::String("7".into())),
            ("name".into(), Avro::String("a".into())),
        ]))
        .unwrap();
        let file = w.into_inner().unwrap();
        let d = PayloadDecoder::new(
            Format::AvroFile,
            Schema::parse("id:int64,name:string").unwrap(),
            1 << 20,
        );
        let (rows, bad) = run(&d, &file);
        assert!(rows.is_empty());
        assert_eq!(bad[0].1, "wrong_type");
        assert_eq!(bad[0].3, br#"{"id":"7","name":"a"}"#.to_vec());
        let (_, bad) = run(&d, b"not avro");
        assert_eq!(
            (bad[0].1.as_str(), bad[0].2),
            ("invalid_avro", Scope::Payload)
        );
    }

    #[test]
    fn the_readme_example_datum_decodes_to_the_readme_record() {
        let writer = AvroWriterSchema::parse(
            r#"{"type":"record","name":"metric","fields":[
                {"name":"id","type":"long"},
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"name","type":"string"},
                {"name":"score","type":["null","double"],"default":null}]}"#,
        )
        .unwrap();
        let hex = "02 b0 85 d0 8d d5 5c 0a 61 6c 70 68 61 02 00 00 00 00 00 00 e0 3f";
        let bytes: Vec<u8> = hex
            .split(' ')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        let d = PayloadDecoder::new(Format::AvroDatum(Arc::new(writer)), schema(), 1 << 20);
        let (rows, bad) = run(&d, &bytes);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            rows,
            vec![r#"[Int64(1), Timestamp(1591970759000000), String("alpha"), Float64(0.5)]"#]
        );
    }

    #[test]
    fn a_writer_schema_must_be_a_record() {
        assert!(AvroWriterSchema::parse(r#""long""#).is_err());
        assert!(AvroWriterSchema::parse("{").is_err());
    }
}
