//! The record formats a stream may carry, chosen per stream in
//! configuration, and the one decode path every stream consumer uses:
//! decompression (any format), then the format's parser, then conversion of
//! each record to the declared schema.
//!
//! Formats are those a Glue streaming source reads: JSON, CSV, Avro datum
//! (with a declared writer schema), Avro object container files (schema in
//! the payload) and Grok patterns over log lines. Each payload gives zero or
//! more documents; every document is either a row (its values in schema
//! order) or a [`Rejection`] naming what was wrong.

mod avro;
mod cloudwatch_logs;
mod csv;
mod grok;
mod text;

use std::sync::Arc;

use crate::config::schema::Schema;
use crate::stream::dead_letter::{DocumentOutcome, Rejection, Scope};
use crate::stream::decompress::{DecompressError, Inflater};
use crate::stream::document::{parse_document_counting, read_fast, utf8, Document, DocumentError};

pub use self::avro::AvroWriterSchema;
pub use self::cloudwatch_logs::{CloudWatchLogs, EnvelopeFields, MessageFormat};
pub use self::csv::CsvOptions;
pub use self::grok::{GrokPattern, DEFAULT_TIME_BUDGET as DEFAULT_GROK_TIME_BUDGET};

/// The format of the records of a stream.
#[derive(Debug, Clone)]
pub enum Format {
    /// One JSON object per payload, or one per line.
    Json,
    /// CSV lines (RFC 4180 quoting), with or without a header line.
    Csv(CsvOptions),
    /// Binary Avro datums written with a declared writer schema.
    AvroDatum(Arc<AvroWriterSchema>),
    /// Avro object container files: the schema travels in the payload.
    AvroFile,
    /// Log lines matched by a grok pattern.
    Grok(Arc<GrokPattern>),
    /// CloudWatch Logs subscription envelopes: each log event a document.
    CloudWatchLogs(Arc<CloudWatchLogs>),
}

impl Format {
    /// The format's name in configuration and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv(_) => "csv",
            Format::AvroDatum(_) => "avro",
            Format::AvroFile => "avro-ocf",
            Format::Grok(_) => "grok",
            Format::CloudWatchLogs(_) => "cloudwatch-logs",
        }
    }

    fn is_text(&self) -> bool {
        matches!(
            self,
            Format::Json | Format::Csv(_) | Format::Grok(_) | Format::CloudWatchLogs(_)
        )
    }
}

/// Turns payloads of one format into rows of the declared schema.
#[derive(Debug, Clone)]
pub struct PayloadDecoder {
    format: Format,
    reader: Reader,
    schema: Schema,
    max_payload_bytes: usize,
    invocation_budget: usize,
}

/// The format resolved against the declared schema when the decoder is
/// built: what each payload is read with.
#[derive(Debug, Clone)]
enum Reader {
    Json,
    Csv(CsvOptions),
    AvroDatum(Arc<avro::DatumReader>),
    AvroFile,
    Grok(Arc<GrokPattern>),
    CloudWatchLogs(Arc<cloudwatch_logs::Plan>),
}

impl Reader {
    fn new(format: &Format, schema: &Schema) -> Self {
        match format {
            Format::Json => Reader::Json,
            Format::Csv(options) => Reader::Csv(options.clone()),
            Format::AvroDatum(writer) => {
                Reader::AvroDatum(Arc::new(avro::DatumReader::new(writer.clone(), schema)))
            }
            Format::AvroFile => Reader::AvroFile,
            Format::Grok(pattern) => Reader::Grok(pattern.clone()),
            Format::CloudWatchLogs(f) => {
                Reader::CloudWatchLogs(Arc::new(cloudwatch_logs::Plan::new(f, schema)))
            }
        }
    }
}

/// What an invocation has left to produce, over all its records and the
/// user records of their KPL aggregates: decoded bytes and documents.
///
/// Each payload may decompress to at most `MAX_PAYLOAD_BYTES`; the bytes
/// budget bounds their sum, so a batch of small, highly compressed records
/// (or one aggregate of thousands) cannot inflate past the function's
/// memory. Once it is spent, each further compressed payload is
/// `payload_too_large`, its bytes kept in the dead letter for replay.
///
/// The documents budget bounds what the bytes budget does not: a document
/// costs memory beyond its bytes (a row in the column builders, or a dead
/// letter of some hundred bytes for a two-byte bad line), so a payload of
/// a million tiny bad lines would cost far more than its megabyte. It
/// allows one document (good or bad) per [`BYTES_PER_DOCUMENT`] of the
/// bytes budget. A payload whose documents run past it is read up to
/// there; the rest of it is one `payload_too_large` dead letter of the
/// whole payload, its `document_index` the first document not read.
///
/// It also holds the inflate state the invocation's compressed payloads
/// share (see [`Inflater`]).
#[derive(Debug)]
pub struct DecodeBudget {
    total: usize,
    left: usize,
    documents_total: usize,
    documents_left: usize,
    undeclared: usize,
    control_messages: usize,
    inflater: Inflater,
}

/// Memory a document may cost beyond its bytes, at most, as the documents
/// budget counts it: a dead letter held and then written as a JSON line.
pub const BYTES_PER_DOCUMENT: usize = 512;

impl DecodeBudget {
    /// A budget of `total` bytes, and of one document per
    /// [`BYTES_PER_DOCUMENT`] of them.
    pub fn new(total: usize) -> Self {
        let documents = total / BYTES_PER_DOCUMENT;
        DecodeBudget {
            total,
            left: total,
            documents_total: documents,
            documents_left: documents,
            undeclared: 0,
            control_messages: 0,
            inflater: Inflater::default(),
        }
    }

    /// Fields of the good documents read so far that the schema does not
    /// declare ([`Document::undeclared`]).
    pub fn undeclared_fields(&self) -> usize {
        self.undeclared
    }

    /// CloudWatch Logs control messages read so far: skipped, not dead
    /// letters.
    pub fn control_messages(&self) -> usize {
        self.control_messages
    }

    /// The bytes left.
    pub fn left(&self) -> usize {
        self.left
    }

    /// The documents left.
    pub fn documents_left(&self) -> usize {
        self.documents_left
    }
}

impl PayloadDecoder {
    /// A decoder for payloads of `format` holding records of `schema`, each
    /// payload at most `max_payload_bytes` once decompressed.
    pub fn new(format: Format, schema: Schema, max_payload_bytes: usize) -> Self {
        if matches!(format, Format::AvroDatum(_) | Format::AvroFile) {
            // No Avro length (of a string, bytes, an array block) may ask
            // for more memory than a payload holds: apache-avro takes this
            // limit once per process, before it reads anything.
            apache_avro::util::max_allocation_bytes(max_payload_bytes.max(1 << 20));
        }
        PayloadDecoder {
            reader: Reader::new(&format, &schema),
            format,
            schema,
            max_payload_bytes,
            invocation_budget: usize::MAX,
        }
    }

    /// The same decoder, giving each invocation `bytes` of decoded data
    /// ([`DecodeBudget`]; unbounded by default).
    pub fn with_invocation_budget(mut self, bytes: usize) -> Self {
        self.invocation_budget = bytes;
        self
    }

    /// A fresh budget for one invocation.
    pub fn budget(&self) -> DecodeBudget {
        DecodeBudget::new(self.invocation_budget)
    }

    /// The declared schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The format.
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// Decompresses a record's payload, splits it into documents and converts
    /// each to the schema, calling `on_document` once per document with its
    /// values or the reason it is bad (once, for the payload, when the
    /// payload as a whole cannot be read). Every stream consumer validates
    /// through here, so a record is good or bad for the same reason
    /// everywhere.
    pub fn decode<F>(&self, data: &[u8], on_document: F)
    where
        F: for<'b> FnMut(DocumentOutcome<'b>),
    {
        self.decode_within(data, &mut self.budget(), on_document)
    }

    /// As [`PayloadDecoder::decode`], spending the decompressed bytes from
    /// the invocation's `budget`.
    pub fn decode_within<F>(&self, data: &[u8], budget: &mut DecodeBudget, mut on_document: F)
    where
        F: for<'b> FnMut(DocumentOutcome<'b>),
    {
        let payload = |reason: &'static str, detail: String| Rejection {
            index: 0,
            reason,
            detail,
            scope: Scope::Payload,
            bytes: data,
            sub_sequence_number: None,
        };
        let limit = self.max_payload_bytes.min(budget.left);
        let bytes: &[u8] = match budget.inflater.decompress(data, limit) {
            Ok(Some(inflated)) => {
                budget.left -= inflated.len().min(budget.left);
                inflated
            }
            Ok(None) => data,
            Err(DecompressError::TooLarge { codec: Some(c), .. })
                if limit < self.max_payload_bytes =>
            {
                let detail = format!(
                    "the invocation's decode budget of {} bytes (a quarter of the function's \
                     memory) is spent; {} bytes were left for this {} payload",
                    budget.total,
                    budget.left,
                    c.name()
                );
                on_document(Err(payload("payload_too_large", detail)));
                return;
            }
            // A codec whose magic is printable text or a two-byte checksum
            // (zlib's `80,` or `x^`, bzip2's `BZh1`) is only taken for
            // compression when the payload also decodes: a CSV line for
            // device 80, a log line or an Avro datum can begin that way. One
            // that does not decode is read as it is, when the format could
            // read it (text formats need valid UTF-8; a corrupt stream that
            // is not text stays `decompression_failed`).
            Err(DecompressError::Corrupt { codec, .. })
                if codec.magic_is_weak()
                    && data.len() <= self.max_payload_bytes
                    && (!self.format.is_text() || simdutf8::basic::from_utf8(data).is_ok()) =>
            {
                data
            }
            Err(e) => {
                let reason = match e {
                    DecompressError::TooLarge { .. } => "payload_too_large",
                    DecompressError::Corrupt { .. } => "decompression_failed",
                };
                on_document(Err(payload(reason, e.to_string())));
                return;
            }
        };
        let blank = if self.format.is_text() {
            bytes.iter().all(u8::is_ascii_whitespace)
        } else {
            bytes.is_empty()
        };
        if blank {
            let e = DocumentError::Empty;
            on_document(Err(payload(e.kind(), e.to_string())));
            return;
        }
        let text = if self.format.is_text() {
            match utf8(bytes) {
                Ok(text) => text,
                Err(offset) => {
                    let e = DocumentError::InvalidUtf8 { offset };
                    on_document(Err(payload(e.kind(), e.to_string())));
                    return;
                }
            }
        } else {
            ""
        };
        let schema = &self.schema;
        // The first document past the documents budget, if any: it and the
        // rest of the payload are not handed on.
        let mut cut: Option<usize> = None;
        let mut undeclared = 0;
        let mut counted = |outcome: DocumentOutcome<'_>| {
            if cut.is_some() {
                return;
            }
            if budget.documents_left == 0 {
                cut = Some(match &outcome {
                    Ok(doc) => doc.index,
                    Err(r) => r.index,
                });
                return;
            }
            budget.documents_left -= 1;
            if let Ok(doc) = &outcome {
                undeclared += doc.undeclared;
            }
            on_document(outcome);
        };
        match &self.reader {
            Reader::Json => {
                // A payload is most often one good document: the fast reader
                // takes it whole, so it is not first searched for line
                // breaks. Anything else is read as below, which tries the
                // fast reader again per document.
                let whole = text.trim();
                let mut unknown = 0;
                match read_fast(schema, whole, &mut unknown) {
                    Some(values) => counted(Ok(
                        Document::new(0, values, whole.as_bytes()).with_undeclared(unknown)
                    )),
                    None => for_each_document(text, |index, doc| {
                        let mut unknown = 0;
                        match parse_document_counting(schema, doc, &mut unknown) {
                            Ok(values) => counted(Ok(Document::new(index, values, doc.as_bytes())
                                .with_undeclared(unknown))),
                            Err(e) => counted(Err(Rejection::document(index, &e, doc.as_bytes()))),
                        }
                    }),
                }
            }
            Reader::Csv(options) => csv::decode(options, schema, text, &mut counted),
            Reader::Grok(pattern) => pattern.decode(schema, text, &mut counted),
            Reader::AvroDatum(reader) => reader.decode(schema, bytes, &mut counted),
            Reader::AvroFile => avro::decode_file(schema, bytes, limit, &mut counted),
            Reader::CloudWatchLogs(plan) => {
                match cloudwatch_logs::decode(plan, schema, text, &mut counted) {
                    Ok(control) => budget.control_messages += control,
                    Err(e) => on_document(Err(payload(e.kind(), e.to_string()))),
                }
            }
        }
        budget.undeclared += undeclared;
        if let Some(index) = cut {
            let detail = format!(
                "the invocation's budget of {} documents (one per {BYTES_PER_DOCUMENT} bytes of \
                 its decode budget) is spent: documents from {index} of this payload are not \
                 read",
                budget.documents_total
            );
            on_document(Err(Rejection {
                index,
                ..payload("payload_too_large", detail)
            }));
        }
    }
}

/// Calls `f` for each JSON document of a payload: the whole payload when it
/// is one document (even pretty-printed over several lines), otherwise each
/// non-blank line (newline-delimited JSON).
fn for_each_document<'a>(text: &'a str, mut f: impl FnMut(usize, &'a str)) {
    let trimmed = text.trim();
    if !trimmed.contains('\n') || is_single_document(trimmed) {
        f(0, trimmed);
        return;
    }
    let lines = trimmed.split('\n').map(str::trim).filter(|l| !l.is_empty());
    for (i, line) in lines.enumerate() {
        f(i, line);
    }
}

/// True when the whole text is exactly one JSON value.
fn is_single_document(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stream::decompress::Codec;

    /// What a decoder made of one payload: rows rendered with `{:?}`, and
    /// rejections as (index, reason, scope, bytes).
    pub(crate) type Outcome = (Vec<String>, Vec<(usize, String, Scope, Vec<u8>)>);

    pub(crate) fn run(decoder: &PayloadDecoder, data: &[u8]) -> Outcome {
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        decoder.decode(data, |r| match r {
            Ok(doc) => rows.push(format!("{:?}", doc.values)),
            Err(r) => bad.push((r.index, r.reason.to_string(), r.scope, r.bytes.to_vec())),
        });
        (rows, bad)
    }

    #[test]
    fn documents_past_the_invocations_budget_are_one_dead_letter_of_the_rest_of_the_payload() {
        let d = PayloadDecoder::new(
            Format::Csv(csv::CsvOptions::default()),
            Schema::parse("a:int64").unwrap(),
            1 << 20,
        )
        .with_invocation_budget(3 * BYTES_PER_DOCUMENT);
        let mut budget = d.budget();
        assert_eq!(budget.documents_left(), 3);
        let mut seen = Vec::new();
        for payload in ["1\nx\n3\n4\n5\n".as_bytes(), b"6\n"] {
            d.decode_within(payload, &mut budget, |r| match r {
                Ok(doc) => seen.push((doc.index, "row".to_string(), Scope::Document, 0)),
                Err(r) => seen.push((r.index, r.reason.to_string(), r.scope, r.bytes.len())),
            });
        }
        assert_eq!(
            seen,
            vec![
                (0, "row".into(), Scope::Document, 0),
                (1, "wrong_type".into(), Scope::Document, 1),
                (2, "row".into(), Scope::Document, 0),
                // The whole payload, for replay from document 3.
                (3, "payload_too_large".into(), Scope::Payload, 10),
                (0, "payload_too_large".into(), Scope::Payload, 2),
            ]
        );
        assert_eq!(d.budget().documents_left(), 3);
    }

    #[test]
    fn documents_are_split_on_newlines_unless_the_payload_is_one_document() {
        let mut seen = Vec::new();
        for_each_document("{\"a\":1}\n\n {\"a\":2}\r\n", |i, d| {
            seen.push((i, d.to_string()))
        });
        assert_eq!(
            seen,
            vec![(0, "{\"a\":1}".to_string()), (1, "{\"a\":2}".to_string())]
        );

        let mut seen = Vec::new();
        for_each_document("{\n  \"a\": 1\n}\n", |i, d| seen.push((i, d.to_string())));
        assert_eq!(seen.len(), 1);
    }

    /// Every printable pair of bytes that a zlib header check accepts.
    fn zlib_looking_prefixes() -> Vec<[u8; 2]> {
        let printable = || (b' '..=b'~').chain([b'\t']);
        printable()
            .flat_map(|a| printable().map(move |b| [a, b]))
            .filter(|p| Codec::detect(p) == Some(Codec::Zlib))
            .collect()
    }

    #[test]
    fn text_that_begins_like_a_zlib_or_bzip2_header_is_read_as_text() {
        let prefixes = zlib_looking_prefixes();
        assert!(prefixes.len() >= 19, "{prefixes:?}");
        assert!(prefixes.contains(b"80") && prefixes.contains(b"x^"));
        let csv = PayloadDecoder::new(
            Format::Csv(CsvOptions::default()),
            Schema::parse("a:string,b:int64").unwrap(),
            1024,
        );
        let grok = PayloadDecoder::new(
            Format::Grok(Arc::new(
                GrokPattern::compile("%{GREEDYDATA:a}", "").unwrap(),
            )),
            Schema::parse("a:string").unwrap(),
            1024,
        );
        for p in prefixes.iter().map(|p| std::str::from_utf8(p).unwrap()) {
            let line = format!("{p}. ventilator 80 ok\n");
            assert_eq!(
                run(&grok, line.as_bytes()),
                (vec![format!("[String({:?})]", line.trim_end())], vec![]),
                "grok line {line:?}"
            );
            if !p.contains(',') {
                let row = format!("{p}7,80\n");
                let (rows, bad) = run(&csv, row.as_bytes());
                assert_eq!((rows.len(), bad), (1, vec![]), "csv line {row:?}");
            }
        }
        let (rows, bad) = run(&csv, b"BZh9,80\n");
        assert_eq!(
            (rows.len(), bad),
            (1, vec![]),
            "a line that begins like bzip2"
        );

        // Real compressed payloads are still undone, and a corrupt stream
        // that is not text still says so.
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut zlib, b"80,81\n").unwrap();
        let (rows, bad) = run(&csv, &zlib.finish().unwrap());
        assert_eq!(
            (rows, bad),
            (vec![r#"[String("80"), Int64(81)]"#.to_string()], vec![])
        );
        let (_, bad) = run(&csv, &[0x78, 0x9c, 0xff, 0xfe, 0x00]);
        assert_eq!(bad[0].1, "decompression_failed");
    }

    #[test]
    fn payload_level_failures_are_the_same_for_every_format() {
        let schema = Schema::parse("a:int64").unwrap();
        for format in [
            Format::Json,
            Format::Csv(CsvOptions::default()),
            Format::AvroFile,
        ] {
            let d = PayloadDecoder::new(format.clone(), schema.clone(), 64);
            let (_, bad) = run(&d, b"");
            assert_eq!(bad[0].1, "empty_payload", "{}", format.name());
            let (_, bad) = run(&d, &[b'x'; 65]);
            assert_eq!(bad[0].1, "payload_too_large", "{}", format.name());
            let (_, bad) = run(&d, &[0x1f, 0x8b, 0, 1, 2]);
            assert_eq!(bad[0].1, "decompression_failed", "{}", format.name());
        }
        // An Avro datum that happens to start like a zlib header is read as it is.
        let d = PayloadDecoder::new(Format::AvroFile, schema.clone(), 64);
        let (_, bad) = run(&d, &[0x08, 0x1d, 1, 2]);
        assert_eq!(bad[0].1, "invalid_avro");
        let d = PayloadDecoder::new(Format::Csv(CsvOptions::default()), schema, 64);
        let (_, bad) = run(&d, b"1\xff\n");
        assert_eq!(
            (bad[0].1.as_str(), bad[0].2),
            ("invalid_utf8", Scope::Payload)
        );
    }
}
