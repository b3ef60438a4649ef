//! `template.yaml` as JSON: CloudFormation's short tags (`!Ref`, `!GetAtt`,
//! `!Sub`, `!If`, ...) become their long forms (`{"Ref": ..}`,
//! `{"Fn::GetAtt": [resource, attribute]}`, `{"Fn::Sub": ..}`), so checks
//! over the template read it as CloudFormation itself does.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf()
}

/// The repository's `template.yaml`, parsed.
pub fn load() -> Value {
    let path = repo().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    parse(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// A CloudFormation YAML template (or snippet) as JSON.
pub fn parse(yaml: &str) -> Result<Value, serde_yaml::Error> {
    serde_yaml::from_str::<serde_yaml::Value>(yaml).map(|v| to_json(&v))
}

fn to_json(value: &serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, to_json(v))
                })
                .collect::<Map<_, _>>(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = to_json(&tagged.value);
            match tag {
                "Ref" => json!({ "Ref": inner }),
                "Condition" => json!({ "Condition": inner }),
                "GetAtt" => match inner.as_str().and_then(|s| s.split_once('.')) {
                    Some((resource, attribute)) => {
                        json!({ "Fn::GetAtt": [resource, attribute] })
                    }
                    None => json!({ "Fn::GetAtt": inner }),
                },
                other => Value::Object(Map::from_iter([(format!("Fn::{other}"), inner)])),
            }
        }
    }
}

/// The template's resources of one type, by logical ID.
pub fn resources<'a>(
    template: &'a Value,
    kind: &'a str,
) -> impl Iterator<Item = (&'a str, &'a Value)> {
    template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(move |(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
}

/// The logical ID a `!Ref X` or `!GetAtt X.Attr` points at.
pub fn referenced(value: &Value) -> Option<&str> {
    value["Ref"]
        .as_str()
        .or_else(|| value["Fn::GetAtt"][0].as_str())
}

/// The values a property may take: both branches of an `!If`, without
/// `AWS::NoValue`.
pub fn alternatives(value: &Value) -> Vec<&Value> {
    match value.get("Fn::If").and_then(Value::as_array) {
        Some(branches) if branches.len() == 3 => {
            branches[1..].iter().flat_map(alternatives).collect()
        }
        _ if value["Ref"] == "AWS::NoValue" => Vec::new(),
        _ => vec![value],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tags_become_long_forms() {
        let v = parse("a: !Ref X\nb: !GetAtt Y.Arn\nc: !Sub \"${X}\"\nd: !If [C, !Ref X, !Ref AWS::NoValue]\n").unwrap();
        assert_eq!(v["a"], json!({"Ref": "X"}));
        assert_eq!(v["b"], json!({"Fn::GetAtt": ["Y", "Arn"]}));
        assert_eq!(v["c"], json!({"Fn::Sub": "${X}"}));
        assert_eq!(alternatives(&v["d"]), [&json!({"Ref": "X"})]);
    }
}
