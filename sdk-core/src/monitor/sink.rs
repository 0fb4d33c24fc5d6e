//! Where closed windows, label batches and references go: the agent (through the shipping
//! client) by default, or any other [`Sink`], e.g. [`MemorySink`] to use the SDK without an
//! agent.

use std::collections::BTreeMap;
use std::time::Duration;

use neurocloak_proto::v1::push_request::Payload;
use parking_lot::Mutex;

use crate::CoreError;
use crate::ship::{ShipError, Shipper};

/// Delivery counters. `sent == delivered + dropped + queued` at every snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Payloads handed to the sink.
    pub sent: u64,
    /// Payloads acknowledged by their destination.
    pub delivered: u64,
    /// Payloads dropped (backlog overflow, oversized, rejected, shutdown).
    pub dropped: u64,
    /// Payloads waiting or in flight.
    pub queued: u64,
}

/// Receiver of everything a monitor produces. Implementations must not block in `enqueue`.
pub trait Sink: Send + Sync {
    /// Takes one payload; never blocks on I/O.
    fn enqueue(&self, payload: Payload);
    /// Waits until everything enqueued so far is delivered or dropped.
    fn flush(&self, timeout: Duration) -> crate::Result<()>;
    /// Flushes, then stops accepting payloads.
    fn shutdown(&self, timeout: Duration) -> crate::Result<()>;
    /// Delivery counters.
    fn stats(&self) -> SinkStats;
    /// Runs `callback` every `period` on the sink's own background thread, if it has one.
    /// Returns false when it has none; the monitor then runs a small timer thread itself.
    fn set_tick(&self, _period: Duration, _callback: Box<dyn Fn() + Send + Sync>) -> bool {
        false
    }
    /// The reference bin edges the destination knows for a model (empty when none). Sinks
    /// without a way to ask return an empty map.
    fn reference_edges(
        &self,
        _identity: &neurocloak_proto::ModelIdentity,
        _timeout: Duration,
    ) -> crate::Result<BTreeMap<String, Vec<f64>>> {
        Ok(BTreeMap::new())
    }
    /// Called before `fork()`.
    fn before_fork(&self) {}
    /// Called in the parent after `fork()`.
    fn after_fork_parent(&self) {}
    /// Called in the child after `fork()`: start empty, with fresh background state.
    fn after_fork_child(&self) {}
}

fn ship_err(e: ShipError) -> CoreError {
    match e {
        ShipError::Timeout { waited, .. } => CoreError::Timeout(waited),
        ShipError::ShutDown => CoreError::Shutdown,
        other => CoreError::Ship(other.to_string()),
    }
}

impl Sink for Shipper {
    fn enqueue(&self, payload: Payload) {
        // Drops are counted by the shipper and visible in `stats`.
        let _ = Shipper::enqueue(self, payload);
    }
    fn flush(&self, timeout: Duration) -> crate::Result<()> {
        Shipper::flush(self, timeout).map_err(ship_err)
    }
    fn shutdown(&self, timeout: Duration) -> crate::Result<()> {
        Shipper::shutdown(self, timeout).map_err(ship_err)
    }
    fn stats(&self) -> SinkStats {
        let s = Shipper::stats(self);
        SinkStats {
            sent: s.sent,
            delivered: s.delivered,
            dropped: s.dropped,
            queued: s.queued,
        }
    }
    fn set_tick(&self, period: Duration, callback: Box<dyn Fn() + Send + Sync>) -> bool {
        Shipper::set_tick(self, period, callback);
        true
    }
    fn reference_edges(
        &self,
        identity: &neurocloak_proto::ModelIdentity,
        timeout: Duration,
    ) -> crate::Result<BTreeMap<String, Vec<f64>>> {
        let bins =
            Shipper::fetch_reference_bins(self, identity.clone(), timeout).map_err(ship_err)?;
        Ok(bins.into_iter().map(|(k, b)| (k, b.edges)).collect())
    }
    fn before_fork(&self) {
        Shipper::before_fork(self);
    }
    fn after_fork_parent(&self) {
        Shipper::after_fork_parent(self);
    }
    fn after_fork_child(&self) {
        Shipper::after_fork_child(self);
    }
}

/// Keeps every payload in memory: for running without an agent (examples, notebooks, tests of
/// code that embeds the SDK). Delivery is immediate, so `delivered == sent`.
#[derive(Debug, Default)]
pub struct MemorySink {
    payloads: Mutex<Vec<Payload>>,
    sent: std::sync::atomic::AtomicU64,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes and returns everything received so far.
    pub fn take(&self) -> Vec<Payload> {
        std::mem::take(&mut *self.payloads.lock())
    }

    /// Removes and returns the window profiles received so far (other payloads stay).
    pub fn take_windows(&self) -> Vec<neurocloak_proto::WindowProfile> {
        let mut all = self.payloads.lock();
        let (windows, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut *all)
            .into_iter()
            .partition(|p| matches!(p, Payload::Window(_)));
        *all = rest;
        windows
            .into_iter()
            .filter_map(|p| match p {
                Payload::Window(w) => Some(w),
                _ => None,
            })
            .collect()
    }
}

impl Sink for MemorySink {
    fn enqueue(&self, payload: Payload) {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.payloads.lock().push(payload);
    }
    fn flush(&self, _timeout: Duration) -> crate::Result<()> {
        Ok(())
    }
    fn shutdown(&self, _timeout: Duration) -> crate::Result<()> {
        Ok(())
    }
    fn stats(&self) -> SinkStats {
        let sent = self.sent.load(std::sync::atomic::Ordering::Relaxed);
        SinkStats {
            sent,
            delivered: sent,
            dropped: 0,
            queued: 0,
        }
    }
    fn after_fork_child(&self) {
        self.payloads.lock().clear();
        self.sent.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}
