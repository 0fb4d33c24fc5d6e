//! The alert lifecycle: a pure, time-injected state machine per (rule, subject).
//!
//! ```text
//!              breach (N-1 more to go)         N consecutive breaching windows
//!   inactive ───────────────────────▶ pending ───────────────────────────────▶ firing ──┐
//!      ▲  ▲                             │                                        │   ▲   │ tick: escalate /
//!      │  └──── healthy window ─────────┘                                        │   └───┘ renotify (unacked)
//!      │                                                      K healthy windows  │
//!      │                                   resolved ◀────────────────────────────┘
//!      └──────── (next breach starts a new episode: resolved → pending/firing)
//! ```
//!
//! Nothing here reads a clock or does I/O: the caller passes the window start and `now`,
//! persists the returned [`RuleState`] and sends the returned [`Action`]s. Flapping is
//! suppressed by hysteresis (a separate resolve threshold on the healthy side) plus
//! resolve-after-K-healthy-windows; both count windows, not seconds, so a back-test over stored
//! history behaves exactly like the live engine. A window without a finite number for a
//! subject ("no data") neither advances nor resets any counter: missing data never resolves
//! a firing alert on its own.
//!
//! [`Engine::observe`] only moves forward; a window whose metrics change after it was
//! observed (a re-evaluation after late labels) goes through [`Engine::reconcile`]
//! (`crate::reconcile`), which replays the stored windows and applies the difference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{AlertError, Result};
use crate::reconcile::Truth;
use crate::rule::{Rule, Severity};
use crate::selector::truncate_for_message;

/// Where one (rule, subject) alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// Who acknowledged a firing alert, and when (unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at_ms: i64,
}

/// The persisted state of one (rule, subject) alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub dedup_key: String,
    pub subject: String,
    pub status: Status,
    /// Consecutive breaching windows (counts towards `for_windows`).
    pub breaching_windows: u32,
    /// Consecutive healthy windows while firing (counts towards `resolve_after_windows`).
    pub healthy_windows: u32,
    /// How many times this alert record has started firing (informational: a record that
    /// goes back to inactive is forgotten, so this restarts).
    pub episode: u64,
    pub firing_since_ms: Option<i64>,
    /// The window the current or last episode fired in; identifies the episode in
    /// notification ids, since windows only move forward.
    pub fired_window_ms: Option<i64>,
    pub last_window_ms: Option<i64>,
    pub last_value: Option<f64>,
    pub acknowledged: Option<Acknowledgement>,
    pub escalated: bool,
    pub last_notified_ms: Option<i64>,
    pub renotify_count: u32,
}

/// What happened to an alert; one history entry per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    /// inactive/resolved → pending
    Pending,
    /// pending → inactive (a healthy window before `for_windows` was reached)
    Cleared,
    /// → firing
    Fired,
    /// firing → resolved
    Resolved,
    Acknowledged,
    Escalated,
    Renotified,
}

/// One entry of an alert's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Monotonic per [`RuleState`]; persist entries with a `seq` above the last one stored.
    pub seq: u64,
    pub dedup_key: String,
    pub subject: String,
    pub kind: TransitionKind,
    pub from: Status,
    pub to: Status,
    pub window_start_ms: Option<i64>,
    pub at_ms: i64,
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The persisted state of one rule applied to one scope (e.g. one model version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub rule_id: String,
    /// What the collector evaluates the rule for (e.g. `model@version`); part of dedup keys.
    pub scope: String,
    /// The first window this state observed: a replay that reaches it starts from a known
    /// (empty) state. None for states persisted before it was recorded.
    #[serde(default)]
    pub first_window_ms: Option<i64>,
    pub last_window_ms: Option<i64>,
    /// Alerts by subject; healthy subjects are not stored.
    pub alerts: BTreeMap<String, AlertState>,
    pub history: Vec<Transition>,
    pub next_seq: u64,
    /// History entries dropped because of the cap (counted, never silent).
    pub history_dropped: u64,
    /// New subjects refused because the per-rule subject cap was full.
    pub rejected_subjects: u64,
    /// Windows older than `last_window_ms`, ignored.
    pub stale_windows: u64,
    /// Windows equal to `last_window_ms` observed again, ignored (idempotence).
    pub repeated_windows: u64,
    /// Re-evaluated windows reconciled (see [`Engine::reconcile`]).
    #[serde(default)]
    pub reconciled_windows: u64,
    /// Subjects a reconciliation left as they were because the history it was given did not
    /// decide their state.
    #[serde(default)]
    pub unsettled_subjects: u64,
}

impl RuleState {
    pub fn new(rule_id: impl Into<String>, scope: impl Into<String>) -> Self {
        Self {
            rule_id: rule_id.into(),
            scope: scope.into(),
            first_window_ms: None,
            last_window_ms: None,
            alerts: BTreeMap::new(),
            history: Vec::new(),
            next_seq: 0,
            history_dropped: 0,
            rejected_subjects: 0,
            stale_windows: 0,
            repeated_windows: 0,
            reconciled_windows: 0,
            unsettled_subjects: 0,
        }
    }

    /// History entries with `seq >= from_seq`.
    pub fn history_since(&self, from_seq: u64) -> &[Transition] {
        let start = self.history.partition_point(|t| t.seq < from_seq);
        &self.history[start..]
    }

    /// The alert with this dedup key, if the state holds it.
    pub fn alert(&self, dedup_key: &str) -> Option<&AlertState> {
        self.alerts.values().find(|a| a.dedup_key == dedup_key)
    }
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    Fire,
    Resolve,
    Escalate,
    Renotify,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fire => "fire",
            Self::Resolve => "resolve",
            Self::Escalate => "escalate",
            Self::Renotify => "renotify",
        }
    }
}

/// The content of one notification; serialized as the `alert` object of webhook bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable per event, so receivers can drop replays and duplicates.
    pub id: String,
    pub kind: NotificationKind,
    pub dedup_key: String,
    pub rule_id: String,
    pub rule_name: String,
    pub scope: String,
    pub subject: String,
    pub metric: String,
    pub comparator: String,
    pub threshold: f64,
    pub value: Option<f64>,
    pub severity: Severity,
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub window_start_ms: Option<i64>,
    pub firing_since_ms: Option<i64>,
    pub at_ms: i64,
    pub episode: u64,
}

/// A notification to deliver to the listed channel ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub channels: Vec<String>,
    pub notification: Notification,
}

/// Bounds that keep persisted state small whatever the documents contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most subjects one rule state tracks at once.
    pub max_subjects: usize,
    /// Most history entries kept in a rule state (the oldest are dropped and counted).
    pub history_cap: usize,
    /// Most subjects read from one document, healthy ones included.
    pub max_subjects_per_window: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_subjects: 1000,
            history_cap: 500,
            max_subjects_per_window: 10_000,
        }
    }
}

/// Longest acknowledging user name accepted.
pub const MAX_USER_LEN: usize = 128;

/// The lifecycle engine. Stateless apart from its bounds; every call is a pure function.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub(crate) config: EngineConfig,
}

/// Per-call context shared by the helpers of one `observe`/`tick`/`reconcile`.
pub(crate) struct Step<'a> {
    rule: &'a Rule,
    state: &'a mut RuleState,
    pub(crate) actions: Vec<Action>,
    now_ms: i64,
    history_cap: usize,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Self { config }
    }

    /// Feeds one window's metrics document through the rule and returns the new state; the
    /// state passed in is left untouched, so an error never costs the caller its state.
    /// Windows must arrive in order:
    /// a window at or before the last one observed is ignored and counted, which makes
    /// repeated evaluation of the same window idempotent. A window whose metrics changed
    /// after it was observed goes to [`Engine::reconcile`] instead.
    pub fn observe(
        &self,
        state: &RuleState,
        rule: &Rule,
        window_start_ms: i64,
        doc: &Value,
        now_ms: i64,
    ) -> Result<(RuleState, Vec<Action>)> {
        check_state(state, rule)?;
        let selector = rule.selector()?;
        let mut state = state.clone();
        match state.last_window_ms {
            Some(last) if window_start_ms == last => {
                state.repeated_windows += 1;
                return Ok((state, Vec::new()));
            }
            Some(last) if window_start_ms < last => {
                state.stale_windows += 1;
                return Ok((state, Vec::new()));
            }
            _ => {
                state.last_window_ms = Some(window_start_ms);
                state.first_window_ms.get_or_insert(window_start_ms);
            }
        }
        let samples = selector.read(doc, self.config.max_subjects_per_window);
        state.rejected_subjects += samples.rejected;
        let mut step = self.step(&mut state, rule, now_ms);
        for sample in samples.samples {
            let Some(value) = sample.value else { continue };
            step.observe_value(
                &sample.subject,
                value,
                window_start_ms,
                self.config.max_subjects,
            );
        }
        let actions = step.actions;
        state.alerts.retain(|_, a| a.status != Status::Inactive);
        Ok((state, actions))
    }

    /// Runs the timers of firing, unacknowledged alerts: escalation once `after_secs` have
    /// passed since firing, renotification every `renotify_secs`. Calling it again with the
    /// same `now` does nothing more.
    pub fn tick(
        &self,
        state: &RuleState,
        rule: &Rule,
        now_ms: i64,
    ) -> Result<(RuleState, Vec<Action>)> {
        check_state(state, rule)?;
        let mut state = state.clone();
        let mut step = self.step(&mut state, rule, now_ms);
        let subjects: Vec<String> = step
            .state
            .alerts
            .iter()
            .filter(|(_, a)| a.status == Status::Firing && a.acknowledged.is_none())
            .map(|(s, _)| s.clone())
            .collect();
        for subject in subjects {
            step.run_timers(&subject);
        }
        let actions = step.actions;
        Ok((state, actions))
    }

    /// Acknowledges a firing alert: it stops escalating and renotifying until it resolves.
    /// Acknowledging twice keeps the first acknowledgement.
    pub fn acknowledge(
        &self,
        state: &RuleState,
        dedup_key: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<RuleState> {
        if user.trim().is_empty() || user.len() > MAX_USER_LEN {
            return Err(AlertError::InvalidArgument(format!(
                "user must be 1..={MAX_USER_LEN} bytes"
            )));
        }
        let mut state = state.clone();
        let Some(subject) = state
            .alerts
            .iter()
            .find(|(_, a)| a.dedup_key == dedup_key)
            .map(|(s, _)| s.clone())
        else {
            return Err(AlertError::UnknownAlert(truncate_for_message(dedup_key)));
        };
        let cap = self.config.history_cap;
        let Some(alert) = state.alerts.get_mut(&subject) else {
            return Err(AlertError::UnknownAlert(truncate_for_message(dedup_key)));
        };
        if alert.status != Status::Firing {
            return Err(AlertError::NotFiring {
                dedup_key: dedup_key.to_owned(),
                status: alert.status.as_str().to_owned(),
            });
        }
        if alert.acknowledged.is_some() {
            return Ok(state);
        }
        alert.acknowledged = Some(Acknowledgement {
            by: user.to_owned(),
            at_ms: now_ms,
        });
        let mut entry = transition(
            alert,
            TransitionKind::Acknowledged,
            Status::Firing,
            None,
            now_ms,
        );
        entry.by = Some(user.to_owned());
        push_history(&mut state, entry, cap);
        Ok(state)
    }

    pub(crate) fn step<'a>(
        &self,
        state: &'a mut RuleState,
        rule: &'a Rule,
        now_ms: i64,
    ) -> Step<'a> {
        Step {
            rule,
            state,
            actions: Vec::new(),
            now_ms,
            history_cap: self.config.history_cap,
        }
    }
}

pub(crate) fn check_state(state: &RuleState, rule: &Rule) -> Result<()> {
    if state.rule_id == rule.id {
        Ok(())
    } else {
        Err(AlertError::StateMismatch {
            state_rule: truncate_for_message(&state.rule_id),
            rule: truncate_for_message(&rule.id),
        })
    }
}

impl Step<'_> {
    fn observe_value(&mut self, subject: &str, value: f64, window: i64, max_subjects: usize) {
        let rule = self.rule;
        if !self.state.alerts.contains_key(subject) {
            // Healthy subjects are not stored; a new one only matters once it breaches.
            if !rule.breaches(value) || !self.make_room(max_subjects) {
                return;
            }
            let alert = new_alert(&self.state.rule_id, &self.state.scope, subject);
            self.state.alerts.insert(subject.to_owned(), alert);
        }
        let Some(alert) = self.state.alerts.get_mut(subject) else {
            return;
        };
        alert.last_window_ms = Some(window);
        alert.last_value = Some(value);
        let needed = windows_needed;
        match alert.status {
            Status::Inactive | Status::Resolved | Status::Pending if rule.breaches(value) => {
                alert.breaching_windows = alert.breaching_windows.saturating_add(1);
                if alert.breaching_windows >= needed(rule.for_windows) {
                    self.fire(subject, window);
                } else if alert.status != Status::Pending {
                    self.record(
                        subject,
                        TransitionKind::Pending,
                        Status::Pending,
                        Some(window),
                    );
                }
            }
            Status::Pending => {
                self.record(
                    subject,
                    TransitionKind::Cleared,
                    Status::Inactive,
                    Some(window),
                );
            }
            Status::Inactive | Status::Resolved => alert.breaching_windows = 0,
            Status::Firing if rule.is_healthy(value) => {
                alert.healthy_windows = alert.healthy_windows.saturating_add(1);
                if alert.healthy_windows >= needed(rule.resolve_after_windows) {
                    self.resolve(subject, window);
                }
            }
            Status::Firing => alert.healthy_windows = 0,
        }
    }

    /// Makes the live alert of `subject` agree with `truth`, recording and notifying only the
    /// difference: a fire when it should be firing and is not, a resolve when it fires and
    /// should not, pending/cleared entries otherwise. A past episode the live alert never saw
    /// (fired and resolved within the replay) is not announced. The counters come from the
    /// truth so the next window continues from it.
    pub(crate) fn adopt(&mut self, subject: &str, truth: &Truth, max_subjects: usize) {
        let live = self.state.alerts.get(subject);
        let live_status = live.map_or(Status::Inactive, |a| a.status);
        let live_fired = live.and_then(|a| a.fired_window_ms);
        let should = truth.alert.as_ref().map_or(Status::Inactive, |a| a.status);
        if live.is_none() {
            let wanted = matches!(should, Status::Firing | Status::Pending);
            if !wanted || !self.make_room(max_subjects) {
                return;
            }
            let alert = new_alert(&self.state.rule_id, &self.state.scope, subject);
            self.state.alerts.insert(subject.to_owned(), alert);
        }
        if let Some(alert) = self.state.alerts.get_mut(subject)
            && let Some((window, value)) = truth.latest
        {
            alert.last_window_ms = Some(window);
            alert.last_value = Some(value);
        }
        match (live_status, should) {
            (Status::Firing, Status::Firing) | (Status::Pending, Status::Pending) => {}
            (_, Status::Firing) => self.fire(subject, truth.fired_window_ms),
            (Status::Firing, _) => {
                // The replay's own resolution names the window only if it ends this episode.
                let window = truth
                    .resolved_window_ms
                    .filter(|w| live_fired.is_none_or(|f| *w >= f))
                    .unwrap_or(truth.revised_window_ms);
                self.resolve(subject, window);
                if should == Status::Pending {
                    let window = Some(truth.pending_window_ms);
                    self.record(subject, TransitionKind::Pending, Status::Pending, window);
                }
            }
            (_, Status::Pending) => {
                let window = Some(truth.pending_window_ms);
                self.record(subject, TransitionKind::Pending, Status::Pending, window);
            }
            (Status::Pending, _) => {
                let window = Some(truth.revised_window_ms);
                self.record(subject, TransitionKind::Cleared, Status::Inactive, window);
            }
            _ => {}
        }
        if let Some(alert) = self.state.alerts.get_mut(subject) {
            let counts = truth.alert.as_ref();
            alert.breaching_windows = counts.map_or(0, |a| a.breaching_windows);
            alert.healthy_windows = counts.map_or(0, |a| a.healthy_windows);
        }
    }

    /// Frees a slot for a new subject by forgetting the longest-resolved alert; refuses (and
    /// counts) when every slot holds a live alert.
    fn make_room(&mut self, max_subjects: usize) -> bool {
        if self.state.alerts.len() < max_subjects {
            return true;
        }
        let oldest_resolved = self
            .state
            .alerts
            .iter()
            .filter(|(_, a)| a.status == Status::Resolved)
            .min_by_key(|(_, a)| a.last_window_ms)
            .map(|(s, _)| s.clone());
        match oldest_resolved {
            Some(subject) => {
                self.state.alerts.remove(&subject);
                true
            }
            None => {
                self.state.rejected_subjects += 1;
                false
            }
        }
    }

    fn fire(&mut self, subject: &str, window: i64) {
        let now = self.now_ms;
        if let Some(alert) = self.state.alerts.get_mut(subject) {
            alert.episode += 1;
            alert.firing_since_ms = Some(now);
            alert.fired_window_ms = Some(window);
            alert.acknowledged = None;
            alert.escalated = false;
            alert.last_notified_ms = Some(now);
            alert.renotify_count = 0;
            alert.healthy_windows = 0;
        }
        self.record(subject, TransitionKind::Fired, Status::Firing, Some(window));
        let channels = self.rule.channels.clone();
        self.notify(subject, NotificationKind::Fire, channels, Some(window));
    }

    fn resolve(&mut self, subject: &str, window: i64) {
        let mut channels = self.rule.channels.clone();
        if let Some(alert) = self.state.alerts.get_mut(subject) {
            alert.breaching_windows = 0;
            alert.healthy_windows = 0;
            // Whoever was paged on escalation also needs to hear that it is over.
            if alert.escalated
                && let Some(escalation) = &self.rule.escalation
                && !channels.contains(&escalation.channel)
            {
                channels.push(escalation.channel.clone());
            }
        }
        self.record(
            subject,
            TransitionKind::Resolved,
            Status::Resolved,
            Some(window),
        );
        self.notify(subject, NotificationKind::Resolve, channels, Some(window));
    }

    fn run_timers(&mut self, subject: &str) {
        let (rule, now) = (self.rule, self.now_ms);
        let Some(alert) = self.state.alerts.get_mut(subject) else {
            return;
        };
        let since = alert.firing_since_ms.unwrap_or(now);
        let mut escalate = None;
        if let Some(escalation) = &rule.escalation
            && !alert.escalated
            && elapsed_ms(since, now) >= secs_to_ms(escalation.after_secs)
        {
            alert.escalated = true;
            escalate = Some(escalation.channel.clone());
        }
        let mut renotify = false;
        if let Some(every) = rule.renotify_secs {
            let last = alert.last_notified_ms.unwrap_or(since);
            if elapsed_ms(last, now) >= secs_to_ms(every) {
                alert.last_notified_ms = Some(now);
                alert.renotify_count = alert.renotify_count.saturating_add(1);
                renotify = true;
            }
        }
        if let Some(channel) = escalate {
            self.record(subject, TransitionKind::Escalated, Status::Firing, None);
            self.notify(subject, NotificationKind::Escalate, vec![channel], None);
        }
        if renotify {
            self.record(subject, TransitionKind::Renotified, Status::Firing, None);
            let channels = rule.channels.clone();
            self.notify(subject, NotificationKind::Renotify, channels, None);
        }
    }

    fn record(&mut self, subject: &str, kind: TransitionKind, to: Status, window: Option<i64>) {
        let now = self.now_ms;
        let Some(alert) = self.state.alerts.get_mut(subject) else {
            return;
        };
        let entry = transition(alert, kind, to, window, now);
        alert.status = to;
        if to == Status::Inactive {
            alert.breaching_windows = 0;
        }
        push_history(self.state, entry, self.history_cap);
    }

    fn notify(
        &mut self,
        subject: &str,
        kind: NotificationKind,
        channels: Vec<String>,
        window: Option<i64>,
    ) {
        let Some(alert) = self.state.alerts.get(subject) else {
            return;
        };
        let rule = self.rule;
        let sequence = if kind == NotificationKind::Renotify {
            alert.renotify_count
        } else {
            0
        };
        let notification = Notification {
            id: notification_id(
                &alert.dedup_key,
                kind,
                (alert.fired_window_ms.unwrap_or(i64::MIN), alert.episode),
                sequence,
            ),
            kind,
            dedup_key: alert.dedup_key.clone(),
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            scope: self.state.scope.clone(),
            subject: alert.subject.clone(),
            metric: rule.metric.clone(),
            comparator: rule.comparator.symbol().to_owned(),
            threshold: rule.threshold,
            value: alert.last_value,
            severity: rule.severity,
            status: alert.status,
            labels: rule.labels.clone(),
            window_start_ms: window,
            firing_since_ms: alert.firing_since_ms,
            at_ms: self.now_ms,
            episode: alert.episode,
        };
        self.actions.push(Action {
            channels,
            notification,
        });
    }
}

/// Consecutive windows a rule count asks for (at least one).
pub(crate) fn windows_needed(n: i64) -> u32 {
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

fn new_alert(rule_id: &str, scope: &str, subject: &str) -> AlertState {
    AlertState {
        dedup_key: dedup_key(rule_id, scope, subject),
        subject: subject.to_owned(),
        status: Status::Inactive,
        breaching_windows: 0,
        healthy_windows: 0,
        episode: 0,
        firing_since_ms: None,
        fired_window_ms: None,
        last_window_ms: None,
        last_value: None,
        acknowledged: None,
        escalated: false,
        last_notified_ms: None,
        renotify_count: 0,
    }
}

fn transition(
    alert: &AlertState,
    kind: TransitionKind,
    to: Status,
    window: Option<i64>,
    now_ms: i64,
) -> Transition {
    Transition {
        seq: 0,
        dedup_key: alert.dedup_key.clone(),
        subject: alert.subject.clone(),
        kind,
        from: alert.status,
        to,
        window_start_ms: window,
        at_ms: now_ms,
        value: alert.last_value,
        by: None,
    }
}

fn push_history(state: &mut RuleState, mut entry: Transition, cap: usize) {
    entry.seq = state.next_seq;
    state.next_seq += 1;
    state.history.push(entry);
    if state.history.len() > cap {
        let excess = state.history.len() - cap;
        state.history.drain(..excess);
        state.history_dropped += excess as u64;
    }
}

fn elapsed_ms(from: i64, to: i64) -> u64 {
    u64::try_from(to.saturating_sub(from)).unwrap_or(0)
}

fn secs_to_ms(secs: u64) -> u64 {
    secs.saturating_mul(1000)
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// The deduplication key of the alert a rule raises for one subject within one scope.
pub fn dedup_key(rule_id: &str, scope: &str, subject: &str) -> String {
    short_hash(&[rule_id.as_bytes(), scope.as_bytes(), subject.as_bytes()])
}

/// `episode` is the fired window and the episode count: windows alone repeat when a
/// reconciliation withdraws an episode and a later one reinstates it at the same window, and
/// a receiver would drop the reinstated fire as a duplicate.
fn notification_id(
    dedup_key: &str,
    kind: NotificationKind,
    episode: (i64, u64),
    sequence: u32,
) -> String {
    short_hash(&[
        dedup_key.as_bytes(),
        kind.as_str().as_bytes(),
        &episode.0.to_be_bytes(),
        &episode.1.to_be_bytes(),
        &sequence.to_be_bytes(),
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::rule::{Comparator, Escalation};
    use serde_json::json;

    pub(crate) const MIN: i64 = 60_000;

    /// Trust below 60 for 2 windows; resolves after 2 windows at or above 65.
    pub(crate) fn rule() -> Rule {
        Rule {
            id: "r".into(),
            project: "p".into(),
            model: None,
            version: None,
            name: "Trust".into(),
            metric: "trust_score".into(),
            comparator: Comparator::Lt,
            threshold: 60.0,
            resolve_threshold: Some(65.0),
            for_windows: 2,
            resolve_after_windows: 2,
            severity: Severity::Critical,
            labels: BTreeMap::new(),
            channels: vec!["hook".into()],
            escalation: Some(Escalation {
                after_secs: 600,
                channel: "pager".into(),
            }),
            renotify_secs: Some(3600),
        }
    }

    /// Any feature's PSI above 0.25 fires in its first window; there is no hysteresis band.
    pub(crate) fn psi_rule() -> Rule {
        Rule {
            metric: "drift.features.*.psi".into(),
            comparator: Comparator::Gt,
            threshold: 0.25,
            resolve_threshold: None,
            for_windows: 1,
            ..rule()
        }
    }

    /// The live state after observing `docs` (window start, document) once each, in order,
    /// each when its window closes; and the actions of each window.
    pub(crate) fn observe_each(
        rule: &Rule,
        docs: &[(i64, Value)],
    ) -> (RuleState, Vec<Vec<Action>>) {
        let engine = Engine::default();
        let mut state = RuleState::new(&rule.id, "m@1");
        let mut actions = Vec::new();
        for (w, doc) in docs {
            let (next, a) = engine.observe(&state, rule, *w, doc, w + MIN).unwrap();
            state = next;
            actions.push(a);
        }
        (state, actions)
    }

    /// Feeds `values` as consecutive windows (`None` = metric absent) and returns the final
    /// state and the kinds of notification per window.
    fn run(rule: &Rule, values: &[Option<f64>]) -> (RuleState, Vec<Vec<NotificationKind>>) {
        let docs: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let doc = v.map_or(json!({}), |v| json!({"trust_score": v}));
                (i as i64 * MIN, doc)
            })
            .collect();
        let (state, actions) = observe_each(rule, &docs);
        let kinds = actions
            .iter()
            .map(|a| a.iter().map(|a| a.notification.kind).collect())
            .collect();
        (state, kinds)
    }

    fn only(state: &RuleState) -> &AlertState {
        assert_eq!(state.alerts.len(), 1);
        state.alerts.values().next().unwrap()
    }

    #[test]
    fn pending_then_firing_then_resolved_with_hysteresis() {
        use NotificationKind::*;
        let values = [70.0, 55.0, 55.0, 50.0, 62.0, 66.0, 64.0, 66.0, 70.0, 80.0];
        let (state, kinds) = run(&rule(), &values.map(Some));
        assert_eq!(
            kinds,
            vec![
                vec![],
                vec![],
                vec![Fire],
                vec![],
                vec![],        // 62 is above 60 but inside the band: still firing
                vec![],        // first healthy window
                vec![],        // 64 resets the healthy count
                vec![],        // healthy again (1)
                vec![Resolve], // healthy (2)
                vec![],
            ]
        );
        let kinds: Vec<_> = state.history.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TransitionKind::Pending,
                TransitionKind::Fired,
                TransitionKind::Resolved
            ]
        );
        assert_eq!(only(&state).status, Status::Resolved);
        assert_eq!(state.history[1].window_start_ms, Some(2 * MIN));
        assert_eq!(state.history[2].window_start_ms, Some(8 * MIN));
    }

    #[test]
    fn a_healthy_window_clears_pending_and_healthy_subjects_are_not_stored() {
        let (state, kinds) = run(&rule(), &[Some(55.0), Some(61.0), Some(55.0)]);
        assert!(kinds.iter().all(Vec::is_empty));
        assert_eq!(only(&state).status, Status::Pending);
        let kinds: Vec<_> = state.history.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TransitionKind::Pending,
                TransitionKind::Cleared,
                TransitionKind::Pending
            ]
        );
        let (state, _) = run(&rule(), &[Some(55.0), Some(61.0)]);
        assert!(state.alerts.is_empty());
    }

    #[test]
    fn no_data_neither_advances_nor_resets_nor_resolves() {
        use NotificationKind::*;
        let v = [
            Some(55.0),
            None,
            Some(55.0),
            None,
            None,
            None,
            Some(70.0),
            None,
            Some(70.0),
        ];
        let (state, kinds) = run(&rule(), &v);
        assert_eq!(
            kinds[2],
            vec![Fire],
            "the gap did not reset the breach count"
        );
        assert!(
            kinds[3..8].iter().all(Vec::is_empty),
            "missing data resolved: {kinds:?}"
        );
        assert_eq!(kinds[8], vec![Resolve]);
        assert_eq!(only(&state).status, Status::Resolved);
    }

    #[test]
    fn repeated_and_stale_windows_are_ignored_and_counted() {
        let engine = Engine::default();
        let r = Rule {
            for_windows: 1,
            ..rule()
        };
        let doc = json!({"trust_score": 10});
        let (mut state, actions) = engine
            .observe(&RuleState::new("r", ""), &r, 5 * MIN, &doc, 0)
            .unwrap();
        assert_eq!(actions.len(), 1);
        for _ in 0..3 {
            let (next, actions) = engine.observe(&state, &r, 5 * MIN, &doc, 1).unwrap();
            assert!(actions.is_empty());
            state = next;
        }
        let (state, actions) = engine
            .observe(&state, &r, 4 * MIN, &json!({"trust_score": 99}), 2)
            .unwrap();
        assert!(actions.is_empty());
        assert_eq!((state.repeated_windows, state.stale_windows), (3, 1));
        assert_eq!(only(&state).status, Status::Firing);
    }

    #[test]
    fn escalation_and_renotify_follow_the_clock_unless_acknowledged() {
        let engine = Engine::default();
        let r = Rule {
            for_windows: 1,
            ..rule()
        };
        let t0 = 1_000_000;
        let (state, fire) = engine
            .observe(
                &RuleState::new("r", ""),
                &r,
                0,
                &json!({"trust_score": 1}),
                t0,
            )
            .unwrap();
        let key = fire[0].notification.dedup_key.clone();
        let (state, a) = engine.tick(&state, &r, t0 + 599_999).unwrap();
        assert!(a.is_empty());
        let (state, a) = engine.tick(&state, &r, t0 + 600_000).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].notification.kind, NotificationKind::Escalate);
        assert_eq!(a[0].channels, vec!["pager".to_owned()]);
        let (state, a) = engine.tick(&state, &r, t0 + 600_000).unwrap();
        assert!(
            a.is_empty(),
            "a second tick at the same time must not re-escalate"
        );
        let (state, a) = engine.tick(&state, &r, t0 + 3_600_000).unwrap();
        assert_eq!(a[0].notification.kind, NotificationKind::Renotify);
        let (state, a) = engine.tick(&state, &r, t0 + 7_200_000).unwrap();
        assert_eq!(a[0].notification.kind, NotificationKind::Renotify);
        let renotify_ids: Vec<_> = state.history.iter().map(|t| t.kind).collect();
        assert_eq!(
            renotify_ids
                .iter()
                .filter(|k| **k == TransitionKind::Renotified)
                .count(),
            2
        );

        let state = engine
            .acknowledge(&state, &key, "alice", t0 + 7_300_000)
            .unwrap();
        let ack = state.alert(&key).unwrap().acknowledged.clone().unwrap();
        assert_eq!((ack.by.as_str(), ack.at_ms), ("alice", t0 + 7_300_000));
        let state = engine
            .acknowledge(&state, &key, "bob", t0 + 7_400_000)
            .unwrap();
        assert_eq!(
            state.alert(&key).unwrap().acknowledged.as_ref().unwrap().by,
            "alice"
        );
        let (state, a) = engine.tick(&state, &r, t0 + 99_000_000).unwrap();
        assert!(a.is_empty(), "acknowledged alerts stay quiet");

        // Resolution reaches the escalation channel too, since it was paged.
        let healthy = json!({"trust_score": 90});
        let (state, _) = engine
            .observe(&state, &r, MIN, &healthy, t0 + 99_000_001)
            .unwrap();
        let (_, a) = engine
            .observe(&state, &r, 2 * MIN, &healthy, t0 + 99_000_002)
            .unwrap();
        assert_eq!(a[0].notification.kind, NotificationKind::Resolve);
        assert_eq!(a[0].channels, vec!["hook".to_owned(), "pager".to_owned()]);
    }

    #[test]
    fn acknowledge_errors_are_specific() {
        let engine = Engine::default();
        let (state, _) = run(&rule(), &[Some(55.0)]);
        let key = only(&state).dedup_key.clone();
        let err = engine.acknowledge(&state, &key, "a", 0).unwrap_err();
        assert!(matches!(err, AlertError::NotFiring { .. }), "{err}");
        assert_eq!(err.http_status(), 409);
        let err = engine.acknowledge(&state, "nope", "a", 0).unwrap_err();
        assert_eq!(err.http_status(), 404);
        let err = engine.acknowledge(&state, &key, " ", 0).unwrap_err();
        assert_eq!(err.http_status(), 400);
        let err = engine
            .acknowledge(&state, &key, &"u".repeat(1000), 0)
            .unwrap_err();
        assert_eq!(err.http_status(), 400);
    }

    #[test]
    fn wrong_state_for_rule_is_rejected() {
        let err = Engine::default()
            .observe(&RuleState::new("other", ""), &rule(), 0, &json!({}), 0)
            .unwrap_err();
        assert!(matches!(err, AlertError::StateMismatch { .. }));
    }

    #[test]
    fn wildcard_subjects_are_separate_alerts_with_distinct_dedup_keys() {
        let engine = Engine::default();
        let r = psi_rule();
        let doc = json!({"drift": {"features": {"a": {"psi": 0.3}, "b": {"psi": 0.4}, "c": {"psi": 0.1}}}});
        let (state, actions) = engine
            .observe(&RuleState::new("r", "m@1"), &r, 0, &doc, 0)
            .unwrap();
        let subjects: Vec<_> = actions
            .iter()
            .map(|a| a.notification.subject.as_str())
            .collect();
        assert_eq!(subjects, vec!["a", "b"]);
        assert_ne!(
            actions[0].notification.dedup_key,
            actions[1].notification.dedup_key
        );
        assert_eq!(
            actions[0].notification.dedup_key,
            dedup_key("r", "m@1", "a")
        );
        assert_ne!(dedup_key("r", "m@1", "a"), dedup_key("r", "m@2", "a"));
        assert_eq!(state.alerts.len(), 2);
    }

    #[test]
    fn subject_and_history_caps_count_what_they_drop() {
        let engine = Engine::new(EngineConfig {
            max_subjects: 2,
            history_cap: 3,
            ..EngineConfig::default()
        });
        let r = Rule {
            resolve_after_windows: 1,
            ..psi_rule()
        };
        let doc =
            json!({"drift": {"features": {"a": {"psi": 1}, "b": {"psi": 1}, "c": {"psi": 1}}}});
        let (state, actions) = engine
            .observe(&RuleState::new("r", ""), &r, 0, &doc, 0)
            .unwrap();
        assert_eq!(actions.len(), 2);
        assert_eq!(state.rejected_subjects, 1);
        let doc2 =
            json!({"drift": {"features": {"a": {"psi": 0}, "b": {"psi": 0}, "d": {"psi": 1}}}});
        let (state, actions) = engine.observe(&state, &r, MIN, &doc2, 1).unwrap();
        // a and b resolve; d takes the slot of the longest-resolved alert.
        assert_eq!(actions.len(), 3);
        assert!(state.alerts.contains_key("d"));
        assert_eq!(state.history.len(), 3);
        assert_eq!(state.history_dropped, 2);
        assert_eq!(state.history_since(4).len(), 1);
        assert_eq!(state.next_seq, 5);
    }

    #[test]
    fn notification_ids_are_stable_per_event_and_distinct_across_events() {
        use NotificationKind::*;
        let r = Rule {
            resolve_after_windows: 1,
            ..rule()
        };
        // The pending alert cleared at window 4 is forgotten, so the second episode starts
        // from a fresh alert record: its ids must still differ from the first episode's.
        let v = [1.0, 1.0, 99.0, 1.0, 99.0, 1.0, 1.0, 99.0].map(Some);
        let engine = Engine::default();
        let collect = || {
            let mut state = RuleState::new("r", "");
            let mut ids = Vec::new();
            for (i, v) in v.iter().enumerate() {
                let doc = json!({"trust_score": v});
                let (next, a) = engine
                    .observe(&state, &r, i as i64, &doc, i as i64)
                    .unwrap();
                state = next;
                ids.extend(
                    a.into_iter()
                        .map(|a| (a.notification.kind, a.notification.id)),
                );
            }
            ids
        };
        let first = collect();
        assert_eq!(first, collect());
        assert_eq!(
            first.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            vec![Fire, Resolve, Fire, Resolve]
        );
        let unique: std::collections::BTreeSet<_> = first.iter().map(|(_, id)| id).collect();
        assert_eq!(unique.len(), 4);
    }

    #[test]
    fn state_survives_a_json_round_trip() {
        let (state, _) = run(&rule(), &[Some(1.0), Some(1.0), Some(99.0)]);
        let json = serde_json::to_string(&state).unwrap();
        let back: RuleState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }
}
