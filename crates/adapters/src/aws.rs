//! Shared AWS plumbing: the SDK config loaded once per cold start, and the classification
//! of SDK errors into transient (retry) and permanent (skip or fail) for every adapter.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use streamwatch_core::PortError;

/// Loads the AWS config once (region, credentials, and `AWS_ENDPOINT_URL` for emulators).
/// Build every client from the one value this returns.
pub async fn load_config() -> aws_config::SdkConfig {
    defaults().load().await
}

/// `aws_config::defaults` with this suite's HTTPS client. Everything that builds an SDK
/// config (the functions, the CLI, the tests) starts here, so all of them speak TLS the same
/// way and no build carries a second TLS stack.
pub fn defaults() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https_client())
}

/// rustls on ring with the platform's root certificates (HTTP/1.1 and HTTP/2, plain HTTP
/// for emulators). The SDK's `default-https-client` is the same rustls on aws-lc-rs, which
/// adds 0.7 MB to each Lambda zip for nothing these functions use (README "Deployment size").
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Error codes that mean "slow down / try again" across DynamoDB, CloudWatch and SNS.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "LimitExceededException",
    "TransactionInProgressException",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSThrottlingException",
    "KMSInternalException",
];

/// True when the error code names a throttling or server-side condition.
pub fn is_transient_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
}

/// Classifies an SDK error: timeouts, connection failures, unparseable responses, 5xx and
/// throttling are transient; everything else (validation, missing resource, access
/// denied, a failed condition) is permanent.
pub fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error() || is_transient_code(service.err().code())
        }
        _ => false,
    };
    let source = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    let error = SdkFailure {
        context: source,
        source: boxed,
    };
    if transient {
        PortError::transient(operation, error)
    } else {
        PortError::permanent(operation, error)
    }
}

/// An SDK error with its full context chain rendered once (the SDK's own Display is terse).
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct SdkFailure {
    context: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}
