//! What the CLI's moto tests share: running the real `streamwatch` binary and showing its
//! output when an assertion fails.

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
