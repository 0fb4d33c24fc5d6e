//! Alert rules, their lifecycle, notifications, escalation and back-testing.
//!
//! Data flows `selector → rule → engine → notify`: a [`Rule`] picks numbers out of a per-window
//! metrics document with a [`Selector`], the [`Engine`] turns them into lifecycle transitions
//! and [`Action`]s (pure, time-injected), and the [`Notifier`] delivers actions to webhook and
//! Slack channels with signatures and retries. [`backtest`] replays stored history through the
//! same engine, and [`Engine::reconcile`] uses that replay to move live alerts when a window is
//! re-evaluated; [`default_rules`] seeds a new project.

pub mod backtest;
pub mod defaults;
pub mod engine;
pub mod error;
pub mod notify;
pub mod reconcile;
pub mod rule;
pub mod selector;

pub use backtest::backtest;
pub use defaults::default_rules;
pub use engine::{
    Acknowledgement, Action, AlertState, Engine, EngineConfig, Notification, NotificationKind,
    RuleState, Status, Transition, TransitionKind, dedup_key,
};
pub use error::{AlertError, Result, Violation};
pub use notify::{
    Attempt, AttemptOutcome, Channel, ChannelKind, DeliveryReport, Notifier, RetryPolicy,
    SealedChannel, SecretBox, sign, verify_signature,
};
pub use reconcile::Revised;
pub use rule::{Comparator, Escalation, Rule, Severity};
pub use selector::{METRIC_ROOTS, Sample, Samples, Selector};
