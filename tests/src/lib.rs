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
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
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

/// Asserts that `role` in template.yaml allows every IAM action the calls through `proxy`
/// needed (moto does not enforce IAM: a missing grant would only show on AWS), and returns
/// those actions.
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
    needed
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
