//! The crate's single error type.

/// Why an evaluation could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The profile is malformed: mismatched lengths, non-finite values, impossible counts.
    #[error("invalid profile: {what}: {reason}")]
    InvalidProfile { what: String, reason: String },
    /// The profile is well formed but holds too little data to judge.
    #[error("not enough data: {what} ({have} < {need})")]
    InsufficientData { what: String, have: u64, need: u64 },
    /// A configuration value is out of its domain.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The latency histogram bytes could not be decoded.
    #[error("latency histogram: {0}")]
    Latency(String),
    /// The surrogate model could not be fitted or applied.
    #[error("surrogate model: {0}")]
    Surrogate(String),
}

impl EvalError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidProfile {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn insufficient(what: impl Into<String>, have: u64, need: u64) -> Self {
        Self::InsufficientData {
            what: what.into(),
            have,
            need,
        }
    }
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;
