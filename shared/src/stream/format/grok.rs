//! Log lines matched by a grok pattern, as Glue's `grokPattern` and
//! `grokCustomPatterns`: the standard pattern library, plus custom patterns
//! given one per line as `NAME regex`. Each named capture (`%{INT:id}`)
//! fills the declared field of that name.

use std::borrow::Cow;

use crate::config::schema::Schema;
use crate::stream::dead_letter::Rejection;
use crate::stream::document::{convert_text, DocumentError, Value};
use crate::stream::format::text::lines;

/// A compiled grok pattern.
pub struct GrokPattern {
    source: String,
    pattern: grok::Pattern,
}

impl std::fmt::Debug for GrokPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrokPattern")
            .field("source", &self.source)
            .finish()
    }
}

impl GrokPattern {
    /// Compiles `pattern` against the standard library and `custom`
    /// definitions (one `NAME regex` per line; blank lines and `#` comments
    /// are skipped).
    pub fn compile(pattern: &str, custom: &str) -> Result<Self, String> {
        let mut grok = grok::Grok::with_default_patterns();
        for line in custom.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, regex) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("custom pattern {line:?} is not of the form NAME regex"))?;
            grok.add_pattern(name, regex.trim());
        }
        let compiled = grok
            .compile(pattern, true)
            .map_err(|e| format!("grok pattern {pattern:?} does not compile: {e}"))?;
        Ok(GrokPattern {
            source: pattern.to_string(),
            pattern: compiled,
        })
    }

    /// Matches every non-blank line of a payload.
    pub(super) fn decode<F>(&self, schema: &Schema, text: &str, on_document: &mut F)
    where
        F: for<'b> FnMut(Result<Vec<Value<'b>>, Rejection<'b>>),
    {
        for (index, line) in lines(text) {
            let Some(matches) = self.pattern.match_against(line) else {
                let e = DocumentError::GrokNoMatch {
                    pattern: self.source.clone(),
                };
                on_document(Err(Rejection::document(index, &e, line.as_bytes())));
                continue;
            };
            let values: Result<Vec<Value<'_>>, DocumentError> = schema
                .fields
                .iter()
                .map(|f| convert_text(f, matches.get(&f.name).map(Cow::Borrowed)))
                .collect();
            match values {
                Ok(values) => on_document(Ok(values)),
                Err(e) => on_document(Err(Rejection::document(index, &e, line.as_bytes()))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::super::{Format, PayloadDecoder};
    use super::*;
    use std::sync::Arc;

    #[test]
    fn standard_and_custom_patterns_fill_fields_by_capture_name() {
        let pattern = GrokPattern::compile(
            "%{SERIAL:serial} %{TIMESTAMP_ISO8601:at} pressure=%{INT:pressure} %{WORD:state}",
            "# serial numbers\nSERIAL [A-Z]{2}-[0-9]+\n",
        )
        .unwrap();
        let schema = Schema::parse(
            "serial:string,at:timestamp(%Y-%m-%dT%H:%M:%S),pressure:int64,state:string",
        )
        .unwrap();
        let d = PayloadDecoder::new(Format::Grok(Arc::new(pattern)), schema, 1 << 20);
        let (rows, bad) = run(
            &d,
            b"VT-12 2020-06-12T14:05:59 pressure=31 ok\r\n\nnonsense\nVT-13 2020-06-12T14:05:59 pressure=99999999999999999999 ok\n",
        );
        assert_eq!(
            rows,
            vec![r#"[String("VT-12"), Timestamp(1591970759000000), Int64(31), String("ok")]"#]
        );
        let got: Vec<(usize, &str)> = bad.iter().map(|b| (b.0, b.1.as_str())).collect();
        assert_eq!(got, vec![(1, "grok_no_match"), (2, "out_of_range")]);
        assert_eq!(bad[0].3, b"nonsense".to_vec());
    }

    #[test]
    fn unknown_patterns_and_bad_custom_lines_fail_at_compile_time() {
        let e = GrokPattern::compile("%{NOPE:x}", "").unwrap_err();
        assert!(e.contains("NOPE"), "{e}");
        assert!(GrokPattern::compile("%{INT:x}", "LONELY").is_err());
    }
}
