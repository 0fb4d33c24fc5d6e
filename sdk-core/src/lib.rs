//! NeuroCloak SDK core: records predictions into mergeable per-window profiles
//! (`sketch`, `profile`, `monitor`) and ships closed windows to an agent (`ship`).

#[warn(missing_docs)]
pub mod error;
#[warn(missing_docs)]
pub mod monitor;
#[warn(missing_docs)]
pub mod profile;
#[warn(missing_docs)]
pub mod sketch;

pub mod ship;

pub use error::{CoreError, DataIssue, Result};
pub use monitor::{
    Batch, Column, ColumnData, FeatureKind, MemorySink, Monitor, MonitorConfig, MonitorStats,
    Prediction, Sink, SinkStats, TaskType, Value,
};
pub use profile::{ReferenceProfile, WindowProfile, merge_parts};
