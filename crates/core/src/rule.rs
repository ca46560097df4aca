//! Conditions such as `Severity > 2`, `Severity >= 4`, `avg > 60`, `State == "TX"`:
//! a field path, a comparison and a literal. Used for metric filters, per-event alert
//! rules and window alert conditions.

use std::fmt;

use crate::path::{FieldPath, Fields, PathError};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }

    fn apply<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Self::Gt => a > b,
            Self::Ge => a >= b,
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Eq => a == b,
            Self::Ne => a != b,
        }
    }
}

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Text(String),
}

/// `<path> <op> <literal>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub path: FieldPath,
    pub op: Op,
    pub value: Literal,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    #[error("invalid condition {text:?}: {reason}")]
    Syntax { text: String, reason: String },
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Why a condition could not be evaluated on a record (the record is malformed for it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("field {0} is missing")]
    Missing(String),
    #[error("field {path} is {found}, expected {expected}")]
    WrongType {
        path: String,
        found: String,
        expected: &'static str,
    },
}

impl Condition {
    /// Parses `Severity > 2`, `avg>=60.5`, `State == "TX"`, `City != 'Dallas'`.
    pub fn parse(text: &str) -> Result<Self, ConditionError> {
        let syntax = |reason: &str| ConditionError::Syntax {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let ops = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ];
        let (at, token, op) = ops
            .iter()
            .filter_map(|(tok, op)| text.find(tok).map(|i| (i, *tok, *op)))
            .min_by_key(|(i, tok, _)| (*i, std::cmp::Reverse(tok.len())))
            .ok_or_else(|| syntax("no comparison operator (one of > >= < <= == !=)"))?;
        let left = text[..at].trim();
        let right = text[at + token.len()..].trim();
        if left.is_empty() {
            return Err(syntax("no field before the operator"));
        }
        if right.is_empty() {
            return Err(syntax("no value after the operator"));
        }
        let path = FieldPath::parse(left)?;
        let quoted = |q: char| right.len() >= 2 && right.starts_with(q) && right.ends_with(q);
        let value = if quoted('"') || quoted('\'') {
            Literal::Text(right[1..right.len() - 1].to_owned())
        } else {
            match right.parse::<f64>() {
                Ok(n) if n.is_finite() => Literal::Number(n),
                _ => {
                    return Err(syntax(
                        "value is neither a finite number nor a quoted string",
                    ));
                }
            }
        };
        if matches!(value, Literal::Text(_)) && !matches!(op, Op::Eq | Op::Ne) {
            return Err(syntax("text can only be compared with == or !="));
        }
        Ok(Self { path, op, value })
    }

    /// Evaluates on a record. A missing field or a value of the wrong type is an error, so
    /// the caller can count the record as malformed instead of silently treating it as false.
    pub fn eval(&self, record: &impl Fields) -> Result<bool, EvalError> {
        let value = record
            .field(&self.path)
            .ok_or_else(|| EvalError::Missing(self.path.to_string()))?;
        match &self.value {
            Literal::Number(n) => {
                let v = value.as_f64().ok_or_else(|| EvalError::WrongType {
                    path: self.path.to_string(),
                    // The kind, not the value: this error is logged, and logs carry
                    // record coordinates, never payload data.
                    found: value.kind().to_owned(),
                    expected: "a number",
                })?;
                Ok(self.op.apply(v, *n))
            }
            Literal::Text(t) => Ok(self.op.apply(value.to_text().as_ref(), t.as_str())),
        }
    }

    /// Evaluates against a number already in hand (e.g. a window's average).
    pub fn eval_number(&self, v: f64) -> bool {
        match &self.value {
            Literal::Number(n) => self.op.apply(v, *n),
            Literal::Text(_) => false,
        }
    }

    /// The numeric threshold, when the literal is a number.
    pub fn threshold(&self) -> Option<f64> {
        match self.value {
            Literal::Number(n) => Some(n),
            Literal::Text(_) => None,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Literal::Number(n) => write!(f, "{} {} {}", self.path, self.op.as_str(), n),
            Literal::Text(t) => write!(f, "{} {} {:?}", self.path, self.op.as_str(), t),
        }
    }
}

impl std::str::FromStr for Condition {
    type Err = ConditionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_evaluates() {
        let c = Condition::parse("Severity > 2").unwrap();
        assert_eq!(c.op, Op::Gt);
        assert!(c.eval(&json!({"Severity": 3})).unwrap());
        assert!(!c.eval(&json!({"Severity": 2})).unwrap());
        assert_eq!(c.to_string(), "Severity > 2");
        let ge = Condition::parse("Severity>=4").unwrap();
        assert!(ge.eval(&json!({"Severity": 4})).unwrap());
        assert!(matches!(
            c.eval(&json!({"Severity": "high"})),
            Err(EvalError::WrongType { .. })
        ));
        assert!(matches!(c.eval(&json!({})), Err(EvalError::Missing(_))));
        let s = Condition::parse("State == \"TX\"").unwrap();
        assert!(s.eval(&json!({"State": "TX"})).unwrap());
        assert!(
            !Condition::parse("State != 'TX'")
                .unwrap()
                .eval(&json!({"State": "TX"}))
                .unwrap()
        );
        let avg = Condition::parse("avg > 60").unwrap();
        assert!(avg.eval_number(60.5) && !avg.eval_number(60.0));
        assert_eq!(avg.threshold(), Some(60.0));
    }

    #[test]
    fn rejects_bad_conditions() {
        for bad in [
            "Severity",
            "> 2",
            "Severity >",
            "Severity > high",
            "a..b > 1",
            "City > \"x\"",
            "x > NaN",
            "x > inf",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad}");
        }
    }
}
