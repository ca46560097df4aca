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
/// adds 0.7 MB to each Lambda zip for nothing these functions use (docs/performance.md "Deployment size").
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Error codes that mean "slow down" across DynamoDB, Kinesis, CloudWatch and SNS.
const THROTTLING_CODES: &[&str] = &[
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
    "KMSThrottlingException",
];

/// Error codes that name a server-side condition worth another attempt.
const SERVER_CODES: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSInternalException",
];

/// True when the error code names a throttling or server-side condition.
pub fn is_transient_code(code: Option<&str>) -> bool {
    is_throttling_code(code) || code.is_some_and(|c| SERVER_CODES.contains(&c))
}

/// True when the error code asks the caller to slow down (a subset of the transient ones).
pub fn is_throttling_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| THROTTLING_CODES.contains(&c))
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
    let source = redact_account_ids(
        &aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
    );
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

/// The text with every account id (a run of exactly 12 digits, as in ARNs and in
/// messages like AccessDenied's "User: arn:aws:sts::123456789012:assumed-role/...") masked:
/// error text is logged, account ids must not be.
pub fn redact_account_ids(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if run == 0 {
            // Copy up to the next digit in one go (keeps multi-byte characters whole).
            let next = bytes[i..]
                .iter()
                .position(u8::is_ascii_digit)
                .map_or(bytes.len(), |p| i + p);
            out.push_str(&text[i..next]);
            i = next;
        } else {
            out.push_str(if run == 12 {
                "************"
            } else {
                &text[i..i + run]
            });
            i += run;
        }
    }
    out
}

/// An SDK error with its full context chain rendered once (the SDK's own Display is terse),
/// account ids masked ([`redact_account_ids`]).
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct SdkFailure {
    context: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    #[test]
    fn account_ids_are_masked_and_other_numbers_kept() {
        assert_eq!(
            redact_account_ids(
                "arn:aws:sns:us-east-1:123456789012:alerts, 5 of 1234567890123 in 2026 — 123456789012"
            ),
            "arn:aws:sns:us-east-1:************:alerts, 5 of 1234567890123 in 2026 — ************"
        );
    }

    #[test]
    fn an_access_denied_error_is_permanent_and_carries_no_account_id() {
        let message = "User: arn:aws:sts::123456789012:assumed-role/streamwatch-alerter/fn is not \
                       authorized to perform: SNS:Publish on resource: arn:aws:sns:us-east-1:123456789012:alerts";
        let err = aws_sdk_sns::operation::publish::PublishError::generic(
            ErrorMetadata::builder()
                .code("AuthorizationError")
                .message(message)
                .build(),
        );
        let raw = HttpResponse::new(StatusCode::try_from(403).unwrap(), SdkBody::empty());
        let port = classify("sns.Publish", SdkError::service_error(err, raw));
        let text = port.to_string();
        assert!(!port.is_transient(), "{text}");
        assert!(text.contains("AuthorizationError"), "{text}");
        assert!(
            text.contains("arn:aws:sns:us-east-1:************:alerts"),
            "{text}"
        );
        assert!(!text.contains("123456789012"), "{text}");
    }
}
