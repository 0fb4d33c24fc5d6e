//! Evaluations over window profiles: drift, performance, fairness, data quality, robustness
//! inputs, explainability and operations for one window against a baseline, and the trust
//! score built from them. A pure library over the wire types — no I/O.
//!
//! Entry points: [`evaluate_window`] then [`trust_score`]. Formulas: `docs/metrics.md` and
//! `docs/trust-score.md`.

pub mod drift;
pub mod error;
pub mod explain;
pub mod fairness;
pub mod operations;
pub mod performance;
pub mod quality;
pub mod sketch;
pub mod stats;
pub mod trust;

use std::collections::BTreeMap;

use neurocloak_proto::v1::{FixedBins, ReferenceProfile, WindowProfile};
use serde::{Deserialize, Serialize};

pub use error::{EvalError, Result};
pub use trust::{Component, TrustConfig, TrustScore, trust_score};

/// What the current window is compared with.
#[derive(Debug, Clone, Copy)]
pub enum Baseline<'a> {
    /// The training-data reference from `set_reference`, with its exact quantile bins.
    Reference(&'a ReferenceProfile),
    /// A trailing window (or a merge of several), when no reference exists.
    Window(&'a WindowProfile),
    /// Nothing to compare with: only baseline-free evaluations run.
    None,
}

impl<'a> Baseline<'a> {
    fn profile(self) -> Option<&'a WindowProfile> {
        match self {
            Self::Reference(r) => r.profile.as_ref(),
            Self::Window(w) => Some(w),
            Self::None => None,
        }
    }

    fn bins(self) -> &'a BTreeMap<String, FixedBins> {
        static EMPTY: BTreeMap<String, FixedBins> = BTreeMap::new();
        match self {
            Self::Reference(r) => &r.bins,
            _ => &EMPTY,
        }
    }

    fn kind(self) -> BaselineKind {
        match self {
            Self::Reference(_) => BaselineKind::Reference,
            Self::Window(_) => BaselineKind::Window,
            Self::None => BaselineKind::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    Reference,
    Window,
    None,
}

/// Every evaluation's settings, per project (and per feature inside `drift`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    pub drift: drift::DriftConfig,
    pub performance: performance::PerformanceConfig,
    pub fairness: fairness::FairnessConfig,
    pub explain: explain::ExplainConfig,
    pub operations: operations::OperationsConfig,
}

impl EvalConfig {
    pub fn validate(&self) -> Result<()> {
        self.drift.validate()?;
        let c = &self.performance.calibration_bins;
        if *c == 0 {
            return Err(EvalError::InvalidConfig(
                "performance.calibration_bins = 0".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.explain.min_fidelity) {
            return Err(EvalError::InvalidConfig(format!(
                "explain.min_fidelity = {}, want [0, 1]",
                self.explain.min_fidelity
            )));
        }
        Ok(())
    }
}

/// Everything besides the two profiles that an evaluation needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalContext {
    pub config: EvalConfig,
    /// Row counts of recent windows of the same model version, for the volume check.
    pub recent_volumes: Vec<u64>,
    /// Stored reference importances; when absent they are computed from the baseline's
    /// sampled rows.
    pub reference_importances: Option<BTreeMap<String, f64>>,
    /// Share of predictions unchanged under the SDK's perturbation probe, when it ran.
    pub perturbation_stability: Option<f64>,
}

/// The outcome of one evaluation: a result, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Section<T> {
    Evaluated {
        result: T,
    },
    /// Well-formed input with too little data (or no baseline) to judge.
    Insufficient {
        reason: String,
    },
    /// Malformed input, rejected with the reason.
    Invalid {
        reason: String,
    },
}

impl<T> Section<T> {
    pub fn result(&self) -> Option<&T> {
        match self {
            Self::Evaluated { result } => Some(result),
            _ => None,
        }
    }

    fn insufficient(reason: impl Into<String>) -> Self {
        Self::Insufficient {
            reason: reason.into(),
        }
    }
}

impl<T> From<Result<T>> for Section<T> {
    fn from(r: Result<T>) -> Self {
        match r {
            Ok(result) => Self::Evaluated { result },
            Err(e @ EvalError::InsufficientData { .. }) => Self::Insufficient {
                reason: e.to_string(),
            },
            Err(e) => Self::Invalid {
                reason: e.to_string(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceReport {
    pub current: performance::PerformanceMetrics,
    /// The baseline's metrics when it carries labelled outcomes.
    pub baseline: Option<performance::PerformanceMetrics>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessReport {
    pub ood: Option<quality::OodReport>,
    pub perturbation_stability: Option<f64>,
}

/// All evaluations of one window. Serialisable: the collector stores it and serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowEvaluation {
    pub project: String,
    pub model: String,
    pub version: String,
    pub environment: String,
    pub window_start_ms: i64,
    pub window_length_ms: i64,
    pub rows: u64,
    pub baseline: BaselineKind,
    pub drift: Section<drift::DriftReport>,
    pub performance: Section<PerformanceReport>,
    pub fairness: Section<fairness::FairnessReport>,
    pub quality: Section<quality::QualityReport>,
    pub robustness: Section<RobustnessReport>,
    pub explainability: Section<explain::ExplainReport>,
    pub operations: Section<operations::OperationsReport>,
}

fn performance_section(
    current: &WindowProfile,
    base: Option<&WindowProfile>,
    cfg: &EvalConfig,
) -> Section<PerformanceReport> {
    let Some(outcomes) = current.outcomes.as_ref() else {
        return Section::insufficient("no outcomes in this window");
    };
    let baseline = base
        .and_then(|b| b.outcomes.as_ref())
        .and_then(|o| performance::evaluate_outcomes(o, &cfg.performance).ok());
    performance::evaluate_outcomes(outcomes, &cfg.performance)
        .map(|current| PerformanceReport { current, baseline })
        .into()
}

/// Reference importances: the stored ones, else computed from the baseline's sampled rows.
fn explain_section(
    current: &WindowProfile,
    base: Option<&WindowProfile>,
    ctx: &EvalContext,
) -> Section<explain::ExplainReport> {
    let cfg = &ctx.config.explain;
    let computed;
    let reference = match (&ctx.reference_importances, base) {
        (Some(stored), _) => Some(stored),
        (None, Some(b)) => {
            computed = explain::importances(b, cfg).ok().map(|r| r.1);
            computed.as_ref()
        }
        (None, None) => None,
    };
    explain::evaluate_explainability(current, reference, cfg).into()
}

/// Runs every evaluation of `current` against `baseline`. Bad or thin data ends up in the
/// affected section as `Invalid` / `Insufficient`; only an invalid configuration or context
/// is an error.
pub fn evaluate_window(
    current: &WindowProfile,
    baseline: Baseline<'_>,
    ctx: &EvalContext,
) -> Result<WindowEvaluation> {
    let cfg = &ctx.config;
    cfg.validate()?;
    if let Some(s) = ctx
        .perturbation_stability
        .filter(|s| !(0.0..=1.0).contains(s))
    {
        return Err(EvalError::InvalidConfig(format!(
            "perturbation_stability = {s}, want [0, 1]"
        )));
    }
    let base = baseline.profile();
    fn no_baseline<T>() -> Section<T> {
        Section::insufficient("no baseline profile")
    }
    let identity = current.identity.clone().unwrap_or_default();
    Ok(WindowEvaluation {
        project: identity.project,
        model: identity.model,
        version: identity.version,
        environment: identity.environment,
        window_start_ms: current.window_start_ms,
        window_length_ms: current.window_length_ms,
        rows: current.rows,
        baseline: baseline.kind(),
        drift: base.map_or_else(no_baseline, |b| {
            drift::evaluate_drift(current, b, baseline.bins(), &cfg.drift).into()
        }),
        performance: performance_section(current, base, cfg),
        fairness: if current.groups.is_empty() {
            Section::insufficient("no sensitive groups")
        } else {
            fairness::evaluate_fairness(&current.groups, &cfg.fairness).into()
        },
        quality: Section::Evaluated {
            result: quality::evaluate_quality(current, base, baseline.bins()),
        },
        // The probe needs no baseline (it compares the model with itself); the OOD share does.
        robustness: match (base, ctx.perturbation_stability) {
            (None, None) => no_baseline(),
            (base, stability) => Section::Evaluated {
                result: RobustnessReport {
                    ood: base.and_then(|b| quality::ood_share(current, b)),
                    perturbation_stability: stability,
                },
            },
        },
        explainability: explain_section(current, base, ctx),
        operations: Section::Evaluated {
            result: operations::evaluate_operations(current, &ctx.recent_volumes, &cfg.operations),
        },
    })
}
