//! A local Lambda Runtime API server (the `2018-06-01` interface the runtime in each
//! function binary polls), so the real release binaries can be run, invoked and timed on
//! this machine: `streamwatch dev run` uses it for the event source mappings, the
//! benchmarks for cold starts and warm invocations.
//!
//! One server serves one function process, as one Lambda sandbox runs one invocation at
//! a time. After a timeout Lambda throws the sandbox away; callers do the same (kill the
//! process, bind a new server) rather than reuse a process whose state is unknown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

const PREFIX: &str = "/2018-06-01/runtime";

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationResult {
    Response(Vec<u8>),
    Error {
        error_type: String,
        error_message: String,
    },
}

/// One finished invocation, with the instants that split its wall time: waiting for the
/// function to ask for it (`queued..picked_up`) and running it (`picked_up..finished`).
#[derive(Debug, Clone)]
pub struct Completed {
    pub result: InvocationResult,
    pub request_id: String,
    pub queued: Instant,
    pub picked_up: Instant,
    pub finished: Instant,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InvokeError {
    #[error("the invocation did not finish within its timeout")]
    Timeout,
    #[error("the function failed to initialise: {error_type}: {error_message}")]
    InitError {
        error_type: String,
        error_message: String,
    },
}

struct Pending {
    request_id: String,
    payload: Bytes,
    deadline: Duration,
    queued: Instant,
    done: oneshot::Sender<Result<Completed, InvokeError>>,
}

struct InFlight {
    queued: Instant,
    picked_up: Instant,
    done: oneshot::Sender<Result<Completed, InvokeError>>,
}

struct Shared {
    queue_tx: mpsc::UnboundedSender<Pending>,
    // One `GET next` at a time, as in a sandbox; the lock also orders them.
    queue_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    in_flight: Mutex<HashMap<String, InFlight>>,
    ready: watch::Sender<Option<Instant>>,
    init_error: Mutex<Option<(String, String)>>,
    function_arn: String,
}

/// A Runtime API server on `127.0.0.1:<free port>`, serving until dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    server: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Binds 127.0.0.1:0 and serves in a tokio task until dropped.
    pub async fn bind() -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            in_flight: Mutex::new(HashMap::new()),
            ready: watch::channel(None).0,
            init_error: Mutex::new(None),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:streamwatch-local"
                .to_owned(),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Ok(RuntimeApi {
            addr,
            shared,
            next_id: AtomicU64::new(0),
            server,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues one invocation and waits for the function's response or error, or `timeout`
    /// (which is also the deadline the function is told).
    pub async fn invoke(
        &self,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Completed, InvokeError> {
        if let Some((error_type, error_message)) = lock(&self.shared.init_error).clone() {
            return Err(InvokeError::InitError {
                error_type,
                error_message,
            });
        }
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("00000000-0000-4000-8000-{n:012x}");
        let (done, finished) = oneshot::channel();
        let pending = Pending {
            request_id,
            payload: Bytes::from(payload),
            deadline: timeout,
            queued: Instant::now(),
            done,
        };
        if self.shared.queue_tx.send(pending).is_err() {
            return Err(InvokeError::Timeout);
        }
        match tokio::time::timeout(timeout, finished).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) | Err(_) => Err(InvokeError::Timeout),
        }
    }

    /// Resolves at the first `GET /runtime/invocation/next` (init finished), with its
    /// instant.
    pub async fn ready(&self) -> Instant {
        let mut ready = self.shared.ready.subscribe();
        match ready.wait_for(Option::is_some).await {
            Ok(at) => at.unwrap_or_else(Instant::now),
            // The sender lives in `shared`, which outlives this borrow.
            Err(_) => Instant::now(),
        }
    }
}

/// A `Command` for a function binary wired to `api`, with the variables the Lambda
/// runtime reads at start. stdin is null; stdout and stderr are inherited.
pub fn function_command(
    binary: &Path,
    api: &RuntimeApi,
    function_name: &str,
    memory_mb: u32,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .env("AWS_LAMBDA_RUNTIME_API", api.addr().to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function_name}"),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| route(request, shared.clone()));
            // A connection the runtime drops (the process was killed) just ends.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

async fn route(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Ok(reply(StatusCode::NOT_FOUND, "not found"));
    };
    let response = match (request.method(), rest) {
        (&Method::GET, "/invocation/next") => next(&shared).await,
        (&Method::POST, "/init/error") => {
            let (error_type, error_message) = error_of(request).await;
            init_error(&shared, error_type, error_message);
            reply(StatusCode::ACCEPTED, "{}")
        }
        (&Method::POST, rest) => match rest.strip_prefix("/invocation/") {
            Some(tail) => {
                if let Some(id) = tail.strip_suffix("/response") {
                    let id = id.to_owned();
                    let body = request
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().to_vec())
                        .unwrap_or_default();
                    finish(&shared, &id, InvocationResult::Response(body))
                } else if let Some(id) = tail.strip_suffix("/error") {
                    let id = id.to_owned();
                    let (error_type, error_message) = error_of(request).await;
                    finish(
                        &shared,
                        &id,
                        InvocationResult::Error {
                            error_type,
                            error_message,
                        },
                    )
                } else {
                    reply(StatusCode::NOT_FOUND, "not found")
                }
            }
            None => reply(StatusCode::NOT_FOUND, "not found"),
        },
        _ => reply(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    shared.ready.send_if_modified(|ready| {
        if ready.is_none() {
            *ready = Some(Instant::now());
            true
        } else {
            false
        }
    });
    let pending = {
        let mut queue = shared.queue_rx.lock().await;
        queue.recv().await
    };
    let Some(pending) = pending else {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let deadline_ms = SystemTime::now()
        .checked_add(pending.deadline)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis());
    lock(&shared.in_flight).insert(
        pending.request_id.clone(),
        InFlight {
            queued: pending.queued,
            picked_up: Instant::now(),
            done: pending.done,
        },
    );
    let mut response = reply(StatusCode::OK, pending.payload);
    let headers = response.headers_mut();
    let values = [
        ("lambda-runtime-aws-request-id", pending.request_id),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            shared.function_arn.clone(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ];
    for (name, value) in values {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    response
}

fn finish(shared: &Shared, id: &str, result: InvocationResult) -> Response<Full<Bytes>> {
    let Some(in_flight) = lock(&shared.in_flight).remove(id) else {
        return reply(StatusCode::BAD_REQUEST, "unknown or finished request id");
    };
    let _ = in_flight.done.send(Ok(Completed {
        result,
        request_id: id.to_owned(),
        queued: in_flight.queued,
        picked_up: in_flight.picked_up,
        finished: Instant::now(),
    }));
    reply(StatusCode::ACCEPTED, "{}")
}

fn init_error(shared: &Shared, error_type: String, error_message: String) {
    *lock(&shared.init_error) = Some((error_type.clone(), error_message.clone()));
    // Anything already in flight or queued fails the way Lambda reports it: init failed.
    let in_flight: Vec<InFlight> = lock(&shared.in_flight).drain().map(|(_, f)| f).collect();
    for f in in_flight {
        let _ = f.done.send(Err(InvokeError::InitError {
            error_type: error_type.clone(),
            error_message: error_message.clone(),
        }));
    }
    if let Ok(mut queue) = shared.queue_rx.try_lock() {
        while let Ok(p) = queue.try_recv() {
            let _ = p.done.send(Err(InvokeError::InitError {
                error_type: error_type.clone(),
                error_message: error_message.clone(),
            }));
        }
    }
}

/// The runtime posts `{"errorType": …, "errorMessage": …}` and the type in a header too.
async fn error_of(request: Request<Incoming>) -> (String, String) {
    let header_type = request
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct ErrorBody {
        error_type: Option<String>,
        error_message: Option<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    let error_type = parsed
        .error_type
        .or(header_type)
        .unwrap_or_else(|| "Unhandled".to_owned());
    let error_message = parsed
        .error_message
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    (error_type, error_message)
}

#[cfg(test)]
mod tests {
    //! A tiny runtime client over raw HTTP stands in for a function binary here; the real
    //! binaries are driven through this server by `streamwatch dev run` and its test.
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (String, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("read");
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_owned(), body.to_owned())
    }

    fn request_id(head: &str) -> String {
        head.lines()
            .find_map(|l| l.strip_prefix("lambda-runtime-aws-request-id: "))
            .expect("request id header")
            .to_owned()
    }

    #[tokio::test]
    async fn given_a_runtime_polling_when_invoked_then_it_gets_the_payload_and_its_response_returns()
     {
        let api = RuntimeApi::bind().await.expect("bind");
        let addr = api.addr();
        let runtime = tokio::spawn(async move {
            let (head, body) = http(addr, "GET", "/2018-06-01/runtime/invocation/next", "").await;
            assert!(head.contains("lambda-runtime-deadline-ms: "), "{head}");
            let id = request_id(&head);
            let answer = format!("{{\"echo\":{body}}}");
            http(
                addr,
                "POST",
                &format!("/2018-06-01/runtime/invocation/{id}/response"),
                &answer,
            )
            .await;
            let (head, _) = http(addr, "GET", "/2018-06-01/runtime/invocation/next", "").await;
            let id = request_id(&head);
            http(
                addr,
                "POST",
                &format!("/2018-06-01/runtime/invocation/{id}/error"),
                r#"{"errorType":"Boom","errorMessage":"bad batch"}"#,
            )
            .await;
        });
        let first = api
            .invoke(b"{\"n\":1}".to_vec(), Duration::from_secs(10))
            .await
            .expect("first invocation");
        assert_eq!(
            first.result,
            InvocationResult::Response(br#"{"echo":{"n":1}}"#.to_vec())
        );
        assert!(first.queued <= first.picked_up && first.picked_up <= first.finished);
        let ready = api.ready().await;
        assert!(ready <= first.picked_up);
        let second = api
            .invoke(b"{}".to_vec(), Duration::from_secs(10))
            .await
            .expect("second invocation");
        assert_eq!(
            second.result,
            InvocationResult::Error {
                error_type: "Boom".into(),
                error_message: "bad batch".into()
            }
        );
        runtime.await.expect("runtime task");
    }

    #[tokio::test]
    async fn given_no_runtime_when_invoked_then_it_times_out() {
        let api = RuntimeApi::bind().await.expect("bind");
        let outcome = api.invoke(b"{}".to_vec(), Duration::from_millis(50)).await;
        assert_eq!(outcome.err(), Some(InvokeError::Timeout));
    }

    #[tokio::test]
    async fn given_an_init_error_when_invoked_then_the_error_is_reported() {
        let api = RuntimeApi::bind().await.expect("bind");
        let (head, _) = http(
            api.addr(),
            "POST",
            "/2018-06-01/runtime/init/error",
            r#"{"errorType":"Config","errorMessage":"ALERTS_TABLE is not set"}"#,
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 202"), "{head}");
        let outcome = api.invoke(b"{}".to_vec(), Duration::from_secs(5)).await;
        assert_eq!(
            outcome.err(),
            Some(InvokeError::InitError {
                error_type: "Config".into(),
                error_message: "ALERTS_TABLE is not set".into()
            })
        );
    }
}
