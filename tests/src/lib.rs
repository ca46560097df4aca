//! Test harness shared by every AWS adapter test and end-to-end test: a moto server on a
//! free loopback port, started per test and killed when the handle drops (also on panic).

pub mod faults;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server. Point SDK clients at [`MotoServer::endpoint`].
pub struct MotoServer {
    child: Child,
    port: u16,
}

/// Root of the workspace (the directory holding `.venv`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

impl MotoServer {
    /// Starts moto server and waits until it answers. Panics with a hint when it cannot
    /// (run `make test` once to create `.venv`).
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let binary = moto_binary();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run `make test` to create .venv",
                    binary.display()
                )
            });
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if server.get("/moto-api/data.json").is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto server did not answer on port {port} within 60 s");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets the environment an SDK client built by `aws_config` needs to talk to this server.
    /// Tests in one binary share the process environment: call it before building clients,
    /// and prefer passing the endpoint explicitly where the code allows.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// moto's whole state (`GET /moto-api/data.json`), e.g. `["sns"]["Topic"]`.
    pub fn state(&self) -> serde_json::Value {
        let body = self
            .get("/moto-api/data.json")
            .expect("moto state readable");
        serde_json::from_str(&body).expect("moto state is JSON")
    }

    /// Every SNS message moto recorded as published: (topic ARN, message, subject) triples,
    /// as `sent_notifications` lists them.
    pub fn sns_notifications(&self) -> Vec<serde_json::Value> {
        let state = self.state();
        let mut out = Vec::new();
        if let Some(topics) = state["sns"]["Topic"].as_array() {
            for topic in topics {
                if let Some(sent) = topic["sent_notifications"].as_array() {
                    out.extend(sent.iter().cloned());
                }
            }
        }
        out
    }

    /// Clears moto's state (`POST /moto-api/reset`).
    pub fn reset(&self) {
        self.request("POST", "/moto-api/reset").expect("moto reset");
    }

    fn get(&self, path: &str) -> std::io::Result<String> {
        self.request("GET", path)
    }

    /// A minimal HTTP/1.0 client: enough for moto's own API, no extra dependency.
    fn request(&self, method: &str, path: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        // A bound for a dead moto, not a deadline for a busy one: dumping a large state
        // (data.json after the order tests' interleavings) took over 30 s on a 2-core
        // machine loaded by other builds (load 13), and failed a correct run.
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(format!(
                "moto answered {}",
                head.lines().next().unwrap_or("")
            )));
        }
        Ok(body.to_owned())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SDK configuration for clients of this moto server (test credentials, us-east-1).
/// Passing the endpoint explicitly keeps parallel tests off the process environment.
pub async fn sdk_config(moto: &MotoServer) -> aws_config::SdkConfig {
    streamwatch_adapters::aws::defaults()
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::for_tests())
        .load()
        .await
}

/// The template's alerts table (hash key `alert_id`), created in moto.
pub async fn create_alerts_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let key = KeySchemaElement::builder()
        .attribute_name("alert_id")
        .key_type(KeyType::Hash)
        .build()
        .expect("key schema");
    let attribute = AttributeDefinition::builder()
        .attribute_name("alert_id")
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute definition");
    // The template's sparse index of unsent notifications.
    let index = GlobalSecondaryIndex::builder()
        .index_name("pending-notifications")
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pending_bucket")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pending_since")
                .key_type(KeyType::Range)
                .build()
                .expect("key schema"),
        )
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .expect("index");
    let attr = |name: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .expect("attribute definition")
    };
    ddb.create_table()
        .table_name(name)
        .key_schema(key)
        .attribute_definitions(attribute)
        .attribute_definitions(attr("pending_bucket", ScalarAttributeType::S))
        .attribute_definitions(attr("pending_since", ScalarAttributeType::N))
        .global_secondary_indexes(index)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("alerts table created in moto");
}

/// An SNS topic created in moto; its ARN.
pub async fn create_topic(sns: &aws_sdk_sns::Client, name: &str) -> String {
    sns.create_topic()
        .name(name)
        .send()
        .await
        .expect("topic created in moto")
        .topic_arn
        .expect("topic ARN")
}

/// The template's windows table (hash `pk`, range `sk`, the sparse `open-windows` index),
/// created in moto.
pub async fn create_windows_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key schema")
    };
    let attr = |name: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .expect("attribute definition")
    };
    ddb.create_table()
        .table_name(name)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attr("pk", ScalarAttributeType::S))
        .attribute_definitions(attr("sk", ScalarAttributeType::S))
        .attribute_definitions(attr("open_shard", ScalarAttributeType::S))
        .attribute_definitions(attr("close_at", ScalarAttributeType::N))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("open-windows")
                .key_schema(key("open_shard", KeyType::Hash))
                .key_schema(key("close_at", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .expect("index"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("windows table created in moto");
}

/// Reads a fixture from `tests/fixtures/` (copied from the reference implementations).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = workspace_root().join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// template.yaml as JSON (intrinsic functions as `{"Ref": ..}`, `{"Fn::GetAtt": ..}`),
/// decoded by cfn-lint's own loader in `.venv` so no YAML parser is needed here.
pub fn template() -> serde_json::Value {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!(
        "streamwatch-template-{}-{n}.json",
        std::process::id()
    ));
    let status = Command::new(&python)
        .arg(root.join("tools/sam_translate.py"))
        .args(["--raw", "template.yaml"])
        .arg(&out)
        .current_dir(&root)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run `make test` to create .venv",
                python.display()
            )
        });
    assert!(status.success(), "template.yaml does not decode");
    let text = std::fs::read_to_string(&out).expect("decoded template");
    let _ = std::fs::remove_file(&out);
    serde_json::from_str(&text).expect("decoded template is JSON")
}

/// Every item of `table`, following `LastEvaluatedKey` (moto pages at 1 MB, as DynamoDB).
pub async fn scan_all(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = ddb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        out.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            return out;
        }
    }
}

/// Asserts that `role` in template.yaml allows exactly what its function needs: every IAM
/// action the calls through `proxy` needed (moto does not enforce IAM: a missing grant would
/// only show on AWS), and nothing beyond those and what Lambda itself does with the role
/// ([`lambda_service_actions`]): an unused grant fails too. Returns the calls' actions.
pub fn assert_role_allows(
    role: &str,
    proxy: &faults::FaultProxy,
) -> std::collections::BTreeSet<String> {
    let allowed = role_actions(role);
    let needed = proxy.iam_actions();
    let missing: Vec<&String> = needed.iter().filter(|a| !allowed.contains(*a)).collect();
    assert!(
        missing.is_empty(),
        "the handler called {missing:?}, which {role} does not allow (it allows {allowed:?})"
    );
    let service = lambda_service_actions(role, &needed);
    let unused: Vec<&String> = allowed
        .iter()
        .filter(|a| !needed.contains(*a) && !service.contains(*a))
        .collect();
    assert!(
        unused.is_empty(),
        "{role} allows {unused:?}, which neither the handler's calls ({needed:?}) nor Lambda's \
         use of the role ({service:?}) need"
    );
    needed
}

/// What Lambda does with a function's role, read from the function's configuration in
/// template.yaml (Lambda Developer Guide, each event source's "Execution role permissions"):
/// a Kinesis event source reads the stream, a DynamoDB one the table's stream; an `OnFailure`
/// SQS destination sends to the queue; the runtime writes to the function's log group
/// (created by the template, so no `CreateLogGroup`); active tracing sends X-Ray segments.
/// Sending to a KMS-encrypted queue, or publishing (`called` holds `sns:Publish`) to an
/// encrypted topic the function names, needs the key's `GenerateDataKey` and `Decrypt`.
pub fn lambda_service_actions(
    role: &str,
    called: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    let t = template();
    let logical = |v: &serde_json::Value| -> Option<String> {
        match v {
            serde_json::Value::Object(o) => match (o.get("Ref"), o.get("Fn::GetAtt")) {
                (Some(r), _) => r.as_str().map(str::to_owned),
                (_, Some(serde_json::Value::Array(parts))) => {
                    parts.first()?.as_str().map(str::to_owned)
                }
                (_, Some(serde_json::Value::String(dotted))) => {
                    dotted.split('.').next().map(str::to_owned)
                }
                _ => None,
            },
            _ => None,
        }
    };
    let resources = t["Resources"].as_object().expect("Resources");
    let (_, function) = resources
        .iter()
        .find(|(_, r)| {
            r["Type"] == "AWS::Serverless::Function"
                && logical(&r["Properties"]["Role"]).as_deref() == Some(role)
        })
        .unwrap_or_else(|| panic!("{role} belongs to no function"));
    let props = &function["Properties"];
    let globals = &t["Globals"]["Function"];
    let encrypted = |name: &str| !t["Resources"][name]["Properties"]["KmsMasterKeyId"].is_null();
    let mut out = std::collections::BTreeSet::new();
    let mut add = |actions: &[&str]| out.extend(actions.iter().map(|a| (*a).to_owned()));
    for event in props["Events"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, e)| e)
    {
        match event["Type"].as_str() {
            Some("Kinesis") => add(&[
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
                "kinesis:SubscribeToShard",
            ]),
            Some("DynamoDB") => add(&[
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            ]),
            _ => {}
        }
        let on_failure = &event["Properties"]["DestinationConfig"]["OnFailure"];
        if on_failure["Type"] == "SQS" {
            add(&["sqs:SendMessage"]);
            if logical(&on_failure["Destination"]).is_some_and(|q| encrypted(&q)) {
                add(&["kms:GenerateDataKey", "kms:Decrypt"]);
            }
        }
    }
    add(&["logs:CreateLogStream", "logs:PutLogEvents"]);
    let tracing = props.get("Tracing").unwrap_or(&globals["Tracing"]);
    if tracing == "Active" {
        add(&["xray:PutTraceSegments", "xray:PutTelemetryRecords"]);
    }
    if called.contains("sns:Publish") {
        let variables = props["Environment"]["Variables"].as_object();
        let topics = variables
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| logical(v));
        let topics: Vec<String> = topics
            .filter(|r| t["Resources"][r]["Type"] == "AWS::SNS::Topic")
            .collect();
        if topics.iter().any(|topic| encrypted(topic)) {
            add(&["kms:GenerateDataKey", "kms:Decrypt"]);
        }
    }
    out
}

/// The actions a role in template.yaml allows (every `Allow` statement of its inline
/// policies), e.g. `dynamodb:PutItem`. moto does not enforce IAM, so tests that see which
/// operations a function really makes check them against this.
pub fn role_actions(role: &str) -> std::collections::BTreeSet<String> {
    let t = template();
    let mut actions = std::collections::BTreeSet::new();
    let policies = t["Resources"][role]["Properties"]["Policies"]
        .as_array()
        .unwrap_or_else(|| panic!("no inline policies on {role} in template.yaml"));
    for policy in policies {
        let statements = policy["PolicyDocument"]["Statement"].as_array();
        for s in statements.into_iter().flatten() {
            if s["Effect"] != "Allow" {
                continue;
            }
            match &s["Action"] {
                serde_json::Value::String(a) => {
                    actions.insert(a.clone());
                }
                serde_json::Value::Array(list) => {
                    actions.extend(list.iter().filter_map(|a| a.as_str().map(str::to_owned)));
                }
                _ => {}
            }
        }
    }
    actions
}
