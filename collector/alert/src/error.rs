//! The crate's single error type and how the collector should map it onto HTTP statuses.

use std::fmt;

/// One problem found in a rule definition, tied to the field that carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    /// Dotted field path inside the rule, e.g. `escalation.channel`.
    pub field: String,
    /// What is wrong, phrased for the person who wrote the rule.
    pub message: String,
}

impl Violation {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The request body is not a rule at all (bad JSON, wrong types, unknown fields).
    #[error("malformed rule: {0}")]
    MalformedRule(String),
    /// The rule parses but its content is unacceptable; every problem is listed.
    #[error("invalid rule: {}", join(.0))]
    InvalidRule(Vec<Violation>),
    /// A metric selector could not be parsed.
    #[error("invalid metric selector `{selector}`: {reason}")]
    InvalidSelector { selector: String, reason: String },
    /// A channel definition is unusable (bad URL, missing or short signing secret).
    #[error("invalid channel `{id}`: {reason}")]
    InvalidChannel { id: String, reason: String },
    /// An argument to an engine call is unusable (e.g. an empty or oversized user name).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An acknowledgement named an alert the state does not hold.
    #[error("no alert with dedup key `{0}` in this rule state")]
    UnknownAlert(String),
    /// An acknowledgement arrived for an alert that is not firing.
    #[error("alert `{dedup_key}` is {status}, only firing alerts can be acknowledged")]
    NotFiring { dedup_key: String, status: String },
    /// The rule state belongs to another rule than the one passed alongside it.
    #[error("state belongs to rule `{state_rule}`, not to rule `{rule}`")]
    StateMismatch { state_rule: String, rule: String },
    /// Sealing or opening a secret failed (wrong key, tampered or truncated ciphertext).
    #[error("secret box: {0}")]
    Crypto(&'static str),
    /// A webhook signature did not verify.
    #[error("signature rejected: {0}")]
    Signature(&'static str),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
    /// Serializing a notification payload failed.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
}

impl AlertError {
    /// The HTTP status the collector's API should answer with: 400 for bodies that do not
    /// parse, 422 for well-formed but unacceptable definitions, 404/409 for acknowledgement
    /// mistakes, 500 for the rest.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::MalformedRule(_) | Self::InvalidArgument(_) => 400,
            Self::InvalidRule(_) | Self::InvalidSelector { .. } | Self::InvalidChannel { .. } => {
                422
            }
            Self::UnknownAlert(_) => 404,
            Self::NotFiring { .. } | Self::StateMismatch { .. } => 409,
            Self::Signature(_) => 401,
            Self::Crypto(_) | Self::Http(_) | Self::Serialization(_) => 500,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = AlertError> = std::result::Result<T, E>;
