//! Lambda event filtering (`FilterCriteria`) for the emulated event source mappings: a
//! record is delivered when any filter's pattern matches it. Supports what the template
//! and common patterns use: exact values, `prefix`, `suffix`, `exists`, `anything-but`,
//! and `numeric` comparisons; nested objects recurse.

use serde_json::Value;

/// Compiled filters of one mapping: none means every record is delivered.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    patterns: Vec<Value>,
}

impl Filters {
    /// From the template's `FilterCriteria: {Filters: [{Pattern: '<json>'}]}`.
    pub fn from_criteria(criteria: &Value) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for f in criteria["Filters"].as_array().into_iter().flatten() {
            let pattern = match &f["Pattern"] {
                Value::String(s) => serde_json::from_str(s)
                    .map_err(|e| format!("filter pattern {s:?} is not JSON: {e}"))?,
                v @ Value::Object(_) => v.clone(),
                other => return Err(format!("filter pattern {other} is not an object")),
            };
            patterns.push(pattern);
        }
        Ok(Self { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a record (as the function would receive it) passes.
    pub fn matches(&self, record: &Value) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| object_matches(p, record))
    }
}

fn object_matches(pattern: &Value, value: &Value) -> bool {
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().all(|(key, p)| {
        let v = value.get(key);
        match p {
            Value::Object(_) => v.is_some_and(|v| object_matches(p, v)),
            Value::Array(alternatives) => alternatives.iter().any(|a| leaf_matches(a, v)),
            _ => false,
        }
    })
}

fn leaf_matches(rule: &Value, value: Option<&Value>) -> bool {
    if let Some(Value::Array(items)) = value {
        return items.iter().any(|i| leaf_matches(rule, Some(i)));
    }
    match rule {
        Value::Object(m) => {
            let Some((op, arg)) = m.iter().next() else {
                return false;
            };
            match op.as_str() {
                "exists" => arg.as_bool() == Some(value.is_some()),
                "prefix" => {
                    matches!((value, arg), (Some(Value::String(s)), Value::String(p)) if s.starts_with(p.as_str()))
                }
                "suffix" => {
                    matches!((value, arg), (Some(Value::String(s)), Value::String(p)) if s.ends_with(p.as_str()))
                }
                "anything-but" => match value {
                    None => false,
                    Some(v) => match arg {
                        Value::Array(list) => !list.contains(v),
                        other => other != v,
                    },
                },
                "numeric" => value
                    .and_then(Value::as_f64)
                    .is_some_and(|x| numeric(arg, x)),
                _ => false,
            }
        }
        literal => value == Some(literal),
    }
}

fn numeric(arg: &Value, x: f64) -> bool {
    let Some(parts) = arg.as_array() else {
        return false;
    };
    parts.chunks(2).all(|c| {
        match (
            c.first().and_then(Value::as_str),
            c.get(1).and_then(Value::as_f64),
        ) {
            (Some("="), Some(n)) => x == n,
            (Some("<"), Some(n)) => x < n,
            (Some("<="), Some(n)) => x <= n,
            (Some(">"), Some(n)) => x > n,
            (Some(">="), Some(n)) => x >= n,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_alerters_filter_takes_alert_inserts_only() {
        let f = Filters::from_criteria(&json!({"Filters": [{"Pattern": "{\"eventName\": [\"INSERT\"], \"dynamodb\": {\"NewImage\": {\"record_type\": {\"S\": [\"alert\"]}}}}"}]})).unwrap();
        let alert = json!({"eventName": "INSERT", "dynamodb": {"NewImage": {"record_type": {"S": "alert"}}}});
        let state = json!({"eventName": "INSERT", "dynamodb": {"NewImage": {"record_type": {"S": "state"}}}});
        let modify = json!({"eventName": "MODIFY", "dynamodb": {"NewImage": {"record_type": {"S": "alert"}}}});
        let removed = json!({"eventName": "INSERT", "dynamodb": {"Keys": {}}});
        assert!(f.matches(&alert));
        assert!(!f.matches(&state) && !f.matches(&modify) && !f.matches(&removed));
    }

    #[test]
    fn operators() {
        let f = Filters::from_criteria(&json!({"Filters": [
            {"Pattern": "{\"a\": [{\"prefix\": \"dev\"}], \"n\": [{\"numeric\": [\">\", 2, \"<=\", 4]}]}"},
            {"Pattern": "{\"b\": [{\"exists\": false}], \"c\": [{\"anything-but\": [\"x\"]}]}"}
        ]}))
        .unwrap();
        assert!(f.matches(&json!({"a": "device1", "n": 3, "b": 1})));
        assert!(!f.matches(&json!({"a": "device1", "n": 5, "b": 1})));
        assert!(f.matches(&json!({"c": "y"})));
        assert!(!f.matches(&json!({"c": "x"})));
        assert!(Filters::default().matches(&json!({})));
    }
}
