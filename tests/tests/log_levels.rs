//! Metric lines survive Lambda's log-level filtering. Each function's real handler runs over
//! its sample events plus a malformed record, under the subscriber its binary installs
//! (`logging::subscriber`), configured from the variables Lambda would set from
//! template.yaml (`LoggingConfig` → `AWS_LAMBDA_LOG_LEVEL`/`_FORMAT`, `Environment` →
//! `RUST_LOG`, `METRICS_SINK`) at every `LogLevel` and in every samconfig.toml environment;
//! its Embedded Metric Format lines are rendered by the function's own emitters. Then a model
//! of Lambda's rule, written here from the Lambda documentation, decides which lines reach
//! CloudWatch Logs: every metric line must, and no log line under the operator's level may.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use streamwatch_adapters::alert_state::EmbeddedAlertStateStore;
use streamwatch_adapters::sns::EmbeddedNotifier;
use streamwatch_adapters::windows::EmbeddedWindowStore;
use streamwatch_adapters::{EmbeddedAlertOutbox, EmbeddedMetricSink, EmfSink};
use streamwatch_core::KinesisEvent;
use streamwatch_tests::{template, workspace_root};

// ------------------------------------------------------------------ Lambda's rule, modelled

/// Lambda's application log levels, least severe first.
const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

fn rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| l.eq_ignore_ascii_case(level))
}

/// Whether Lambda sends `line` (one line of the function's stdout) to CloudWatch Logs when
/// the function's `ApplicationLogLevel` is `configured`, per "Log-level filtering" in the
/// Lambda Developer Guide: a JSON object's `"level"` value is its level; if that value is
/// missing or invalid the line is INFO. The guide also says a line without a valid RFC 3339
/// `timestamp` is assigned INFO; this model takes that literally (the stricter reading), and
/// a line that is not a JSON object is INFO too. Kept: level at or above the configured one.
fn lambda_keeps(line: &str, configured: &str) -> bool {
    let configured = rank(configured).expect("a Lambda log level");
    let info = rank("INFO").unwrap_or(2);
    let level = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(o)) => {
            let stated = o.get("level").and_then(Value::as_str).and_then(rank);
            let timestamp_ok = o
                .get("timestamp")
                .and_then(Value::as_str)
                .is_some_and(rfc3339);
            match stated {
                Some(r) if timestamp_ok => r,
                _ => info,
            }
        }
        _ => info,
    };
    level >= configured
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20 || !digits(0..4) || !digits(5..7) || !digits(8..10) || !digits(11..13) {
        return false;
    }
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' {
        return false;
    }
    if !digits(14..16) || b[16] != b':' || !digits(17..19) {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest.eq_ignore_ascii_case("z")
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':')
}

#[test]
fn the_model_follows_the_documented_examples() {
    let ts = "2024-11-02T16:51:31.587199Z";
    let debug = format!(r#"{{"level": "debug", "msg": "m", "timestamp": "{ts}"}}"#);
    assert!(lambda_keeps(&debug, "DEBUG") && !lambda_keeps(&debug, "INFO"));
    let warn = format!(r#"{{"level": "WARN", "timestamp": "{ts}"}}"#);
    assert!(lambda_keeps(&warn, "WARN") && !lambda_keeps(&warn, "ERROR"));
    // No level, an invalid level, no timestamp, not JSON: all INFO.
    for info in [
        r#"{"_aws": {"Timestamp": 1, "CloudWatchMetrics": []}, "n": 1}"#.to_owned(),
        format!(r#"{{"level": "LOUD", "timestamp": "{ts}"}}"#),
        r#"{"level": "ERROR"}"#.to_owned(),
        "plain text".to_owned(),
    ] {
        assert!(
            lambda_keeps(&info, "INFO") && !lambda_keeps(&info, "WARN"),
            "{info}"
        );
    }
    assert!(rfc3339("2026-11-30T23:01:02+01:00") && !rfc3339("2026-11-30 23:01:02Z"));
}

// ------------------------------------------------------------------ the deployments

/// `name → value` of each samconfig.toml environment's `parameter_overrides`.
fn samconfig_overrides() -> BTreeMap<String, HashMap<String, String>> {
    let text = std::fs::read_to_string(workspace_root().join("samconfig.toml")).expect("samconfig");
    let mut out = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_owned();
        }
        let Some(value) = line.strip_prefix("parameter_overrides") else {
            continue;
        };
        let value = value.trim_start().trim_start_matches('=').trim();
        // A TOML basic string: the outer quotes, then `\"` for each inner quote.
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value)
            .replace("\\\"", "\"");
        let params = value
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        let env = section.split('.').next().unwrap_or_default().to_owned();
        out.insert(env, params);
    }
    out
}

/// A template value resolved with `params` (else the parameters' defaults): `Ref` to a
/// parameter, literal strings. Anything else is not a value these checks read.
fn resolve(t: &Value, params: &HashMap<String, String>, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            let name = o.get("Ref")?.as_str()?;
            params.get(name).cloned().or_else(|| {
                let d = &t["Parameters"][name]["Default"];
                d.as_str().map(str::to_owned)
            })
        }
        _ => None,
    }
}

/// The variables Lambda gives one function's process, as far as logging and the metric
/// sink go: its `Environment` merged over `Globals`, and its `LoggingConfig` (else the
/// global one) as `AWS_LAMBDA_LOG_LEVEL` / `AWS_LAMBDA_LOG_FORMAT`.
fn lambda_env(
    t: &Value,
    function: &str,
    params: &HashMap<String, String>,
) -> HashMap<String, String> {
    let props = &t["Resources"][function]["Properties"];
    let globals = &t["Globals"]["Function"];
    let mut env = HashMap::new();
    for vars in [
        &globals["Environment"]["Variables"],
        &props["Environment"]["Variables"],
    ] {
        for (k, v) in vars.as_object().into_iter().flatten() {
            if let Some(v) = resolve(t, params, v) {
                env.insert(k.clone(), v);
            }
        }
    }
    let logging = |key: &str| {
        let v = &props["LoggingConfig"][key];
        let v = if v.is_null() {
            &globals["LoggingConfig"][key]
        } else {
            v
        };
        resolve(t, params, v)
    };
    // Without an ApplicationLogLevel Lambda's default for JSON logs is INFO.
    env.insert(
        "AWS_LAMBDA_LOG_LEVEL".into(),
        logging("ApplicationLogLevel").unwrap_or_else(|| "INFO".into()),
    );
    env.insert(
        "AWS_LAMBDA_LOG_FORMAT".into(),
        logging("LogFormat").unwrap_or_else(|| "Text".into()),
    );
    env
}

/// Every deployment to check: each samconfig.toml environment, and the template's defaults
/// with each allowed `LogLevel` and each `MetricsSink`.
fn deployments(t: &Value) -> Vec<(String, HashMap<String, String>)> {
    let mut out: Vec<(String, HashMap<String, String>)> = samconfig_overrides()
        .into_iter()
        .map(|(env, p)| (format!("samconfig {env}"), p))
        .collect();
    assert!(
        out.iter().any(|(name, _)| name == "samconfig prod"),
        "{out:?}"
    );
    let levels = t["Parameters"]["LogLevel"]["AllowedValues"]
        .as_array()
        .expect("LogLevel values");
    for level in levels.iter().filter_map(Value::as_str) {
        for sink in ["api", "emf"] {
            let params = [("LogLevel", level), ("MetricsSink", sink)]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into();
            out.push((format!("LogLevel={level} MetricsSink={sink}"), params));
        }
    }
    out
}

// ------------------------------------------------------------------ what a function writes

/// The function's stdout: log lines and EMF lines, one buffer as in the process.
#[derive(Clone, Default)]
struct Stdout(Arc<Mutex<Vec<u8>>>);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Stdout {
    fn println(&self, line: &str) {
        let mut out = self.clone();
        let _ = writeln!(out, "{line}");
    }
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `f` with the subscriber the function's binary installs under `env`.
fn with_function_logging<F: std::future::Future>(
    env: &HashMap<String, String>,
    out: &Stdout,
    f: impl FnOnce() -> F,
) {
    let writer = out.clone();
    let subscriber = streamwatch_adapters::logging::subscriber(
        |name| env.get(name).cloned(),
        move || writer.clone(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    tracing::subscriber::with_default(subscriber, || rt.block_on(f()));
}

/// A sample event with one more record whose payload is not JSON (a WARN line).
fn with_malformed(sample: &str) -> Value {
    let mut event: Value = serde_json::from_str(sample).expect("sample event");
    let records = event["Records"].as_array_mut().expect("Records");
    let mut bad = records[0].clone();
    if bad.get("kinesis").is_some() {
        bad["kinesis"]["data"] = json!(B64.encode(b"not json"));
        bad["kinesis"]["sequenceNumber"] =
            json!("49590338271490256608559692538361571095921575989136599999");
    } else {
        bad["dynamodb"]["NewImage"]["alert"]["S"] = json!("not json");
        bad["dynamodb"]["SequenceNumber"] = json!("4421584500000000017450439199");
        bad["eventID"] = json!("e-malformed");
    }
    records.push(bad);
    event
}

/// 2026-11-21T12:30:00Z.
const NOW: i64 = 1_795_264_200_000_000;

fn metrics_publisher(env: &HashMap<String, String>) -> Vec<String> {
    let out = Stdout::default();
    let event: KinesisEvent = serde_json::from_value(with_malformed(include_str!(
        "../../events/metrics-publisher-bad-input.json"
    )))
    .expect("event");
    let vars: HashMap<String, String> = [
        ("ALERTS_TABLE".to_owned(), "alerts".to_owned()),
        ("METRICS_SINK".to_owned(), env["METRICS_SINK"].clone()),
    ]
    .into();
    let config = metrics_publisher::Config::from_source(&vars).expect("config");
    with_function_logging(env, &out, || async {
        // main.rs: the EMF sink writes to stdout; the API sink writes nothing there.
        if config.sink == metrics_publisher::SinkKind::Emf {
            let deps = metrics_publisher::Deps {
                config: config.clone(),
                sink: EmfSink::new(out.clone()),
                outbox: EmbeddedAlertOutbox::new(),
            };
            let (_, report) = metrics_publisher::process(&deps, &event, NOW).await;
            assert!(report.malformed > 0, "{report:?}");
        } else {
            let deps = metrics_publisher::Deps {
                config: config.clone(),
                sink: EmbeddedMetricSink::new(),
                outbox: EmbeddedAlertOutbox::new(),
            };
            metrics_publisher::process(&deps, &event, NOW).await;
        }
    });
    out.lines()
}

struct Fixed(AtomicI64);
impl window_aggregator::Clock for Fixed {
    fn now_micros(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn window_aggregator(env: &HashMap<String, String>) -> Vec<String> {
    let out = Stdout::default();
    let event: KinesisEvent = serde_json::from_value(with_malformed(include_str!(
        "../../events/window-aggregator-changes-milli.json"
    )))
    .expect("event");
    let vars: HashMap<String, String> = [
        ("WINDOWS_TABLE".to_owned(), "windows".to_owned()),
        ("ALERTS_TABLE".to_owned(), "alerts".to_owned()),
    ]
    .into();
    let deps = window_aggregator::Deps {
        config: window_aggregator::Config::from_source(&vars).expect("config"),
        store: EmbeddedWindowStore::new(),
        outbox: EmbeddedAlertOutbox::new(),
        clock: Fixed(AtomicI64::new(NOW)),
    };
    with_function_logging(env, &out, || async {
        let (_, report) = window_aggregator::process_batch(&deps, &event).await;
        assert!(report.malformed > 0, "{report:?}");
        // What `handle` prints after a batch: the report as one EMF line.
        out.println(&report.emf(&deps.config.ops_namespace, NOW / 1000));
    });
    out.lines()
}

fn alerter(env: &HashMap<String, String>) -> Vec<String> {
    let out = Stdout::default();
    let event: aws_lambda_events::event::dynamodb::Event = serde_json::from_value(with_malformed(
        include_str!("../../events/alerter-firing.json"),
    ))
    .expect("event");
    let deps = alerter::Deps {
        store: EmbeddedAlertStateStore::new(),
        notifier: EmbeddedNotifier::new(),
        clock: alerter::ManualClock::new(1_800_000_000_000_000),
        settings: alerter::Settings {
            repeat_interval: std::time::Duration::from_secs(900),
            claim_lease: std::time::Duration::from_secs(30),
            claim_wait: std::time::Duration::ZERO,
            retry: alerter::RetryPolicy::default(),
        },
    };
    with_function_logging(env, &out, || async {
        let (_, report) = alerter::process(&deps, &event, "inv-1").await;
        assert_eq!((report.malformed, report.sent()), (1, 1), "{report:?}");
        // What `handler` prints after a batch.
        out.println(&report.emf("streamwatch-alerter", (NOW / 1000) as u128));
    });
    out.lines()
}

/// Runs a function's handler under the given Lambda environment; returns its stdout lines.
type RunFunction = fn(&HashMap<String, String>) -> Vec<String>;

fn is_metric_line(line: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v["_aws"]["CloudWatchMetrics"].is_array())
}

#[test]
fn every_metric_line_reaches_cloudwatch_at_every_log_level() {
    let t = template();
    let functions: [(&str, RunFunction); 3] = [
        ("MetricsPublisherFunction", metrics_publisher),
        ("WindowAggregatorFunction", window_aggregator),
        ("AlerterFunction", alerter),
    ];
    let mut metric_lines = 0;
    for (deployment, params) in deployments(&t) {
        for (function, run) in functions {
            let env = lambda_env(&t, function, &params);
            let at = format!("{deployment}, {function} ({env:?})");
            let lambda_level = &env["AWS_LAMBDA_LOG_LEVEL"];
            let app_level = params
                .get("LogLevel")
                .cloned()
                .or_else(|| {
                    t["Parameters"]["LogLevel"]["Default"]
                        .as_str()
                        .map(str::to_owned)
                })
                .expect("LogLevel");
            let lines = run(&env);
            let metrics: Vec<&String> = lines.iter().filter(|l| is_metric_line(l)).collect();
            let expect_metrics =
                function != "MetricsPublisherFunction" || env["METRICS_SINK"] == "emf";
            assert_eq!(
                !metrics.is_empty(),
                expect_metrics,
                "{at}: metric lines {metrics:?}"
            );
            for line in &metrics {
                assert!(
                    lambda_keeps(line, lambda_level),
                    "{at}: Lambda at {lambda_level} drops the metric line {line}"
                );
                metric_lines += 1;
            }
            // The operator's level still holds for the log lines: none below it is written,
            // and the malformed record's line (WARN or ERROR) is written whenever WARN is.
            let logs: Vec<Value> = lines
                .iter()
                .filter(|l| !is_metric_line(l))
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{at}: {e}: {l}")))
                .collect();
            for log in &logs {
                let level = log["level"].as_str().and_then(rank);
                assert!(
                    level >= rank(&app_level),
                    "{at}: a line under LogLevel {app_level}: {log}"
                );
            }
            if rank(&app_level) <= rank("WARN") {
                assert!(
                    logs.iter()
                        .any(|l| l["level"].as_str().and_then(rank) >= rank("WARN")),
                    "{at}: the malformed record's line is missing: {logs:?}"
                );
            }
        }
    }
    assert!(metric_lines > 30, "{metric_lines} metric lines checked");
}
