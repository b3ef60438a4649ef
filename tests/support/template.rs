//! `template.yaml` as JSON, for checks over the whole template, read by the
//! project's one template reader (`lake_tools::template`): CloudFormation's
//! short tags become their long forms, as CloudFormation itself reads them.

use std::path::{Path, PathBuf};

use serde_json::Value;

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
    lake_tools::template::long_form_json(yaml)
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
    use serde_json::json;

    #[test]
    fn short_tags_become_long_forms() {
        let v = parse("a: !Ref X\nb: !GetAtt Y.Arn\nc: !Sub \"${X}\"\nd: !If [C, !Ref X, !Ref AWS::NoValue]\n").unwrap();
        assert_eq!(v["a"], json!({"Ref": "X"}));
        assert_eq!(v["b"], json!({"Fn::GetAtt": ["Y", "Arn"]}));
        assert_eq!(v["c"], json!({"Fn::Sub": "${X}"}));
        assert_eq!(alternatives(&v["d"]), [&json!({"Ref": "X"})]);
    }
}
