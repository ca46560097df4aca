//! Log setup for the function binaries: what `lambda_runtime::tracing::init_default_subscriber`
//! does (level from `AWS_LAMBDA_LOG_LEVEL`, which Lambda sets from the template's
//! `ApplicationLogLevel`, else `RUST_LOG`; JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON`; no
//! timestamps, Lambda adds them), with a [`Targets`] filter instead of an `EnvFilter`.
//! `EnvFilter` matches with regular expressions, which put the `regex-automata` engine into
//! each zip; `Targets` takes the same `target=level,level` lists without it.

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber, writing to stdout.
pub fn init() {
    let format = std::env::var("AWS_LAMBDA_LOG_FORMAT").unwrap_or_default();
    let filter = filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) keeps the first subscriber; that is not an error worth a panic.
    let _ = if format.eq_ignore_ascii_case("json") {
        registry.with(fmt.json()).try_init()
    } else {
        registry.with(fmt).try_init()
    };
}

/// The filter: Lambda's level if set (a level name, as Lambda writes it), else `RUST_LOG`
/// as `target=level` directives, else INFO. Unreadable values fall back to INFO, as the
/// runtime's own setup does.
pub fn filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    if let Some(level) = set(lambda_level).and_then(|l| LevelFilter::from_str(l).ok()) {
        return Targets::new().with_default(level);
    }
    set(rust_log)
        .and_then(|d| Targets::from_str(d).ok())
        .filter(|t| t.default_level().is_some() || t.iter().next().is_some())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// A variable's value, `None` when unset or blank.
fn set(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn lambdas_level_wins_then_rust_log_then_info() {
        let f = filter(Some("WARN"), Some("debug"));
        assert!(f.would_enable("metrics_publisher", &Level::WARN));
        assert!(!f.would_enable("metrics_publisher", &Level::INFO));

        let f = filter(None, Some("metrics_publisher=debug,warn"));
        assert!(f.would_enable("metrics_publisher::handler", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(f.would_enable("aws_smithy_runtime", &Level::WARN));

        let f = filter(None, None);
        assert!(f.would_enable("anything", &Level::INFO));
        assert!(!f.would_enable("anything", &Level::DEBUG));
    }

    #[test]
    fn unreadable_values_fall_back_to_info() {
        for (lambda, rust_log) in [
            (Some("LOUD"), None),
            (None, Some("metrics_publisher=loud")),
            (Some(""), Some("")),
        ] {
            let f = filter(lambda, rust_log);
            assert!(
                f.would_enable("x", &Level::INFO) && !f.would_enable("x", &Level::DEBUG),
                "{lambda:?} {rust_log:?}"
            );
        }
    }
}
