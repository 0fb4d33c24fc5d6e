//! Notification channels and delivery: where alerts leave the system.
//!
//! `channel` holds channel definitions and their sealed (encrypted) form, `payload` renders a
//! notification for a generic webhook or Slack, `sign` signs and verifies webhook bodies,
//! `deliver` sends with retries and reports every attempt, `secret` encrypts channel secrets
//! at rest.

mod channel;
mod deliver;
mod payload;
mod secret;
mod sign;

pub use channel::{Channel, ChannelKind, SealedChannel};
pub use deliver::{Attempt, AttemptOutcome, DeliveryReport, Notifier, RetryPolicy};
pub use payload::{slack_payload, webhook_body};
pub use secret::SecretBox;
pub use sign::{DEFAULT_TOLERANCE, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature};

/// Header carrying the notification id, for receivers that dedup before parsing the body.
pub const ID_HEADER: &str = "X-NeuroCloak-Id";
