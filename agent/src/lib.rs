//! NeuroCloak sidecar agent. Data flows `receive → merge → queue → forward`:
//! [`receive`] serves SDK pushes (gRPC on a Unix socket and loopback TCP) and acknowledges them
//! once [`queue`] has them on disk; [`forward`] sends batches to the collector, merging window
//! parts of different processes with [`merge`]; [`ops`] exposes health and metrics;
//! [`config`] reads file, environment and flags; [`run`] wires the stages together; [`memory`]
//! keeps the allocator from holding on to what the bursts at every window's end freed.

pub mod config;
pub mod error;
pub mod forward;
pub mod memory;
pub mod merge;
pub mod ops;
pub mod queue;
pub mod receive;
pub mod run;

pub use error::AgentError;

/// Wall-clock milliseconds since the Unix epoch (window bounds use the same clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
