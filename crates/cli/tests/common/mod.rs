//! What the CLI's moto tests share: running the real `streamwatch` binary (with the test
//! credentials, or with a bare environment as a newcomer's shell has), showing its output
//! when an assertion fails, reading a stream back, and a listener that records who called.
#![allow(dead_code)] // each test file uses its own part

pub mod stack;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_kinesis::types::ShardIteratorType;
use streamwatch_core::kpl::{self, Payload};
use streamwatch_tests::workspace_root;

/// Runs the real CLI with `args` (credentials only for the child process; the caller's
/// endpoint and profile variables are removed so only the arguments point it anywhere).
pub async fn streamwatch(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_streamwatch"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .expect("streamwatch runs")
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the real CLI in `dir` with nothing of the caller's environment but `PATH`: no AWS
/// variables, no credentials, `HOME` = `dir` (so no ~/.aws either), plus `env`.
pub async fn bare(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_streamwatch"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("streamwatch runs")
}

/// A loopback listener that counts the connections made to it and answers none: point an
/// endpoint the CLI must never use at it, then assert the count stayed 0.
pub struct Recorder {
    pub url: String,
    calls: Arc<AtomicUsize>,
}

impl Recorder {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Self { url, calls }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// One user record read back from the stream.
#[derive(Debug)]
pub struct Got {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub aggregated: bool,
}

/// Everything the stream holds, de-aggregated with core's KPL code.
pub async fn read_stream(kinesis: &aws_sdk_kinesis::Client, name: &str) -> Vec<Got> {
    let shards = kinesis
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .unwrap()
        .shards
        .unwrap_or_default();
    let mut got = Vec::new();
    for shard in shards {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(it) = iterator {
            let page = kinesis
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .unwrap();
            let records = page.records();
            for r in records {
                match kpl::deaggregate(r.data().as_ref()).unwrap() {
                    Payload::Plain(data) => got.push(Got {
                        partition_key: r.partition_key().unwrap_or_default().to_owned(),
                        data: data.to_vec(),
                        aggregated: false,
                    }),
                    Payload::Aggregated(subs) => got.extend(subs.iter().map(|s| Got {
                        partition_key: s.partition_key.to_owned(),
                        data: s.data.to_vec(),
                        aggregated: true,
                    })),
                }
            }
            iterator = if records.is_empty() {
                None
            } else {
                page.next_shard_iterator
            };
        }
    }
    got
}

/// A table keyed like the reference readings table (hash key `id`).
pub async fn create_readings_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    ddb.create_table()
        .table_name(name)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// The three function crates, as `dev run` finds their binaries.
pub const FUNCTIONS: [&str; 3] = ["metrics-publisher", "window-aggregator", "alerter"];

fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return newest;
    };
    for e in entries.flatten() {
        let path = e.path();
        let t = if path.is_dir() {
            newest_source(&path)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// The function binaries beside the CLI under test (same profile). `cargo test
/// --workspace` builds them; they are (re)built here only when missing or older than the
/// sources, so this test alone also works after a change to a function.
pub fn function_binaries() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_streamwatch"))
        .parent()
        .expect("the binary has a directory")
        .to_path_buf();
    let root = workspace_root();
    let mut dirs = vec![
        root.join("crates/core/src"),
        root.join("crates/adapters/src"),
    ];
    dirs.extend(
        FUNCTIONS
            .iter()
            .map(|f| root.join("crates").join(f).join("src")),
    );
    let sources = dirs
        .iter()
        .map(|d| newest_source(d))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let fresh = FUNCTIONS.iter().all(|f| {
        std::fs::metadata(dir.join(f))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= sources)
    });
    if !fresh {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.arg("build").current_dir(&root);
        if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            build.arg("--release");
        }
        for f in FUNCTIONS {
            build.args(["-p", f]);
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the function binaries failed");
    }
    dir
}
