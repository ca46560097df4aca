//! Checks over template.yaml that cfn-lint cannot make: every stream event source is set up
//! so one bad record cannot block a shard, no policy reaches `*` outside the documented
//! exceptions, every data store is encrypted, and the topic is publishable only by the
//! alerter and the alarms.

use serde_json::Value;
use streamwatch_tests::template;

/// Actions AWS offers no resource-level permission for (docs/deploy.md, "Permissions on `*`").
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

/// The statements of the functions' roles (the archive's roles are checked apart, below).
fn function_statements(t: &Value) -> Vec<(String, Value)> {
    let roles: std::collections::BTreeSet<String> = functions(t)
        .into_iter()
        .flat_map(|(_, f)| refs(&f["Properties"]["Role"]))
        .collect();
    statements(t)
        .into_iter()
        .filter(|(role, _)| roles.contains(role))
        .collect()
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
            "AWS::S3::Bucket" => {
                let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
                let default = &sse["ServerSideEncryptionByDefault"];
                assert_eq!(default["SSEAlgorithm"], "aws:kms", "{name}");
                assert_eq!(
                    refs(&default["KMSMasterKeyID"]),
                    ["AlertsKey".to_owned()].into()
                );
            }
            // Objects written with the stack's key; a direct-put stream's buffer as well (a
            // stream source's buffer is the encrypted stream itself).
            "AWS::KinesisFirehose::DeliveryStream" => {
                let kms = &p["ExtendedS3DestinationConfiguration"]["EncryptionConfiguration"]["KMSEncryptionConfig"]
                    ["AWSKMSKeyARN"];
                assert_eq!(refs(kms), ["AlertsKey".to_owned()].into(), "{name}");
                if p["DeliveryStreamType"] == "DirectPut" {
                    let input = &p["DeliveryStreamEncryptionConfigurationInput"];
                    assert_eq!(input["KeyType"], "CUSTOMER_MANAGED_CMK", "{name}");
                }
            }
            _ => continue,
        }
        stores += 1;
    }
    assert_eq!(
        stores,
        2 + 3 + 1 + 3 + 1 + 3,
        "streams, tables, topic, queues, archive bucket, delivery streams"
    );
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
    resolve_with(t, v, &std::collections::HashMap::new())
}

/// [`resolve`] with some parameters set to other values than their defaults.
fn resolve_with(t: &Value, v: &Value, set: &std::collections::HashMap<&str, &str>) -> String {
    let param = |name: &str| -> Option<String> {
        if let Some(value) = set.get(name) {
            return Some((*value).to_owned());
        }
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
        // A condition of `Fn::Equals` / `Fn::Not` over resolvable values.
        Value::Object(o) if o.contains_key("Fn::If") => {
            let parts = o["Fn::If"].as_array().unwrap();
            let holds = condition(t, &t["Conditions"][parts[0].as_str().unwrap()], set);
            resolve_with(t, &parts[if holds { 1 } else { 2 }], set)
        }
        other => panic!("cannot resolve {other}"),
    }
}

fn condition(t: &Value, c: &Value, set: &std::collections::HashMap<&str, &str>) -> bool {
    if let Some(pair) = c["Fn::Equals"].as_array() {
        return resolve_with(t, &pair[0], set) == resolve_with(t, &pair[1], set);
    }
    if let Some(inner) = c["Fn::Not"].as_array() {
        return !condition(t, &inner[0], set);
    }
    panic!("cannot evaluate condition {c}")
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

// ------------------------------------------------------------------ least privilege

/// Logical ids a policy value refers to: `Ref`, `Fn::GetAtt` and `${X}` / `${X.Attr}` in
/// `Fn::Sub` (pseudo parameters like `AWS::Region` excluded), anywhere inside `v`.
fn referenced(v: &Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(name)) = o.get("Ref") {
                out.insert(name.clone());
            }
            if let Some(Value::Array(parts)) = o.get("Fn::GetAtt")
                && let Some(Value::String(name)) = parts.first()
            {
                out.insert(name.clone());
            }
            if let Some(Value::String(name)) = o.get("Fn::GetAtt") {
                out.insert(name.split('.').next().unwrap_or(name).to_owned());
            }
            if let Some(sub) = o.get("Fn::Sub") {
                let text = match sub {
                    Value::String(s) => s.as_str(),
                    Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or(""),
                    _ => "",
                };
                let mut rest = text;
                while let Some(start) = rest.find("${") {
                    let Some(len) = rest[start..].find('}') else {
                        break;
                    };
                    let name = &rest[start + 2..start + len];
                    out.insert(name.split('.').next().unwrap_or(name).to_owned());
                    rest = &rest[start + len..];
                }
            }
            for child in o.values() {
                referenced(child, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| referenced(c, out)),
        _ => {}
    }
    out.retain(|n| !n.starts_with("AWS::"));
}

fn refs(v: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    referenced(v, &mut out);
    out
}

/// Which function owns which resource, read from the functions themselves: the stream of
/// its event source, its on-failure queue, its log group, its role, and every resource
/// only its environment names. Resources several functions name (the alerts outbox, the
/// key) are shared and owned by none.
fn owners(t: &Value) -> std::collections::BTreeMap<String, String> {
    let mut named: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for (function, f) in functions(t) {
        let p = &f["Properties"];
        for part in [
            &p["Events"],
            &p["Environment"],
            &p["LoggingConfig"],
            &p["Role"],
        ] {
            for r in refs(part) {
                named.entry(r).or_default().insert(function.clone());
            }
        }
    }
    named
        .into_iter()
        .filter(|(r, fs)| fs.len() == 1 && t["Resources"].get(r).is_some())
        .map(|(r, fs)| (r, fs.into_iter().next().unwrap_or_default()))
        .collect()
}

/// The function each role belongs to.
fn role_function(t: &Value, role: &str) -> String {
    functions(t)
        .into_iter()
        .find(|(_, f)| refs(&f["Properties"]["Role"]).contains(role))
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| panic!("{role} belongs to no function"))
}

#[test]
fn no_role_reaches_another_functions_resources() {
    let t = template();
    let owners = owners(&t);
    // Each function owns at least its stream (or table stream), queue, log group and role.
    for (function, _) in functions(&t) {
        let owned = owners.values().filter(|o| *o == function).count();
        assert!(
            owned >= 4,
            "{function} owns only {owned} resources: {owners:?}"
        );
    }
    let mut checked = 0;
    for (role, s) in function_statements(&t) {
        let function = role_function(&t, &role);
        for r in refs(&s["Resource"]) {
            if let Some(owner) = owners.get(&r) {
                assert_eq!(
                    owner, &function,
                    "{role} (of {function}) reaches {r}, which belongs to {owner}: {s}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked} resource references checked");
}

#[test]
fn shared_resources_are_reached_only_as_each_function_needs() {
    let t = template();
    // (role, shared resource) → the only actions it may have on it. The producers only
    // append alerts; only the alerter reads the outbox (stream and its state items) and
    // publishes; everyone may use the key of the queues/topic they send to.
    let allowed: &[(&str, &str, &[&str])] = &[
        // Per-event alerts in batches: existing ids read, the rest written (see template).
        (
            "MetricsPublisherRole",
            "AlertsTable",
            &["dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"],
        ),
        (
            "WindowAggregatorRole",
            "AlertsTable",
            &[
                "dynamodb:PutItem",
                "dynamodb:GetItem",
                "dynamodb:UpdateItem",
            ],
        ),
        (
            "AlerterRole",
            "AlertsTable",
            &[
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                // The sparse index of unsent notifications (recovery).
                "dynamodb:Query",
            ],
        ),
        ("AlerterRole", "AlertsTopic", &["sns:Publish"]),
        // The accidents' own topic, when the AccidentTopicArn parameter routes them there.
        ("AlerterRole", "AccidentTopicArn", &["sns:Publish"]),
    ];
    let key_actions = ["kms:GenerateDataKey", "kms:Decrypt"];
    let owners = owners(&t);
    for (role, s) in function_statements(&t) {
        let actions: Vec<String> = as_list(&s["Action"])
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        for r in refs(&s["Resource"]) {
            if owners.contains_key(&r) {
                continue;
            }
            if r == "AlertsKey" {
                assert!(
                    actions.iter().all(|a| key_actions.contains(&a.as_str())),
                    "{role}: {actions:?} on the key"
                );
                continue;
            }
            let Some((_, _, ok)) = allowed.iter().find(|(ro, re, _)| *ro == role && *re == r)
            else {
                panic!("{role} reaches shared resource {r} without a listed need: {s}");
            };
            for a in &actions {
                assert!(ok.contains(&a.as_str()), "{role}: {a} on {r} is not needed");
            }
        }
    }
}

#[test]
fn the_topic_policy_admits_only_the_alerter_and_the_alarms() {
    let t = template();
    let policies: Vec<&Value> = t["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::SNS::TopicPolicy")
        .collect();
    assert_eq!(policies.len(), 1, "one topic policy");
    let topic_statements = policies[0]["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    for s in topic_statements {
        let actions = as_list(&s["Action"]);
        if s["Effect"] == "Allow" {
            // The only grant: the CloudWatch alarms service of this account, Publish only.
            assert_eq!(
                s["Principal"],
                serde_json::json!({"Service": "cloudwatch.amazonaws.com"}),
                "{s}"
            );
            assert_eq!(actions, vec![Value::from("sns:Publish")], "{s}");
            assert_eq!(
                s["Condition"]["StringEquals"]["aws:SourceAccount"],
                serde_json::json!({"Ref": "AWS::AccountId"}),
                "{s}: alarms of other accounts must not publish"
            );
        }
    }
    let deny = topic_statements
        .iter()
        .find(|s| s["Effect"] == "Deny")
        .expect("a Deny statement");
    assert_eq!(deny["Principal"], "*");
    assert!(as_list(&deny["Action"]).contains(&Value::from("sns:Publish")));
    // Denied to every principal but the alerter's role; service principals (the alarms)
    // are left to the Allow above.
    let not_equals = deny["Condition"]["StringNotEquals"].as_object().unwrap();
    assert_eq!(not_equals.len(), 1, "{deny}");
    assert_eq!(
        refs(&not_equals["aws:PrincipalArn"]),
        ["AlerterRole".to_owned()].into()
    );
    assert_eq!(
        deny["Condition"]["Null"]["aws:PrincipalServiceName"],
        "true"
    );
    // No identity policy but the alerter's grants any SNS action.
    for (role, s) in statements(&t) {
        if as_list(&s["Action"])
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.starts_with("sns:")))
        {
            assert_eq!(role, "AlerterRole", "{s}");
        }
    }
}

#[test]
fn no_unchecked_kind_of_data_store_exists() {
    // every_data_store_is_encrypted checks these types; any other resource type must be
    // one that holds no data of ours, so a new store cannot slip in unencrypted.
    let stores = [
        "AWS::Kinesis::Stream",
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::SQS::Queue",
        "AWS::S3::Bucket",
        "AWS::KinesisFirehose::DeliveryStream",
    ];
    let no_data = [
        // The archive's catalogue (names, columns, locations) and its plumbing.
        "AWS::S3::BucketPolicy",
        "AWS::Glue::Database",
        "AWS::Glue::Table",
        "AWS::Logs::SubscriptionFilter",
        "AWS::Serverless::Function",
        "AWS::IAM::Role",
        "AWS::KMS::Key",
        "AWS::SNS::TopicPolicy",
        "AWS::SNS::Subscription",
        // Log groups are encrypted by CloudWatch Logs by default; log lines carry no payloads
        // (but the metrics-publisher's reject lines when CreateArchive: docs/archive.md).
        "AWS::Logs::LogGroup",
        "AWS::CloudWatch::Alarm",
        "AWS::Events::Rule",
        "AWS::Lambda::Permission",
        "AWS::SQS::QueuePolicy",
        "AWS::CloudWatch::Dashboard",
    ];
    for (name, r) in t_resources(&template()) {
        let ty = r["Type"].as_str().unwrap_or("");
        assert!(
            stores.contains(&ty) || no_data.contains(&ty),
            "{name}: resource type {ty} is neither a checked store nor known to hold no data"
        );
    }
}

fn t_resources(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

// ------------------------------------------------------------------ deadlines

/// One PutMetricData request whose every attempt runs into its deadline (the template's
/// `PUT_METRIC_DATA_TIMEOUT_SECONDS`) still gives up inside the metrics-publisher's timeout:
/// a hung connection costs a retry of that request, not a timed-out invocation and the
/// whole batch delivered again.
#[test]
fn a_put_metric_data_request_exhausts_its_retries_within_the_function_timeout() {
    use std::time::Duration;
    use streamwatch_adapters::cloudwatch::DEFAULT_RETRY;

    let t = template();
    let timeout = t["Resources"]["MetricsPublisherFunction"]["Properties"]["Timeout"]
        .as_u64()
        .or_else(|| t["Globals"]["Function"]["Timeout"].as_u64())
        .expect("the metrics-publisher has a Timeout");
    let attempt: u64 =
        environment(&t, "MetricsPublisherFunction")["PUT_METRIC_DATA_TIMEOUT_SECONDS"]
            .parse()
            .expect("PUT_METRIC_DATA_TIMEOUT_SECONDS is a number of seconds");
    let worst = DEFAULT_RETRY.worst_case(Duration::from_secs(attempt));
    assert_eq!(
        DEFAULT_RETRY.worst_case(Duration::from_secs(10)),
        Duration::from_millis(4 * 10_000 + 100 + 200 + 400)
    );
    assert!(
        worst < Duration::from_secs(timeout),
        "one request may take {worst:?}, the function's timeout is {timeout} s"
    );
}

// ------------------------------------------------------------------ parameters

/// Whether CloudFormation accepts `value` for the parameter `p`, by its documented
/// constraints: a `Number` is an integer or a decimal, within `MinValue`/`MaxValue`; a
/// `String` matches all of `AllowedPattern` and is within `MinLength`/`MaxLength`; either is
/// one of `AllowedValues` when listed.
fn cloudformation_accepts(p: &Value, value: &str) -> bool {
    let listed = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    if let Some(allowed) = p["AllowedValues"].as_array()
        && !allowed.iter().any(|a| listed(a) == value)
    {
        return false;
    }
    match p["Type"].as_str() {
        Some("Number") => {
            let numeric =
                regex_lite::Regex::new(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$").expect("regex");
            let Some(n) = numeric
                .is_match(value)
                .then(|| value.parse::<f64>().ok())
                .flatten()
            else {
                return false;
            };
            p["MinValue"].as_f64().is_none_or(|min| n >= min)
                && p["MaxValue"].as_f64().is_none_or(|max| n <= max)
        }
        Some("String") => {
            let pattern = p["AllowedPattern"].as_str().map(|pattern| {
                regex_lite::Regex::new(&format!("^(?:{pattern})$")).expect("AllowedPattern")
            });
            let len = value.chars().count() as u64;
            pattern.is_none_or(|re| re.is_match(value))
                && p["MinLength"].as_u64().is_none_or(|min| len >= min)
                && p["MaxLength"].as_u64().is_none_or(|max| len <= max)
        }
        other => panic!("parameter type {other:?} not modelled"),
    }
}

/// A function's `Config` accepts the template's environment with `set` in place of the
/// parameters' defaults.
fn config_accepts(
    t: &Value,
    function: &str,
    set: &std::collections::HashMap<&str, &str>,
) -> Result<(), String> {
    let env: std::collections::HashMap<String, String> =
        t["Resources"][function]["Properties"]["Environment"]["Variables"]
            .as_object()
            .unwrap_or_else(|| panic!("{function} has no environment"))
            .iter()
            .map(|(k, v)| (k.clone(), resolve_with(t, v, set)))
            .collect();
    let recording = Recording::new(env);
    let result = match function {
        "AlerterFunction" => alerter::config::Config::from_source(&recording).map(drop),
        "MetricsPublisherFunction" => {
            metrics_publisher::config::Config::from_source(&recording).map(drop)
        }
        "WindowAggregatorFunction" => {
            window_aggregator::config::Config::from_source(&recording).map(drop)
        }
        other => panic!("no config for {other}"),
    };
    result.map_err(|e| e.to_string())
}

/// Every value CloudFormation lets through for a number parameter is one each function
/// reading it accepts at its cold start: decimals, negatives, out-of-range and blank values
/// fail at deploy, with the parameter's constraint message, not later in a function.
#[test]
fn every_number_parameter_cloudformation_accepts_starts_the_functions() {
    let t = template();
    // Every integer to 1,000, every 97th to 100,000, and each side of every bound.
    let mut probes: Vec<String> = (0..=1_000)
        .chain((1_000..=100_000).step_by(97))
        .chain([
            3_599, 3_600, 3_601, 9_999, 10_000, 86_399, 86_400, 86_401, 99_999, 100_000,
        ])
        .map(|n: u64| n.to_string())
        .collect();
    for extra in [
        "-1", "-0", "0.5", "1.0", "60.5", "4.0", "2.5", "1e3", " 60", "60 ", "+5", "060", "", "x",
        "NaN", "inf",
    ] {
        probes.push(extra.to_owned());
    }
    let mut checked = 0;
    for (name, p) in t["Parameters"].as_object().expect("Parameters") {
        // The parameters whose values are numbers: declared so, or given a numeric default.
        let numeric = p["Type"] == "Number"
            || p["Default"]
                .as_str()
                .is_some_and(|d| !d.is_empty() && d.parse::<f64>().is_ok());
        if !numeric {
            continue;
        }
        let readers: Vec<String> = functions(&t)
            .into_iter()
            .filter(|(_, f)| refs(&f["Properties"]["Environment"]).contains(name))
            .map(|(f, _)| f.clone())
            .collect();
        if name.starts_with("Archive") {
            // The archive's lifecycle days: read by S3 (at deploy), not by a function.
            assert!(readers.is_empty(), "{name}: {readers:?}");
            assert!(
                refs(&t["Resources"]["ArchiveBucket"]).contains(name),
                "{name}"
            );
            continue;
        }
        assert!(!readers.is_empty(), "{name}: no function reads it");
        let mut accepted = 0;
        for value in &probes {
            if !cloudformation_accepts(p, value) {
                continue;
            }
            accepted += 1;
            let set = [(name.as_str(), value.as_str())].into();
            for function in &readers {
                if let Err(e) = config_accepts(&t, function, &set) {
                    panic!("{name}={value:?} passes CloudFormation but fails {function}: {e}");
                }
            }
        }
        assert!(accepted > 0, "{name}: no value is accepted");
        checked += 1;
    }
    assert!(checked >= 6, "{checked} number parameters checked");
}

/// Each role allows what Lambda itself does with it for its function's configuration (event
/// sources, on-failure queue, log group, tracing); the chaos tests check the handlers'
/// own calls, and there that nothing else is granted (`assert_role_allows`).
#[test]
fn every_role_allows_what_lambda_does_with_it() {
    for role in [
        "MetricsPublisherRole",
        "WindowAggregatorRole",
        "AlerterRole",
    ] {
        let allowed = streamwatch_tests::role_actions(role);
        let called = ["sns:Publish".to_owned()].into();
        let service = streamwatch_tests::lambda_service_actions(role, &called);
        let missing: Vec<&String> = service.iter().filter(|a| !allowed.contains(*a)).collect();
        assert!(missing.is_empty(), "{role} lacks {missing:?}");
    }
}

// ------------------------------------------------------------------ the raw layer (#20)

fn archive_resources(t: &Value, ty: &str) -> Vec<(String, Value)> {
    t_resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"] == ty)
        .collect()
}

#[test]
fn the_archive_bucket_is_private_tls_only_and_ages_out() {
    let t = template();
    let bucket = &t["Resources"]["ArchiveBucket"]["Properties"];
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            bucket["PublicAccessBlockConfiguration"][flag], true,
            "{flag}"
        );
    }
    assert_eq!(
        bucket["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
        "BucketOwnerEnforced"
    );
    let rule = &bucket["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(rule["Transitions"][0]["StorageClass"], "STANDARD_IA");
    assert_eq!(
        refs(&rule["Transitions"][0]["TransitionInDays"]),
        ["ArchiveInfrequentAccessDays".to_owned()].into()
    );
    assert_eq!(
        refs(&rule["ExpirationInDays"]),
        ["ArchiveExpirationDays".to_owned()].into()
    );
    // S3 moves objects to Standard-IA after 30 days at the earliest.
    assert!(t["Parameters"]["ArchiveInfrequentAccessDays"]["MinValue"].as_f64() >= Some(30.0));

    let policies = archive_resources(&t, "AWS::S3::BucketPolicy");
    assert_eq!(policies.len(), 1);
    let policy = &policies[0].1["Properties"];
    assert_eq!(refs(&policy["Bucket"]), ["ArchiveBucket".to_owned()].into());
    let statements = policy["PolicyDocument"]["Statement"].as_array().unwrap();
    assert!(
        statements.iter().all(|s| s["Effect"] == "Deny"),
        "only denies: {statements:?}"
    );
    let tls = statements
        .iter()
        .find(|s| s["Condition"]["Bool"]["aws:SecureTransport"] == "false")
        .expect("a statement denying plain HTTP");
    assert_eq!(tls["Principal"], "*");
    assert_eq!(tls["Action"], "s3:*");
    // Both the bucket and every object in it.
    let resources: Vec<String> = as_list(&tls["Resource"])
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(resources.len(), 2, "{resources:?}");
    assert!(
        resources.iter().any(|r| r.contains("ArchiveBucket.Arn}/*")),
        "{resources:?}"
    );
}

/// The first path segment of a Firehose prefix: `accidents/dt=…` → `accidents`.
fn top_prefix(prefix: &Value) -> String {
    prefix
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn each_archive_role_reads_its_own_source_and_writes_its_own_prefixes() {
    let t = template();
    let streams = archive_resources(&t, "AWS::KinesisFirehose::DeliveryStream");
    assert_eq!(streams.len(), 3);
    let mut sources = std::collections::BTreeSet::new();
    for (name, ds) in &streams {
        let p = &ds["Properties"];
        let dest = &p["ExtendedS3DestinationConfiguration"];
        let role = refs(&dest["RoleARN"]).into_iter().next().unwrap();
        let source = refs(&p["KinesisStreamSourceConfiguration"]["KinesisStreamARN"]);
        if p["DeliveryStreamType"] == "KinesisStreamAsSource" {
            assert_eq!(
                refs(&p["KinesisStreamSourceConfiguration"]["RoleARN"]),
                [role.clone()].into()
            );
            sources.extend(source.clone());
        }
        let top = top_prefix(&dest["Prefix"]);
        assert!(
            dest["ErrorOutputPrefix"]
                .as_str()
                .unwrap()
                .starts_with(&format!("errors/{top}/")),
            "{name}"
        );
        assert_eq!(dest["CompressionFormat"], "GZIP", "{name}");
        let r = &t["Resources"][&role];
        let trust = &r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(
            trust["Principal"]["Service"], "firehose.amazonaws.com",
            "{role}"
        );
        assert!(
            trust["Condition"]["StringEquals"]["sts:ExternalId"].is_object(),
            "{role}"
        );
        for (_, s) in statements(&t).into_iter().filter(|(ro, _)| *ro == role) {
            let actions: Vec<String> = as_list(&s["Action"])
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            let text = s["Resource"].to_string();
            for a in &actions {
                match a.split(':').next().unwrap() {
                    "kinesis" => assert_eq!(refs(&s["Resource"]), source, "{role}: {a}"),
                    "kms" => assert_eq!(refs(&s["Resource"]), ["AlertsKey".to_owned()].into()),
                    "s3" if ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]
                        .contains(&a.as_str()) =>
                    {
                        for r in as_list(&s["Resource"]) {
                            let sub = r["Fn::Sub"].as_str().unwrap_or_default();
                            assert!(
                                sub == format!("${{ArchiveBucket.Arn}}/{top}/*")
                                    || sub == format!("${{ArchiveBucket.Arn}}/errors/{top}/*"),
                                "{role}: {a} on {sub}, outside {top}/"
                            );
                        }
                    }
                    "s3" => assert_eq!(
                        s["Resource"],
                        serde_json::json!({"Fn::GetAtt": ["ArchiveBucket", "Arn"]}),
                        "{role}: {a} on {text}"
                    ),
                    other => panic!("{role}: {a} ({other}) is not needed by Firehose"),
                }
            }
        }
    }
    assert_eq!(
        sources,
        ["AccidentsStream".to_owned(), "ReadingsStream".to_owned()].into(),
        "one delivery stream per Kinesis stream"
    );
    // CloudWatch Logs may only put into the rejects stream.
    let filters = archive_resources(&t, "AWS::Logs::SubscriptionFilter");
    assert_eq!(filters.len(), 1);
    let f = &filters[0].1["Properties"];
    assert_eq!(
        refs(&f["LogGroupName"]),
        ["MetricsPublisherLogs".to_owned()].into()
    );
    let target = refs(&f["DestinationArn"]);
    let role = refs(&f["RoleArn"]).into_iter().next().unwrap();
    for (_, s) in statements(&t).into_iter().filter(|(ro, _)| *ro == role) {
        assert_eq!(refs(&s["Resource"]), target, "{s}");
        for a in as_list(&s["Action"]) {
            assert!(
                ["firehose:PutRecord", "firehose:PutRecordBatch"].contains(&a.as_str().unwrap()),
                "{a}"
            );
        }
    }
}

/// Every delivery prefix has a Glue table over it whose partition projection produces the
/// same keys Firehose writes: `<top>/dt=yyyy-MM-dd/hr=HH/`.
#[test]
fn every_archive_prefix_has_a_projected_glue_table() {
    let t = template();
    let tables = archive_resources(&t, "AWS::Glue::Table");
    let mut covered = std::collections::BTreeSet::new();
    for (name, ds) in archive_resources(&t, "AWS::KinesisFirehose::DeliveryStream") {
        let dest = &ds["Properties"]["ExtendedS3DestinationConfiguration"];
        let prefix = dest["Prefix"].as_str().unwrap();
        let top = top_prefix(&dest["Prefix"]);
        let (dt, hr) = if ds["Properties"]["DeliveryStreamType"] == "DirectPut" {
            ("!{timestamp:yyyy-MM-dd}", "!{timestamp:HH}")
        } else {
            assert_eq!(
                dest["DynamicPartitioningConfiguration"]["Enabled"], true,
                "{name}"
            );
            ("!{partitionKeyFromQuery:dt}", "!{partitionKeyFromQuery:hr}")
        };
        assert_eq!(prefix, format!("{top}/dt={dt}/hr={hr}/"), "{name}");
        let (table, def) = tables
            .iter()
            .find(|(_, tb)| {
                tb["Properties"]["TableInput"]["Parameters"]["storage.location.template"]["Fn::Sub"]
                    .as_str()
                    .is_some_and(|l| {
                        l == format!("s3://${{ArchiveBucket}}/{top}/dt=${{!dt}}/hr=${{!hr}}/")
                    })
            })
            .unwrap_or_else(|| panic!("no Glue table projects {top}/"));
        let input = &def["Properties"]["TableInput"];
        let params = &input["Parameters"];
        assert_eq!(params["projection.enabled"], "true", "{table}");
        assert_eq!(params["projection.dt.type"], "date", "{table}");
        assert_eq!(params["projection.dt.format"], "yyyy-MM-dd", "{table}");
        assert!(
            params["projection.dt.range"]
                .as_str()
                .unwrap()
                .ends_with(",NOW"),
            "{table}"
        );
        assert_eq!(params["projection.hr.type"], "integer", "{table}");
        assert_eq!(params["projection.hr.range"], "0,23", "{table}");
        assert_eq!(params["projection.hr.digits"], "2", "{table}");
        let keys: Vec<&str> = input["PartitionKeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["Name"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["dt", "hr"], "{table}");
        assert_eq!(
            input["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"],
            "org.openx.data.jsonserde.JsonSerDe"
        );
        covered.insert(top);
    }
    assert_eq!(
        covered,
        ["accidents", "readings", "rejected"]
            .map(str::to_owned)
            .into()
    );
}

/// The subscription filter selects exactly the lines the metrics-publisher writes for its
/// rejects (`{ $.KEY = "VALUE" }` on a top-level key of the JSON line), and the extraction
/// query of each stream source reads the field its records carry.
#[test]
fn the_rejects_filter_matches_the_reject_line() {
    let t = template();
    let f = &archive_resources(&t, "AWS::Logs::SubscriptionFilter")[0].1["Properties"];
    let pattern = f["FilterPattern"].as_str().unwrap();
    let inner = pattern
        .strip_prefix("{ $.")
        .and_then(|p| p.strip_suffix(" }"))
        .expect("a { $.key = \"value\" } pattern");
    let (key, value) = inner.split_once(" = ").unwrap();
    let line = metrics_publisher::reject::line(&metrics_publisher::reject::Reject {
        reason: "payload is not a JSON object".into(),
        shard: "shardId-000000000000".into(),
        sequence: "1".into(),
        sub_sequence: Some(0),
        partition_key: "k".into(),
        arrival: "2026-11-30T12:00:00Z".into(),
        data: b"not json",
    });
    let json: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json[key], value.trim_matches('"'), "{line}");
    assert!(!line.contains('\n'), "one line");
    let query = |name: &str| {
        t["Resources"][name]["Properties"]["ExtendedS3DestinationConfiguration"]
            ["ProcessingConfiguration"]["Processors"][0]["Parameters"][0]["ParameterValue"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // The accident JSON's event time (what the metrics use) and the change record's time.
    assert!(query("AccidentsArchive").contains(".Txn_Timestamp[0:10]"));
    assert_eq!(
        t["Resources"]["MetricsPublisherFunction"]["Properties"]["Environment"]["Variables"]["METRIC_TIMESTAMP_FIELD"],
        "Txn_Timestamp"
    );
    assert!(query("ReadingsArchive").contains(".dynamodb.ApproximateCreationDateTime / 1000000"));
    assert_eq!(
        t["Resources"]["ReadingsTable"]["Properties"]["KinesisStreamSpecification"]["ApproximateCreationDateTimePrecision"],
        "MICROSECOND"
    );
}

/// The producers' CSV check (`demo --csv`, `replay accidents`) asks for exactly the columns
/// the metrics-publisher's filter, alert rule, alert key and dimensions read.
#[test]
fn the_csv_column_check_covers_what_the_rules_and_dimensions_read() {
    let t = template();
    let env = environment(&t, "MetricsPublisherFunction");
    let mut read = std::collections::BTreeSet::new();
    for rule in [&env["METRIC_FILTER"], &env["ALERT_RULE"]] {
        read.insert(rule.split_whitespace().next().unwrap().to_owned());
    }
    read.insert(env["ALERT_KEY_FIELD"].clone());
    for pair in env["METRIC_DIMENSIONS"].split(',') {
        read.insert(pair.split_once('=').unwrap().1.to_owned());
    }
    let checked: std::collections::BTreeSet<String> = streamwatch_core::accident::REQUIRED_COLUMNS
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    assert_eq!(checked, read);
}

/// The demo lays out its raw layer without template.yaml: its copy of the delivery streams
/// (name, prefix, error prefix, query) is the template's.
#[test]
fn the_demos_archive_layout_is_the_templates() {
    let t = template();
    let mut from_template: Vec<(String, String, String, Option<String>)> =
        archive_resources(&t, "AWS::KinesisFirehose::DeliveryStream")
            .into_iter()
            .map(|(_, ds)| {
                let p = &ds["Properties"];
                let dest = &p["ExtendedS3DestinationConfiguration"];
                let name = p["DeliveryStreamName"]["Fn::Sub"]
                    .as_str()
                    .unwrap()
                    .replace("${AWS::StackName}", "streamwatch");
                let query = dest["ProcessingConfiguration"]["Processors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|pr| pr["Type"] == "MetadataExtraction")
                    .map(|pr| {
                        pr["Parameters"][0]["ParameterValue"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    });
                (
                    name,
                    dest["Prefix"].as_str().unwrap().to_owned(),
                    dest["ErrorOutputPrefix"].as_str().unwrap().to_owned(),
                    query,
                )
            })
            .collect();
    from_template.sort();
    let mut demo: Vec<(String, String, String, Option<String>)> =
        streamwatch_local::archive::TEMPLATE_FEEDS
            .iter()
            .map(|(n, p, e, q)| ((*n).into(), (*p).into(), (*e).into(), q.map(str::to_owned)))
            .collect();
    demo.sort();
    assert_eq!(demo, from_template);
}

/// Reject lines carry payloads: the metrics-publisher writes them only when the raw layer
/// keeps them (CreateArchive), so with the archive off its logs carry no payloads.
#[test]
fn reject_lines_are_written_only_with_the_archive() {
    let t = template();
    for (create, expected) in [("true", true), ("false", false)] {
        let set = [("CreateArchive", create)].into();
        let v = &t["Resources"]["MetricsPublisherFunction"]["Properties"]["Environment"]["Variables"]
            ["ARCHIVE_REJECTS"];
        let env: std::collections::HashMap<String, String> = [
            ("ALERTS_TABLE".to_owned(), "t".to_owned()),
            ("ARCHIVE_REJECTS".to_owned(), resolve_with(&t, v, &set)),
        ]
        .into();
        let config = metrics_publisher::config::Config::from_source(&env).unwrap();
        assert_eq!(config.archive_rejects, expected, "CreateArchive={create}");
    }
}

// ------------------------------------------------------------------ memory

/// Every function runs with glibc's mmap threshold fixed at 128 KB (SAM merges the Globals'
/// variables into each function's). Without it glibc raises the threshold to the largest
/// block freed, a batch's multi-megabyte buffers then come from the heap, and peak RSS
/// creeps from batch to batch: 56 → 72 MB over five 10,000-record window-aggregator batches
/// against 43 MB with it (`bench/lambda.sh`, docs/performance.md).
#[test]
fn every_function_runs_with_a_fixed_mmap_threshold() {
    let t = template();
    let globals = t["Globals"]["Function"]["Environment"]["Variables"]["GLIBC_TUNABLES"]
        .as_str()
        .expect("Globals sets GLIBC_TUNABLES");
    let tunables: Vec<&str> = globals.split(':').collect();
    assert!(
        tunables.contains(&"glibc.malloc.mmap_threshold=131072"),
        "{globals}"
    );
    for (name, r) in t_resources(&t) {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let own = &r["Properties"]["Environment"]["Variables"]["GLIBC_TUNABLES"];
        assert!(own.is_null(), "{name} overrides GLIBC_TUNABLES: {own}");
    }
}

/// `AccidentTopicArn`: every value CloudFormation lets through starts the alerter, and a
/// topic given routes the accident rule there (`TOPIC_ROUTES`) and may be published to;
/// a FIFO topic (the alerter sends no message group id) or another service's ARN fails
/// at deploy.
#[test]
fn the_accident_topic_parameter_routes_accidents_and_fails_at_deploy_when_bad() {
    let t = template();
    let p = &t["Parameters"]["AccidentTopicArn"];
    let arn = "arn:aws:sns:eu-west-1:123456789012:traffic-desk";
    for (value, accepted) in [
        ("", true),
        (arn, true),
        ("arn:aws-cn:sns:cn-north-1:123456789012:t_1", true),
        (
            "arn:aws:sns:eu-west-1:123456789012:traffic-desk.fifo",
            false,
        ),
        ("arn:aws:sqs:eu-west-1:123456789012:traffic-desk", false),
        ("arn:aws:sns:eu-west-1:1234:traffic-desk", false),
        ("traffic-desk", false),
    ] {
        assert_eq!(cloudformation_accepts(p, value), accepted, "{value}");
        let set = [("AccidentTopicArn", value)].into();
        if accepted && let Err(e) = config_accepts(&t, "AlerterFunction", &set) {
            panic!("AccidentTopicArn={value:?} passes CloudFormation but fails the alerter: {e}");
        }
    }
    let env = &t["Resources"]["AlerterFunction"]["Properties"]["Environment"]["Variables"];
    let set = [("AccidentTopicArn", arn)].into();
    assert_eq!(
        resolve_with(&t, &env["TOPIC_ROUTES"], &set),
        format!("accident-severity={arn}")
    );
    assert_eq!(resolve(&t, &env["TOPIC_ROUTES"]), "");
    let notify = statements(&t)
        .into_iter()
        .find(|(role, s)| role == "AlerterRole" && s["Sid"] == "Notify")
        .expect("the alerter's Notify statement")
        .1;
    let resources = |set: &std::collections::HashMap<&str, &str>| -> Vec<String> {
        let chosen = &notify["Resource"]["Fn::If"];
        let holds = condition(&t, &t["Conditions"][chosen[0].as_str().unwrap()], set);
        as_list(&chosen[if holds { 1 } else { 2 }])
            .iter()
            .map(|r| resolve_with(&t, r, set))
            .collect()
    };
    assert_eq!(resources(&set), ["AlertsTopic", arn]);
    assert_eq!(resources(&Default::default()), ["AlertsTopic"]);
}

/// Each `HttpsMessageFormat` CloudFormation allows starts the alerter; nothing else does.
#[test]
fn every_https_message_format_the_template_allows_starts_the_alerter() {
    let t = template();
    let allowed = t["Parameters"]["HttpsMessageFormat"]["AllowedValues"]
        .as_array()
        .expect("AllowedValues");
    assert_eq!(allowed.len(), 2);
    for value in allowed {
        let set = [("HttpsMessageFormat", value.as_str().unwrap())].into();
        config_accepts(&t, "AlerterFunction", &set).unwrap();
    }
    let set = [("HttpsMessageFormat", "markdown")].into();
    assert!(config_accepts(&t, "AlerterFunction", &set).is_err());
}
