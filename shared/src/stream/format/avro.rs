//! Avro payloads, read with `apache-avro`: binary datums written with a
//! declared writer schema, or object container files carrying their own.
//!
//! A datum must be a record; its fields are found by name. Unions (the usual
//! `["null", T]` of optional fields) are unwrapped; `timestamp-millis` and
//! `timestamp-micros` give timestamps, as do strings in the field's format.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value as Avro;

use crate::config::schema::{Field, FieldType, Schema};
use crate::stream::dead_letter::Scope;
use crate::stream::dead_letter::{DocumentOutcome, Rejection};
use crate::stream::document::{
    parse_timestamp, timestamp_in_range, Document, DocumentError, Value,
};

/// The declared writer schema of Avro datums.
#[derive(Debug, Clone)]
pub struct AvroWriterSchema {
    schema: apache_avro::Schema,
    names: Names,
}

impl AvroWriterSchema {
    /// The parsed schema.
    pub fn schema(&self) -> &apache_avro::Schema {
        &self.schema
    }

    /// Parses an Avro schema (JSON), which must describe a record that
    /// [`check_schema`] accepts.
    pub fn parse(json: &str) -> Result<Self, String> {
        let schema = apache_avro::Schema::parse_str(json).map_err(|e| e.to_string())?;
        Self::from_schema(schema)
    }

    fn from_schema(schema: apache_avro::Schema) -> Result<Self, String> {
        if !matches!(schema, apache_avro::Schema::Record(_)) {
            return Err("the Avro schema must be a record".to_string());
        }
        check_schema(&schema)?;
        let names = named_types(&schema);
        Ok(AvroWriterSchema { schema, names })
    }
}

/// Datums of one writer schema read into the declared schema's values.
/// Which declared field each writer field fills is resolved once, when the
/// reader is built; each datum is then read in one pass over its bytes,
/// straight into the values, its strings borrowed from the payload.
#[derive(Debug)]
pub(super) struct DatumReader {
    writer: Arc<AvroWriterSchema>,
    /// Each writer field's schema, in the writer's order (the order of the
    /// bytes), and the declared field it fills, if any.
    fields: Vec<(apache_avro::Schema, Option<usize>)>,
    /// The first required declared field that no writer field fills.
    unfilled: Option<usize>,
    /// How many writer fields fill no declared field.
    undeclared: usize,
}

impl DatumReader {
    /// Resolves `writer` against `declared` (fields are matched by name).
    pub(super) fn new(writer: Arc<AvroWriterSchema>, declared: &Schema) -> Self {
        let record_fields = match &writer.schema {
            apache_avro::Schema::Record(r) => r.fields.as_slice(),
            _ => &[],
        };
        let mut filled = vec![false; declared.fields.len()];
        let fields: Vec<_> = record_fields
            .iter()
            .map(|f| {
                let target = declared
                    .fields
                    .iter()
                    .position(|d| d.name == f.name)
                    .filter(|&i| !std::mem::replace(&mut filled[i], true));
                (f.schema.clone(), target)
            })
            .collect();
        let undeclared = fields.iter().filter(|(_, t)| t.is_none()).count();
        let unfilled = declared
            .fields
            .iter()
            .zip(&filled)
            .position(|(d, filled)| d.required && !filled);
        DatumReader {
            writer,
            fields,
            unfilled,
            undeclared,
        }
    }

    /// Decodes the datums of a payload, one after the other.
    pub(super) fn decode<F>(&self, schema: &Schema, bytes: &[u8], on_document: &mut F)
    where
        F: for<'b> FnMut(DocumentOutcome<'b>),
    {
        let mut at = 0;
        let mut index = 0;
        while at < bytes.len() {
            let start = at;
            match self.read(schema, bytes, &mut at) {
                Ok(converted) => self.emit(index, converted, &bytes[start..at], true, on_document),
                Err(message) => {
                    // The rest cannot be split into datums any more.
                    let e = DocumentError::InvalidAvro { message };
                    on_document(Err(Rejection::document(index, &e, &bytes[start..])));
                    return;
                }
            }
            index += 1;
        }
    }

    /// Reads the datum that starts at `*at` and moves `*at` past it.
    /// `Err` when the bytes are not a datum of the writer schema (its end
    /// cannot be found); otherwise its values in the declared order, or the
    /// first declared field (in the declared order) whose value does not
    /// fit.
    fn read<'a>(
        &'a self,
        schema: &Schema,
        bytes: &'a [u8],
        at: &mut usize,
    ) -> Result<Result<Vec<Value<'a>>, DocumentError>, String> {
        let mut walk = Walk {
            bytes,
            at: *at,
            names: &self.writer.names,
        };
        let mut values = vec![Value::Null; schema.fields.len()];
        let mut first_error: Option<(usize, DocumentError)> = None;
        for (field_schema, target) in &self.fields {
            let Some(i) = *target else {
                walk.value(field_schema)?;
                continue;
            };
            let read = walk.scalar(field_schema)?;
            if first_error.as_ref().is_some_and(|(j, _)| *j < i) {
                continue;
            }
            match convert(&schema.fields[i], read) {
                Ok(v) => values[i] = v,
                Err(e) => first_error = Some((i, e)),
            }
        }
        *at = walk.at;
        if let Some(u) = self
            .unfilled
            .filter(|u| first_error.as_ref().is_none_or(|(j, _)| u < j))
        {
            return Ok(Err(DocumentError::MissingField {
                field: schema.fields[u].name.clone(),
            }));
        }
        Ok(match first_error {
            Some((_, e)) => Err(e),
            None => Ok(values),
        })
    }

    /// Hands on one datum's outcome. Its bytes go with it when `keep_raw`;
    /// otherwise (a container file's record, whose bytes mean nothing
    /// without the file's schema) a row has none and a dead letter holds
    /// the datum as JSON.
    fn emit<F>(
        &self,
        index: usize,
        converted: Result<Vec<Value<'_>>, DocumentError>,
        raw: &[u8],
        keep_raw: bool,
        on_document: &mut F,
    ) where
        F: for<'b> FnMut(DocumentOutcome<'b>),
    {
        match converted {
            Ok(values) => {
                let bytes = if keep_raw { raw } else { &[] };
                on_document(Ok(
                    Document::new(index, values, bytes).with_undeclared(self.undeclared)
                ))
            }
            Err(e) => {
                let shown;
                let bytes = if keep_raw {
                    raw
                } else {
                    shown = self.datum_json(raw);
                    shown.as_bytes()
                };
                on_document(Err(Rejection::document(index, &e, bytes)));
            }
        }
    }

    /// A datum as JSON, read by apache-avro (for dead letters only).
    fn datum_json(&self, raw: &[u8]) -> String {
        let mut bytes = raw;
        match apache_avro::from_avro_datum(&self.writer.schema, &mut bytes, None) {
            Ok(datum) => serde_json::Value::try_from(datum.clone())
                .map(|v| v.to_string())
                .unwrap_or_else(|_| format!("{datum:?}")),
            Err(e) => format!("an Avro datum of {} bytes: {e}", raw.len()),
        }
    }
}

/// How deep a schema may nest records, arrays, maps and unions.
const MAX_SCHEMA_DEPTH: usize = 32;

/// Refuses the schemas whose data could cost without bound what a payload
/// does not: a named type that contains itself (a datum can nest as deep as
/// its bytes allow, and decoding recurses once per level), nesting past
/// [`MAX_SCHEMA_DEPTH`], an array of items that take no bytes (`null`, a
/// record of nulls: a block can declare any count of them for free), and a
/// record that takes no bytes at all (a container block's count is then
/// free too).
pub fn check_schema(schema: &apache_avro::Schema) -> Result<(), String> {
    check_node(schema, &mut Vec::new())?;
    if min_encoded_size(schema) == 0 {
        return Err("the record takes no bytes: every field is null".to_string());
    }
    Ok(())
}

fn check_node(schema: &apache_avro::Schema, enclosing: &mut Vec<String>) -> Result<(), String> {
    use apache_avro::Schema as S;
    if enclosing.len() > MAX_SCHEMA_DEPTH {
        return Err(format!(
            "the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
        ));
    }
    match schema {
        S::Ref { name } if enclosing.contains(&name.fullname(None)) => Err(format!(
            "the type {} contains itself: recursive types are refused",
            name.fullname(None)
        )),
        S::Record(r) => {
            enclosing.push(r.name.fullname(None));
            for f in &r.fields {
                check_node(&f.schema, enclosing)?;
            }
            enclosing.pop();
            Ok(())
        }
        S::Array(a) => {
            if min_encoded_size(&a.items) == 0 {
                return Err(
                    "an array of items that take no bytes (null, a record of nulls) \
                     can declare any number of them"
                        .to_string(),
                );
            }
            enclosing.push(String::new());
            let r = check_node(&a.items, enclosing);
            enclosing.pop();
            r
        }
        S::Map(m) => {
            enclosing.push(String::new());
            let r = check_node(&m.types, enclosing);
            enclosing.pop();
            r
        }
        S::Union(u) => {
            enclosing.push(String::new());
            let r = u
                .variants()
                .iter()
                .try_for_each(|v| check_node(v, enclosing));
            enclosing.pop();
            r
        }
        _ => Ok(()),
    }
}

/// The fewest bytes a value of `schema` is written in.
fn min_encoded_size(schema: &apache_avro::Schema) -> usize {
    use apache_avro::Schema as S;
    match schema {
        S::Null => 0,
        S::Fixed(f) => f.size,
        S::Record(r) => r.fields.iter().map(|f| min_encoded_size(&f.schema)).sum(),
        // Every other value writes at least one byte: a number, a length, a
        // union branch, a block count.
        _ => 1,
    }
}

/// The named types of a schema (records, enums, fixed), by full name, for
/// the `Ref`s that use them again.
type Names = HashMap<String, apache_avro::Schema>;

fn named_types(schema: &apache_avro::Schema) -> Names {
    fn walk(schema: &apache_avro::Schema, out: &mut Names) {
        use apache_avro::Schema as S;
        match schema {
            S::Record(r) => {
                out.insert(r.name.fullname(None), schema.clone());
                r.fields.iter().for_each(|f| walk(&f.schema, out));
            }
            S::Enum(e) => {
                out.insert(e.name.fullname(None), schema.clone());
            }
            S::Fixed(f) => {
                out.insert(f.name.fullname(None), schema.clone());
            }
            S::Array(a) => walk(&a.items, out),
            S::Map(m) => walk(&m.types, out),
            S::Union(u) => u.variants().iter().for_each(|v| walk(v, out)),
            S::Decimal(d) => walk(&d.inner, out),
            _ => {}
        }
    }
    let mut out = Names::new();
    walk(schema, &mut out);
    out
}

/// Reads one datum of `schema` with apache-avro from the front of `rest`,
/// which then starts after it (a container file's metadata). The datum's extent is found first by [`datum_len`], which
/// allocates nothing, so that apache-avro (which reserves an array's or
/// map's declared count before reading its items) only ever reads counts
/// the bytes hold.
fn read_datum(
    schema: &apache_avro::Schema,
    names: &Names,
    rest: &mut &[u8],
) -> Result<Avro, String> {
    let len = datum_len(schema, names, rest)?;
    let (mut datum, after) = rest.split_at(len);
    *rest = after;
    match apache_avro::from_avro_datum(schema, &mut datum, None) {
        Ok(value) if value.validate(schema) => Ok(value),
        Ok(_) => Err("the datum does not match the writer schema".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The length of the datum of `schema` at the front of `bytes`, walking
/// its encoding without building anything: every length and every block
/// count must be covered by the bytes left (each item takes a byte at
/// least, [`check_schema`]), or the datum is refused naming what it
/// declared.
fn datum_len(schema: &apache_avro::Schema, names: &Names, bytes: &[u8]) -> Result<usize, String> {
    let mut walk = Walk {
        bytes,
        at: 0,
        names,
    };
    walk.value(schema)?;
    Ok(walk.at)
}

struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
    names: &'a Names,
}

impl<'a> Walk<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize, what: &str) -> Result<(), String> {
        if n > self.left() {
            return Err(format!(
                "{what} of {n} bytes at byte {} runs past the datum's end ({} bytes left)",
                self.at,
                self.left()
            ));
        }
        self.at += n;
        Ok(())
    }

    /// A zigzag-encoded long.
    fn long(&mut self) -> Result<i64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(format!(
                    "the datum ends inside a number at byte {}",
                    self.at
                ));
            };
            self.at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(format!(
            "a number longer than 10 bytes ends at byte {}",
            self.at
        ))
    }

    fn length(&mut self, what: &str) -> Result<usize, String> {
        let at = self.at;
        let n = self.long()?;
        usize::try_from(n).map_err(|_| format!("{what} at byte {at} has the length {n}"))
    }

    /// The items of an array or map: blocks of a count (negative: followed
    /// by the block's size in bytes) until a count of zero.
    fn blocks(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let at = self.at;
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.length("a block size")?;
            }
            let count = count.unsigned_abs();
            if count > self.left() as u64 {
                return Err(format!(
                    "{what} block at byte {at} declares {count} items in {} bytes",
                    self.left()
                ));
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    /// Steps over one value of `schema`, checking what apache-avro checks
    /// when it decodes one (booleans, int ranges, UTF-8, enum and union
    /// indices), so that a datum is refused for the same bytes whether its
    /// fields are declared or not.
    fn value(&mut self, schema: &'a apache_avro::Schema) -> Result<(), String> {
        use apache_avro::Schema as S;
        match schema {
            S::Null
            | S::Boolean
            | S::Int
            | S::Long
            | S::Float
            | S::Double
            | S::String
            | S::Enum(_)
            | S::TimestampMillis
            | S::TimestampMicros
            | S::Union(_)
            | S::Ref { .. } => self.scalar(schema).map(drop),
            S::Date | S::TimeMillis => self.int().map(drop),
            S::TimeMicros
            | S::TimestampNanos
            | S::LocalTimestampMillis
            | S::LocalTimestampMicros
            | S::LocalTimestampNanos => self.long().map(drop),
            S::Duration => self.take(12, "a duration"),
            S::Fixed(f) => self.take(f.size, "a fixed"),
            S::Bytes | S::Uuid | S::BigDecimal => self.bytes("bytes").map(drop),
            S::Decimal(d) => self.value(&d.inner),
            S::Array(a) => self.blocks("an array", |w| w.value(&a.items)),
            S::Map(m) => self.blocks("a map", |w| {
                w.string("a map key")?;
                w.value(&m.types)
            }),
            S::Record(r) => r.fields.iter().try_for_each(|f| self.value(&f.schema)),
        }
    }

    /// Reads one value of `schema` that a declared field can take (unions
    /// unwrapped, named types resolved); any other kind is stepped over and
    /// named.
    fn scalar(&mut self, schema: &'a apache_avro::Schema) -> Result<Scalar<'a>, String> {
        use apache_avro::Schema as S;
        Ok(match schema {
            S::Null => Scalar::Null,
            S::Boolean => {
                let at = self.at;
                self.take(1, "a boolean")?;
                match self.bytes[at] {
                    0 => Scalar::Boolean(false),
                    1 => Scalar::Boolean(true),
                    b => return Err(format!("the boolean at byte {at} is {b}, not 0 or 1")),
                }
            }
            S::Int => Scalar::Int(self.int()?),
            S::Long => Scalar::Long(self.long()?),
            S::TimestampMillis => Scalar::TimestampMillis(self.long()?),
            S::TimestampMicros => Scalar::TimestampMicros(self.long()?),
            S::Float => {
                let b = self.fixed::<4>("a float")?;
                Scalar::Float(f32::from_le_bytes(b))
            }
            S::Double => {
                let b = self.fixed::<8>("a double")?;
                Scalar::Double(f64::from_le_bytes(b))
            }
            S::String => Scalar::String(self.string("a string")?),
            S::Enum(e) => {
                let at = self.at;
                let i = self.long()?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| format!("the enum at byte {at} has no symbol {i}"))?;
                Scalar::Enum(symbol)
            }
            S::Union(u) => {
                let at = self.at;
                let branch = self.long()?;
                let variant = usize::try_from(branch)
                    .ok()
                    .and_then(|b| u.variants().get(b))
                    .ok_or_else(|| format!("the union at byte {at} has no branch {branch}"))?;
                self.scalar(variant)?
            }
            S::Ref { name } => {
                let names = self.names;
                let named = names
                    .get(&name.fullname(None))
                    .ok_or_else(|| format!("the type {} is not defined", name.fullname(None)))?;
                self.scalar(named)?
            }
            other => {
                self.value(other)?;
                Scalar::Other(kind(other))
            }
        })
    }

    /// A long that must fit an Avro int.
    fn int(&mut self) -> Result<i32, String> {
        let at = self.at;
        let v = self.long()?;
        i32::try_from(v).map_err(|_| format!("the int at byte {at} is {v}, out of range"))
    }

    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let at = self.at;
        self.take(N, what)?;
        Ok(self.bytes[at..at + N].try_into().unwrap_or([0; N]))
    }

    /// A length, then that many bytes.
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.length(what)?;
        let at = self.at;
        self.take(n, what)?;
        Ok(&self.bytes[at..at + n])
    }

    fn string(&mut self, what: &str) -> Result<&'a str, String> {
        let at = self.at;
        let bytes = self.bytes(what)?;
        simdutf8::basic::from_utf8(bytes)
            .map_err(|_| format!("{what} at byte {at} is not valid UTF-8"))
    }
}

/// One value a declared field is filled from, as read from a datum.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    Null,
    Boolean(bool),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    String(&'a str),
    Enum(&'a str),
    TimestampMillis(i64),
    TimestampMicros(i64),
    /// A value of another kind, by the name of its type.
    Other(&'static str),
}

/// The name of a type no declared field takes.
fn kind(schema: &apache_avro::Schema) -> &'static str {
    use apache_avro::Schema as S;
    match schema {
        S::Bytes => "bytes",
        S::Fixed(_) => "fixed",
        S::Array(_) => "an array",
        S::Map(_) => "a map",
        S::Record(_) => "a record",
        S::Date => "a date",
        S::TimeMillis | S::TimeMicros => "a time of day",
        S::TimestampNanos => "timestamp-nanos",
        S::LocalTimestampMillis | S::LocalTimestampMicros | S::LocalTimestampNanos => {
            "a local timestamp"
        }
        S::Duration => "a duration",
        S::Uuid => "a uuid",
        S::Decimal(_) | S::BigDecimal => "a decimal",
        _ => "a value",
    }
}

/// The leading bytes of an object container file.
const OCF_MAGIC: &[u8; 4] = b"Obj\x01";
/// The sync marker's length.
const SYNC_LEN: usize = 16;

/// Why an object container file cannot be read.
fn invalid_file<'b>(index: usize, message: String, bytes: &'b [u8]) -> Rejection<'b> {
    let e = DocumentError::InvalidAvro { message };
    Rejection {
        index,
        reason: e.kind(),
        detail: e.to_string(),
        scope: Scope::Payload,
        bytes,
        sub_sequence_number: None,
    }
}

/// Decodes an object container file: header with the schema, then blocks of
/// records. Read here rather than by `apache-avro`'s reader so that nothing
/// it declares costs more than `max_bytes`: a block's length must fit in
/// the payload, a `deflate` block inflates to at most `max_bytes` (over all
/// blocks), and a block's record count must fit in its bytes.
pub(super) fn decode_file<F>(schema: &Schema, bytes: &[u8], max_bytes: usize, on_document: &mut F)
where
    F: for<'b> FnMut(DocumentOutcome<'b>),
{
    let Header {
        writer,
        deflate,
        sync,
        mut rest,
    } = match read_header(bytes) {
        Ok(header) => header,
        Err(message) => {
            let message = format!("not an Avro object container file: {message}");
            return on_document(Err(invalid_file(0, message, bytes)));
        }
    };
    let reader = DatumReader::new(Arc::new(writer), schema);
    let mut index = 0;
    let mut inflated_total = 0usize;
    while !rest.is_empty() {
        let block = read_block(&mut rest, &sync);
        let (count, data) = match block {
            Ok(b) => b,
            Err(message) => {
                let message = format!("record {index}: {message}");
                return on_document(Err(invalid_file(index, message, bytes)));
            }
        };
        let inflated;
        let data: &[u8] = if deflate {
            match inflate(data, max_bytes.saturating_sub(inflated_total)) {
                Ok(d) => {
                    inflated_total += d.len();
                    inflated = d;
                    &inflated
                }
                Err(message) => {
                    let message = format!("record {index}: {message}");
                    return on_document(Err(invalid_file(index, message, bytes)));
                }
            }
        } else {
            data
        };
        // Every record takes a byte at least (check_schema): a count past
        // the block's bytes is a lie.
        if count > data.len() {
            let message = format!(
                "record {index}: a block of {} bytes declares {count} records",
                data.len()
            );
            return on_document(Err(invalid_file(index, message, bytes)));
        }
        let mut at = 0;
        for _ in 0..count {
            let start = at;
            match reader.read(schema, data, &mut at) {
                Ok(converted) => {
                    reader.emit(index, converted, &data[start..at], false, on_document)
                }
                Err(e) => {
                    let message = format!("record {index}: {e}");
                    return on_document(Err(invalid_file(index, message, bytes)));
                }
            }
            index += 1;
        }
    }
}

/// A container file's header, and the bytes after it.
struct Header<'b> {
    writer: AvroWriterSchema,
    deflate: bool,
    sync: [u8; SYNC_LEN],
    rest: &'b [u8],
}

/// Reads the header: the writer schema, whether blocks are deflated, the
/// sync marker.
fn read_header(bytes: &[u8]) -> Result<Header<'_>, String> {
    let Some(mut rest) = bytes.strip_prefix(OCF_MAGIC) else {
        return Err("no Obj\\x01 magic bytes".into());
    };
    let meta_schema = apache_avro::Schema::Map(apache_avro::schema::MapSchema {
        types: Box::new(apache_avro::Schema::Bytes),
        attributes: Default::default(),
    });
    let meta = read_datum(&meta_schema, &Names::new(), &mut rest)
        .map_err(|e| format!("the metadata cannot be read: {e}"))?;
    let Avro::Map(meta) = meta else {
        return Err("the metadata is not a map".into());
    };
    let text = |key: &str| match meta.get(key) {
        Some(Avro::Bytes(b)) => std::str::from_utf8(b).ok(),
        _ => None,
    };
    let writer = text("avro.schema").ok_or("the metadata has no avro.schema")?;
    let writer = AvroWriterSchema::parse(writer)?;
    let deflate = match text("avro.codec").unwrap_or("null") {
        "null" => false,
        "deflate" => true,
        other => return Err(format!("codec {other:?} is not read (null or deflate)")),
    };
    if rest.len() < SYNC_LEN {
        return Err("the header ends before its sync marker".into());
    }
    let (sync, rest) = rest.split_at(SYNC_LEN);
    Ok(Header {
        writer,
        deflate,
        sync: sync.try_into().unwrap_or_default(),
        rest,
    })
}

/// One block: its record count and its (possibly deflated) bytes, checked
/// against the payload and the sync marker.
fn read_block<'b>(rest: &mut &'b [u8], sync: &[u8; SYNC_LEN]) -> Result<(usize, &'b [u8]), String> {
    let count = read_long(rest).ok_or("the block count cannot be read")?;
    let size = read_long(rest).ok_or("the block size cannot be read")?;
    let (Ok(count), Ok(size)) = (usize::try_from(count), usize::try_from(size)) else {
        return Err(format!("a block declares {count} records in {size} bytes"));
    };
    if size > rest.len().saturating_sub(SYNC_LEN) {
        return Err(format!(
            "a block declares {size} bytes where {} remain",
            rest.len()
        ));
    }
    let (data, after) = rest.split_at(size);
    let (marker, after) = after.split_at(SYNC_LEN);
    if marker != sync {
        return Err("a block does not end with the file's sync marker".into());
    }
    *rest = after;
    Ok((count, data))
}

/// A zigzag varint long, as Avro writes block counts and sizes.
fn read_long(rest: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// Inflates a raw deflate block, refusing more than `limit` bytes.
fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit.saturating_add(1)));
    flate2::bufread::DeflateDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("a deflate block cannot be inflated: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "the deflate blocks inflate past the payload limit ({limit} bytes left)"
        ));
    }
    Ok(out)
}

/// Converts the value read for `field`.
fn convert<'a>(field: &Field, v: Scalar<'a>) -> Result<Value<'a>, DocumentError> {
    let wrong = |v: Scalar<'_>| DocumentError::WrongType {
        field: field.name.clone(),
        expected: field.field_type.name(),
        found: describe(v),
    };
    Ok(match (&field.field_type, v) {
        (_, Scalar::Null) if field.required => {
            return Err(DocumentError::MissingField {
                field: field.name.clone(),
            })
        }
        (_, Scalar::Null) => Value::Null,
        (FieldType::Int64, Scalar::Long(i)) => Value::Int64(i),
        (FieldType::Int64, Scalar::Int(i)) => Value::Int64(i64::from(i)),
        // NaN and the infinities are not readings: JSON cannot spell them
        // and CSV refuses them, so Avro does too.
        (FieldType::Float64, Scalar::Double(x)) if !x.is_finite() => return Err(wrong(v)),
        (FieldType::Float64, Scalar::Float(x)) if !x.is_finite() => return Err(wrong(v)),
        (FieldType::Float64, Scalar::Double(x)) => Value::Float64(x),
        (FieldType::Float64, Scalar::Float(x)) => Value::Float64(f64::from(x)),
        (FieldType::Float64, Scalar::Long(i)) => Value::Float64(i as f64),
        (FieldType::Float64, Scalar::Int(i)) => Value::Float64(f64::from(i)),
        (FieldType::Boolean, Scalar::Boolean(b)) => Value::Boolean(b),
        (FieldType::String, Scalar::String(s) | Scalar::Enum(s)) => Value::String(Cow::Borrowed(s)),
        (FieldType::Timestamp, Scalar::TimestampMicros(t)) => Value::Timestamp(timestamp_in_range(
            field,
            Some(t),
            || format!("{t} µs"),
            "timestamp-micros",
        )?),
        (FieldType::Timestamp, Scalar::TimestampMillis(t)) => Value::Timestamp(timestamp_in_range(
            field,
            t.checked_mul(1000),
            || format!("{t} ms"),
            "timestamp-millis",
        )?),
        (FieldType::Timestamp, Scalar::String(s)) => Value::Timestamp(parse_timestamp(field, s)?),
        (_, other) => return Err(wrong(other)),
    })
}

fn describe(v: Scalar<'_>) -> String {
    match v {
        Scalar::Null => "null".into(),
        Scalar::Boolean(b) => format!("boolean {b}"),
        Scalar::Int(i) => format!("int {i}"),
        Scalar::Long(i) => format!("long {i}"),
        Scalar::Float(x) => format!("float {x}"),
        Scalar::Double(x) => format!("double {x}"),
        Scalar::String(s) => {
            let shown: String = s.chars().take(40).collect();
            format!("string {shown:?}")
        }
        Scalar::Enum(s) => format!("enum symbol {s}"),
        Scalar::TimestampMillis(t) => format!("timestamp-millis {t}"),
        Scalar::TimestampMicros(t) => format!("timestamp-micros {t}"),
        Scalar::Other(kind) => kind.into(),
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

    /// An object container file of `schema`'s `records`, uncompressed or
    /// deflated, several to a block.
    fn container(schema: &str, records: Vec<Avro>, deflate: bool) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(schema).unwrap();
        let codec = if deflate {
            apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default())
        } else {
            apache_avro::Codec::Null
        };
        let mut w = apache_avro::Writer::with_codec(&schema, Vec::new(), codec);
        for r in records {
            w.append(r).unwrap();
        }
        w.into_inner().unwrap()
    }

    /// The first rejection's (reason, detail) of a container file.
    fn file_rejection(file: &[u8], cap: usize) -> (String, String) {
        let d = PayloadDecoder::new(Format::AvroFile, Schema::parse("s:string").unwrap(), cap);
        let mut got = None;
        d.decode(file, |r| {
            if let (Err(r), None) = (r, &got) {
                got = Some((r.reason.to_string(), r.detail));
            }
        });
        got.expect("a rejection")
    }

    const STRINGS: &str = r#"{"type":"record","name":"r","fields":[{"name":"s","type":"string"}]}"#;

    fn string_record(s: &str) -> Avro {
        Avro::Record(vec![("s".into(), Avro::String(s.into()))])
    }

    #[test]
    fn container_files_read_here_give_the_rows_apache_avro_gives() {
        for deflate in [false, true] {
            let records = (0..300).map(|i| string_record(&format!("v{i}"))).collect();
            let file = container(STRINGS, records, deflate);
            let d = PayloadDecoder::new(
                Format::AvroFile,
                Schema::parse("s:string").unwrap(),
                1 << 20,
            );
            let (rows, bad) = run(&d, &file);
            assert!(bad.is_empty(), "{bad:?}");
            assert_eq!(rows.len(), 300);
            assert_eq!(rows[299], r#"[String("v299")]"#);
        }
    }

    #[test]
    fn schemas_whose_data_could_cost_without_bound_are_refused() {
        let recursive = r#"{"type":"record","name":"n","fields":[
            {"name":"s","type":"string"},{"name":"next","type":["null","n"]}]}"#;
        let nulls = r#"{"type":"record","name":"a","fields":[
            {"name":"s","type":"string"},{"name":"xs","type":{"type":"array","items":"null"}}]}"#;
        let empty = r#"{"type":"record","name":"e","fields":[{"name":"x","type":"null"}]}"#;
        let mut deep =
            r#"{"type":"record","name":"d","fields":[{"name":"s","type":"string"}]}"#.to_string();
        for i in 0..40 {
            deep = format!(
                r#"{{"type":"record","name":"d{i}","fields":[{{"name":"f","type":{deep}}}]}}"#
            );
        }
        for (schema, says) in [
            (recursive, "contains itself"),
            (nulls, "items that take no bytes"),
            (empty, "takes no bytes"),
            (deep.as_str(), "deeper than 32"),
        ] {
            let e = AvroWriterSchema::parse(schema).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        // The same schema in a container file's header: the file is refused
        // before any record is read.
        let file = container(
            recursive,
            vec![Avro::Record(vec![
                ("s".into(), Avro::String("x".into())),
                ("next".into(), Avro::Union(0, Box::new(Avro::Null))),
            ])],
            false,
        );
        let (reason, detail) = file_rejection(&file, 1 << 20);
        assert_eq!(reason, "invalid_avro");
        assert!(detail.contains("contains itself"), "{detail}");
    }

    #[test]
    fn the_walk_finds_the_datum_end_apache_avro_writes_for_every_type() {
        let schema = apache_avro::Schema::parse_str(ALL_TYPES).unwrap();
        let names = named_types(&schema);
        let record = all_types_record(Avro::Union(2, Box::new(Avro::Enum(0, "A".into()))));
        let one = apache_avro::to_avro_datum(&schema, record).unwrap();
        let two = [one.as_slice(), &one].concat();
        assert_eq!(datum_len(&schema, &names, &two), Ok(one.len()));
        // Every truncation is refused, none read past the end.
        for cut in 0..one.len() {
            assert!(datum_len(&schema, &names, &one[..cut]).is_err(), "{cut}");
        }
    }

    const ALL_TYPES: &str = r#"{"type":"record","name":"all","fields":[
        {"name":"b","type":"boolean"},{"name":"i","type":"int"},
        {"name":"f","type":"float"},{"name":"d","type":"double"},
        {"name":"s","type":"string"},{"name":"y","type":"bytes"},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
        {"name":"x","type":{"type":"fixed","name":"F","size":3}},
        {"name":"again","type":"F"},
        {"name":"a","type":{"type":"array","items":{"type":"map","values":"long"}}},
        {"name":"u","type":["null","string","E"]},
        {"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}}]}"#;

    fn all_types_record(u: Avro) -> Avro {
        Avro::Record(vec![
            ("b".into(), Avro::Boolean(true)),
            ("i".into(), Avro::Int(-70_000)),
            ("f".into(), Avro::Float(1.5)),
            ("d".into(), Avro::Double(2.5)),
            ("s".into(), Avro::String("héllo".into())),
            ("y".into(), Avro::Bytes(vec![0, 1, 2])),
            ("e".into(), Avro::Enum(1, "B".into())),
            ("x".into(), Avro::Fixed(3, vec![7, 8, 9])),
            ("again".into(), Avro::Fixed(3, vec![1, 2, 3])),
            (
                "a".into(),
                Avro::Array(vec![
                    Avro::Map([("k".to_string(), Avro::Long(1 << 40))].into()),
                    Avro::Map(Default::default()),
                ]),
            ),
            ("u".into(), u),
            ("t".into(), Avro::TimestampMicros(1_700_000_000_000_000)),
        ])
    }

    fn datum_decoder(writer: &str, declared: &str) -> PayloadDecoder {
        let writer = AvroWriterSchema::parse(writer).unwrap();
        PayloadDecoder::new(
            Format::AvroDatum(Arc::new(writer)),
            Schema::parse(declared).unwrap(),
            1 << 20,
        )
    }

    #[test]
    fn declared_fields_are_read_straight_from_the_bytes_as_apache_avro_decodes_them() {
        let writer = AvroWriterSchema::parse(ALL_TYPES).unwrap();
        // Declared in another order than the writer's, some writer fields
        // left out, one declared field the writer lacks.
        let d = datum_decoder(
            ALL_TYPES,
            "t:timestamp,u:string?,e:string,s:string,d:float64,f:float64,i:int64,b:boolean,\
             missing:string?",
        );
        for (u, shown) in [
            (Avro::Union(0, Box::new(Avro::Null)), "Null"),
            (
                Avro::Union(1, Box::new(Avro::String("ü".into()))),
                r#"String("ü")"#,
            ),
            (
                Avro::Union(2, Box::new(Avro::Enum(0, "A".into()))),
                r#"String("A")"#,
            ),
        ] {
            let one = apache_avro::to_avro_datum(&writer.schema, all_types_record(u)).unwrap();
            let mut rows = Vec::new();
            let mut undeclared = Vec::new();
            d.decode(&[one.as_slice(), &one].concat(), |r| {
                let doc = r.expect("a row");
                assert_eq!(doc.bytes, &one[..]);
                undeclared.push(doc.undeclared);
                rows.push(format!("{:?}", doc.values));
            });
            let row = format!(
                "[Timestamp(1700000000000000), {shown}, String(\"B\"), String(\"héllo\"), \
                 Float64(2.5), Float64(1.5), Int64(-70000), Boolean(true), Null]"
            );
            assert_eq!(rows, vec![row.clone(), row]);
            // y, x, again and a fill no declared field.
            assert_eq!(undeclared, vec![4, 4]);
        }
    }

    #[test]
    fn bytes_apache_avro_refuses_are_refused_whether_their_field_is_declared_or_not() {
        let writer = AvroWriterSchema::parse(ALL_TYPES).unwrap();
        let good = apache_avro::to_avro_datum(
            &writer.schema,
            all_types_record(Avro::Union(0, Box::new(Avro::Null))),
        )
        .unwrap();
        // Byte 0 is the boolean; bytes 1-3 the int -70000 (zigzag 139999),
        // then the float's 4 and the double's 8; byte 16 the string's
        // length (5 chars, 6 bytes), its bytes 17-22; after the length and
        // 3 bytes of `y`, byte 27 is the enum's index.
        assert_eq!(&good[17..23], "héllo".as_bytes());
        assert_eq!(good[27], 2);
        let damaged = |at: usize, with: &[u8]| {
            let mut bad = good.clone();
            bad.splice(at..at + with.len(), with.iter().copied());
            bad
        };
        let cases = [
            damaged(0, &[2]),                      // a boolean of 2
            damaged(1, &[0xfe, 0xff, 0xff, 0x1f]), // an int past i32
            damaged(18, &[0xff]),                  // a string that is not UTF-8
            damaged(27, &[4]),                     // enum symbol 2 of 2
        ];
        for declared in ["b:boolean,i:int64,s:string,e:string", "t:timestamp"] {
            let d = datum_decoder(ALL_TYPES, declared);
            for (n, bad) in cases.iter().enumerate() {
                assert!(
                    apache_avro::from_avro_datum(&writer.schema, &mut &bad[..], None).is_err(),
                    "case {n}"
                );
                let (rows, bad) = run(&d, &[good.as_slice(), bad].concat());
                assert_eq!(rows.len(), 1, "{declared}, case {n}");
                assert_eq!(
                    (bad[0].0, bad[0].1.as_str()),
                    (1, "invalid_avro"),
                    "case {n}"
                );
            }
        }
    }

    #[test]
    fn a_datum_that_does_not_fit_is_refused_for_its_first_declared_field_and_the_next_one_lands() {
        let writer = AvroWriterSchema::parse(ALL_TYPES).unwrap();
        let datum = |i: i32| {
            let mut r = all_types_record(Avro::Union(0, Box::new(Avro::Null)));
            if let Avro::Record(fields) = &mut r {
                fields[1].1 = Avro::Int(i);
            }
            apache_avro::to_avro_datum(&writer.schema, r).unwrap()
        };
        let payload = [datum(1), datum(2)].concat();
        let detail = |declared: &str| {
            let d = datum_decoder(ALL_TYPES, declared);
            let mut details = Vec::new();
            let mut rows = 0;
            d.decode(&payload, |r| match r {
                Ok(_) => rows += 1,
                Err(r) => details.push((r.index, r.reason, r.detail)),
            });
            (rows, details)
        };
        // `a` is an array, `y` bytes: the first declared one is named, and
        // both datums are read to their ends.
        let (rows, details) = detail("s:string,a:int64,y:string");
        assert_eq!(rows, 0);
        assert_eq!(details.len(), 2);
        assert_eq!(details[0].1, "wrong_type");
        assert!(
            details[0]
                .2
                .starts_with("field `a`: expected int64, found an array"),
            "{:?}",
            details[0]
        );
        let (_, details) = detail("y:string,a:int64");
        assert!(details[0].2.contains("bytes"), "{:?}", details[0]);
        // A required field the writer does not have is missing from every
        // datum, unless a field declared before it is wrong first.
        let (_, details) = detail("i:int64,nowhere:string");
        assert_eq!(details[1].1, "missing_field");
        assert!(details[1].2.contains("nowhere"), "{:?}", details[1]);
        let (_, details) = detail("i:boolean,nowhere:string");
        assert_eq!(details[0].1, "wrong_type");
        assert!(details[0].2.contains("int 1"), "{:?}", details[0]);
    }

    #[test]
    fn nested_array_counts_the_bytes_cannot_hold_are_refused_before_any_allocation() {
        let mut items = r#""long""#.to_string();
        for _ in 0..20 {
            items = format!(r#"{{"type":"array","items":{items}}}"#);
        }
        let schema = apache_avro::Schema::parse_str(&items).unwrap();
        // A million items at each of twenty levels, in 60 bytes: apache-avro
        // alone would reserve 56 MB per level before finding the end.
        let bytes = [0x80, 0x89, 0x7a].repeat(20);
        let e = datum_len(&schema, &Names::new(), &bytes).unwrap_err();
        assert!(e.contains("declares 1000000 items in 57 bytes"), "{e}");
    }

    #[test]
    fn container_blocks_cannot_declare_more_than_the_payload_holds() {
        let file = container(STRINGS, vec![string_record("a")], false);
        // The header ends with the 16-byte sync marker, which ends every
        // block too; the block is count, size, data, sync.
        let sync = file[file.len() - 16..].to_vec();
        let header_len = file.windows(16).position(|w| w == &sync[..]).unwrap() + 16;
        let header = &file[..header_len];
        let zigzag = |v: i64| {
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
        };
        let block = |count: i64, size: i64, data: &[u8]| {
            [header, &zigzag(count), &zigzag(size), data, &sync].concat()
        };
        // 512 MiB declared, two bytes there.
        let (reason, detail) = file_rejection(&block(1, 512 << 20, b"\x02a"), 1 << 20);
        assert_eq!(reason, "invalid_avro");
        assert!(detail.contains("declares 536870912 bytes"), "{detail}");
        // A billion records in two bytes.
        let (_, detail) = file_rejection(&block(1 << 30, 2, b"\x02a"), 1 << 20);
        assert!(detail.contains("declares 1073741824 records"), "{detail}");
        // A block that does not end with the sync marker.
        let mut bad_sync = block(1, 2, b"\x02a");
        let last = bad_sync.len() - 1;
        bad_sync[last] ^= 1;
        let (_, detail) = file_rejection(&bad_sync, 1 << 20);
        assert!(detail.contains("sync marker"), "{detail}");

        // A deflate bomb: 8 MiB of one string inflates past a 1 MiB cap,
        // and is stopped there.
        let big = "x".repeat(8 << 20);
        let bomb = container(STRINGS, vec![string_record(&big)], true);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let (reason, detail) = file_rejection(&bomb, 1 << 20);
        assert_eq!(reason, "invalid_avro");
        assert!(
            detail.contains("inflate past the payload limit"),
            "{detail}"
        );
    }

    #[test]
    fn a_writer_schema_must_be_a_record() {
        assert!(AvroWriterSchema::parse(r#""long""#).is_err());
        assert!(AvroWriterSchema::parse("{").is_err());
    }
}
