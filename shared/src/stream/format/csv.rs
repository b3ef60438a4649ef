//! CSV payloads (RFC 4180 quoting), split into rows by `csv-core`, the
//! `csv` crate's parser.
//!
//! Without a header line, columns are the declared fields in schema order.
//! With one (`CSV_HEADER=true`), each payload's first line names its columns
//! and fields are found by name, so producers may add or reorder columns.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;

use csv_core::ReadRecordResult;

use crate::config::schema::Schema;
use crate::stream::dead_letter::Scope;
use crate::stream::dead_letter::{DocumentOutcome, Rejection};
use crate::stream::document::{convert_text, Document, DocumentError, Value};

/// How CSV payloads are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Whether each payload starts with a header line naming its columns.
    pub header: bool,
    /// The column separator.
    pub delimiter: u8,
    /// The quote character.
    pub quote: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: false,
            delimiter: b',',
            quote: b'"',
        }
    }
}

thread_local! {
    /// The row splitter last built on this thread, with the options it was
    /// built for, reset for each payload. Building csv-core's
    /// state machine takes about 20 µs, more than reading a payload of one
    /// line (the `csv` crate's reader builds one per reader: nine tenths of
    /// a CSV batch), and a built one cannot be copied (csv-core's `Clone`
    /// leaves its tables behind).
    static SPLITTER: RefCell<Option<(CsvOptions, csv_core::Reader)>> = const { RefCell::new(None) };
}

/// One CSV row as read: where it starts in the payload, its line, and where
/// its fields are in [`Rows`].
struct Row {
    start: usize,
    line: u64,
    /// Where the row's unquoted bytes start in `Rows::out`.
    out: usize,
    /// Its fields' ends (relative to `out`) in `Rows::ends`.
    ends: Range<usize>,
}

impl Row {
    /// How many fields the row has.
    fn width(&self) -> usize {
        self.ends.len()
    }
}

/// A payload split into rows: every field's unquoted bytes one after the
/// other in `out`, and where each ends.
struct Rows {
    out: Vec<u8>,
    ends: Vec<usize>,
    rows: Vec<Row>,
}

impl Rows {
    fn split(options: &CsvOptions, text: &str) -> Rows {
        SPLITTER.with_borrow_mut(|cached| {
            let core = match cached {
                Some((built_for, core)) if built_for == options => core,
                _ => {
                    let built = csv_core::ReaderBuilder::new()
                        .delimiter(options.delimiter)
                        .quote(options.quote)
                        .build();
                    &mut cached.insert((options.clone(), built)).1
                }
            };
            core.reset();
            Rows::split_with(core, text)
        })
    }

    fn split_with(core: &mut csv_core::Reader, text: &str) -> Rows {
        let input = text.as_bytes();
        // Unquoting only ever drops bytes, so the payload's length is room
        // enough; the loop grows the buffers all the same if it is not.
        let mut out = vec![0; input.len()];
        let mut ends = vec![0; 16];
        let mut rows = Vec::new();
        let (mut at, mut o, mut e) = (0, 0, 0);
        loop {
            let (start, line, row_out, row_ends) = (at, core.line(), o, e);
            loop {
                // An empty input (once all is read) tells csv-core the data
                // has ended.
                let (result, nin, nout, nend) =
                    core.read_record(&input[at..], &mut out[o..], &mut ends[e..]);
                at += nin;
                o += nout;
                e += nend;
                match result {
                    ReadRecordResult::InputEmpty => {}
                    ReadRecordResult::OutputFull => out.resize(out.len() * 2 + 1, 0),
                    ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                    ReadRecordResult::Record => break,
                    ReadRecordResult::End => return Rows { out, ends, rows },
                }
            }
            rows.push(Row {
                start,
                line,
                out: row_out,
                ends: row_ends..e,
            });
        }
    }

    /// The unquoted bytes of field `k` of `row`, `None` past its last.
    fn field(&self, row: &Row, k: usize) -> Option<&[u8]> {
        let ends = &self.ends[row.ends.clone()];
        let end = *ends.get(k)?;
        let start = if k == 0 { 0 } else { ends[k - 1] };
        Some(&self.out[row.out + start..row.out + end])
    }

    /// Field `k` of `row` as text, `None` past its last. The payload is
    /// valid UTF-8, so its fields are too, unless a separator or quote
    /// outside ASCII cut a character in two.
    fn text(&self, row: &Row, k: usize) -> Result<Option<&str>, DocumentError> {
        let Some(bytes) = self.field(row, k) else {
            return Ok(None);
        };
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| DocumentError::InvalidCsv {
                line: row.line,
                message: format!("invalid UTF-8 in field {}", k + 1),
            })
    }
}

pub(super) fn decode<F>(options: &CsvOptions, schema: &Schema, text: &str, on_document: &mut F)
where
    F: for<'b> FnMut(DocumentOutcome<'b>),
{
    let split = Rows::split(options, text);
    let rows = &split.rows;
    // Which column holds each declared field.
    let mut first = 0;
    let columns: Vec<Option<usize>> = if options.header {
        let Some(header) = rows.first() else {
            return;
        };
        first = 1;
        let mut columns = Vec::with_capacity(schema.fields.len());
        for field in &schema.fields {
            let at = (0..header.width()).position(|k| {
                split
                    .text(header, k)
                    .is_ok_and(|h| h.is_some_and(|h| h.trim() == field.name))
            });
            if at.is_none() && field.required {
                let e = DocumentError::MissingColumn {
                    field: field.name.clone(),
                };
                on_document(Err(Rejection {
                    index: 0,
                    reason: e.kind(),
                    detail: e.to_string(),
                    scope: Scope::Payload,
                    bytes: text.as_bytes(),
                    sub_sequence_number: None,
                }));
                return;
            }
            columns.push(at);
        }
        columns
    } else {
        (0..schema.fields.len()).map(Some).collect()
    };
    let expected = if options.header {
        rows[0].width()
    } else {
        schema.fields.len()
    };
    // Header columns no declared field reads.
    let undeclared = (0..expected)
        .filter(|k| !columns.contains(&Some(*k)))
        .count();

    let end_of = |i: usize| -> usize { rows.get(i + 1).map_or(text.len(), |r| r.start) };
    for (i, row) in rows.iter().enumerate().skip(first) {
        let index = i - first;
        let raw = text[row.start..end_of(i)].trim_end_matches(['\r', '\n']);
        let width = row.width();
        if width == 1 && split.field(row, 0).is_some_and(<[u8]>::is_empty) {
            continue; // a blank line
        }
        if width != expected {
            let e = DocumentError::WrongColumnCount {
                line: row.line,
                expected,
                found: width,
            };
            on_document(Err(Rejection::document(index, &e, raw.as_bytes())));
            continue;
        }
        let values: Result<Vec<Value<'_>>, DocumentError> = schema
            .fields
            .iter()
            .zip(&columns)
            .map(|(field, col)| {
                let text = match col {
                    Some(c) => split.text(row, *c)?,
                    None => None,
                };
                convert_text(field, text.map(Cow::Borrowed))
            })
            .collect();
        match values {
            Ok(values) => on_document(Ok(
                Document::new(index, values, raw.as_bytes()).with_undeclared(undeclared)
            )),
            Err(e) => on_document(Err(Rejection::document(index, &e, raw.as_bytes()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::super::{Format, PayloadDecoder};
    use super::*;

    fn decoder(header: bool) -> PayloadDecoder {
        let schema = Schema::parse("id:int64,at:timestamp,name:string,score:float64?").unwrap();
        let options = CsvOptions {
            header,
            ..CsvOptions::default()
        };
        PayloadDecoder::new(Format::Csv(options), schema, 1 << 20)
    }

    #[test]
    fn header_less_rows_follow_the_schema_order_with_rfc4180_quoting() {
        let (rows, bad) = run(
            &decoder(false),
            b"1,2020-06-12 14:05:59,\"Smith, \"\"J\"\"\",2.5\r\n\n2,2020-06-12 14:06:00,plain,\n",
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.len(), 2);
        assert!(rows[0].contains(r#"String("Smith, \"J\"")"#), "{}", rows[0]);
        assert!(rows[1].ends_with("Null]"), "{}", rows[1]);
    }

    #[test]
    fn a_header_maps_columns_by_name() {
        let (rows, bad) = run(
            &decoder(true),
            b"name,extra,id,at\nfan,x,7,2020-06-12 14:05:59\n",
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            rows,
            vec![r#"[Int64(7), Timestamp(1591970759000000), String("fan"), Null]"#.to_string()]
        );
        let (rows, bad) = run(&decoder(true), b"name,at\nfan,2020-06-12 14:05:59\n");
        assert!(rows.is_empty());
        assert_eq!(bad[0].1, "missing_column");
        assert_eq!(bad[0].2, Scope::Payload);
    }

    #[test]
    fn each_bad_row_is_rejected_alone_with_its_own_bytes() {
        let payload = b"1,2020-06-12 14:05:59,a,1\n2,2020-06-12 14:05:59,b\nx,2020-06-12 14:05:59,c,1\n4,2020-06-12 14:05:59,d,1\n";
        let (rows, bad) = run(&decoder(false), payload);
        assert_eq!(rows.len(), 2);
        let got: Vec<(usize, &str, &[u8])> = bad
            .iter()
            .map(|(i, r, _, b)| (*i, r.as_str(), b.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "wrong_column_count", &b"2,2020-06-12 14:05:59,b"[..]),
                (2, "wrong_type", &b"x,2020-06-12 14:05:59,c,1"[..]),
            ]
        );
    }

    /// Every rejection of a payload as (index, reason, detail, bytes).
    fn rejections(decoder: &PayloadDecoder, data: &[u8]) -> Vec<(usize, String, String, Vec<u8>)> {
        let mut bad = Vec::new();
        decoder.decode(data, |r| {
            if let Err(r) = r {
                bad.push((r.index, r.reason.to_string(), r.detail, r.bytes.to_vec()));
            }
        });
        bad
    }

    #[test]
    fn wide_rows_and_quoted_line_breaks_are_read_whole() {
        // 40 columns: more field ends than the splitter first makes room for.
        let extra: Vec<String> = (0..36).map(|i| format!("x{i}")).collect();
        let header = format!("{},id,at,name,score\n", extra.join(","));
        let row = format!(
            "{},7,2020-06-12 14:05:59,\"two\nlines\",1.5\n",
            vec!["v"; 36].join(",")
        );
        let (rows, bad) = run(&decoder(true), format!("{header}{row}{row}").as_bytes());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.len(), 2);
        assert!(rows[1].contains(r#"String("two\nlines")"#), "{}", rows[1]);

        // A row's line is where it starts, counting the lines inside quotes.
        let bad = rejections(
            &decoder(false),
            b"1,2020-06-12 14:05:59,\"a\nb\",1\n2,2020-06-12 14:05:59\n",
        );
        assert_eq!(
            bad,
            vec![(
                1,
                "wrong_column_count".to_string(),
                "CSV line 3 has 2 columns, expected 4".to_string(),
                b"2,2020-06-12 14:05:59".to_vec()
            )]
        );
    }

    #[test]
    fn a_field_cut_inside_a_character_is_rejected_alone() {
        // Configuration refuses a quote outside ASCII; the options type does
        // not, and such a quote can cut a character in two (`éé` becomes a
        // quoted field of two continuation bytes): that row alone is bad,
        // the rows after it are read.
        let schema = Schema::parse("id:int64,name:string").unwrap();
        let options = CsvOptions {
            quote: 0xC3,
            ..CsvOptions::default()
        };
        let d = PayloadDecoder::new(Format::Csv(options), schema, 1 << 20);
        let (rows, _) = run(&d, "1,éé\n2,x\n".as_bytes());
        assert_eq!(rows, vec![r#"[Int64(2), String("x")]"#.to_string()]);
        assert_eq!(
            rejections(&d, "1,éé\n2,x\n".as_bytes()),
            vec![(
                0,
                "invalid_csv".to_string(),
                "invalid CSV at line 1: invalid UTF-8 in field 2".to_string(),
                "1,éé".as_bytes().to_vec()
            )]
        );
    }
}
