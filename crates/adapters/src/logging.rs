//! Log setup for the function binaries: what `lambda_runtime::tracing::init_default_subscriber`
//! does (JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON`; no timestamps, Lambda adds them), with
//! a [`Targets`] filter instead of an `EnvFilter` and the application's own level first.
//! `EnvFilter` matches with regular expressions, which put the `regex-automata` engine into
//! each zip; `Targets` takes the same `target=level,level` lists without it.
//!
//! # Why the application filters, not Lambda
//!
//! Lambda's log-level filtering (`ApplicationLogLevel`) reads a JSON line's `level` key and
//! treats a line without a valid one as INFO. Embedded Metric Format lines have no `level`,
//! so at WARN Lambda would drop every metric they carry. template.yaml therefore pins
//! `ApplicationLogLevel` at TRACE (Lambda drops nothing) and passes the operator's
//! `LogLevel` as `RUST_LOG`, which this filter applies to our log lines only; the EMF lines
//! are written past it. `tests/tests/metric_lines.rs` checks that under Lambda's rule.

use std::str::FromStr;

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber, configured from the process environment, writing to
/// stdout.
pub fn init() {
    // A second init (tests) keeps the first subscriber; that is not an error worth a panic.
    let _ = subscriber(|name| std::env::var(name).ok(), std::io::stdout).try_init();
}

/// The functions' subscriber as [`init`] builds it, configured from `var` (an environment
/// lookup: `RUST_LOG`, `AWS_LAMBDA_LOG_LEVEL`, `AWS_LAMBDA_LOG_FORMAT`) and writing lines to
/// `writer`, so a test can render exactly what a deployed function writes.
pub fn subscriber<W>(
    var: impl Fn(&str) -> Option<String>,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let format = var("AWS_LAMBDA_LOG_FORMAT").unwrap_or_default();
    let filter = filter(
        var("AWS_LAMBDA_LOG_LEVEL").as_deref(),
        var("RUST_LOG").as_deref(),
    );
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    if format.eq_ignore_ascii_case("json") {
        Box::new(registry.with(fmt.json()))
    } else {
        Box::new(registry.with(fmt))
    }
}

/// The filter: `RUST_LOG` as `target=level` directives (the template sets it to its
/// `LogLevel`), else Lambda's level (a level name, as Lambda writes it), else INFO.
/// Unreadable values fall back to the next source, then to INFO, as the runtime's own setup
/// does.
pub fn filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    let directives = set(rust_log)
        .and_then(|d| Targets::from_str(d).ok())
        .filter(|t| t.default_level().is_some() || t.iter().next().is_some());
    if let Some(targets) = directives {
        return targets;
    }
    set(lambda_level)
        .and_then(|l| LevelFilter::from_str(l).ok())
        .map(|level| Targets::new().with_default(level))
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
    fn rust_log_wins_then_lambdas_level_then_info() {
        // The template's pairing: Lambda at TRACE (drops nothing), the application at WARN.
        let f = filter(Some("TRACE"), Some("WARN"));
        assert!(f.would_enable("metrics_publisher", &Level::WARN));
        assert!(!f.would_enable("metrics_publisher", &Level::INFO));

        let f = filter(Some("TRACE"), Some("metrics_publisher=debug,warn"));
        assert!(f.would_enable("metrics_publisher::handler", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(f.would_enable("aws_smithy_runtime", &Level::WARN));

        let f = filter(Some("WARN"), None);
        assert!(f.would_enable("x", &Level::WARN) && !f.would_enable("x", &Level::INFO));

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
