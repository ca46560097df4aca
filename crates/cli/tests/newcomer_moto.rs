//! The CLI as a newcomer meets it: a shell with no AWS variables and no ~/.aws, the
//! README's commands as written, and mistakes. Each test drives the real binary and reads
//! back what moto holds (or, for a refused connection, what the command says and how fast).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_config::Region;
mod common;

use common::{Recorder, bare, create_readings_table, read_stream, text};
use streamwatch_tests::{MotoServer, scan_all, workspace_root};

async fn config(endpoint: &str) -> aws_config::SdkConfig {
    streamwatch_adapters::aws::defaults()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await
}

fn sample_csv() -> String {
    workspace_root()
        .join("tests/fixtures/us-accidents-sample.csv")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The IDs of the sample CSV's rows, read with the csv crate (the replay's expected keys).
fn csv_ids() -> HashSet<String> {
    let mut reader = csv::Reader::from_path(sample_csv()).unwrap();
    reader.records().map(|r| r.unwrap()[0].to_owned()).collect()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("streamwatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stderr_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The failure a command ended with: its last stderr line, or its last two when the last
/// is the hint. (Progress and warnings may come before it.)
fn failure_lines(out: &std::process::Output) -> Vec<String> {
    let lines = stderr_lines(out);
    let n = match lines.last() {
        Some(l) if l.starts_with("  hint: ") => 2,
        _ => 1,
    };
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The failure is one `streamwatch: ` line and at most one `  hint: ` line after it, and
/// nothing else on stderr is a hint or a continuation of it.
fn assert_one_line_and_a_hint(out: &std::process::Output) {
    let failure = failure_lines(out);
    assert!(
        failure
            .first()
            .is_some_and(|l| l.starts_with("streamwatch: ")),
        "{}",
        text(out)
    );
    let before = stderr_lines(out).len() - failure.len();
    for line in &stderr_lines(out)[..before] {
        assert!(
            line.starts_with("streamwatch: warning: ") || line.starts_with("simulating "),
            "{line:?}: {}",
            text(out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_endpoint_needs_no_credentials_and_never_asks_the_metadata_service() {
    let moto = MotoServer::start();
    let sdk = config(&moto.endpoint()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    kinesis
        .create_stream()
        .stream_name("accidents")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_readings_table(&ddb, "readings").await;
    // Every instance-metadata request would land here instead of 169.254.169.254.
    let imds = Recorder::start().await;
    let home = scratch("no-credentials");
    let env = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url.as_str())];

    // GIVEN a shell with no region, no credentials, no ~/.aws
    // WHEN the README's producer commands run against the local endpoint
    let replay = bare(
        &[
            "replay",
            "accidents",
            "--endpoint-url",
            &moto.endpoint(),
            "--stream",
            "accidents",
            "--csv",
            &sample_csv(),
        ],
        &home,
        &env,
    )
    .await;
    let simulate = bare(
        &[
            "simulate",
            "turbines",
            "--endpoint-url",
            &moto.endpoint(),
            "--table",
            "readings",
            "--devices",
            "2",
            "--count",
            "3",
        ],
        &home,
        &env,
    )
    .await;

    // THEN both succeed, the stream and the table hold what they sent
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay));
    assert_eq!(simulate.status.code(), Some(0), "{}", text(&simulate));
    let keys: HashSet<String> = read_stream(&kinesis, "accidents")
        .await
        .into_iter()
        .map(|g| g.partition_key)
        .collect();
    assert_eq!(keys, csv_ids());
    assert_eq!(scan_all(&ddb, "readings").await.len(), 6);
    // AND no request went to the instance-metadata service
    assert_eq!(imds.calls(), 0, "{}\n{}", text(&replay), text(&simulate));
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_fails_at_once_in_one_line_and_counts_nothing_as_sent() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let home = scratch("closed-port");
    for args in [
        vec![
            "replay",
            "accidents",
            "--endpoint-url",
            &endpoint,
            "--stream",
            "accidents",
            "--csv",
            &sample_csv(),
        ],
        vec![
            "simulate",
            "turbines",
            "--endpoint-url",
            &endpoint,
            "--table",
            "readings",
            "--count",
            "10",
        ],
    ] {
        let started = Instant::now();
        let out = bare(&args, &home, &[]).await;
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert_one_line_and_a_hint(&out);
        assert_eq!(
            failure_lines(&out)[0],
            format!("streamwatch: cannot reach {endpoint}: connection refused"),
            "{}",
            text(&out)
        );
        // Not the 10 backed-off attempts of a throttled call (24–32 s before).
        assert!(took < Duration::from_secs(15), "{took:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("replayed 0 rows") || stdout.starts_with("wrote 0 readings"),
            "{}",
            text(&out)
        );
        assert!(
            stdout.contains("0 throttled and 0 failed calls retried"),
            "{}",
            text(&out)
        );
    }
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_error_is_one_line_and_its_detail_comes_with_verbose() {
    let moto = MotoServer::start();
    let home = scratch("verbose");
    let args = [
        "simulate",
        "turbines",
        "--endpoint-url",
        &moto.endpoint(),
        "--table",
        "missing",
        "--count",
        "1",
    ];
    let plain = bare(&args, &home, &[]).await;
    assert_eq!(plain.status.code(), Some(1), "{}", text(&plain));
    assert_one_line_and_a_hint(&plain);
    let line = &failure_lines(&plain)[0];
    assert!(
        line.starts_with("streamwatch: BatchWriteItem on missing: ResourceNotFoundException"),
        "{line}"
    );
    assert!(
        !line.contains("HttpResponse") && !line.contains("headers"),
        "{line}"
    );

    let mut verbose_args = args.to_vec();
    verbose_args.push("-v");
    for (args, env) in [
        (verbose_args.as_slice(), &[][..]),
        (&args[..], &[("RUST_LOG", "debug")][..]),
    ] {
        let out = bare(args, &home, env).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let lines = stderr_lines(&out);
        let at = lines.iter().position(|l| l == line).expect("the same line");
        let rest = lines[at + 1..].join("\n");
        assert!(
            rest.contains("ServiceError") && rest.contains("headers"),
            "{}",
            text(&out)
        );
    }
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_a_message_that_names_them() {
    // Nothing is sent in any of these: an endpoint nobody listens on proves it.
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let home = scratch("mistakes");
    let empty = home.join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    let csv = sample_csv();
    let replay = |extra: &[&str]| {
        let mut a = vec![
            "replay",
            "accidents",
            "--endpoint-url",
            &endpoint,
            "--stream",
            "s",
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            replay(&["--csv", &csv, "--rate", "-1"]),
            64,
            "streamwatch: --rate must be a positive number".into(),
        ),
        (
            vec!["simulate", "turbines", "--table", "t", "--rate", "-1"]
                .into_iter()
                .map(String::from)
                .collect(),
            64,
            "streamwatch: --rate must be a positive number".into(),
        ),
        (
            replay(&["--csv", empty]),
            1,
            format!("streamwatch: {empty} is empty: no header row (US-Accidents columns expected)"),
        ),
    ];
    for (args, code, first) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = bare(&args, &home, &[]).await;
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert_one_line_and_a_hint(&out);
        assert_eq!(failure_lines(&out)[0], first, "{args:?}");
    }

    // A start row past the end sends nothing and says so (exit 0: nothing failed).
    let past = bare(
        &replay(&["--csv", &csv, "--start-row", "600"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &home,
        &[],
    )
    .await;
    assert_eq!(past.status.code(), Some(0), "{}", text(&past));
    assert_eq!(
        stderr_lines(&past),
        [format!(
            "streamwatch: warning: --start-row 600 is past the end of {csv} (500 data rows): nothing to send"
        )]
    );
    assert!(
        String::from_utf8_lossy(&past.stdout).starts_with("replayed 0 rows to s (0 bad): "),
        "{}",
        text(&past)
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_says_what_it_does_and_warns_about_gusts_that_cannot_alert() {
    let moto = MotoServer::start();
    let ddb = aws_sdk_dynamodb::Client::new(&config(&moto.endpoint()).await);
    create_readings_table(&ddb, "readings").await;
    let home = scratch("gusts");
    let run = |gust: &'static str| {
        let endpoint = moto.endpoint();
        let home = home.clone();
        async move {
            bare(
                &[
                    "simulate",
                    "turbines",
                    "--endpoint-url",
                    &endpoint,
                    "--table",
                    "readings",
                    "--devices",
                    "2",
                    "--count",
                    "1",
                    "--gust",
                    gust,
                ],
                &home,
                &[],
            )
            .await
        }
    };
    // 50 mph is under the 60 mph threshold: no window can average above it.
    let under = run("device1:50:600").await;
    assert_eq!(under.status.code(), Some(0), "{}", text(&under));
    assert_eq!(
        stderr_lines(&under),
        [
            "streamwatch: warning: --gust device1:50:600 cannot alert: a 60 s window averages at most 50.0 mph, the alert needs more than 60",
            "simulating 2 turbines into readings, as fast as the table takes them, 1 reading each; gust device1 50 mph for the first 600 s",
        ]
        .map(String::from),
        "{}",
        text(&under)
    );
    // Six seconds of 90 mph in a 60 s window of calm readings (mean 47 mph): about 51.3.
    let short = run("device1:90:6").await;
    let lines = stderr_lines(&short);
    assert!(
        lines[0].starts_with(
            "streamwatch: warning: --gust device1:90:6 is unlikely to alert: a 60 s window averages about 51.3 mph"
        ),
        "{}",
        text(&short)
    );
    // A full window of 90 mph alerts: no warning.
    let full = run("device1:90:120").await;
    assert_eq!(stderr_lines(&full).len(), 1, "{}", text(&full));
    assert!(stderr_lines(&full)[0].starts_with("simulating 2 turbines"));
    // 3 runs x 2 turbines x 1 reading, all written.
    assert_eq!(scan_all(&ddb, "readings").await.len(), 6);
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producers_find_the_dev_stack_without_pasting() {
    let moto = MotoServer::start();
    let dir = scratch("stack-local");
    let template = workspace_root().join("template.yaml");
    let imds = Recorder::start().await;
    let env = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url.as_str())];
    // GIVEN `dev up` on a running moto, from a shell with nothing set (as the README's
    // three terminals are)
    let up = bare(
        &[
            "dev",
            "up",
            "--endpoint-url",
            &moto.endpoint(),
            "--template",
            template.to_str().unwrap(),
        ],
        &dir,
        &env,
    )
    .await;
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    let stack: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("target/dev/stack.json")).unwrap()).unwrap();
    assert_eq!(stack["endpoint"], moto.endpoint());
    assert_eq!(stack["region"], "us-east-1");
    assert_eq!(stack["credentials"]["access_key_id"], "testing");

    // WHEN replay names only --stack local, and simulate only the dev stack's endpoint
    let replay = bare(
        &[
            "replay",
            "accidents",
            "--stack",
            "local",
            "--csv",
            &sample_csv(),
        ],
        &dir,
        &env,
    )
    .await;
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay));
    let simulate = bare(
        &[
            "simulate",
            "turbines",
            "--endpoint-url",
            &moto.endpoint().replace("127.0.0.1", "localhost"),
            "--devices",
            "2",
            "--count",
            "2",
        ],
        &dir,
        &env,
    )
    .await;
    assert_eq!(simulate.status.code(), Some(0), "{}", text(&simulate));

    // THEN the template's outputs led them to the stack's stream and table
    let sdk = config(&moto.endpoint()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let keys: HashSet<String> = read_stream(&kinesis, "streamwatch-AccidentsStream")
        .await
        .into_iter()
        .map(|g| g.partition_key)
        .collect();
    assert_eq!(keys, csv_ids());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    assert_eq!(scan_all(&ddb, "streamwatch-ReadingsTable").await.len(), 4);
    assert_eq!(imds.calls(), 0);

    // AND --stack with a CloudFormation name against the emulator points at --stack local
    let named = bare(
        &[
            "replay",
            "accidents",
            "--endpoint-url",
            &moto.endpoint(),
            "--stack",
            "streamwatch",
            "--csv",
            &sample_csv(),
        ],
        &dir,
        &env,
    )
    .await;
    assert_eq!(named.status.code(), Some(1), "{}", text(&named));
    assert_one_line_and_a_hint(&named);
    assert_eq!(
        failure_lines(&named)[1],
        "  hint: for the stack `streamwatch dev up` made, pass --stack local"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_up_says_its_port_is_in_use_and_leaves_the_listener_alone() {
    // GIVEN something already listening on the port
    let taken = Recorder::start().await;
    let port = taken.url.rsplit(':').next().unwrap().to_owned();
    let dir = scratch("port-in-use");
    let template = workspace_root().join("template.yaml");
    // WHEN dev up is asked to start moto there
    let out = bare(
        &[
            "dev",
            "up",
            "--port",
            &port,
            "--template",
            template.to_str().unwrap(),
            "--moto-server",
            &std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into()),
        ],
        &dir,
        &[],
    )
    .await;
    // THEN it says so in one line and a hint, and makes no stack on the listener
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_one_line_and_a_hint(&out);
    assert_eq!(
        failure_lines(&out)[0],
        format!("streamwatch: port {port} is in use")
    );
    assert_eq!(taken.calls(), 0);
    assert!(!dir.join("target/dev/stack.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
