//! How a command fails, for a person: one line, at most one hint, an exit code — and the
//! SDK's full error (headers, body, the whole chain) only under `-v` or `RUST_LOG`.
//! An SDK error becomes one through [`SdkCall`] (`streamwatch_adapters::sdk_call`, shared
//! with the emulator), which reads it once: unreachable, retryable or permanent.

/// Exit code for a usage error (sysexits' EX_USAGE); 1 and 2 have meanings of their own.
pub const EXIT_USAGE: u8 = 64;

/// How a command failed: a one-line message, an optional hint, the exit code, and the
/// detail (the SDK's debug form) printed only when asked for.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
    pub detail: Option<String>,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::with_code(EXIT_USAGE, message)
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Self::with_code(1, message)
    }

    pub fn with_code(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: one_line(&message.into()),
            hint: None,
            detail: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(one_line(&hint.into()));
        self
    }

    pub fn detail(mut self, detail: Option<String>) -> Self {
        self.detail = detail;
        self
    }

    /// Writes the failure to stderr: the line, the hint, and the detail when `verbose`.
    pub fn print(&self, verbose: bool) {
        eprintln!("streamwatch: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("  hint: {hint}");
        }
        if verbose && let Some(detail) = &self.detail {
            eprintln!("{detail}");
        }
    }
}

use streamwatch_adapters::sdk_call::one_line;
pub use streamwatch_adapters::sdk_call::{CallKind, SdkCall};

/// An SDK failure as the command's failure (exit 1), with the debug form for `-v` and, when
/// nothing answers, a hint to start the local stack.
impl From<SdkCall> for Failure {
    fn from(call: SdkCall) -> Self {
        let hint = (call.kind == CallKind::Unreachable).then(|| {
            "is the endpoint running? (`streamwatch dev up` starts the local stack)".to_owned()
        });
        let mut f = Failure::runtime(call.line).detail(Some(call.debug));
        f.hint = hint;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line() {
        assert_eq!(Failure::runtime("a\nb").message, "a …");
        assert_eq!(Failure::runtime("a").message, "a");
    }
}
