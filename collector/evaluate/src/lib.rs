//! Evaluations over window profiles.
