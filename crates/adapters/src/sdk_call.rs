//! One failed AWS SDK call read once, for the people who see it (the CLI's producers and
//! `streamwatch dev`'s emulated mappings): one line naming the operation and what happened,
//! and what kind of failure it is — nothing answers at the endpoint (fail now: retrying a
//! closed port helps nobody), throttled or transient (retry), or permanent.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure an SDK call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Nothing answers at the endpoint (connection refused, unknown host): fail at once.
    Unreachable,
    /// The service asked us to slow down: retry with backoff.
    Throttled,
    /// A 5xx, a timeout, a reset connection: retry with backoff.
    Transient,
    /// Bad request, missing resource, access denied: retrying cannot help.
    Permanent,
}

/// One failed SDK call, read once.
#[derive(Debug)]
pub struct SdkCall {
    pub kind: CallKind,
    /// One line: `cannot reach URL: connection refused`, `PutRecords: ResourceNotFoundException: …`.
    pub line: String,
    /// The SDK's debug form, for `-v`.
    pub debug: String,
}

impl SdkCall {
    /// `operation` names the call in the line; `endpoint` is where the calls go (the URL,
    /// or "AWS (us-east-1)"), named when nothing answers there.
    pub fn read<E, R>(operation: &str, err: &SdkError<E, R>, endpoint: &str) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug + 'static,
    {
        let debug = format!("{err:?}");
        let (kind, line) = match err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().unwrap_or("error");
                let kind = if crate::aws::is_throttling_code(Some(code)) {
                    CallKind::Throttled
                } else if crate::aws::is_transient_code(Some(code)) {
                    CallKind::Transient
                } else {
                    CallKind::Permanent
                };
                let line = match e.message() {
                    Some(m) if !m.is_empty() => format!("{operation}: {code}: {m}"),
                    _ => format!("{operation}: {code}"),
                };
                (kind, line)
            }
            SdkError::DispatchFailure(dispatch) => match unreachable_reason(err) {
                Some(reason) => (
                    CallKind::Unreachable,
                    format!("cannot reach {endpoint}: {reason}"),
                ),
                None if dispatch.is_timeout() => {
                    (CallKind::Transient, format!("{operation}: timed out"))
                }
                // A request the client itself refuses (bad URL, …): no retry changes that.
                None if dispatch.is_user() => (
                    CallKind::Permanent,
                    format!("{operation}: {}", innermost(err)),
                ),
                // A reset or a connection closed mid-response: the next attempt may pass.
                None => (
                    CallKind::Transient,
                    format!("{operation}: {}", innermost(err)),
                ),
            },
            SdkError::TimeoutError(_) => (CallKind::Transient, format!("{operation}: timed out")),
            SdkError::ResponseError(_) => (
                CallKind::Transient,
                format!("{operation}: unreadable response: {}", innermost(err)),
            ),
            _ => (
                CallKind::Permanent,
                format!("{operation}: {}", innermost(err)),
            ),
        };
        Self {
            kind,
            line: one_line(&crate::aws::redact_account_ids(&line)),
            debug,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, CallKind::Throttled | CallKind::Transient)
    }
}

/// Why nothing answers, when that is the failure: a refused connection or an unknown host.
fn unreachable_reason(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some("connection refused"),
                std::io::ErrorKind::AddrNotAvailable => return Some("address not available"),
                _ => {}
            }
        }
        // hyper-util's connector names a failed lookup "dns error".
        if e.to_string().starts_with("dns error") {
            return Some("unknown host");
        }
        next = e.source();
    }
    None
}

/// The last error of the chain: the one that says what actually happened.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut e = err;
    while let Some(next) = e.source() {
        e = next;
    }
    e.to_string()
}

/// The first line only: a message built from service text must not spill over lines.
pub fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim_end();
    if text.lines().nth(1).is_some() {
        format!("{line} …")
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_deep_in_the_chain_is_unreachable() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Wrap(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(unreachable_reason(&err), Some("connection refused"));
        let reset = Wrap(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(unreachable_reason(&reset), None);
    }

    #[test]
    fn lines_stay_on_one_line() {
        assert_eq!(one_line("a\nb"), "a …");
        assert_eq!(one_line("a"), "a");
    }
}
