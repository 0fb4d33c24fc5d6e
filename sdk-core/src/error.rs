//! The crate's single error type.

use std::time::Duration;

/// What was wrong with one value in strict mode (the same conditions are counted, not raised,
/// outside strict mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataIssue {
    /// The value was absent or explicitly missing.
    Missing,
    /// A NaN number.
    NaN,
    /// Positive infinity.
    PosInf,
    /// Negative infinity.
    NegInf,
    /// The value's type does not match the feature's kind (e.g. text for a numeric feature).
    TypeMismatch,
    /// A string longer than the configured limit.
    TooLong,
    /// A feature name that is not in the schema.
    UnknownFeature,
    /// A prediction, label or score that does not fit the task (unknown class, score outside [0, 1]).
    InvalidOutcome,
    /// A prediction id the collector would refuse (empty, over 128 bytes, control characters).
    InvalidId,
}

impl std::fmt::Display for DataIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            DataIssue::Missing => "missing value",
            DataIssue::NaN => "NaN",
            DataIssue::PosInf => "+inf",
            DataIssue::NegInf => "-inf",
            DataIssue::TypeMismatch => "type mismatch",
            DataIssue::TooLong => "string longer than the limit",
            DataIssue::UnknownFeature => "feature not in the schema",
            DataIssue::InvalidOutcome => "invalid prediction, label or score",
            DataIssue::InvalidId => {
                "prediction id empty, over 128 bytes or with control characters"
            }
        };
        f.write_str(s)
    }
}

/// Every error `neurocloak-core` returns.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A protobuf message failed validation (hostile or corrupted input).
    #[error("invalid {what}: {why}")]
    InvalidProto {
        /// Which message or field.
        what: &'static str,
        /// What was wrong.
        why: String,
    },
    /// Two profiles or sketches that cannot be merged (different window, model, kind, k, ...).
    #[error("cannot merge: {0}")]
    Incompatible(String),
    /// The monitor configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Strict mode: a value that would otherwise have been counted as a data-quality issue.
    #[error("feature `{feature}`: {issue}")]
    Data {
        /// Feature (or `prediction` / `label` / `scores`) the value belongs to.
        feature: String,
        /// What was wrong.
        issue: DataIssue,
    },
    /// A columnar batch whose columns disagree in length, or whose offsets/codes are out of range.
    #[error("invalid batch: {0}")]
    Batch(String),
    /// The monitor or shipper was shut down.
    #[error("monitor is shut down")]
    Shutdown,
    /// A flush or shutdown did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Shipping to the agent failed.
    #[error("shipping: {0}")]
    Ship(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> CoreError {
    CoreError::InvalidProto {
        what,
        why: why.into(),
    }
}
