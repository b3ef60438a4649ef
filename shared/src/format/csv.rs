//! CSV payloads (RFC 4180 quoting), read with the `csv` crate.
//!
//! Without a header line, columns are the declared fields in schema order.
//! With one (`CSV_HEADER=true`), each payload's first line names its columns
//! and fields are found by name, so producers may add or reorder columns.

use std::borrow::Cow;

use super::Rejection;
use crate::dead_letter::Scope;
use crate::record::{convert_text, RecordError, Value};
use crate::schema::Schema;

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

/// One CSV row as read, with where it starts in the payload.
struct Row {
    start: usize,
    line: u64,
    fields: csv::StringRecord,
}

pub(super) fn decode<F>(options: &CsvOptions, schema: &Schema, text: &str, on_document: &mut F)
where
    F: for<'b> FnMut(Result<Vec<Value<'b>>, Rejection<'b>>),
{
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(options.delimiter)
        .quote(options.quote)
        .from_reader(text.as_bytes());
    let mut rows: Vec<Row> = Vec::new();
    let mut failure = None;
    loop {
        let mut fields = csv::StringRecord::new();
        let start = reader.position().byte() as usize;
        let line = reader.position().line();
        match reader.read_record(&mut fields) {
            Ok(true) => rows.push(Row {
                start,
                line,
                fields,
            }),
            Ok(false) => break,
            Err(e) => {
                failure = Some((start, line, e));
                break;
            }
        }
    }
    // Which column holds each declared field.
    let mut first = 0;
    let columns: Vec<Option<usize>> = if options.header {
        let Some(header) = rows.first() else {
            report_failure(failure, rows.len(), text, on_document);
            return;
        };
        first = 1;
        let mut columns = Vec::with_capacity(schema.fields.len());
        for field in &schema.fields {
            let at = header.fields.iter().position(|h| h.trim() == field.name);
            if at.is_none() && field.required {
                let e = RecordError::MissingColumn {
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
        rows[0].fields.len()
    } else {
        schema.fields.len()
    };

    let failed_at = failure.as_ref().map_or(text.len(), |f| f.0);
    let end_of = |i: usize| -> usize { rows.get(i + 1).map_or(failed_at, |r| r.start) };
    for (i, row) in rows.iter().enumerate().skip(first) {
        let index = i - first;
        let raw = text[row.start..end_of(i)].trim_end_matches(['\r', '\n']);
        if row.fields.len() == 1 && row.fields.get(0).is_some_and(str::is_empty) {
            continue; // a blank line
        }
        if row.fields.len() != expected {
            let e = RecordError::WrongColumnCount {
                line: row.line,
                expected,
                found: row.fields.len(),
            };
            on_document(Err(Rejection::document(index, &e, raw.as_bytes())));
            continue;
        }
        let values: Result<Vec<Value<'_>>, RecordError> = schema
            .fields
            .iter()
            .zip(&columns)
            .map(|(field, col)| {
                let text = col.and_then(|c| row.fields.get(c)).map(Cow::Borrowed);
                convert_text(field, text)
            })
            .collect();
        match values {
            Ok(values) => on_document(Ok(values)),
            Err(e) => on_document(Err(Rejection::document(index, &e, raw.as_bytes()))),
        }
    }
    let first_bad = rows.len().saturating_sub(first);
    report_failure(failure, first_bad, text, on_document);
}

/// Reports a CSV syntax error: the rest of the payload from the bad row on
/// cannot be split into rows reliably, so it is one dead letter.
fn report_failure<F>(
    failure: Option<(usize, u64, csv::Error)>,
    index: usize,
    text: &str,
    on_document: &mut F,
) where
    F: for<'b> FnMut(Result<Vec<Value<'b>>, Rejection<'b>>),
{
    if let Some((start, line, e)) = failure {
        let message = match e.kind() {
            csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field()),
            _ => e.to_string(),
        };
        let e = RecordError::InvalidCsv { line, message };
        on_document(Err(Rejection::document(
            index,
            &e,
            &text.as_bytes()[start..],
        )));
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
}
