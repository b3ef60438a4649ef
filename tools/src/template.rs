//! Reading `template.yaml` the way CloudFormation would, for the parts the
//! local runner and the tests need: parameters' defaults, resources'
//! properties, functions' environment and event sources, state machines'
//! definitions and substitutions.
//!
//! Tolerant by design: only `!Ref`, `!GetAtt`, `!Sub` (both forms), `!If`
//! on the template's conditions (`!Equals`, `!Not`, `!And`, `!Or`,
//! `!Condition`) and plain scalars are resolved, against the parameters, the
//! pseudo parameters and the physical names the caller gives for the
//! resources it created. Anything else (`!Select`, `!Ref AWS::NoValue`, a
//! resource without a name) is an [`Unresolved`] error naming it, which
//! callers may skip.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde_yaml::Value;

/// The parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
}

/// A value the reader does not resolve, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot resolve {what}")]
pub struct Unresolved {
    pub what: String,
}

/// What `!Ref` and `!GetAtt` of a created resource stand for.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    /// The value of `!Ref` (a name, or an ARN for state machines).
    pub reference: String,
    /// `!GetAtt` attributes (`Arn`, `StreamArn`, ...).
    pub attributes: BTreeMap<String, String>,
}

impl Physical {
    /// A resource whose `!Ref` is `reference` and `!GetAtt .Arn` is `arn`.
    pub fn new(reference: impl Into<String>, arn: impl Into<String>) -> Self {
        Physical {
            reference: reference.into(),
            attributes: BTreeMap::from([("Arn".to_string(), arn.into())]),
        }
    }
}

/// What references resolve to: pseudo parameters, parameter overrides and
/// created resources.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub region: String,
    pub account_id: String,
    pub stack_name: String,
    /// Parameter values that replace the defaults.
    pub parameters: BTreeMap<String, String>,
    /// Created resources by logical ID.
    pub resources: BTreeMap<String, Physical>,
}

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(Template {
            root: serde_yaml::from_str(text)?,
        })
    }

    /// Parameter `name`'s node (`Type`, `Default`, `AllowedValues`, ...).
    pub fn parameter(&self, name: &str) -> Option<&Value> {
        self.root.get("Parameters")?.get(name)
    }

    /// The default of parameter `name`, as text.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        scalar(self.root.get("Parameters")?.get(name)?.get("Default")?)
    }

    /// A function's property as text: its own, else `Globals.Function`'s
    /// (`MemorySize`, `Timeout`, ...).
    pub fn function_property(&self, function_id: &str, name: &str) -> Option<String> {
        self.property(function_id, &["Properties", name])
            .or_else(|| self.root.get("Globals")?.get("Function")?.get(name))
            .and_then(scalar)
    }

    /// The resource `logical_id`'s node.
    pub fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.root.get("Resources")?.get(logical_id)
    }

    /// Every resource as (logical ID, type), in template order.
    pub fn resource_types(&self) -> Vec<(String, String)> {
        let Some(Value::Mapping(resources)) = self.root.get("Resources") else {
            return Vec::new();
        };
        resources
            .iter()
            .filter_map(|(k, r)| {
                Some((
                    k.as_str()?.to_string(),
                    r.get("Type")?.as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// Logical IDs of the resources of `resource_type`, in template order.
    pub fn resources_of_type(&self, resource_type: &str) -> Vec<String> {
        let Some(Value::Mapping(resources)) = self.root.get("Resources") else {
            return Vec::new();
        };
        resources
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(resource_type))
            .filter_map(|(k, _)| k.as_str().map(str::to_string))
            .collect()
    }

    /// The node at `path` (mapping keys, or list indexes as numbers) under
    /// resource `logical_id`'s `Properties`.
    pub fn property(&self, logical_id: &str, path: &[&str]) -> Option<&Value> {
        let mut node = self.resource(logical_id)?.get("Properties")?;
        for key in path {
            node = match key.parse::<usize>() {
                Ok(i) if node.is_sequence() => node.get(i)?,
                _ => node.get(*key)?,
            };
        }
        Some(node)
    }

    /// [`Template::property`] resolved to text.
    pub fn resolved_property(
        &self,
        logical_id: &str,
        path: &[&str],
        ctx: &Context,
    ) -> Result<String, Unresolved> {
        let node = self.property(logical_id, path).ok_or_else(|| Unresolved {
            what: format!("{logical_id}.Properties.{}", path.join(".")),
        })?;
        self.resolve(node, ctx)
    }

    /// A function's environment variables, resolved: those of `Globals`,
    /// then the function's own (SAM merges them so); variables that cannot
    /// be resolved (conditions, for example) are left out, so the handler's
    /// own default applies.
    pub fn environment(&self, function_id: &str, ctx: &Context) -> BTreeMap<String, String> {
        let globals = ["Globals", "Function", "Environment", "Variables"]
            .iter()
            .try_fold(&self.root, |node, key| node.get(*key));
        let own = self.property(function_id, &["Environment", "Variables"]);
        [globals, own]
            .into_iter()
            .flatten()
            .filter_map(Value::as_mapping)
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), self.resolve(v, ctx).ok()?)))
            .collect()
    }

    /// The stack's outputs, resolved, by name: those whose condition is
    /// false or whose value cannot be resolved are left out.
    pub fn outputs(&self, ctx: &Context) -> BTreeMap<String, String> {
        let Some(Value::Mapping(outputs)) = self.root.get("Outputs") else {
            return BTreeMap::new();
        };
        outputs
            .iter()
            .filter_map(|(name, output)| {
                if let Some(Value::String(condition)) = output.get("Condition") {
                    if !self.condition(condition, ctx).unwrap_or(false) {
                        return None;
                    }
                }
                let value = self.resolve(output.get("Value")?, ctx).ok()?;
                Some((name.as_str()?.to_string(), value))
            })
            .collect()
    }

    /// The first event source of a function whose `Type` is `event_type`
    /// (`Kinesis`, `DynamoDB`, ...): its `Properties` node.
    pub fn event_source(&self, function_id: &str, event_type: &str) -> Option<&Value> {
        let Some(Value::Mapping(events)) = self.property(function_id, &["Events"]) else {
            return None;
        };
        events
            .values()
            .find(|e| e.get("Type").and_then(Value::as_str) == Some(event_type))?
            .get("Properties")
    }

    /// A state machine's definition file (relative to the template) and its
    /// resolved `DefinitionSubstitutions`.
    pub fn state_machine(
        &self,
        logical_id: &str,
        ctx: &Context,
    ) -> Result<(String, BTreeMap<String, String>), Unresolved> {
        let uri = self.resolved_property(logical_id, &["DefinitionUri"], ctx)?;
        let mut subs = BTreeMap::new();
        if let Some(Value::Mapping(m)) = self.property(logical_id, &["DefinitionSubstitutions"]) {
            for (k, v) in m {
                if let Some(k) = k.as_str() {
                    subs.insert(k.to_string(), self.resolve(v, ctx)?);
                }
            }
        }
        Ok((uri, subs))
    }

    /// Whether the template's condition `name` holds.
    pub fn condition(&self, name: &str, ctx: &Context) -> Result<bool, Unresolved> {
        let node = self
            .root
            .get("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| Unresolved {
                what: format!("condition {name}"),
            })?;
        self.holds(node, ctx)
    }

    /// Whether resource `logical_id` exists with these parameters (it has
    /// no `Condition`, or its condition holds).
    pub fn is_created(&self, logical_id: &str, ctx: &Context) -> Result<bool, Unresolved> {
        match self
            .resource(logical_id)
            .and_then(|r| r.get("Condition"))
            .and_then(Value::as_str)
        {
            None => Ok(true),
            Some(name) => self.condition(name, ctx),
        }
    }

    /// Evaluates a condition function.
    fn holds(&self, node: &Value, ctx: &Context) -> Result<bool, Unresolved> {
        let Value::Tagged(t) = node else {
            return Err(unresolved("condition", node));
        };
        let items = || t.value.as_sequence().cloned().unwrap_or_default();
        match t.tag.to_string().trim_start_matches('!') {
            "Equals" => match items().as_slice() {
                [a, b] => Ok(self.resolve(a, ctx)? == self.resolve(b, ctx)?),
                _ => Err(unresolved("!Equals", node)),
            },
            "Not" => match items().as_slice() {
                [c] => Ok(!self.holds(c, ctx)?),
                _ => Err(unresolved("!Not", node)),
            },
            "And" => items()
                .iter()
                .try_fold(true, |all, c| Ok(all && self.holds(c, ctx)?)),
            "Or" => items()
                .iter()
                .try_fold(false, |any, c| Ok(any || self.holds(c, ctx)?)),
            "Condition" => {
                let name = t
                    .value
                    .as_str()
                    .ok_or_else(|| unresolved("!Condition", node))?;
                self.condition(name, ctx)
            }
            _ => Err(unresolved("condition", node)),
        }
    }

    /// Resolves a node to text.
    pub fn resolve(&self, node: &Value, ctx: &Context) -> Result<String, Unresolved> {
        match node {
            Value::Tagged(t) if t.tag == "If" => match t.value.as_sequence().map(Vec::as_slice) {
                Some([Value::String(condition), then, otherwise]) => {
                    if self.condition(condition, ctx)? {
                        self.resolve(then, ctx)
                    } else {
                        self.resolve(otherwise, ctx)
                    }
                }
                _ => Err(unresolved("!If", node)),
            },
            Value::Tagged(t) if t.tag == "Ref" => {
                let name = t.value.as_str().ok_or_else(|| unresolved("!Ref", node))?;
                self.reference(name, ctx)
            }
            Value::Tagged(t) if t.tag == "GetAtt" => {
                let text = match &t.value {
                    Value::Sequence(parts) => parts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("."),
                    other => other.as_str().unwrap_or_default().to_string(),
                };
                get_att(&text, ctx)
            }
            Value::Tagged(t) if t.tag == "Sub" => match &t.value {
                Value::String(s) => self.substitute(s, &BTreeMap::new(), ctx),
                Value::Sequence(parts) => {
                    let text = parts
                        .first()
                        .and_then(Value::as_str)
                        .ok_or_else(|| unresolved("!Sub", node))?;
                    let mut vars = BTreeMap::new();
                    if let Some(Value::Mapping(m)) = parts.get(1) {
                        for (k, v) in m {
                            if let Some(k) = k.as_str() {
                                vars.insert(k.to_string(), self.resolve(v, ctx)?);
                            }
                        }
                    }
                    self.substitute(text, &vars, ctx)
                }
                _ => Err(unresolved("!Sub", node)),
            },
            other => scalar(other).ok_or_else(|| unresolved("value", other)),
        }
    }

    /// `!Ref name`: a parameter (override or default), a pseudo parameter
    /// or a created resource.
    fn reference(&self, name: &str, ctx: &Context) -> Result<String, Unresolved> {
        let pseudo = match name {
            "AWS::Region" => Some(ctx.region.clone()),
            "AWS::AccountId" => Some(ctx.account_id.clone()),
            "AWS::StackName" => Some(ctx.stack_name.clone()),
            "AWS::Partition" => Some("aws".to_string()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_string()),
            _ => None,
        };
        pseudo
            .or_else(|| ctx.parameters.get(name).cloned())
            .or_else(|| ctx.resources.get(name).map(|r| r.reference.clone()))
            .or_else(|| self.parameter_default(name))
            .ok_or_else(|| Unresolved {
                what: format!("!Ref {name}"),
            })
    }

    fn substitute(
        &self,
        text: &str,
        vars: &BTreeMap<String, String>,
        ctx: &Context,
    ) -> Result<String, Unresolved> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let end = after.find('}').ok_or_else(|| Unresolved {
                what: format!("!Sub {text:?} (unclosed ${{)"),
            })?;
            let name = &after[..end];
            let value = match (vars.get(name), name.starts_with('!')) {
                (Some(v), _) => v.clone(),
                // `${!Literal}` is the literal `${Literal}`.
                (None, true) => format!("${{{}}}", &name[1..]),
                (None, false) if name.contains('.') && !name.starts_with("AWS::") => {
                    get_att(name, ctx)?
                }
                (None, false) => self.reference(name, ctx)?,
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// An ASL definition with every `${Key}` replaced by its substitution;
/// an error names the placeholders left without one, or says why the result
/// is not JSON.
pub fn substitute_definition(
    text: &str,
    substitutions: &BTreeMap<String, String>,
) -> Result<String> {
    let mut definition = text.to_string();
    for (key, value) in substitutions {
        definition = definition.replace(&format!("${{{key}}}"), value);
    }
    let left: Vec<&str> = definition
        .match_indices("${")
        .map(|(i, _)| {
            let rest = &definition[i..];
            &rest[..rest.find('}').map_or(rest.len(), |j| j + 1)]
        })
        .collect();
    anyhow::ensure!(
        left.is_empty(),
        "placeholders without a substitution: {left:?}"
    );
    serde_json::from_str::<serde_json::Value>(&definition)
        .context("the definition is not JSON after substitution")?;
    Ok(definition)
}

fn get_att(text: &str, ctx: &Context) -> Result<String, Unresolved> {
    let (id, attribute) = text.split_once('.').unwrap_or((text, ""));
    ctx.resources
        .get(id)
        .and_then(|r| r.attributes.get(attribute))
        .cloned()
        .ok_or_else(|| Unresolved {
            what: format!("!GetAtt {text}"),
        })
}

fn unresolved(what: &str, node: &Value) -> Unresolved {
    Unresolved {
        what: format!(
            "{what} {}",
            serde_yaml::to_string(node).unwrap_or_default().trim()
        ),
    }
}

/// A plain scalar as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A CloudFormation YAML template (or snippet) as JSON, its short tags
/// (`!Ref`, `!GetAtt`, `!Sub`, `!If`, ...) in their long forms
/// (`{"Ref": ..}`, `{"Fn::GetAtt": [resource, attribute]}`,
/// `{"Fn::Sub": ..}`), as CloudFormation itself reads them.
pub fn long_form_json(yaml: &str) -> Result<serde_json::Value, serde_yaml::Error> {
    serde_yaml::from_str::<Value>(yaml).map(|v| to_json(&v))
}

fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::{json, Map, Value as J};
    use Value as Y;
    match value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(J::Null),
        Y::String(s) => J::String(s.clone()),
        Y::Sequence(items) => J::Array(items.iter().map(to_json).collect()),
        Y::Mapping(map) => J::Object(
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
                other => J::Object(Map::from_iter([(format!("Fn::{other}"), inner)])),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
Parameters:
  Prefix:
    Type: String
    Default: raw/x
  Size:
    Type: Number
    Default: 500
Conditions:
  Big: !Equals [!Ref Size, "10"]
  Small: !Not [!Condition Big]
  Either: !Or [!Condition Big, !And [!Condition Small, !Equals [!Ref Prefix, raw/x]]]
Globals:
  Function:
    Environment:
      Variables:
        EVERYWHERE: !Ref Prefix
        PLAIN: "from globals"
Resources:
  Bucket:
    Type: AWS::S3::Bucket
  OnlyBig:
    Type: AWS::S3::Bucket
    Condition: Big
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          BUCKET: !Ref Bucket
          PREFIX: !Ref Prefix
          WHERE: !Sub "s3://${Bucket}/${Prefix}/${AWS::Region}"
          ARN: !GetAtt Bucket.Arn
          LIST: !Sub ["${A}-${AWS::AccountId}", { A: !Ref Size }]
          CHOICE: !If [Cond, a, b]
          SIZED: !If [Big, !Ref Prefix, small]
          PLAIN: "4"
      Events:
        Telemetry:
          Type: Kinesis
          Properties:
            BatchSize: !Ref Size
            MaximumBatchingWindowInSeconds: 5
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: statemachine/x.asl.json
      DefinitionSubstitutions:
        FnArn: !GetAtt Fn.Arn
"#;

    fn ctx() -> Context {
        let mut c = Context {
            region: "eu-west-1".into(),
            account_id: "123".into(),
            stack_name: "s".into(),
            ..Default::default()
        };
        c.resources
            .insert("Bucket".into(), Physical::new("b1", "arn:aws:s3:::b1"));
        c.resources
            .insert("Fn".into(), Physical::new("fn", "arn:fn"));
        c
    }

    #[test]
    fn environment_resolves_refs_subs_and_attributes_and_skips_conditions() {
        let t = Template::parse(TEXT).unwrap();
        let env = t.environment("Fn", &ctx());
        assert_eq!(env["BUCKET"], "b1");
        assert_eq!(env["PREFIX"], "raw/x");
        assert_eq!(env["WHERE"], "s3://b1/raw/x/eu-west-1");
        assert_eq!(env["ARN"], "arn:aws:s3:::b1");
        assert_eq!(env["LIST"], "500-123");
        // A function's own variable wins over a global one of its name.
        assert_eq!(env["PLAIN"], "4");
        assert_eq!(env["EVERYWHERE"], "raw/x");
        assert!(!env.contains_key("CHOICE"));
        assert_eq!(env["SIZED"], "small");
    }

    #[test]
    fn conditions_decide_ifs_and_which_resources_exist() {
        let t = Template::parse(TEXT).unwrap();
        let mut c = ctx();
        assert!(!t.is_created("OnlyBig", &c).unwrap());
        assert!(t.is_created("Bucket", &c).unwrap());
        assert!(t.condition("Either", &c).unwrap());
        c.parameters.insert("Size".into(), "10".into());
        assert!(t.is_created("OnlyBig", &c).unwrap());
        assert!(t.condition("Either", &c).unwrap());
        assert_eq!(t.environment("Fn", &c)["SIZED"], "raw/x");
        c.parameters.insert("Size".into(), "11".into());
        c.parameters.insert("Prefix".into(), "other".into());
        assert!(!t.condition("Either", &c).unwrap());
        assert_eq!(t.condition("Nope", &c).unwrap_err().what, "condition Nope");
    }

    #[test]
    fn overrides_event_sources_and_state_machines() {
        let t = Template::parse(TEXT).unwrap();
        let mut c = ctx();
        let source = t.event_source("Fn", "Kinesis").unwrap();
        assert_eq!(t.resolve(&source["BatchSize"], &c).unwrap(), "500");
        c.parameters.insert("Size".into(), "10".into());
        assert_eq!(t.resolve(&source["BatchSize"], &c).unwrap(), "10");
        let (uri, subs) = t.state_machine("Machine", &c).unwrap();
        assert_eq!(uri, "statemachine/x.asl.json");
        assert_eq!(subs["FnArn"], "arn:fn");
        c.resources.clear();
        assert_eq!(
            t.state_machine("Machine", &c).unwrap_err().what,
            "!GetAtt Fn.Arn"
        );
        assert_eq!(
            t.resources_of_type("AWS::S3::Bucket"),
            ["Bucket", "OnlyBig"]
        );
    }
}
