//! `streamwatch dev`: the whole stack on a local AWS API emulator. `dev up` starts moto
//! (or uses `--endpoint-url`) and creates the template's streams, tables, topic and queues
//! from template.yaml itself; `dev run` runs the three functions' real binaries behind
//! local Lambda runtime APIs, fed by event source mappings emulated from the template.
//! The two meet in `target/dev/stack.json`.

pub mod archive;
pub mod checkpoints;
pub mod run;
pub mod template;
pub mod up;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_config::SdkConfig;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use crate::Failure;
use template::Resource;

/// Default directory for the stack file, function logs and checkpoints.
pub const STATE_DIR: &str = "target/dev";

#[derive(clap::Subcommand, Debug)]
pub enum Dev {
    /// Start moto (or use --endpoint-url) and create the template's streams, tables, topic
    /// and queues; write target/dev/stack.json (exit 0: created; 1: AWS failure; 64: bad
    /// arguments). Without --endpoint-url moto runs in the foreground until Ctrl-C.
    Up(up::UpArgs),
    /// Run the three functions' binaries against the stack `dev up` made, with the
    /// template's event source mappings and schedule emulated (exit 0: stopped or idle;
    /// 1: failure; 64: bad arguments).
    Run(run::RunArgs),
}

pub async fn run(dev: Dev) -> Result<(), Failure> {
    match dev {
        Dev::Up(args) => up::run(args).await,
        Dev::Run(args) => run::run(args).await,
    }
}

/// What `dev up` made, for `dev run` and for people: `target/dev/stack.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stack {
    pub endpoint: String,
    pub region: String,
    pub template: PathBuf,
    pub parameters: BTreeMap<String, String>,
    /// Logical id → local resource (`ref`: table and stream names, topic ARN, queue URL).
    pub resources: BTreeMap<String, Resource>,
    /// Tables whose Kinesis streaming destination the endpoint could not enable: `dev run`
    /// forwards their DynamoDB stream to the Kinesis stream in the same record layout.
    #[serde(default)]
    pub forwards: Vec<Forward>,
    /// The template's Firehose delivery streams, which `dev run` emulates (`archive.rs`).
    #[serde(default)]
    pub archives: Vec<archive::Feed>,
    /// Dummy credentials (emulators accept any): what the producers sign with under
    /// `--stack local` when the environment names none.
    #[serde(default)]
    pub credentials: DummyCredentials,
}

/// The static key pair of a local stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DummyCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Default for DummyCredentials {
    fn default() -> Self {
        Self {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        }
    }
}

/// A table → Kinesis forward standing in for Kinesis Data Streams for DynamoDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forward {
    pub table: String,
    pub table_stream_arn: String,
    pub kinesis_stream: String,
    /// `MILLISECOND` or `MICROSECOND`, as the template's
    /// `ApproximateCreationDateTimePrecision` asks.
    pub precision: String,
}

impl Stack {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("stack.json")
    }

    pub fn read(state_dir: &Path) -> Result<Self, Failure> {
        let path = Self::path(state_dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Failure::runtime(format!(
                "cannot read {} ({e}); run `streamwatch dev up` first",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| Failure::runtime(format!("{}: not a dev stack file: {e}", path.display())))
    }

    pub fn write(&self, state_dir: &Path) -> Result<PathBuf, Failure> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", state_dir.display())))?;
        let path = Self::path(state_dir);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Failure::runtime(format!("cannot encode the stack file: {e}")))?;
        std::fs::write(&path, text + "\n")
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }
}

/// SDK config for the emulator: its endpoint, the region, and the environment's
/// credentials or dummy ones (emulators accept any), never the instance-metadata service.
pub async fn sdk_config(endpoint: &str, region: &str, max_attempts: u32) -> SdkConfig {
    crate::aws_args::local_loader(endpoint, Some(region), None, &DummyCredentials::default())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .load()
        .await
}

pub use streamwatch_emulator::sdk_error;

/// The error code of a service error (`ResourceInUseException`, …).
pub fn error_code<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Option<String>
where
    E: ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned)
}

/// `NAME=VALUE` for `--parameter`.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}
