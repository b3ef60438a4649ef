//! CloudWatch Logs subscription envelopes: what a subscription filter puts
//! on a stream, one gzip'd JSON object per record holding a batch of log
//! events of one log group and stream.
//!
//! Each log event of a `DATA_MESSAGE` is one document. Its `message` is read
//! by the configured inner format (a JSON object against the declared
//! schema, a grok pattern, or the text as it is), and the envelope's log
//! group, log stream, event id and timestamp fill the declared fields named
//! for them. A `CONTROL_MESSAGE` (CloudWatch Logs checks that it can write
//! to the stream) holds no events: it is counted and skipped.
//!
//! A log event that does not parse is dead-lettered alone, its index the
//! event's position in the envelope and its bytes an uncompressed envelope
//! holding only that event: a replayed dead letter is read by the same
//! decoder, and the operator sees the group and stream it came from. An
//! envelope that cannot be read at all is one dead letter of the payload.

use std::borrow::Cow;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::schema::{FieldType, Schema};
use crate::stream::dead_letter::{DocumentOutcome, Rejection};
use crate::stream::document::{
    convert_text, parse_document_counting, timestamp_in_range, Document, DocumentError, Value,
};
use crate::stream::format::grok::GrokPattern;
use std::sync::Arc;

/// How the `message` of each log event is read.
#[derive(Debug, Clone)]
pub enum MessageFormat {
    /// A JSON object, checked against the declared schema.
    Json,
    /// A line matched by a grok pattern.
    Grok(Arc<GrokPattern>),
    /// The text as it is, into the field named by
    /// [`EnvelopeFields::message`].
    Text,
}

impl MessageFormat {
    /// Its name in configuration.
    pub fn name(&self) -> &'static str {
        match self {
            MessageFormat::Json => "json",
            MessageFormat::Grok(_) => "grok",
            MessageFormat::Text => "text",
        }
    }
}

/// The declared fields the envelope fills, by name. A name the schema does
/// not declare is simply not filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeFields {
    /// The envelope's `logGroup`.
    pub log_group: String,
    /// The envelope's `logStream`.
    pub log_stream: String,
    /// The log event's `id`.
    pub event_id: String,
    /// The log event's `timestamp` (milliseconds since the epoch): a
    /// timestamp field takes it as a time, an int64 field as the number.
    pub timestamp: String,
    /// The `message` as text, for [`MessageFormat::Text`].
    pub message: String,
}

impl Default for EnvelopeFields {
    fn default() -> Self {
        EnvelopeFields {
            log_group: "loggroup".into(),
            log_stream: "logstream".into(),
            event_id: "logeventid".into(),
            timestamp: "logtimestamp".into(),
            message: "message".into(),
        }
    }
}

/// The CloudWatch Logs format: how messages are read and which fields the
/// envelope fills.
#[derive(Debug, Clone)]
pub struct CloudWatchLogs {
    pub message: MessageFormat,
    pub fields: EnvelopeFields,
}

impl CloudWatchLogs {
    /// Checks the configuration against the declared schema: the text
    /// format needs its message field, and every required field must be one
    /// a log event can fill.
    pub fn check(&self, schema: &Schema) -> Result<(), String> {
        let plan = Plan::new(self, schema);
        if let MessageFormat::Text = self.message {
            if plan.text.is_none() {
                return Err(format!(
                    "the schema declares no field {:?} for the log message",
                    self.fields.message
                ));
            }
            let filled = [plan.group, plan.stream, plan.id, plan.timestamp, plan.text];
            if let Some(field) = schema
                .fields
                .iter()
                .enumerate()
                .find(|(i, f)| f.required && !filled.contains(&Some(*i)))
            {
                return Err(format!(
                    "required field `{}` cannot be filled from a text log message",
                    field.1.name
                ));
            }
        }
        Ok(())
    }
}

/// The format resolved against a schema once, for every payload.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    message: MessageFormat,
    /// The schema the message is read with: the declared one, with the
    /// fields the envelope fills made optional (a message need not hold
    /// them).
    inner: Schema,
    group: Option<usize>,
    stream: Option<usize>,
    id: Option<usize>,
    timestamp: Option<usize>,
    text: Option<usize>,
}

impl Plan {
    pub(super) fn new(format: &CloudWatchLogs, schema: &Schema) -> Self {
        let at = |name: &str| schema.fields.iter().position(|f| f.name == name);
        let f = &format.fields;
        let mut plan = Plan {
            message: format.message.clone(),
            inner: schema.clone(),
            group: at(&f.log_group),
            stream: at(&f.log_stream),
            id: at(&f.event_id),
            timestamp: at(&f.timestamp),
            text: match format.message {
                MessageFormat::Text => at(&f.message),
                _ => None,
            },
        };
        for i in [plan.group, plan.stream, plan.id, plan.timestamp]
            .into_iter()
            .flatten()
        {
            plan.inner.fields[i].required = false;
        }
        plan
    }
}

/// What a subscription filter writes to the stream.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    message_type: Cow<'a, str>,
    #[serde(borrow, default)]
    owner: Cow<'a, str>,
    #[serde(borrow, default)]
    log_group: Cow<'a, str>,
    #[serde(borrow, default)]
    log_stream: Cow<'a, str>,
    #[serde(borrow, default)]
    subscription_filters: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    log_events: Vec<LogEvent<'a>>,
}

#[derive(Debug, Deserialize, Serialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    timestamp: i64,
    #[serde(borrow)]
    message: Cow<'a, str>,
}

/// Reads one envelope: each log event becomes a document. Gives the
/// control messages it was (0 or 1); an envelope that is not one is an
/// error, for the payload's dead letter.
pub(super) fn decode<F>(
    plan: &Plan,
    schema: &Schema,
    text: &str,
    on_document: &mut F,
) -> Result<usize, DocumentError>
where
    F: for<'b> FnMut(DocumentOutcome<'b>),
{
    let invalid = |message: String| DocumentError::InvalidEnvelope { message };
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    match envelope.message_type.as_ref() {
        "CONTROL_MESSAGE" => return Ok(1),
        "DATA_MESSAGE" => {}
        other => {
            return Err(invalid(format!(
                "messageType {other:?} is neither DATA_MESSAGE nor CONTROL_MESSAGE"
            )))
        }
    }
    // Only grok reads against the clock; the others never look at it.
    let deadline = match &plan.message {
        MessageFormat::Grok(pattern) => pattern.deadline(),
        _ => Instant::now(),
    };
    for (index, event) in envelope.log_events.iter().enumerate() {
        let message = event.message.as_ref();
        let mut undeclared = 0;
        let values = match &plan.message {
            MessageFormat::Json => {
                parse_document_counting(&plan.inner, message.trim(), &mut undeclared)
            }
            MessageFormat::Grok(pattern) => {
                let line = message.trim_end_matches(['\n', '\r']);
                pattern.match_line(&plan.inner, line, deadline)
            }
            // The message fills its field; every other field but the
            // envelope's is absent, so a required one rejects the event.
            MessageFormat::Text => plan
                .inner
                .fields
                .iter()
                .enumerate()
                .map(|(i, field)| match plan.text {
                    Some(t) if t == i => Ok(Value::String(Cow::Borrowed(message))),
                    _ => convert_text(field, None),
                })
                .collect(),
        }
        .and_then(|values| fill(plan, schema, &envelope, event, values));
        match values {
            Ok(values) => on_document(Ok(
                Document::new(index, values, message.as_bytes()).with_undeclared(undeclared)
            )),
            Err(e) => {
                let alone = one_event(&envelope, event);
                on_document(Err(Rejection::document(index, &e, &alone)));
            }
        }
    }
    Ok(0)
}

/// Sets the envelope's values into a row read from a message. Every other
/// field was checked by the message's reader; these were left optional to
/// it, and a required one is checked here as it is converted.
fn fill<'a>(
    plan: &Plan,
    schema: &Schema,
    envelope: &'a Envelope<'a>,
    event: &'a LogEvent<'a>,
    mut values: Vec<Value<'a>>,
) -> Result<Vec<Value<'a>>, DocumentError> {
    let text = |i: usize, s: &'a Cow<'a, str>| -> Result<Value<'a>, DocumentError> {
        convert_text(&schema.fields[i], Some(Cow::Borrowed(s.as_ref())))
    };
    if let Some(i) = plan.group {
        values[i] = text(i, &envelope.log_group)?;
    }
    if let Some(i) = plan.stream {
        values[i] = text(i, &envelope.log_stream)?;
    }
    if let Some(i) = plan.id {
        values[i] = text(i, &event.id)?;
    }
    if let Some(i) = plan.timestamp {
        let field = &schema.fields[i];
        let ms = event.timestamp;
        values[i] = match field.field_type {
            FieldType::Timestamp => Value::Timestamp(timestamp_in_range(
                field,
                ms.checked_mul(1000),
                || ms.to_string(),
                "epoch milliseconds",
            )?),
            FieldType::Int64 => Value::Int64(ms),
            _ => convert_text(field, Some(Cow::Owned(ms.to_string())))?,
        };
    }
    Ok(values)
}

/// An uncompressed envelope holding only `event`: the dead letter of one
/// log event.
fn one_event(envelope: &Envelope<'_>, event: &LogEvent<'_>) -> Vec<u8> {
    let alone = Envelope {
        message_type: Cow::Borrowed("DATA_MESSAGE"),
        owner: Cow::Borrowed(&envelope.owner),
        log_group: Cow::Borrowed(&envelope.log_group),
        log_stream: Cow::Borrowed(&envelope.log_stream),
        subscription_filters: envelope
            .subscription_filters
            .iter()
            .map(|f| Cow::Borrowed(f.as_ref()))
            .collect(),
        log_events: vec![LogEvent {
            id: Cow::Borrowed(&event.id),
            timestamp: event.timestamp,
            message: Cow::Borrowed(&event.message),
        }],
    };
    // Strings and integers always serialise.
    serde_json::to_vec(&alone).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::super::{Format, PayloadDecoder};
    use super::*;
    use crate::stream::dead_letter::Scope;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(bytes).unwrap();
        z.finish().unwrap()
    }

    fn envelope(group: &str, messages: &[&str]) -> Vec<u8> {
        let events: Vec<serde_json::Value> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                serde_json::json!({
                    "id": format!("3700000000000000000000000000000000000000000000000000000{i}"),
                    "timestamp": 1_764_000_000_000i64 + i as i64,
                    "message": m,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": group,
            "logStream": "ward-3/ventilator-7",
            "subscriptionFilters": ["to-kinesis"],
            "logEvents": events,
        }))
        .unwrap()
    }

    fn decoder(message: MessageFormat, schema: &str) -> PayloadDecoder {
        PayloadDecoder::new(
            Format::CloudWatchLogs(Arc::new(CloudWatchLogs {
                message,
                fields: EnvelopeFields::default(),
            })),
            Schema::parse(schema).unwrap(),
            1 << 20,
        )
    }

    #[test]
    fn each_log_event_is_a_row_with_the_envelopes_fields() {
        let d = decoder(
            MessageFormat::Json,
            "a:int64,loggroup:string,logstream:string,logeventid:string,logtimestamp:timestamp",
        );
        let data = gzip(&envelope("/vent/ward-3", &[r#"{"a":1}"#, "{\"a\":2}\n"]));
        let (rows, bad) = run(&d, &data);
        assert_eq!(bad, vec![]);
        assert_eq!(
            rows,
            vec![
                r#"[Int64(1), String("/vent/ward-3"), String("ward-3/ventilator-7"), String("37000000000000000000000000000000000000000000000000000000"), Timestamp(1764000000000000)]"#,
                r#"[Int64(2), String("/vent/ward-3"), String("ward-3/ventilator-7"), String("37000000000000000000000000000000000000000000000000000001"), Timestamp(1764000000001000)]"#,
            ]
        );
    }

    #[test]
    fn a_bad_message_is_dead_lettered_alone_as_a_one_event_envelope() {
        let d = decoder(MessageFormat::Json, "a:int64,loggroup:string");
        let data = gzip(&envelope(
            "g",
            &[r#"{"a":1}"#, r#"{"a":"x"}"#, r#"{"a":3}"#],
        ));
        let (rows, bad) = run(&d, &data);
        assert_eq!(rows.len(), 2);
        assert_eq!(bad.len(), 1);
        let (index, reason, scope, bytes) = &bad[0];
        assert_eq!(
            (*index, reason.as_str(), *scope),
            (1, "wrong_type", Scope::Document)
        );
        let alone: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(alone["logGroup"], "g");
        assert_eq!(alone["logEvents"].as_array().unwrap().len(), 1);
        assert_eq!(alone["logEvents"][0]["message"], r#"{"a":"x"}"#);
        // Read again (a replay), it is the same bad record.
        let (rows, again) = run(&d, bytes);
        assert_eq!((rows.len(), again[0].1.as_str()), (0, "wrong_type"));
    }

    #[test]
    fn control_messages_hold_no_rows_and_other_payloads_are_invalid_envelopes() {
        let d = decoder(MessageFormat::Json, "a:int64");
        let control = gzip(
            br#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#,
        );
        assert_eq!(run(&d, &control), (vec![], vec![]));
        let mut budget = d.budget();
        d.decode_within(&control, &mut budget, |_| panic!("no documents"));
        assert_eq!(budget.control_messages(), 1);

        for (payload, detail) in [
            (
                gzip(br#"{"a":1}"#).as_slice(),
                "missing field `messageType`",
            ),
            (br#"{"messageType":"OTHER"}"#, "neither DATA_MESSAGE"),
            (b"ventilator 7 ok", "expected value"),
        ] {
            let mut seen = Vec::new();
            d.decode(payload, |r| {
                seen.push(r.map(|_| ()).unwrap_err().clone_detail())
            });
            assert_eq!(seen.len(), 1, "{detail}");
            assert_eq!(seen[0].0, "invalid_envelope");
            assert_eq!(seen[0].1, Scope::Payload);
            assert!(seen[0].2.contains(detail), "{}", seen[0].2);
        }
    }

    #[test]
    fn text_and_grok_messages() {
        let d = decoder(MessageFormat::Text, "message:string,logtimestamp:int64");
        let (rows, bad) = run(&d, &gzip(&envelope("g", &["pressure high"])));
        assert_eq!(bad, vec![]);
        assert_eq!(
            rows,
            vec![r#"[String("pressure high"), Int64(1764000000000)]"#]
        );

        let pattern = GrokPattern::compile("%{WORD:state} %{INT:a}", "").unwrap();
        let d = decoder(
            MessageFormat::Grok(Arc::new(pattern)),
            "state:string,a:int64,loggroup:string",
        );
        let (rows, bad) = run(&d, &gzip(&envelope("g", &["ok 7\n", "nope"])));
        assert_eq!(rows, vec![r#"[String("ok"), Int64(7), String("g")]"#]);
        assert_eq!((bad[0].0, bad[0].1.as_str()), (1, "grok_no_match"));
    }

    #[test]
    fn the_text_format_needs_its_field_and_can_fill_only_envelope_fields() {
        let text = |schema: &str| {
            CloudWatchLogs {
                message: MessageFormat::Text,
                fields: EnvelopeFields::default(),
            }
            .check(&Schema::parse(schema).unwrap())
        };
        assert!(text("message:string,loggroup:string").is_ok());
        assert!(text("msg:string").unwrap_err().contains("\"message\""));
        assert!(text("message:string,a:int64").unwrap_err().contains("`a`"));
        assert!(text("message:string,a:int64?").is_ok());
    }

    impl Rejection<'_> {
        fn clone_detail(&self) -> (&'static str, Scope, String) {
            (self.reason, self.scope, self.detail.clone())
        }
    }
}
