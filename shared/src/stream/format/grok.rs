//! Log lines matched by a grok pattern, as Glue's `grokPattern` and
//! `grokCustomPatterns`: the standard pattern library, plus custom patterns
//! given one per line as `NAME regex`. Each named capture (`%{INT:id}`)
//! fills the declared field of that name.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use crate::config::schema::Schema;
use crate::stream::dead_letter::{DocumentOutcome, Rejection};
use crate::stream::document::{convert_text, Document, DocumentError, Value};
use crate::stream::format::text::lines;

/// A compiled grok pattern.
pub struct GrokPattern {
    source: String,
    pattern: grok::Pattern,
    budget: Duration,
}

/// How long the lines of one payload may take to match, by default.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_millis(500);

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
            budget: DEFAULT_TIME_BUDGET,
        })
    }

    /// The same pattern with `budget` for the lines of one payload.
    ///
    /// A pattern with lookarounds or backreferences runs on a backtracking
    /// engine, where an adversarial line can take exponential time (each
    /// line is cut at the engine's million-step limit, as `grok_no_match`);
    /// a payload of many such lines could still run the function into its
    /// timeout and stall the shard. Once the budget is spent, the payload's
    /// remaining lines are rejected without matching
    /// (`grok_time_budget_exceeded`), each on its own, for replay.
    pub fn with_time_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Matches every non-blank line of a payload.
    pub(super) fn decode<F>(&self, schema: &Schema, text: &str, on_document: &mut F)
    where
        F: for<'b> FnMut(DocumentOutcome<'b>),
    {
        let deadline = self.deadline();
        for (index, line) in lines(text) {
            match self.match_line(schema, line, deadline) {
                Ok(values) => on_document(Ok(Document::new(index, values, line.as_bytes()))),
                Err(e) => on_document(Err(Rejection::document(index, &e, line.as_bytes()))),
            }
        }
    }

    /// When the lines of a payload read from now must be matched by.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.budget
    }

    /// Matches one line, filling each declared field from the capture of
    /// its name; past `deadline` the line is rejected without matching.
    pub(super) fn match_line<'a>(
        &self,
        schema: &Schema,
        line: &'a str,
        deadline: Instant,
    ) -> Result<Vec<Value<'a>>, DocumentError> {
        if Instant::now() >= deadline {
            return Err(DocumentError::GrokTimeBudget {
                budget_ms: self.budget.as_millis(),
            });
        }
        let Some(matches) = self.pattern.match_against(line) else {
            return Err(DocumentError::GrokNoMatch {
                pattern: self.source.clone(),
            });
        };
        schema
            .fields
            .iter()
            .map(|f| convert_text(f, matches.get(&f.name).map(|c| within(line, c))))
            .collect()
    }
}

/// A capture as a borrow of the line it was matched in (grok lends its
/// captures for as long as its match only; a regex capture is always a
/// slice of the line).
fn within<'a>(line: &'a str, capture: &str) -> Cow<'a, str> {
    let start = (capture.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
    match line.get(start..start.wrapping_add(capture.len())) {
        Some(s) if s.as_ptr() == capture.as_ptr() => Cow::Borrowed(s),
        _ => Cow::Owned(capture.to_string()),
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
    fn lines_past_the_payloads_time_budget_are_rejected_each_on_its_own() {
        let schema = Schema::parse("a:string,b:string,c:string").unwrap();
        // Lazy captures and a backreference before a literal that never
        // comes: the backtracking engine tries every split of every line,
        // until its step limit.
        let slow =
            GrokPattern::compile("%{DATA:a}%{DATA:b}(?<r>a|aa)+\\k<r>%{DATA:c}!$", "").unwrap();
        let line = "a".repeat(400);
        let payload = format!("{line}\n").repeat(200);

        // No budget: every line is rejected with the reason, none matched.
        let none = slow.with_time_budget(Duration::ZERO);
        let d = PayloadDecoder::new(Format::Grok(Arc::new(none)), schema.clone(), 1 << 20);
        let (rows, bad) = run(&d, payload.as_bytes());
        assert!(rows.is_empty());
        assert_eq!(bad.len(), 200);
        assert!(bad.iter().all(|b| b.1 == "grok_time_budget_exceeded"));
        assert_eq!((bad[7].0, &bad[7].3), (7, &line.as_bytes().to_vec()));

        // A small budget: each line is a dead letter (no match, or past the
        // budget), and the budget cut the payload short (unbounded, these
        // 200 lines take seconds).
        let slow = GrokPattern::compile("%{DATA:a}%{DATA:b}(?<r>a|aa)+\\k<r>%{DATA:c}!$", "")
            .unwrap()
            .with_time_budget(Duration::from_millis(20));
        let d = PayloadDecoder::new(Format::Grok(Arc::new(slow)), schema, 1 << 20);
        let (rows, bad) = run(&d, payload.as_bytes());
        assert!(rows.is_empty());
        assert_eq!(bad.len(), 200);
        assert!(bad.iter().any(|b| b.1 == "grok_time_budget_exceeded"));
        assert!(bad
            .iter()
            .all(|b| b.1 == "grok_time_budget_exceeded" || b.1 == "grok_no_match"));
    }

    #[test]
    fn unknown_patterns_and_bad_custom_lines_fail_at_compile_time() {
        let e = GrokPattern::compile("%{NOPE:x}", "").unwrap_err();
        assert!(e.contains("NOPE"), "{e}");
        assert!(GrokPattern::compile("%{INT:x}", "LONELY").is_err());
    }
}
