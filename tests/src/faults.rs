//! A fault-injecting HTTP proxy between the AWS SDK clients and moto server.
//!
//! Per call, a [`FaultPlan`] decides from the operation (the `X-Amz-Target` header of JSON
//! protocols, the `Action=` of query protocols) whether to pass the request through or to
//! inject: throttling, HTTP 500/503, a connection reset, a response slower than the client's
//! timeout, or — the nastiest case for exactly-once — a response lost *after* moto applied
//! the request. Every decision is counted so a test can report what it survived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    Pass,
    /// 400 with the protocol's throttling error (`ThrottlingException`, or
    /// `ProvisionedThroughputExceededException` for DynamoDB).
    Throttle,
    Http500,
    Http503,
    /// Close the connection without answering, before forwarding.
    Reset,
    /// Answer only after `delay` (longer than the client's timeout), without forwarding.
    Slow,
    /// Forward to moto (the write happens), then close without answering.
    LoseResponse,
}

impl Fault {
    /// Every fault the proxy can inject (all but [`Fault::Pass`]).
    pub const INJECTED: [Fault; 6] = [
        Fault::Throttle,
        Fault::Http500,
        Fault::Http503,
        Fault::Reset,
        Fault::Slow,
        Fault::LoseResponse,
    ];

    /// A short name for summaries.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Throttle => "throttle",
            Fault::Http500 => "http500",
            Fault::Http503 => "http503",
            Fault::Reset => "reset",
            Fault::Slow => "slow",
            Fault::LoseResponse => "lost-response",
        }
    }
}

/// Decides the fault for each call: `(operation, call number of that operation) -> Fault`.
pub type FaultPlan = Arc<dyn Fn(&str, u64) -> Fault + Send + Sync>;

/// A scripted plan: the calls of `operation` take the faults of `script` in turn, over and
/// over (call 1 the first); every other operation passes.
pub fn scripted_plan(operation: &'static str, script: Vec<Fault>) -> FaultPlan {
    Arc::new(move |op: &str, n: u64| {
        if op == operation && !script.is_empty() {
            script[(n.max(1) as usize - 1) % script.len()]
        } else {
            Fault::Pass
        }
    })
}

/// Every fault the proxy injects quickly (all but `Slow`), then a pass: a call made six
/// times in a row gets through on the sixth.
pub const EVERY_QUICK_FAULT: [Fault; 6] = [
    Fault::Throttle,
    Fault::Http500,
    Fault::Http503,
    Fault::Reset,
    Fault::LoseResponse,
    Fault::Pass,
];

/// A plan that injects `fault` with probability `rate` per call, from a seeded generator,
/// on every operation `applies` accepts.
pub fn random_plan(
    seed: u64,
    rate: f64,
    faults: Vec<Fault>,
    applies: fn(&str) -> bool,
) -> FaultPlan {
    let state = Mutex::new(seed ^ 0xD1B5_4A32_D192_ED03);
    Arc::new(move |op: &str, _n: u64| {
        if !applies(op) || faults.is_empty() {
            return Fault::Pass;
        }
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        let r = (*s >> 11) as f64 / (1u64 << 53) as f64;
        if r < rate {
            faults[(*s % faults.len() as u64) as usize]
        } else {
            Fault::Pass
        }
    })
}

/// A seeded chaos plan: each call of an operation gets a fault with that operation's rate,
/// the kind drawn by weight. The decision is a pure function of (seed, operation, call
/// number of that operation), so a run is reproducible up to the order in which concurrent
/// invocations make their calls.
#[derive(Debug, Clone)]
pub struct Chaos {
    seed: u64,
    rate: f64,
    rates: BTreeMap<String, f64>,
    weights: Vec<(Fault, u32)>,
}

impl Chaos {
    /// Every operation at `rate`; every fault kind equally likely except `Slow`, which
    /// costs a client timeout each and so is a fifth as likely.
    pub fn new(seed: u64, rate: f64) -> Self {
        Self {
            seed,
            rate,
            rates: BTreeMap::new(),
            weights: Fault::INJECTED
                .iter()
                .map(|&f| (f, if f == Fault::Slow { 1 } else { 5 }))
                .collect(),
        }
    }

    /// A different rate for one operation (`0.0` leaves it alone).
    pub fn rate(mut self, operation: &str, rate: f64) -> Self {
        self.rates.insert(operation.to_owned(), rate);
        self
    }

    /// Fault kinds and their relative weights.
    pub fn weights(mut self, weights: &[(Fault, u32)]) -> Self {
        self.weights = weights.to_vec();
        self
    }

    /// The fault of the `n`th call of `operation`.
    pub fn decide(&self, operation: &str, n: u64) -> Fault {
        let rate = self.rates.get(operation).copied().unwrap_or(self.rate);
        let total: u64 = self.weights.iter().map(|(_, w)| u64::from(*w)).sum();
        if rate <= 0.0 || total == 0 {
            return Fault::Pass;
        }
        let h = splitmix(self.seed ^ splitmix(fnv(operation) ^ splitmix(n)));
        let r = (h >> 11) as f64 / (1u64 << 53) as f64;
        if r >= rate {
            return Fault::Pass;
        }
        let mut pick = splitmix(h) % total;
        for (fault, w) in &self.weights {
            if pick < u64::from(*w) {
                return *fault;
            }
            pick -= u64::from(*w);
        }
        Fault::Pass
    }

    pub fn plan(self) -> FaultPlan {
        Arc::new(move |op: &str, n: u64| self.decide(op, n))
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The seed of a chaos run: `CHAOS_SEED` when set (to replay a failure), else from the
/// clock. Printed by the caller so any run can be replayed.
pub fn seed_from_env() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// A number from the environment variable `name`, else `default` (to scale a run up by hand).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// Requests applied whose response was lost: (operation, body).
type LostRequests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Counts of what the proxy did, per (operation, fault).
pub type FaultCounts = BTreeMap<(String, Fault), u64>;

/// Every call seen: the count per operation (the plan's call number) and the IAM actions
/// the calls need.
#[derive(Default)]
struct Ledger {
    calls: BTreeMap<String, u64>,
    actions: BTreeSet<String>,
    /// Clients seen gone while their request was upstream (booked when moto answers).
    hangups_seen: u64,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    port: u16,
    counts: Arc<Mutex<FaultCounts>>,
    lost: LostRequests,
    ledger: Arc<Mutex<Ledger>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, plan: FaultPlan, slow: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let counts = Arc::new(Mutex::new(FaultCounts::new()));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let task_ledger = ledger.clone();
        let lost = Arc::new(Mutex::new(Vec::new()));
        let task_counts = counts.clone();
        let task_lost = lost.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    break;
                };
                let (upstream, plan, counts, ledger, lost) = (
                    upstream.clone(),
                    plan.clone(),
                    task_counts.clone(),
                    task_ledger.clone(),
                    task_lost.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, plan, counts, ledger, lost, slow).await;
                });
            }
        });
        Self {
            port,
            counts,
            lost,
            ledger,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What was injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Requests moto applied whose response was lost (injected, or the client hung up
    /// first): (operation, request body), so a test can count what a non-idempotent write
    /// may have applied twice.
    pub fn lost_requests(&self) -> Vec<(String, Vec<u8>)> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The IAM actions the calls so far need (`dynamodb:Query`, `sns:Publish`, ...): each
    /// item of a `TransactWriteItems` needs its own action (`dynamodb:PutItem`,
    /// `UpdateItem`, `DeleteItem`, `ConditionCheckItem`), a `TransactGetItems` needs
    /// `dynamodb:GetItem`. Compare with the function's role: moto does not enforce IAM.
    pub fn iam_actions(&self) -> BTreeSet<String> {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .actions
            .clone()
    }

    /// Clients the proxy has seen hang up while their request was still upstream, booked
    /// or not yet (a test can wait for this before letting the upstream answer).
    pub fn hangups_seen(&self) -> u64 {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hangups_seen
    }

    /// Requests passed through whose client hung up (an SDK attempt timeout) before moto
    /// answered: moto applied them, so they are in [`Self::lost_requests`] too.
    pub fn client_hangups(&self) -> u64 {
        (self.lost_requests().len() as u64).saturating_sub(self.total(Fault::LoseResponse))
    }

    /// Calls per fault kind, over all operations (`Pass` included).
    pub fn by_kind(&self) -> BTreeMap<Fault, u64> {
        let mut out = BTreeMap::new();
        for ((_, fault), n) in self.counts() {
            *out.entry(fault).or_insert(0) += n;
        }
        out
    }

    /// One line: calls in all, then each fault kind injected.
    pub fn summary(&self) -> String {
        let kinds = self.by_kind();
        let calls: u64 = kinds.values().sum();
        let injected: u64 = kinds
            .iter()
            .filter(|(f, _)| **f != Fault::Pass)
            .map(|(_, n)| n)
            .sum();
        let mut line = format!("calls {calls}, faults {injected}");
        for fault in Fault::INJECTED {
            line.push_str(&format!(
                ", {} {}",
                fault.name(),
                kinds.get(&fault).copied().unwrap_or(0)
            ));
        }
        line.push_str(&format!(", client hang-ups {}", self.client_hangups()));
        line
    }

    /// Calls that got `fault`, over all operations.
    pub fn total(&self, fault: Fault) -> u64 {
        self.counts()
            .iter()
            .filter(|((_, f), _)| *f == fault)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP/1.1 request read off a connection.
struct Request {
    head: Vec<u8>,
    body: Vec<u8>,
    operation: String,
    json_protocol: bool,
}

async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Request>> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = buf[..end + 4].to_vec();
            let text = String::from_utf8_lossy(&head).to_string();
            let length = header(&text, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 65536];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            let target = header(&text, "x-amz-target");
            let json_protocol = target.is_some();
            let operation = match target {
                Some(t) => t.rsplit('.').next().unwrap_or(&t).to_owned(),
                None => action(&body).unwrap_or_else(|| "unknown".into()),
            };
            return Ok(Some(Request {
                head,
                body,
                operation,
                json_protocol,
            }));
        }
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The IAM actions one request needs. The service is the SigV4 signing name from the
/// `Authorization` header's credential scope (`monitoring` is CloudWatch's).
fn iam_actions(req: &Request) -> Vec<String> {
    let head = String::from_utf8_lossy(&req.head);
    let service = header(&head, "authorization")
        .and_then(|a| {
            let scope = a.split("Credential=").nth(1)?;
            scope.split('/').nth(3).map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into());
    let service = if service == "monitoring" {
        "cloudwatch".to_owned()
    } else {
        service
    };
    let item_action = |kind: &str| match kind {
        "Put" => "PutItem",
        "Update" => "UpdateItem",
        "Delete" => "DeleteItem",
        "ConditionCheck" => "ConditionCheckItem",
        "Get" => "GetItem",
        _ => "UnknownTransactItem",
    };
    match (service.as_str(), req.operation.as_str()) {
        ("dynamodb", "TransactWriteItems" | "TransactGetItems") => {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            body["TransactItems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item.as_object()?.keys().next().cloned())
                .map(|kind| format!("dynamodb:{}", item_action(&kind)))
                .collect()
        }
        (service, operation) => vec![format!("{service}:{operation}")],
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn action(body: &[u8]) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action=").map(str::to_owned))
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    plan: FaultPlan,
    counts: Arc<Mutex<FaultCounts>>,
    ledger: Arc<Mutex<Ledger>>,
    lost: LostRequests,
    slow: Duration,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut client, &mut buf).await? {
        let n = {
            let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            l.actions.extend(iam_actions(&req));
            let e = l.calls.entry(req.operation.clone()).or_insert(0);
            *e += 1;
            *e
        };
        let fault = plan(&req.operation, n);
        *counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((req.operation.clone(), fault))
            .or_insert(0) += 1;
        match fault {
            Fault::Pass => {
                // The client may give up while moto is still applying the request (its
                // attempt timeout on a large PutMetricData, say): moto applies it anyway,
                // so that is a response lost after the write, like `LoseResponse`.
                let upstream_reply = forward(upstream, &req);
                tokio::pin!(upstream_reply);
                let mut probe = [0u8; 1];
                let mut watching = true;
                let mut hung_up = false;
                let response = loop {
                    tokio::select! {
                        reply = &mut upstream_reply => break reply?,
                        peeked = client.peek(&mut probe), if watching => {
                            // EOF or a reset: the client is gone. Bytes: not expected from
                            // an HTTP/1.1 client awaiting a reply; stop watching.
                            hung_up = matches!(peeked, Ok(0) | Err(_));
                            watching = false;
                            if hung_up {
                                ledger.lock().unwrap_or_else(|e| e.into_inner()).hangups_seen += 1;
                            }
                        }
                    }
                };
                if hung_up {
                    lost.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((req.operation.clone(), req.body.clone()));
                    return Ok(());
                }
                client.write_all(&response).await?;
            }
            Fault::LoseResponse => {
                let _ = forward(upstream, &req).await?;
                lost.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((req.operation.clone(), req.body.clone()));
                return Ok(());
            }
            Fault::Reset => return Ok(()),
            Fault::Slow => {
                tokio::time::sleep(slow).await;
                return Ok(());
            }
            Fault::Throttle => client.write_all(&throttle(&req)).await?,
            Fault::Http500 => {
                client
                    .write_all(&error_response(
                        &req,
                        500,
                        "InternalFailure",
                        "injected 500",
                    ))
                    .await?
            }
            Fault::Http503 => {
                client
                    .write_all(&error_response(
                        &req,
                        503,
                        "ServiceUnavailable",
                        "injected 503",
                    ))
                    .await?
            }
        }
    }
    Ok(())
}

fn throttle(req: &Request) -> Vec<u8> {
    let code = if req.json_protocol && req.operation != "PutMetricData" {
        "ProvisionedThroughputExceededException"
    } else {
        "ThrottlingException"
    };
    error_response(req, 400, code, "injected throttling")
}

fn error_response(req: &Request, status: u16, code: &str, message: &str) -> Vec<u8> {
    let (content_type, body) = if req.json_protocol {
        (
            "application/x-amz-json-1.0",
            format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"{message}"}}"#
            ),
        )
    } else {
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            ),
        )
    };
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nx-amzn-ErrorType: {code}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends the request to moto on a fresh connection and returns its whole response.
async fn forward(upstream: &str, req: &Request) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    // One request per upstream connection: ask moto to close, so the response ends at EOF.
    let head = String::from_utf8_lossy(&req.head)
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\r\n");
    up.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    up.write_all(&req.body).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    // Tell our client the connection stays open regardless of what moto said.
    let text = String::from_utf8_lossy(&response);
    if let Some(end) = find(&response, b"\r\n\r\n") {
        let head: Vec<&str> = text[..end]
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect();
        let mut out = head.join("\r\n").into_bytes();
        let framed = head.iter().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("content-length:") || l.starts_with("transfer-encoding:")
        });
        if !framed {
            out.extend_from_slice(
                format!("\r\nContent-Length: {}", response.len() - end - 4).as_bytes(),
            );
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&response[end + 4..]);
        return Ok(out);
    }
    Ok(response)
}

/// Whether the SDK clients of a chaos run retry on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkRetries {
    /// Every injected fault reaches the adapter and the handler.
    Off,
    /// The SDK's standard mode, 3 attempts, short backoff: what a deployed function runs.
    Standard,
}

/// The attempt timeout chaos clients use; [`FaultProxy::start`] gets a longer `slow`.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);

/// SDK configuration for clients that go through a fault proxy at `endpoint`: test
/// credentials, us-east-1, an attempt timeout (so `Slow` becomes a timeout), and no
/// request compression (the proxy reads query-protocol bodies to name the operation).
pub async fn chaos_sdk_config(endpoint: &str, retries: SdkRetries) -> aws_config::SdkConfig {
    let retry = match retries {
        SdkRetries::Off => aws_config::retry::RetryConfig::disabled(),
        SdkRetries::Standard => aws_config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(5))
            .with_max_backoff(Duration::from_millis(50)),
    };
    streamwatch_adapters::aws::defaults()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::for_tests())
        .retry_config(retry)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .disable_request_compression(true)
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_decisions_are_seeded_per_operation_and_call_and_near_the_rate() {
        let a = Chaos::new(7, 0.2).rate("Publish", 0.0);
        let b = Chaos::new(7, 0.2);
        let calls: Vec<Fault> = (1..=10_000).map(|n| a.decide("PutItem", n)).collect();
        let again: Vec<Fault> = (1..=10_000).map(|n| b.decide("PutItem", n)).collect();
        assert_eq!(calls, again, "same seed, same decisions");
        let injected = calls.iter().filter(|f| **f != Fault::Pass).count();
        assert!((1_800..2_200).contains(&injected), "{injected} of 10,000");
        for fault in Fault::INJECTED {
            assert!(calls.contains(&fault), "{fault:?} never drawn");
        }
        assert!((1..=1_000).all(|n| a.decide("Publish", n) == Fault::Pass));
        let other: Vec<Fault> = (1..=10_000)
            .map(|n| Chaos::new(8, 0.2).decide("PutItem", n))
            .collect();
        assert_ne!(calls, other, "another seed, other decisions");
    }
}
