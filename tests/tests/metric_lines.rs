//! Metric lines survive Lambda's log-level filtering. Each function's real handler runs over
//! its sample events plus a malformed record, under the subscriber its binary installs
//! (`logging::subscriber`), configured from the variables Lambda would set from
//! template.yaml (`LoggingConfig` → `AWS_LAMBDA_LOG_LEVEL`/`_FORMAT`, `Environment` →
//! `RUST_LOG`, `METRICS_SINK`) at every `LogLevel` and in every samconfig.toml environment;
//! its Embedded Metric Format lines are rendered by the function's own emitters. Then a model
//! of Lambda's rule, written here from the Lambda documentation, decides which lines reach
//! CloudWatch Logs: every metric line must, and no log line under the operator's level may.
//!
//! The same rendered output is where the functions' metrics are read from for the second
//! check: every metric the dashboard and the alarms reference (namespace, name, dimensions)
//! is one a function emits. Both checks share the function runners, hence one file.

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

/// Stack name the checks deploy as (samconfig.toml's default).
const STACK: &str = "streamwatch";

/// A template value resolved with `params` (else the parameters' defaults), as
/// CloudFormation would: `Ref` to a parameter is its value, to a resource its logical id
/// (a function's, its `FunctionName`), `Fn::Sub` substitutes both and `AWS::StackName`.
fn resolve(t: &Value, params: &HashMap<String, String>, v: &Value) -> Option<String> {
    let name_of = |name: &str| -> Option<String> {
        match name {
            "AWS::StackName" => return Some(STACK.to_owned()),
            "AWS::Region" => return Some("us-east-1".to_owned()),
            "AWS::AccountId" => return Some("123456789012".to_owned()),
            "AWS::Partition" => return Some("aws".to_owned()),
            _ => {}
        }
        if let Some(v) = params.get(name) {
            return Some(v.clone());
        }
        let d = &t["Parameters"][name]["Default"];
        if !d.is_null() {
            return Some(d.as_str().map_or_else(|| d.to_string(), str::to_owned));
        }
        let r = &t["Resources"][name];
        let function_name = &r["Properties"]["FunctionName"];
        if r["Type"] == "AWS::Serverless::Function" && !function_name.is_null() {
            return resolve(t, params, function_name);
        }
        (!r.is_null()).then(|| name.to_owned())
    };
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => {
            if let Some(name) = o.get("Ref").and_then(Value::as_str) {
                return name_of(name);
            }
            let mut text = o.get("Fn::Sub")?.as_str()?.to_owned();
            while let Some(start) = text.find("${") {
                let end = start + text[start..].find('}')?;
                let value = name_of(&text[start + 2..end])?;
                text.replace_range(start..=end, &value);
            }
            Some(text)
        }
        _ => None,
    }
}

/// The variables Lambda gives one function's process: its `Environment` merged over
/// `Globals`, its name, and its `LoggingConfig` (else the global one) as
/// `AWS_LAMBDA_LOG_LEVEL` / `AWS_LAMBDA_LOG_FORMAT`.
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
    let function_name =
        resolve(t, params, &props["FunctionName"]).unwrap_or_else(|| function.into());
    env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), function_name);
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
    let config = metrics_publisher::Config::from_source(env).expect("config");
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
    let deps = window_aggregator::Deps {
        config: window_aggregator::Config::from_source(env).expect("config"),
        store: EmbeddedWindowStore::new(),
        outbox: EmbeddedAlertOutbox::new(),
        probe: streamwatch_adapters::shards::EmbeddedShardProbe::with_shards(2),
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
        grouping: alerter::Grouping::off(),
        silences: alerter::Silences::off(),
        store: EmbeddedAlertStateStore::new(),
        notifier: EmbeddedNotifier::new(),
        clock: alerter::ManualClock::new(1_800_000_000_000_000),
        settings: alerter::Config::from_source(env)
            .expect("config")
            .settings(),
    };
    with_function_logging(env, &out, || async {
        let (_, report) = alerter::process(&deps, &event, "inv-1").await;
        assert_eq!((report.malformed, report.sent()), (1, 1), "{report:?}");
        // What `handler` prints after a batch.
        out.println(&report.emf(&env["AWS_LAMBDA_FUNCTION_NAME"], (NOW / 1000) as u128));
        // What the recovery schedule prints after a pass (`alerter::handle`).
        let recovery = alerter::resume(&deps, "inv-2").await;
        out.println(&recovery.emf(&env["AWS_LAMBDA_FUNCTION_NAME"], (NOW / 1000) as u128));
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

// ------------------------------------------------------------------ dashboard and alarms

/// A metric as CloudWatch keys it: namespace, name, and dimensions (name → value).
type Metric = (String, String, BTreeMap<String, String>);

/// The metrics each function emits, read off its own EMF output in the `emf` deployment
/// (the API sink publishes the same datums), with the dimension values it writes.
fn emitted(t: &Value) -> Vec<Metric> {
    let params: HashMap<String, String> = [("MetricsSink".to_owned(), "emf".to_owned())].into();
    let functions: [(&str, RunFunction); 3] = [
        ("MetricsPublisherFunction", metrics_publisher),
        ("WindowAggregatorFunction", window_aggregator),
        ("AlerterFunction", alerter),
    ];
    let mut out = Vec::new();
    for (function, run) in functions {
        for line in run(&lambda_env(t, function, &params)) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            for directive in v["_aws"]["CloudWatchMetrics"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let namespace = directive["Namespace"].as_str().unwrap_or_default();
                for set in directive["Dimensions"].as_array().into_iter().flatten() {
                    let dims: BTreeMap<String, String> = set
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|d| (d.to_owned(), v[d].as_str().unwrap_or_default().to_owned()))
                        .collect();
                    for m in directive["Metrics"].as_array().into_iter().flatten() {
                        let name = m["Name"].as_str().unwrap_or_default().to_owned();
                        out.push((namespace.to_owned(), name, dims.clone()));
                    }
                }
            }
        }
    }
    out
}

/// The metrics the dashboard's widgets plot, with CloudWatch's shorthand expanded: `"."`
/// repeats the previous row's item at that position, `"..."` the previous row's leading
/// items up to the ones given after it; a trailing object is a rendering option.
fn dashboard_metrics(t: &Value) -> Vec<Metric> {
    let params = HashMap::new();
    let sub = &t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"];
    let mut body = sub[0].as_str().expect("a DashboardBody Fn::Sub").to_owned();
    let vars = sub[1].as_object().expect("Fn::Sub variables");
    while let Some(start) = body.find("${") {
        let end = start + body[start..].find('}').expect("closing brace");
        let name = &body[start + 2..end];
        let value = match vars.get(name) {
            Some(v) => resolve_attribute(t, v),
            None => resolve(t, &params, &json!({ "Ref": name })),
        }
        .unwrap_or_else(|| panic!("dashboard variable {name}"));
        body.replace_range(start..=end, &value);
    }
    let body: Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    let mut out = Vec::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        let mut previous: Vec<String> = Vec::new();
        for row in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let items: Vec<String> = row
                .as_array()
                .expect("a metric row")
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect();
            let expanded: Vec<String> = if items.first().is_some_and(|i| i == "...") {
                let given = &items[1..];
                let keep = previous.len().saturating_sub(given.len());
                previous[..keep].iter().chain(given).cloned().collect()
            } else {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| match item.as_str() {
                        "." => previous.get(i).cloned().expect("a previous row"),
                        _ => item.clone(),
                    })
                    .collect()
            };
            let dims = expanded[2..]
                .chunks(2)
                .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
                .collect();
            out.push((expanded[0].clone(), expanded[1].clone(), dims));
            previous = expanded;
        }
    }
    out
}

/// `Fn::GetAtt [Queue, QueueName]` and `Ref` as the checks need them: the queue's logical
/// id stands for its generated name.
fn resolve_attribute(t: &Value, v: &Value) -> Option<String> {
    // `Fn::If` at the parameters' defaults (`Fn::Equals` conditions).
    if let Some(Value::Array(parts)) = v.get("Fn::If") {
        let condition = &t["Conditions"][parts.first()?.as_str()?]["Fn::Equals"];
        let holds = resolve(t, &HashMap::new(), &condition[0])?
            == resolve(t, &HashMap::new(), &condition[1])?;
        return resolve_attribute(t, parts.get(if holds { 1 } else { 2 })?);
    }
    match v.get("Fn::GetAtt") {
        Some(Value::Array(parts)) => parts.first()?.as_str().map(str::to_owned),
        Some(Value::String(dotted)) => dotted.split('.').next().map(str::to_owned),
        _ => resolve(t, &HashMap::new(), v),
    }
}

/// The metrics the alarms watch: `Namespace`/`MetricName`/`Dimensions`, or each
/// `MetricStat` of a metric-math alarm.
fn alarm_metrics(t: &Value) -> Vec<Metric> {
    let dims = |d: &Value| -> BTreeMap<String, String> {
        d.as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let name = d["Name"].as_str().unwrap_or_default().to_owned();
                (name, resolve_attribute(t, &d["Value"]).unwrap_or_default())
            })
            .collect()
    };
    let mut out = Vec::new();
    for (name, r) in t["Resources"].as_object().expect("Resources") {
        if r["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let p = &r["Properties"];
        let mut metrics = Vec::new();
        if p["MetricName"].is_string() {
            metrics.push((&p["Namespace"], &p["MetricName"], &p["Dimensions"]));
        }
        for m in p["Metrics"].as_array().into_iter().flatten() {
            let metric = &m["MetricStat"]["Metric"];
            if metric.is_object() {
                metrics.push((
                    &metric["Namespace"],
                    &metric["MetricName"],
                    &metric["Dimensions"],
                ));
            }
        }
        assert!(!metrics.is_empty(), "{name} watches no metric");
        for (namespace, metric, d) in metrics {
            let namespace = namespace.as_str().unwrap_or_default().to_owned();
            out.push((
                namespace,
                metric.as_str().unwrap_or_default().to_owned(),
                dims(d),
            ));
        }
    }
    out
}

/// The AWS services' own metrics the dashboard and alarms read, per namespace: the metric
/// names and the dimension that names the resource, with the resource types that have it.
/// These are AWS's (Lambda event-source and invocation metrics, SQS queue metrics), not
/// ours; our own are read off the functions' output above.
const AWS_METRICS: &[(&str, &[&str], &str, &str)] = &[
    (
        "AWS/Lambda",
        &[
            "IteratorAge",
            "Errors",
            "Throttles",
            "Invocations",
            "Duration",
        ],
        "FunctionName",
        "AWS::Serverless::Function",
    ),
    (
        "AWS/SQS",
        &[
            "ApproximateNumberOfMessagesVisible",
            "ApproximateAgeOfOldestMessage",
        ],
        "QueueName",
        "AWS::SQS::Queue",
    ),
    // The raw layer's delivery streams (docs/archive.md).
    (
        "AWS/Firehose",
        &["DeliveryToS3.DataFreshness", "DeliveryToS3.Success"],
        "DeliveryStreamName",
        "AWS::KinesisFirehose::DeliveryStream",
    ),
];

#[test]
fn the_dashboard_and_alarms_read_only_metrics_that_are_emitted() {
    let t = template();
    let emitted = emitted(&t);
    assert!(
        [
            "streamwatch/metrics-publisher",
            "streamwatch/window-aggregator",
            "streamwatch/alerter"
        ]
        .iter()
        .all(|ns| emitted.iter().any(|(n, _, _)| n == ns)),
        "every function's operational metrics were read: {emitted:?}"
    );
    // Names a resource's generated name stands for: functions by FunctionName, queues by
    // logical id (resolve_attribute).
    let resource_of = |value: &str| -> Option<String> {
        t["Resources"].as_object()?.iter().find_map(|(id, r)| {
            let function_name = resolve(&t, &HashMap::new(), &r["Properties"]["FunctionName"]);
            (id == value || function_name.as_deref() == Some(value))
                .then(|| r["Type"].as_str().unwrap_or_default().to_owned())
        })
    };
    let read: Vec<(&str, Metric)> = dashboard_metrics(&t)
        .into_iter()
        .map(|m| ("dashboard", m))
        .chain(alarm_metrics(&t).into_iter().map(|m| ("alarm", m)))
        .collect();
    assert!(read.len() > 20, "{read:?}");
    for (source, metric) in &read {
        let (namespace, name, dims) = metric;
        if let Some((_, names, dimension, kind)) =
            AWS_METRICS.iter().find(|(ns, ..)| ns == namespace)
        {
            assert!(names.contains(&name.as_str()), "{source}: {metric:?}");
            assert_eq!(dims.len(), 1, "{source}: {metric:?}");
            let value = dims
                .get(*dimension)
                .unwrap_or_else(|| panic!("{source}: {metric:?}"));
            assert_eq!(
                resource_of(value).as_deref(),
                Some(*kind),
                "{source}: {metric:?} names no {kind} of the template"
            );
            continue;
        }
        assert!(
            emitted.contains(metric),
            "{source} reads {metric:?}, which no function emits (namespace, name and \
             dimensions must match); emitted: {emitted:?}"
        );
    }
}
