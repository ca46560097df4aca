//! template.yaml as `streamwatch dev` reads it: the YAML with CloudFormation's short tags
//! (`!Ref`, `!GetAtt`, `!Sub`, …) turned into their long JSON forms, parameter defaults,
//! conditions, and the resolution of intrinsics to the local resources' names — so the
//! emulated stack is made from the template itself, never from a second copy that drifts.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Account moto (and most emulators) use.
pub const ACCOUNT: &str = "123456789012";
/// The stack name the local resources are named after (`streamwatch-<LogicalId>`), as
/// `tools/moto_resources.py` and `[workspace.metadata.lambda.env]` in Cargo.toml use.
pub const STACK_NAME: &str = "streamwatch";

/// Reads and parses a template file.
pub fn load(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses template YAML into JSON with intrinsics in their long form
/// (`!GetAtt A.Arn` → `{"Fn::GetAtt": ["A", "Arn"]}`).
pub fn parse(text: &str) -> Result<Value, String> {
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    to_json(yaml)
}

fn to_json(v: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().map(Value::from).unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("unsupported mapping key {other:?}")),
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(tagged.value)?;
            let (key, value) = match name {
                "Ref" => ("Ref".to_owned(), inner),
                "Condition" => ("Condition".to_owned(), inner),
                // The short form of GetAtt is one string, `Resource.Attribute`.
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (res, attr) = s
                            .split_once('.')
                            .ok_or_else(|| format!("!GetAtt {s}: expected Resource.Attribute"))?;
                        ("Fn::GetAtt".to_owned(), Value::from(vec![res, attr]))
                    }
                    other => ("Fn::GetAtt".to_owned(), other),
                },
                other => (format!("Fn::{other}"), inner),
            };
            let mut out = Map::new();
            out.insert(key, value);
            Value::Object(out)
        }
    })
}

/// A local resource: what `!Ref` gives and what each `!GetAtt` attribute gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Everything intrinsics resolve against.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub region: String,
    pub parameters: BTreeMap<String, String>,
    pub resources: BTreeMap<String, Resource>,
    pub conditions: BTreeMap<String, bool>,
}

impl Context {
    /// Parameter values: the template's defaults, then `overrides` (`Name=Value`); an
    /// override of an unknown parameter is an error naming it.
    pub fn parameters(
        template: &Value,
        overrides: &[(String, String)],
    ) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        if let Some(params) = template["Parameters"].as_object() {
            for (name, p) in params {
                let value = match &p["Default"] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.insert(name.clone(), value);
            }
        }
        for (k, v) in overrides {
            if !out.contains_key(k) {
                return Err(format!("template has no parameter {k}"));
            }
            out.insert(k.clone(), v.clone());
        }
        Ok(out)
    }

    /// Evaluates the template's `Conditions` (Fn::Equals / Not / And / Or / Condition).
    pub fn evaluate_conditions(&mut self, template: &Value) -> Result<(), String> {
        let Some(conditions) = template["Conditions"].as_object() else {
            return Ok(());
        };
        // Conditions may refer to each other; a few passes settle any acyclic order.
        for _ in 0..=conditions.len() {
            for (name, expr) in conditions {
                if let Ok(v) = self.condition(expr) {
                    self.conditions.insert(name.clone(), v);
                }
            }
        }
        for (name, expr) in conditions {
            let v = self
                .condition(expr)
                .map_err(|e| format!("condition {name}: {e}"))?;
            self.conditions.insert(name.clone(), v);
        }
        Ok(())
    }

    fn condition(&self, expr: &Value) -> Result<bool, String> {
        let obj = expr
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or_else(|| format!("unsupported condition {expr}"))?;
        let (f, args) = obj.iter().next().ok_or("empty condition")?;
        match f.as_str() {
            "Fn::Equals" => {
                let [a, b] = args.as_array().map(Vec::as_slice).unwrap_or(&[]) else {
                    return Err("Fn::Equals needs two values".into());
                };
                Ok(self.string(a)? == self.string(b)?)
            }
            "Fn::Not" => {
                let [a] = args.as_array().map(Vec::as_slice).unwrap_or(&[]) else {
                    return Err("Fn::Not needs one condition".into());
                };
                Ok(!self.condition(a)?)
            }
            "Fn::And" | "Fn::Or" => {
                let list = args.as_array().ok_or("Fn::And/Or needs a list")?;
                let values = list
                    .iter()
                    .map(|c| self.condition(c))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if f == "Fn::And" {
                    values.iter().all(|v| *v)
                } else {
                    values.iter().any(|v| *v)
                })
            }
            "Condition" => {
                let name = args.as_str().ok_or("Condition needs a name")?;
                self.conditions
                    .get(name)
                    .copied()
                    .ok_or_else(|| format!("unknown condition {name}"))
            }
            other => Err(format!("unsupported condition function {other}")),
        }
    }

    /// Whether a resource's `Condition` (if any) holds.
    pub fn enabled(&self, resource: &Value) -> bool {
        match resource["Condition"].as_str() {
            None => true,
            Some(name) => self.conditions.get(name).copied().unwrap_or(false),
        }
    }

    /// Resolves a value to a string: a literal, `Ref`, `Fn::GetAtt`, `Fn::Sub` or `Fn::If`.
    pub fn string(&self, v: &Value) -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Object(o) if o.len() == 1 => {
                let (f, args) = o.iter().next().ok_or("empty intrinsic")?;
                match f.as_str() {
                    "Ref" => self.reference(args.as_str().ok_or("Ref needs a name")?),
                    "Fn::GetAtt" => {
                        let parts: Vec<&str> = match args {
                            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                            Value::String(s) => s.splitn(2, '.').collect(),
                            _ => vec![],
                        };
                        let [res, attr] = parts.as_slice() else {
                            return Err(format!("bad Fn::GetAtt {args}"));
                        };
                        self.attribute(res, attr)
                    }
                    "Fn::Sub" => match args {
                        Value::String(s) => self.substitute(s, &BTreeMap::new()),
                        Value::Array(a) if a.len() == 2 => {
                            let text = a[0].as_str().ok_or("Fn::Sub needs a string")?;
                            let mut vars = BTreeMap::new();
                            if let Some(m) = a[1].as_object() {
                                for (k, v) in m {
                                    vars.insert(k.clone(), self.string(v)?);
                                }
                            }
                            self.substitute(text, &vars)
                        }
                        _ => Err(format!("bad Fn::Sub {args}")),
                    },
                    "Fn::If" => {
                        let [cond, then, otherwise] =
                            args.as_array().map(Vec::as_slice).unwrap_or(&[])
                        else {
                            return Err(format!("bad Fn::If {args}"));
                        };
                        let name = cond.as_str().ok_or("Fn::If needs a condition name")?;
                        match self.conditions.get(name) {
                            Some(true) => self.string(then),
                            Some(false) => self.string(otherwise),
                            None => Err(format!("Fn::If: no condition {name}")),
                        }
                    }
                    other => Err(format!("unsupported intrinsic {other}")),
                }
            }
            other => Err(format!("cannot resolve {other} to a string")),
        }
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        match name {
            "AWS::Region" => return Ok(self.region.clone()),
            "AWS::AccountId" => return Ok(ACCOUNT.to_owned()),
            "AWS::StackName" => return Ok(STACK_NAME.to_owned()),
            "AWS::Partition" => return Ok("aws".to_owned()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".to_owned()),
            _ => {}
        }
        if let Some(p) = self.parameters.get(name) {
            return Ok(p.clone());
        }
        self.resources
            .get(name)
            .map(|r| r.reference.clone())
            .ok_or_else(|| format!("!Ref {name}: not a parameter or a local resource"))
    }

    fn attribute(&self, resource: &str, attr: &str) -> Result<String, String> {
        self.resources
            .get(resource)
            .and_then(|r| r.attributes.get(attr))
            .cloned()
            .ok_or_else(|| format!("!GetAtt {resource}.{attr}: not a local resource attribute"))
    }

    fn substitute(&self, text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {text:?}"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if let Some((res, attr)) = name.split_once('.')
                && !name.starts_with("AWS::")
            {
                out.push_str(&self.attribute(res, attr)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The logical ids of a template's resources of `kind`, in template order.
pub fn resources_of<'a>(template: &'a Value, kind: &'a str) -> Vec<(&'a str, &'a Value)> {
    template["Resources"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, r)| r["Type"].as_str() == Some(kind))
                .map(|(k, r)| (k.as_str(), r))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tags_become_long_forms() {
        let t = parse(
            "A: !Ref X\nB: !GetAtt T.StreamArn\nC: !Sub \"${AWS::StackName}-x\"\nD: !Equals [!Ref P, \"true\"]\nE: 5\n",
        )
        .unwrap();
        assert_eq!(t["A"], serde_json::json!({"Ref": "X"}));
        assert_eq!(
            t["B"],
            serde_json::json!({"Fn::GetAtt": ["T", "StreamArn"]})
        );
        assert_eq!(
            t["C"],
            serde_json::json!({"Fn::Sub": "${AWS::StackName}-x"})
        );
        assert_eq!(
            t["D"],
            serde_json::json!({"Fn::Equals": [{"Ref": "P"}, "true"]})
        );
        assert_eq!(t["E"], serde_json::json!(5));
    }

    #[test]
    fn resolves_refs_attributes_and_subs() {
        let mut ctx = Context {
            region: "us-east-1".into(),
            ..Default::default()
        };
        ctx.parameters.insert("Severity".into(), "4".into());
        ctx.resources.insert(
            "Table".into(),
            Resource {
                kind: "AWS::DynamoDB::Table".into(),
                reference: "streamwatch-Table".into(),
                attributes: [("Arn".to_owned(), "arn:t".to_owned())].into(),
            },
        );
        let v = parse("A: !Sub \"Severity >= ${Severity} ${Table} ${Table.Arn} ${AWS::StackName}\"\nB: !GetAtt Table.Arn\nC: !Ref Table\n").unwrap();
        assert_eq!(
            ctx.string(&v["A"]).unwrap(),
            "Severity >= 4 streamwatch-Table arn:t streamwatch"
        );
        assert_eq!(ctx.string(&v["B"]).unwrap(), "arn:t");
        assert_eq!(ctx.string(&v["C"]).unwrap(), "streamwatch-Table");
        assert!(ctx.string(&serde_json::json!({"Ref": "Nope"})).is_err());
    }

    #[test]
    fn the_shipped_template_parses_with_its_conditions() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let t = load(&path).unwrap();
        let mut ctx = Context {
            region: "us-east-1".into(),
            parameters: Context::parameters(&t, &[]).unwrap(),
            ..Default::default()
        };
        ctx.evaluate_conditions(&t).unwrap();
        assert_eq!(ctx.conditions.get("CreateDemo"), Some(&true));
        assert_eq!(ctx.conditions.get("HasEmail"), Some(&false));
        assert_eq!(ctx.conditions.get("Archive"), Some(&true));
        let v = parse("A: !If [Archive, \"yes\", \"no\"]\nB: !If [HasEmail, \"yes\", \"no\"]\nC: !If [Nope, a, b]\n").unwrap();
        assert_eq!(ctx.string(&v["A"]).unwrap(), "yes");
        assert_eq!(ctx.string(&v["B"]).unwrap(), "no");
        assert!(ctx.string(&v["C"]).is_err());
        assert_eq!(resources_of(&t, "AWS::Serverless::Function").len(), 3);
        assert_eq!(ctx.parameters["MetricFilter"], "Severity > 2");
    }
}
