//! Window profiles: what one window of predictions looked like (columns, outcomes, groups,
//! samples, prediction records, robustness probes), how parts from several processes merge, and the reference
//! profile built from training data.

mod column;
mod outcomes;
mod reference;
mod reservoir;
mod robustness;
mod window;

pub use column::{CategoricalProfile, ColumnProfile, NumericProfile};
pub use outcomes::{ClassificationOutcomes, MAX_CLASSES, Outcomes, RegressionOutcomes};
pub use reference::{ReferenceProfile, decile_edges};
pub use reservoir::{DEFAULT_RESERVOIR, MAX_RESERVOIR, Reservoir};
pub use robustness::{
    MAX_PROBE_FEATURES, MAX_PROBE_NAME_LEN, MAX_PROBES, ProbeIssue, ProbeIssueKind, check_probe,
    merge_probes, window_stability,
};
pub use window::{GroupProfile, MAX_COLUMNS, MAX_RECORDS, WindowProfile, merge_parts};
