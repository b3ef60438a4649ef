//! Amazon States Language definitions as graphs: the transitions of a state
//! machine, a structural check of them, and a Mermaid diagram of them that
//! shows what the Step Functions console draws.
//!
//! The check is what the console's editor rejects or what would strand an
//! execution: a `Next`, `Default` or `Catch` target that does not exist, a
//! state no execution can reach, a state from which no end can be reached,
//! a non-terminal state without `Next`, malformed `ErrorEquals` names and
//! `Retry` fields out of range. It works on the file before
//! `DefinitionSubstitutions`, so `${Placeholder}` values are fine.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde_json::Value;

/// Why a state moves to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// `Next`.
    Next,
    /// A `Choices` rule, rendered as a short condition.
    Choice(String),
    /// A Choice state's `Default`.
    Default,
    /// A `Catch` with its `ErrorEquals`.
    Catch(Vec<String>),
}

/// One transition of a state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub via: Via,
}

/// The error names Step Functions itself raises (`States.*`).
const PREDEFINED_ERRORS: &[&str] = &[
    "States.ALL",
    "States.DataLimitExceeded",
    "States.ExceedToleratedFailureThreshold",
    "States.HeartbeatTimeout",
    "States.Http.Socket",
    "States.IntrinsicFailure",
    "States.ItemReaderFailed",
    "States.NoChoiceMatched",
    "States.ParameterPathFailure",
    "States.Permissions",
    "States.QueryEvaluationError",
    "States.ResultPathMatchFailure",
    "States.ResultWriterFailed",
    "States.Runtime",
    "States.TaskFailed",
    "States.Timeout",
];

fn states(asl: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    asl.get("States")
        .and_then(Value::as_object)
        .ok_or_else(|| "the definition has no States object".to_string())
}

/// Every transition, in the order the states and their fields appear.
pub fn transitions(asl: &Value) -> Result<Vec<Transition>, String> {
    let mut out = Vec::new();
    for (name, state) in states(asl)? {
        let mut add = |to: &Value, via: Via| {
            if let Some(to) = to.as_str() {
                out.push(Transition {
                    from: name.clone(),
                    to: to.to_string(),
                    via,
                });
            }
        };
        if let Some(next) = state.get("Next") {
            add(next, Via::Next);
        }
        for rule in state
            .get("Choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(
                rule.get("Next").unwrap_or(&Value::Null),
                Via::Choice(condition(rule)),
            );
        }
        if let Some(default) = state.get("Default") {
            add(default, Via::Default);
        }
        for catcher in state
            .get("Catch")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(
                catcher.get("Next").unwrap_or(&Value::Null),
                Via::Catch(error_names(catcher)),
            );
        }
    }
    Ok(out)
}

fn error_names(retrier_or_catcher: &Value) -> Vec<String> {
    retrier_or_catcher
        .get("ErrorEquals")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| e.as_str().unwrap_or("?").to_string())
        .collect()
}

/// A Choice rule as a short condition: `crawler_state = READY and ...`.
pub fn condition(rule: &Value) -> String {
    let join = |key: &str, word: &str| -> Option<String> {
        let parts: Vec<String> = rule.get(key)?.as_array()?.iter().map(condition).collect();
        Some(parts.join(&format!(" {word} ")))
    };
    if let Some(s) = join("And", "and") {
        return s;
    }
    if let Some(s) = join("Or", "or") {
        return format!("({s})");
    }
    if let Some(inner) = rule.get("Not") {
        return format!("not {}", condition(inner));
    }
    if let Some(c) = rule.get("Condition").and_then(Value::as_str) {
        return c.to_string();
    }
    let variable = rule
        .get("Variable")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .trim_start_matches("$.");
    let Some((op, value)) = rule
        .as_object()
        .into_iter()
        .flatten()
        .find(|(k, _)| !matches!(k.as_str(), "Variable" | "Next" | "Comment"))
    else {
        return variable.to_string();
    };
    let (op, path) = match op.strip_suffix("Path") {
        Some(op) => (op, true),
        None => (op.as_str(), false),
    };
    let symbol = match op {
        _ if op.ends_with("GreaterThanEquals") => ">=",
        _ if op.ends_with("LessThanEquals") => "<=",
        _ if op.ends_with("GreaterThan") => ">",
        _ if op.ends_with("LessThan") => "<",
        _ if op.ends_with("Equals") => "=",
        "StringMatches" => "matches",
        "IsPresent" | "IsNull" | "IsString" | "IsNumeric" | "IsBoolean" | "IsTimestamp" => {
            let what = op.trim_start_matches("Is").to_lowercase();
            return match value.as_bool() {
                Some(false) => format!("{variable} is not {what}"),
                _ => format!("{variable} is {what}"),
            };
        }
        other => other,
    };
    let value = match value {
        Value::String(s) if path => s.trim_start_matches("$.").to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("{variable} {symbol} {value}")
}

fn is_terminal(state: &Value) -> bool {
    matches!(
        state.get("Type").and_then(Value::as_str),
        Some("Succeed" | "Fail")
    ) || state.get("End").and_then(Value::as_bool) == Some(true)
}

/// Everything wrong with the definition's structure, one sentence each
/// naming the state; empty when it is sound. Nested state machines (the
/// branches of `Parallel`, the processor of `Map`) are checked too.
pub fn problems(asl: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(asl, "", &mut out);
    out
}

fn check(asl: &Value, scope: &str, out: &mut Vec<String>) {
    let states = match states(asl) {
        Ok(states) => states,
        Err(e) => return out.push(format!("{scope}{e}")),
    };
    let transitions = match transitions(asl) {
        Ok(t) => t,
        Err(e) => return out.push(format!("{scope}{e}")),
    };
    let start = asl.get("StartAt").and_then(Value::as_str).unwrap_or("");
    if !states.contains_key(start) {
        out.push(format!("{scope}StartAt {start:?} is not a state"));
    }
    for t in &transitions {
        if !states.contains_key(&t.to) {
            out.push(format!(
                "{scope}{}: {:?} goes to {:?}, which is not a state",
                t.from, t.via, t.to
            ));
        }
    }
    for (name, state) in states {
        let kind = state.get("Type").and_then(Value::as_str).unwrap_or("");
        let has_next = state.get("Next").is_some();
        let ends = state.get("End").and_then(Value::as_bool) == Some(true);
        match kind {
            "Succeed" | "Fail" => {
                if has_next || ends {
                    out.push(format!(
                        "{scope}{name}: a {kind} state takes no Next or End"
                    ));
                }
            }
            "Choice" => {
                let rules = state.get("Choices").and_then(Value::as_array);
                if rules.is_none_or(|r| r.is_empty()) {
                    out.push(format!("{scope}{name}: a Choice state needs Choices"));
                }
                if rules
                    .into_iter()
                    .flatten()
                    .any(|r| r.get("Next").and_then(Value::as_str).is_none())
                {
                    out.push(format!("{scope}{name}: every Choices rule needs a Next"));
                }
            }
            "Task" | "Pass" | "Wait" | "Parallel" | "Map" => {
                if has_next == ends {
                    out.push(format!(
                        "{scope}{name}: a {kind} state needs exactly one of Next and End: true"
                    ));
                }
            }
            other => out.push(format!("{scope}{name}: unknown Type {other:?}")),
        }
        check_errors(state, &format!("{scope}{name}"), out);
        for branch in state
            .get("Branches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            check(branch, &format!("{scope}{name} branch: "), out);
        }
        if let Some(inner) = state.get("ItemProcessor").or_else(|| state.get("Iterator")) {
            check(inner, &format!("{scope}{name} item processor: "), out);
        }
    }

    // Reachable from StartAt, and an end reachable from every state.
    let mut graph: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut reverse: HashMap<&str, Vec<&str>> = HashMap::new();
    for t in &transitions {
        graph
            .entry(t.from.as_str())
            .or_default()
            .push(t.to.as_str());
        reverse
            .entry(t.to.as_str())
            .or_default()
            .push(t.from.as_str());
    }
    let reachable = walk(&graph, [start]);
    let ends = states
        .iter()
        .filter(|(_, s)| is_terminal(s))
        .map(|(n, _)| n.as_str());
    let can_end = walk(&reverse, ends);
    for name in states.keys() {
        if !reachable.contains(name.as_str()) {
            out.push(format!("{scope}{name}: no execution can reach this state"));
        } else if !can_end.contains(name.as_str()) {
            out.push(format!(
                "{scope}{name}: no end can be reached from this state"
            ));
        }
    }
}

fn walk<'a>(
    graph: &HashMap<&'a str, Vec<&'a str>>,
    from: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&str> = from.into_iter().collect();
    while let Some(n) = queue.pop_front() {
        if seen.insert(n) {
            queue.extend(graph.get(n).into_iter().flatten());
        }
    }
    seen
}

fn check_errors(state: &Value, at: &str, out: &mut Vec<String>) {
    for field in ["Retry", "Catch"] {
        let list: Vec<&Value> = state
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        for (i, item) in list.iter().enumerate() {
            let names = error_names(item);
            if names.is_empty() {
                out.push(format!("{at}: {field}[{i}] has no ErrorEquals"));
            }
            for name in &names {
                let well_formed = if name.starts_with("States.") {
                    PREDEFINED_ERRORS.contains(&name.as_str())
                } else {
                    !name.is_empty()
                        && name.starts_with(|c: char| c.is_ascii_alphabetic())
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                };
                if !well_formed {
                    out.push(format!("{at}: {field}[{i}] error name {name:?} is not well formed (a States.* error Step Functions raises, or letters, digits, dots, underscores)"));
                }
            }
            if names.iter().any(|n| n == "States.ALL") && (names.len() > 1 || i + 1 < list.len()) {
                out.push(format!(
                    "{at}: {field}[{i}] States.ALL must be alone and the last {field} entry"
                ));
            }
            if field == "Retry" {
                let number = |k: &str| item.get(k).and_then(Value::as_f64);
                if number("IntervalSeconds").is_some_and(|v| v < 1.0) {
                    out.push(format!(
                        "{at}: Retry[{i}] IntervalSeconds must be at least 1"
                    ));
                }
                if number("MaxAttempts").is_some_and(|v| v < 0.0) {
                    out.push(format!("{at}: Retry[{i}] MaxAttempts must not be negative"));
                }
                if number("BackoffRate").is_some_and(|v| v < 1.0) {
                    out.push(format!("{at}: Retry[{i}] BackoffRate must be at least 1"));
                }
            }
            if field == "Catch" && item.get("Next").and_then(Value::as_str).is_none() {
                out.push(format!("{at}: Catch[{i}] has no Next"));
            }
        }
    }
}

/// The state machine as a Mermaid `stateDiagram-v2`: Choice states as
/// choice nodes, each transition labelled with its condition or the errors
/// it catches, Succeed and Fail states (and `End: true`) to the end marker.
pub fn mermaid(asl: &Value) -> Result<String, String> {
    let states = states(asl)?;
    let start = asl
        .get("StartAt")
        .and_then(Value::as_str)
        .ok_or("the definition has no StartAt")?;
    let mut out = String::from("stateDiagram-v2\n");
    for (name, state) in states {
        if state.get("Type").and_then(Value::as_str) == Some("Choice") {
            out.push_str(&format!("    state {name} <<choice>>\n"));
        }
    }
    out.push_str(&format!("    [*] --> {start}\n"));
    for t in transitions(asl)? {
        let label = match &t.via {
            Via::Next => String::new(),
            Via::Choice(c) => format!(": {c}"),
            Via::Default => ": otherwise".to_string(),
            Via::Catch(errors) => format!(": catch {}", errors.join(", ")),
        };
        out.push_str(&format!("    {} --> {}{label}\n", t.from, t.to));
    }
    for (name, state) in states {
        if is_terminal(state) {
            let kind = state.get("Type").and_then(Value::as_str).unwrap_or("");
            let label = if kind == "Fail" {
                let error = state
                    .get("Error")
                    .and_then(Value::as_str)
                    .unwrap_or("fails");
                format!(": {error}")
            } else {
                String::new()
            };
            out.push_str(&format!("    {name} --> [*]{label}\n"));
        }
    }
    // Mermaid reads `#` and `;` as entity and statement syntax.
    Ok(out
        .chars()
        .map(|c| match c {
            '#' => "#35;".to_string(),
            ';' => "#59;".to_string(),
            c => c.to_string(),
        })
        .collect())
}

/// The marker before a generated diagram in a Markdown file; the diagram is
/// the ```` ```mermaid ```` block right after it.
pub fn marker(asl_path: &str) -> String {
    format!("<!-- asl-mermaid {asl_path} -->")
}

/// `markdown` with the diagram after each `marker` replaced by `render(path)`;
/// also the paths it found, in order.
pub fn update_markdown(
    markdown: &str,
    render: impl Fn(&str) -> Result<String, String>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::new();
    let mut found = Vec::new();
    let mut rest = markdown;
    while let Some(at) = rest.find("<!-- asl-mermaid ") {
        let line_end = rest[at..].find('\n').map_or(rest.len(), |i| at + i + 1);
        let path = rest[at + "<!-- asl-mermaid ".len()..line_end]
            .trim()
            .trim_end_matches("-->")
            .trim()
            .to_string();
        out.push_str(&rest[..line_end]);
        rest = &rest[line_end..];
        // Drop the old block, if there is one right here.
        if rest.starts_with("```mermaid\n") {
            let close = rest["```mermaid\n".len()..]
                .find("\n```")
                .ok_or_else(|| format!("the mermaid block after {path} is not closed"))?;
            let mut end = "```mermaid\n".len() + close + "\n```".len();
            if rest[end..].starts_with('\n') {
                end += 1;
            }
            rest = &rest[end..];
        }
        out.push_str("```mermaid\n");
        out.push_str(&render(&path)?);
        out.push_str("```\n");
        found.push(path);
    }
    out.push_str(rest);
    Ok((out, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn machine() -> Value {
        json!({
            "StartAt": "Work",
            "States": {
                "Work": {"Type": "Task", "Resource": "${Fn}", "Next": "Done?",
                         "Retry": [{"ErrorEquals": ["Retryable"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2}],
                         "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}]},
                "Done?": {"Type": "Choice",
                          "Choices": [{"Variable": "$.state", "StringEquals": "READY", "Next": "Ok"}],
                          "Default": "Work"},
                "Ok": {"Type": "Succeed"},
                "Failed": {"Type": "Fail", "Error": "WorkFailed"}
            }
        })
    }

    #[test]
    fn a_sound_machine_has_no_problems_and_renders() {
        assert_eq!(problems(&machine()), Vec::<String>::new());
        let diagram = mermaid(&machine()).unwrap();
        assert!(diagram.contains("state Done? <<choice>>"));
        assert!(diagram.contains("Work --> Failed: catch States.ALL"));
        assert!(diagram.contains("Done? --> Ok: state = READY"));
        assert!(diagram.contains("Done? --> Work: otherwise"));
        assert!(diagram.contains("Failed --> [*]: WorkFailed"));
    }

    #[test]
    fn every_kind_of_structural_fault_is_named() {
        let mut m = machine();
        m["States"]["Work"]["Next"] = json!("Dnoe?");
        m["States"]["Work"]["Retry"][0]["ErrorEquals"] = json!(["States.Everything", "bad name"]);
        m["States"]["Work"]["Retry"][0]["BackoffRate"] = json!(0.5);
        m["States"]["Work"]["Catch"] = json!([
            {"ErrorEquals": ["States.ALL"], "Next": "Failed"},
            {"ErrorEquals": ["Late"], "Next": "Failed"}
        ]);
        m["States"]["Loop"] = json!({"Type": "Pass", "Next": "Loop"});
        let found = problems(&m).join("\n");
        for expected in [
            "Work: Next goes to \"Dnoe?\", which is not a state",
            "Done?: no execution can reach this state",
            "Loop: no execution can reach this state",
            "\"States.Everything\" is not well formed",
            "\"bad name\" is not well formed",
            "BackoffRate must be at least 1",
            "States.ALL must be alone and the last Catch entry",
        ] {
            assert!(found.contains(expected), "{expected:?} not in\n{found}");
        }
        let mut trapped = machine();
        trapped["States"]["Done?"]["Choices"][0]["Next"] = json!("Work");
        trapped["States"]["Work"]
            .as_object_mut()
            .unwrap()
            .remove("Catch");
        let found = problems(&trapped).join("\n");
        assert!(found.contains("Work: no end can be reached"), "{found}");
    }

    #[test]
    fn markdown_blocks_are_replaced_in_place() {
        let md = "intro\n<!-- asl-mermaid a.json -->\n```mermaid\nold\n```\nmiddle\n<!-- asl-mermaid b.json -->\nend\n";
        let (new, found) = update_markdown(md, |p| Ok(format!("new {p}\n"))).unwrap();
        assert_eq!(found, ["a.json", "b.json"]);
        assert_eq!(
            new,
            "intro\n<!-- asl-mermaid a.json -->\n```mermaid\nnew a.json\n```\nmiddle\n<!-- asl-mermaid b.json -->\n```mermaid\nnew b.json\n```\nend\n"
        );
        let (again, _) = update_markdown(&new, |p| Ok(format!("new {p}\n"))).unwrap();
        assert_eq!(again, new);
    }
}
