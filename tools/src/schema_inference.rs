//! Inferring a declared schema from sample records, like Glue's schema
//! detection: every column seen, the narrowest type that holds every value
//! (int64 < float64 < string; booleans and timestamps only when every value
//! is one), and required only when every sample has a value.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDateTime};
use serde_json::Value;
use telemetry_lake::config::schema::{Field, FieldType, Schema, DEFAULT_TIMESTAMP_FORMAT};

/// What the samples showed of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Int,
    Float,
    Bool,
    Timestamp,
    Rfc3339,
    Text,
}

fn classify_text(s: &str) -> Seen {
    let t = s.trim();
    if t.parse::<i64>().is_ok() {
        Seen::Int
    } else if t.parse::<f64>().is_ok_and(f64::is_finite) {
        Seen::Float
    } else if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false") {
        Seen::Bool
    } else if NaiveDateTime::parse_from_str(t, DEFAULT_TIMESTAMP_FORMAT).is_ok() {
        Seen::Timestamp
    } else if DateTime::parse_from_rfc3339(t).is_ok() {
        Seen::Rfc3339
    } else {
        Seen::Text
    }
}

fn classify_json(v: &Value) -> Option<Seen> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => Seen::Bool,
        Value::Number(n) if n.is_i64() => Seen::Int,
        Value::Number(_) => Seen::Float,
        Value::String(s) => match classify_text(s) {
            Seen::Timestamp => Seen::Timestamp,
            Seen::Rfc3339 => Seen::Rfc3339,
            _ => Seen::Text,
        },
        _ => Seen::Text,
    })
}

/// The type that holds both.
fn widen(a: Seen, b: Seen) -> Seen {
    match (a, b) {
        (a, b) if a == b => a,
        (Seen::Int, Seen::Float) | (Seen::Float, Seen::Int) => Seen::Float,
        _ => Seen::Text,
    }
}

#[derive(Default)]
struct Columns {
    order: Vec<String>,
    seen: BTreeMap<String, (Option<Seen>, usize)>,
    samples: usize,
}

impl Columns {
    fn add(&mut self, name: &str, kind: Option<Seen>) {
        if !self.seen.contains_key(name) {
            self.order.push(name.to_string());
        }
        let entry = self.seen.entry(name.to_string()).or_insert((None, 0));
        if let Some(k) = kind {
            entry.0 = Some(entry.0.map_or(k, |prev| widen(prev, k)));
            entry.1 += 1;
        }
    }

    fn schema(self) -> Result<Schema> {
        if self.samples == 0 {
            bail!("the sample holds no record");
        }
        let fields: Vec<Field> = self
            .order
            .iter()
            .map(|name| {
                let (kind, present) = self.seen[name];
                let (field_type, format) = match kind.unwrap_or(Seen::Text) {
                    Seen::Int => (FieldType::Int64, None),
                    Seen::Float => (FieldType::Float64, None),
                    Seen::Bool => (FieldType::Boolean, None),
                    Seen::Timestamp => (FieldType::Timestamp, None),
                    Seen::Rfc3339 => (FieldType::Timestamp, Some("rfc3339".to_string())),
                    Seen::Text => (FieldType::String, None),
                };
                Field {
                    name: name.clone(),
                    field_type,
                    required: present == self.samples,
                    format,
                }
            })
            .collect();
        let text = serde_json::to_string(&Schema { fields })?;
        Schema::parse(&text).context("the inferred schema is not valid (column names?)")
    }
}

/// Infers a schema from JSON lines (one object per line).
pub fn from_json_lines(text: &str) -> Result<Schema> {
    let mut cols = Columns::default();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("line {}: not JSON", i + 1))?;
        let Value::Object(map) = v else {
            bail!("line {}: not a JSON object", i + 1);
        };
        cols.samples += 1;
        for (k, v) in &map {
            cols.add(k, classify_json(v));
        }
    }
    cols.schema()
}

/// Infers a schema from CSV with a header line.
pub fn from_csv(text: &str, delimiter: u8) -> Result<Schema> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut cols = Columns::default();
    for h in &header {
        cols.add(h, None);
    }
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.with_context(|| format!("CSV record {}", i + 1))?;
        cols.samples += 1;
        for (h, v) in header.iter().zip(rec.iter()) {
            cols.add(h, (!v.is_empty()).then(|| classify_text(v)));
        }
    }
    cols.schema()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_give_the_narrowest_types_and_optional_columns() {
        let s = from_json_lines(
            "{\"id\":1,\"at\":\"2020-06-12 14:05:59\",\"v\":1,\"name\":\"a\",\"ok\":true}\n\
             {\"id\":2,\"at\":\"2020-06-12 14:06:59\",\"v\":1.5,\"name\":\"b\",\"t\":\"2020-06-12T14:05:59Z\"}\n",
        )
        .unwrap();
        let got: Vec<String> = s
            .fields
            .iter()
            .map(|f| {
                format!(
                    "{}:{}{}{}",
                    f.name,
                    f.field_type.name(),
                    if f.required { "" } else { "?" },
                    f.format
                        .as_deref()
                        .map(|x| format!("({x})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "at:timestamp",
                "id:int64",
                "name:string",
                "ok:boolean?",
                "v:float64",
                "t:timestamp?(rfc3339)"
            ]
        );
    }

    #[test]
    fn csv_columns_keep_the_header_order() {
        let s = from_csv("id,name,score\n1,a,\n2,b,2.5\n", b',').unwrap();
        let got: Vec<(&str, &str, bool)> = s
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.field_type.name(), f.required))
            .collect();
        assert_eq!(
            got,
            [
                ("id", "int64", true),
                ("name", "string", true),
                ("score", "float64", false)
            ]
        );
        assert!(from_csv("id\n", b',').is_err());
    }
}
