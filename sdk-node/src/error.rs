//! The one mapping from core errors to JS errors: every error thrown by the addon carries a
//! stable `err.code` string that callers can switch on.

use neurocloak_core::CoreError;

/// Stable `err.code` values (documented in docs/node.md; never renamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A JS argument of the wrong shape (not data: data problems are `InvalidData`).
    InvalidArgument,
    /// The monitor options were rejected.
    InvalidConfig,
    /// Strict mode: a value the core would otherwise have counted as a data-quality issue.
    InvalidData,
    /// Columns of a batch disagree in length or are otherwise unreadable.
    InvalidBatch,
    /// A profile or reference failed validation.
    InvalidProfile,
    /// Two profiles that cannot be merged.
    Incompatible,
    /// The monitor was shut down.
    ShutDown,
    /// A flush or shutdown did not finish in time.
    Timeout,
    /// Shipping to the agent failed.
    Ship,
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        match self {
            Code::InvalidArgument => "NC_INVALID_ARGUMENT",
            Code::InvalidConfig => "NC_INVALID_CONFIG",
            Code::InvalidData => "NC_INVALID_DATA",
            Code::InvalidBatch => "NC_INVALID_BATCH",
            Code::InvalidProfile => "NC_INVALID_PROFILE",
            Code::Incompatible => "NC_INCOMPATIBLE",
            Code::ShutDown => "NC_SHUT_DOWN",
            Code::Timeout => "NC_TIMEOUT",
            Code::Ship => "NC_SHIP",
        }
    }
}

/// What every fallible addon function returns.
pub type Result<T> = napi::Result<T, Code>;

/// A JS error with a stable code.
pub fn error(code: Code, reason: impl Into<String>) -> napi::Error<Code> {
    napi::Error::new(code, reason.into())
}

/// A JS argument that cannot be converted.
pub fn invalid_argument(reason: impl Into<String>) -> napi::Error<Code> {
    error(Code::InvalidArgument, reason)
}

/// The single `CoreError` → JS mapping.
pub fn from_core(e: CoreError) -> napi::Error<Code> {
    let code = match &e {
        CoreError::InvalidProto { .. } => Code::InvalidProfile,
        CoreError::Incompatible(_) => Code::Incompatible,
        CoreError::Config(_) => Code::InvalidConfig,
        CoreError::Data { .. } => Code::InvalidData,
        CoreError::Batch(_) => Code::InvalidBatch,
        CoreError::Shutdown => Code::ShutDown,
        CoreError::Timeout(_) => Code::Timeout,
        CoreError::Ship(_) => Code::Ship,
    };
    error(code, e.to_string())
}
