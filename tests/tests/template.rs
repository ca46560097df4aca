//! Checks over template.yaml that cfn-lint cannot make: every stream event source is set up
//! so one bad record cannot block a shard, no policy reaches `*` outside the documented
//! exceptions, every data store is encrypted, and the topic is publishable only by the
//! alerter and the alarms.

use serde_json::Value;
use streamwatch_tests::template;

/// Actions AWS offers no resource-level permission for (README, "Permissions on `*`").
const STAR_ALLOWED: &[&str] = &[
    "cloudwatch:PutMetricData",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
];

fn functions(t: &Value) -> Vec<(&String, &Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .collect()
}

#[test]
fn every_stream_event_source_is_shard_safe() {
    let t = template();
    let mut checked = 0;
    for (name, f) in functions(&t) {
        for (event_name, event) in f["Properties"]["Events"].as_object().unwrap() {
            let kind = event["Type"].as_str().unwrap();
            if kind != "Kinesis" && kind != "DynamoDB" {
                continue;
            }
            let p = &event["Properties"];
            let at = format!("{name}.{event_name}");
            assert!(
                p["FunctionResponseTypes"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == "ReportBatchItemFailures")),
                "{at}: FunctionResponseTypes lacks ReportBatchItemFailures"
            );
            assert_eq!(
                p["BisectBatchOnFunctionError"], true,
                "{at}: BisectBatchOnFunctionError"
            );
            let retries = p["MaximumRetryAttempts"].as_i64().unwrap_or(-1);
            assert!(
                (0..=10_000).contains(&retries),
                "{at}: MaximumRetryAttempts must be finite, is {retries}"
            );
            let age = p["MaximumRecordAgeInSeconds"].as_i64().unwrap_or(-1);
            assert!(
                (60..=604_800).contains(&age),
                "{at}: MaximumRecordAgeInSeconds must be finite, is {age}"
            );
            assert!(
                p["DestinationConfig"]["OnFailure"]["Destination"].is_object(),
                "{at}: no OnFailure destination"
            );
            assert!(p["BatchSize"].is_number(), "{at}: BatchSize not chosen");
            assert!(
                p["MaximumBatchingWindowInSeconds"].is_number(),
                "{at}: batching window not chosen"
            );
            if kind == "DynamoDB" {
                let pattern = p["FilterCriteria"]["Filters"][0]["Pattern"]
                    .as_str()
                    .unwrap_or("");
                let pattern: Value = serde_json::from_str(pattern).expect("filter pattern is JSON");
                assert_eq!(
                    pattern["eventName"],
                    serde_json::json!(["INSERT"]),
                    "{at}: filter must pass only INSERTs"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 3, "three stream consumers");
}

fn statements(t: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] != "AWS::IAM::Role" {
            continue;
        }
        for policy in r["Properties"]["Policies"].as_array().into_iter().flatten() {
            for s in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                out.push((name.clone(), s.clone()));
            }
        }
    }
    out
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

#[test]
fn no_policy_uses_star_outside_the_documented_list() {
    let t = template();
    let all = statements(&t);
    assert!(all.len() > 10);
    for (role, s) in all {
        for action in as_list(&s["Action"]) {
            let action = action.as_str().unwrap();
            assert!(
                !action.contains('*') || action.ends_with(":GenerateDataKey*"),
                "{role}: wildcard action {action}"
            );
        }
        if as_list(&s["Resource"]).iter().any(|r| r == "*") {
            for action in as_list(&s["Action"]) {
                assert!(
                    STAR_ALLOWED.contains(&action.as_str().unwrap()),
                    "{role}: {action} on Resource \"*\" is not in the documented list"
                );
            }
            if as_list(&s["Action"])
                .iter()
                .any(|a| a == "cloudwatch:PutMetricData")
            {
                assert!(
                    s["Condition"]["StringEquals"]["cloudwatch:namespace"].is_array(),
                    "{role}: PutMetricData must be limited to our namespaces"
                );
            }
        }
    }
    for (name, f) in functions(&t) {
        assert!(
            f["Properties"]["Role"].is_object(),
            "{name}: must use its explicit role, not SAM's generated one"
        );
        assert!(
            f["Properties"]["Policies"].is_null(),
            "{name}: policies belong on the explicit role"
        );
    }
}

#[test]
fn every_data_store_is_encrypted() {
    let t = template();
    let mut stores = 0;
    for (name, r) in t["Resources"].as_object().unwrap() {
        let p = &r["Properties"];
        match r["Type"].as_str().unwrap() {
            "AWS::Kinesis::Stream" => {
                assert_eq!(p["StreamEncryption"]["EncryptionType"], "KMS", "{name}")
            }
            "AWS::DynamoDB::Table" => {
                assert_eq!(p["SSESpecification"]["SSEEnabled"], true, "{name}")
            }
            "AWS::SNS::Topic" | "AWS::SQS::Queue" => assert!(
                p["KmsMasterKeyId"].is_object() || p["KmsMasterKeyId"].is_string(),
                "{name}"
            ),
            _ => continue,
        }
        stores += 1;
    }
    assert_eq!(stores, 2 + 3 + 1 + 3, "streams, tables, topic, queues");
}

#[test]
fn only_the_alerter_and_alarms_publish_to_the_topic() {
    let t = template();
    let policy = &t["Resources"]["AlertsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let deny = policy
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Effect"] == "Deny")
        .expect("a Deny statement");
    assert_eq!(
        deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"]["Fn::GetAtt"][0],
        "AlerterRole"
    );
    for (role, s) in statements(&t) {
        if as_list(&s["Action"]).iter().any(|a| a == "sns:Publish") {
            assert_eq!(role, "AlerterRole", "only the alerter may publish");
        }
    }
}

/// Resolves an environment value of the template the way CloudFormation would at the
/// parameters' defaults; resources resolve to their logical names.
fn resolve(t: &Value, v: &Value) -> String {
    let param = |name: &str| -> Option<String> {
        let d = &t["Parameters"][name]["Default"];
        (!d.is_null()).then(|| d.as_str().map_or_else(|| d.to_string(), str::to_owned))
    };
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(o) if o.contains_key("Ref") => {
            let name = o["Ref"].as_str().unwrap();
            param(name).unwrap_or_else(|| name.to_owned())
        }
        Value::Object(o) if o.contains_key("Fn::GetAtt") => o["Fn::GetAtt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("."),
        Value::Object(o) if o.contains_key("Fn::Sub") => {
            let mut s = o["Fn::Sub"].as_str().expect("simple Fn::Sub").to_owned();
            while let Some(start) = s.find("${") {
                let end = start + s[start..].find('}').unwrap();
                let name = s[start + 2..end].to_owned();
                let value = param(&name).unwrap_or_else(|| name.clone());
                s.replace_range(start..=end, &value);
            }
            s
        }
        other => panic!("cannot resolve {other}"),
    }
}

/// The template's environment for a function, resolved at the parameters' defaults.
fn environment(t: &Value, function: &str) -> std::collections::HashMap<String, String> {
    t["Resources"][function]["Properties"]["Environment"]["Variables"]
        .as_object()
        .unwrap_or_else(|| panic!("{function} has no environment"))
        .iter()
        .map(|(k, v)| (k.clone(), resolve(t, v)))
        .collect()
}

/// The variables a function's `Config` reads are exactly the ones the template sets, and
/// the template's values (at the parameters' defaults) pass the function's own validation.
fn check_environment<C, E: std::fmt::Display>(
    function: &str,
    from_source: impl Fn(&Recording<std::collections::HashMap<String, String>>) -> Result<C, E>,
) {
    let t = template();
    let env = environment(&t, function);
    let set: std::collections::BTreeSet<String> = env.keys().cloned().collect();
    let recording = Recording::new(env);
    if let Err(e) = from_source(&recording) {
        panic!("{function}: the template's environment fails the function's config: {e}");
    }
    assert_eq!(
        recording.asked(),
        set,
        "{function}: variables read by Config (left) differ from the template's (right)"
    );
}

use streamwatch_core::config::Recording;

#[test]
fn alerter_environment_matches_its_config() {
    check_environment("AlerterFunction", |src| {
        alerter::config::Config::from_source(src)
    });
}

#[test]
fn metrics_publisher_environment_matches_its_config() {
    check_environment("MetricsPublisherFunction", |src| {
        metrics_publisher::config::Config::from_source(src)
    });
}

#[test]
fn window_aggregator_environment_matches_its_config() {
    check_environment("WindowAggregatorFunction", |src| {
        window_aggregator::config::Config::from_source(src)
    });
}
