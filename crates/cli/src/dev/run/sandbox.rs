//! The functions of `dev run`: each invocation runs in a sandbox — the function's real
//! binary behind its own local Lambda Runtime API — reused while it stays healthy and
//! thrown away after a timeout, an init error or an exit, as Lambda does. Also where a
//! function's binary, environment, timeout and memory come from in the template.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use streamwatch_emulator::esm::Invocation;
use streamwatch_emulator::runtime_api::{
    Completed, InvocationResult, InvokeError, RuntimeApi, function_command,
};

use super::lock;
use crate::Failure;
use crate::dev::Stack;
use crate::dev::template::{self, Context};

/// One function: its binary, its environment, and its idle sandboxes.
pub(super) struct Function {
    pub name: String,
    pub arn: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    timeout: Duration,
    memory: u32,
    log: PathBuf,
    idle: Mutex<Vec<Sandbox>>,
    pub stats: Counters,
}

#[derive(Default)]
pub(super) struct Counters {
    pub invocations: AtomicU64,
    pub records: AtomicU64,
    pub errors: AtomicU64,
    pub given_up: AtomicU64,
}

/// One function process and the Runtime API it polls.
struct Sandbox {
    api: RuntimeApi,
    child: tokio::process::Child,
}

/// What one invocation came to.
pub(super) struct Invoked {
    pub outcome: Invocation,
    pub ms: f64,
    pub text: String,
}

impl Function {
    async fn spawn(&self) -> Result<Sandbox, String> {
        let api = RuntimeApi::bind()
            .await
            .map_err(|e| format!("cannot bind a runtime API: {e}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let mut command = function_command(&self.binary, &api, &self.name, self.memory);
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.stdout(log).stderr(err);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        Ok(Sandbox { api, child })
    }

    /// Invokes in an idle sandbox (or a new one); a sandbox that timed out, failed to
    /// initialise or exited is discarded, as Lambda does.
    pub async fn invoke(&self, payload: Vec<u8>) -> Invoked {
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let idle = lock(&self.idle).pop();
        let mut sandbox = match idle {
            Some(s) => s,
            None => match self.spawn().await {
                Ok(s) => s,
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    return Invoked {
                        outcome: Invocation::Error(e.clone()),
                        ms: 0.0,
                        text: format!("error: {e}"),
                    };
                }
            },
        };
        let result = tokio::select! {
            r = sandbox.api.invoke(payload, self.timeout) => Ok(r),
            status = sandbox.child.wait() => Err(status),
        };
        let (invoked, keep) = self.read(result, started);
        if matches!(invoked.outcome, Invocation::Error(_)) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        if keep {
            lock(&self.idle).push(sandbox);
        } else {
            let _ = sandbox.child.kill().await;
        }
        invoked
    }

    /// What an invocation came to, and whether its sandbox may serve the next one.
    fn read(
        &self,
        result: Result<Result<Completed, InvokeError>, std::io::Result<std::process::ExitStatus>>,
        started: Instant,
    ) -> (Invoked, bool) {
        let failed = |e: String, ms: f64, text: String| Invoked {
            outcome: Invocation::Error(e),
            ms,
            text,
        };
        match result {
            Ok(Ok(inv)) => {
                let ms = inv.finished.duration_since(inv.picked_up).as_secs_f64() * 1000.0;
                match inv.result {
                    InvocationResult::Response(body) => {
                        let failed = batch_item_failures(&body);
                        let text = if failed.is_empty() {
                            "ok".to_owned()
                        } else {
                            format!("{} batchItemFailures", failed.len())
                        };
                        let outcome = Invocation::Response { failed };
                        (Invoked { outcome, ms, text }, true)
                    }
                    InvocationResult::Error {
                        error_type,
                        error_message,
                    } => {
                        let e = format!("{error_type}: {error_message}");
                        (failed(e.clone(), ms, format!("error: {e}")), true)
                    }
                }
            }
            Ok(Err(InvokeError::Timeout)) => {
                let e = format!("timed out after {} s", self.timeout.as_secs());
                (failed(e.clone(), elapsed_ms(started), e), false)
            }
            Ok(Err(e @ InvokeError::InitError { .. })) => {
                let text = format!("error: {e}");
                (failed(e.to_string(), elapsed_ms(started), text), false)
            }
            Err(status) => {
                let e = format!(
                    "the process exited ({}); see {}",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    self.log.display()
                );
                (failed(e.clone(), elapsed_ms(started), e), false)
            }
        }
    }

    pub async fn shutdown(&self) {
        let sandboxes: Vec<Sandbox> = std::mem::take(&mut *lock(&self.idle));
        for mut s in sandboxes {
            let _ = s.child.kill().await;
        }
    }
}

fn elapsed_ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// `{"batchItemFailures": [{"itemIdentifier": …}]}`; anything else means all done.
fn batch_item_failures(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    v["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| match &f["itemIdentifier"] {
            Value::String(s) => s.clone(),
            // An identifier that is no sequence number fails the whole batch in Lambda.
            other => other.to_string(),
        })
        .collect()
}

/// `target/release` when it holds every function binary, else `target/debug`.
pub(super) fn default_bin_dir(tpl: &Value) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let release = target.join("release");
    let all_there = template::resources_of(tpl, "AWS::Serverless::Function")
        .iter()
        .all(|(_, r)| release.join(binary_name(&r["Properties"])).is_file());
    if all_there {
        release
    } else {
        target.join("debug")
    }
}

/// The binary of a function: `BuildProperties.Binary`, else the crate CodeUri points at.
fn binary_name(props: &Value) -> String {
    if let Some(b) = props["Metadata"]["BuildProperties"]["Binary"].as_str() {
        return b.to_owned();
    }
    props["CodeUri"]
        .as_str()
        .and_then(|c| Path::new(c).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("bootstrap")
        .to_owned()
}

/// Where the template's function resources are read and the sandboxes' files go.
pub(super) struct Site<'a> {
    pub ctx: &'a Context,
    pub stack: &'a Stack,
    pub globals: &'a Value,
    pub bin_dir: &'a Path,
    pub logs: &'a Path,
    pub account: &'a str,
}

impl Site<'_> {
    /// The function of the template's resource `logical`, with the environment Lambda
    /// would give it (and the emulator's endpoint and credentials).
    pub fn function(&self, logical: &str, props: &Value) -> Result<Function, Failure> {
        let (ctx, stack, globals) = (self.ctx, self.stack, self.globals);
        let name = if props["FunctionName"].is_null() {
            format!("{}-{logical}", template::STACK_NAME)
        } else {
            ctx.string(&props["FunctionName"])
                .map_err(|e| Failure::usage(format!("{logical}: FunctionName: {e}")))?
        };
        let mut env = self.environment(logical, props)?;
        // Emulators are slower than the services: moto takes seconds for one 1,000-datum
        // PutMetricData, so a deadline sized for CloudWatch would cut off requests it goes on
        // to apply, and the retry would count their metrics twice. Here the invocation's own
        // timeout is the deadline.
        let number = |key: &str, default: u64| {
            props[key]
                .as_u64()
                .or_else(|| globals[key].as_u64())
                .unwrap_or(default)
        };
        let timeout = number("Timeout", 3);
        for (k, v) in env.iter_mut() {
            if k == "PUT_METRIC_DATA_TIMEOUT_SECONDS" {
                *v = timeout.to_string();
            }
        }
        env.push(("AWS_ENDPOINT_URL".into(), stack.endpoint.clone()));
        env.push(("AWS_REGION".into(), stack.region.clone()));
        env.push(("AWS_DEFAULT_REGION".into(), stack.region.clone()));
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            let keys = &stack.credentials;
            env.push(("AWS_ACCESS_KEY_ID".into(), keys.access_key_id.clone()));
            env.push((
                "AWS_SECRET_ACCESS_KEY".into(),
                keys.secret_access_key.clone(),
            ));
        }
        Ok(Function {
            arn: format!(
                "arn:aws:lambda:{}:{}:function:{name}",
                stack.region, self.account
            ),
            log: self.logs.join(format!("{name}.log")),
            binary: self.bin_dir.join(binary_name(props)),
            env,
            timeout: Duration::from_secs(timeout),
            memory: u32::try_from(number("MemorySize", 128)).unwrap_or(128),
            idle: Mutex::new(Vec::new()),
            stats: Counters::default(),
            name,
        })
    }

    /// The template's variables (globals, then the function's) and its logging settings.
    fn environment(&self, logical: &str, props: &Value) -> Result<Vec<(String, String)>, Failure> {
        let (ctx, globals) = (self.ctx, self.globals);
        let mut env = Vec::new();
        for vars in [
            &globals["Environment"]["Variables"],
            &props["Environment"]["Variables"],
        ] {
            for (k, v) in vars.as_object().into_iter().flatten() {
                let value = ctx
                    .string(v)
                    .map_err(|e| Failure::usage(format!("{logical}: environment {k}: {e}")))?;
                env.push((k.clone(), value));
            }
        }
        let logging = if props["LoggingConfig"].is_null() {
            &globals["LoggingConfig"]
        } else {
            &props["LoggingConfig"]
        };
        if let Ok(level) = ctx.string(&logging["ApplicationLogLevel"]) {
            env.push(("AWS_LAMBDA_LOG_LEVEL".into(), level));
        }
        if let Some(format) = logging["LogFormat"].as_str() {
            env.push(("AWS_LAMBDA_LOG_FORMAT".into(), format.to_owned()));
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_from_the_response() {
        assert_eq!(
            batch_item_failures(br#"{"batchItemFailures":[{"itemIdentifier":"42"}]}"#),
            vec!["42".to_owned()]
        );
        assert!(batch_item_failures(b"null").is_empty());
        assert!(batch_item_failures(br#"{"batchItemFailures":[]}"#).is_empty());
    }
}
