//! Reading typed configuration from environment variables once, at init. Every error names
//! the variable, so a bad deployment fails its first cold start with a message that says
//! what to fix.

use std::str::FromStr;

/// A missing or invalid configuration variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration variable {variable}: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub reason: String,
}

/// Where configuration values come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

impl<const N: usize> Source for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// A source that remembers every name asked for: lets a test check that the variables a
/// deployment sets are exactly the ones a `Config` reads.
#[derive(Debug, Default)]
pub struct Recording<S> {
    pub inner: S,
    pub asked: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl<S: Source> Recording<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            asked: Default::default(),
        }
    }

    pub fn asked(&self) -> std::collections::BTreeSet<String> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl<S: Source> Source for Recording<S> {
    fn get(&self, name: &str) -> Option<String> {
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
        self.inner.get(name)
    }
}

/// A required variable, non-empty.
pub fn required(src: &impl Source, name: &str) -> Result<String, ConfigError> {
    match src.get(name) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(ConfigError {
            variable: name.into(),
            reason: "is empty".into(),
        }),
        None => Err(ConfigError {
            variable: name.into(),
            reason: "is not set".into(),
        }),
    }
}

/// An optional variable; empty counts as unset.
pub fn optional(src: &impl Source, name: &str) -> Option<String> {
    src.get(name).filter(|v| !v.trim().is_empty())
}

/// An optional variable parsed with `FromStr`, or `default` when unset.
pub fn parsed_or<T>(src: &impl Source, name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match optional(src, name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError {
            variable: name.into(),
            reason: format!("invalid value {v:?}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable() {
        let src = [("A", "5"), ("B", "x"), ("E", " ")];
        assert_eq!(parsed_or(&src, "A", 1u32).unwrap(), 5);
        assert_eq!(parsed_or(&src, "MISSING", 1u32).unwrap(), 1);
        let err = parsed_or(&src, "B", 1u32).unwrap_err();
        assert_eq!(err.variable, "B");
        assert!(
            err.to_string()
                .contains("configuration variable B: invalid value \"x\"")
        );
        assert_eq!(required(&src, "E").unwrap_err().reason, "is empty");
        assert_eq!(
            required(&src, "NOPE").unwrap_err().to_string(),
            "configuration variable NOPE: is not set"
        );
    }
}
