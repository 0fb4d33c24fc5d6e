//! Shipping closed windows to the agent over gRPC from one background thread.
//!
//! [`Shipper`] owns a bounded backlog of payloads (window profiles, label batches, reference
//! profiles) and one lazily created OS thread that pushes them to the agent's
//! `AgentService.Push`, over a Unix socket (`unix:///path`) or TCP (`http://host:port`).
//! `enqueue` never blocks on I/O: when the agent is unreachable the backlog fills, then the
//! oldest payloads are dropped and counted, so `sent == delivered + dropped + queued` holds in
//! every [`ShipStats`] snapshot.
//!
//! Fork safety: threads do not survive `fork()`, and a lock held by the shipping thread at that
//! moment would stay locked forever in the child. So all per-process state lives in one `Core`
//! that a child never touches: the first call in a new process id (or an explicit
//! [`Shipper::after_fork_child`]) swaps in a fresh core with an empty backlog, a new
//! `sdk_instance` and, lazily, a new thread. The swap is lock-free (`arc-swap`).

mod queue;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use neurocloak_proto::v1::push_request::Payload;
use neurocloak_proto::v1::{FixedBins, ModelIdentity};

pub use queue::{DropReason, Enqueued, ShipStats};
pub use worker::{Backoff, RETRYABLE_CODES};
use worker::{Command, Core, Tick};

/// The agent's documented Unix socket.
pub const DEFAULT_AGENT_ENDPOINT: &str = "unix:///tmp/neurocloak/agent.sock";
/// Environment variable read by [`ShipperConfig::from_env`] (the same one the monitor reads).
pub const ENDPOINT_ENV: &str = "NEUROCLOAK_AGENT";

/// Errors of the shipping client.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("invalid agent endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("timed out after {waited:?} with {pending} payload(s) not yet delivered")]
    Timeout { waited: Duration, pending: u64 },
    #[error("the agent answered {code:?}: {message}")]
    Rpc { code: tonic::Code, message: String },
    #[error("could not start the shipping thread: {0}")]
    Thread(String),
    #[error("the shipper is shut down")]
    ShutDown,
}

/// How the shipper reaches the agent and how much it buffers meanwhile.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// `unix:///path/to/agent.sock` or `http://127.0.0.1:7071`.
    pub endpoint: String,
    /// Payloads kept while the agent is unreachable; past it the oldest is dropped.
    pub queue_capacity: usize,
    /// Encoded bytes kept while the agent is unreachable; past it the oldest is dropped.
    pub queue_max_bytes: usize,
    /// A payload larger than this is dropped at `enqueue` (the agent's decode limit).
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long dropping the shipper waits for the backlog to drain.
    pub drop_flush_timeout: Duration,
}

impl Default for ShipperConfig {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_AGENT_ENDPOINT.into(),
            queue_capacity: 1024,
            queue_max_bytes: 64 << 20,
            max_message_bytes: 16 << 20,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            drop_flush_timeout: Duration::from_secs(2),
        }
    }
}

impl ShipperConfig {
    /// Defaults, with the endpoint taken from `NEUROCLOAK_AGENT` when set.
    pub fn from_env() -> Self {
        let mut c = Self::default();
        if let Ok(ep) = std::env::var(ENDPOINT_ENV)
            && !ep.trim().is_empty()
        {
            c.endpoint = ep.trim().to_string();
        }
        c
    }
}

/// The SDK's client to its agent. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Shipper {
    config: Arc<ShipperConfig>,
    tick: Arc<ArcSwapOption<Tick>>,
    core: ArcSwap<Core>,
}

impl Shipper {
    /// Validates the configuration; no thread or connection is created until first use.
    pub fn new(config: ShipperConfig) -> Result<Self, ShipError> {
        worker::endpoint(&config)?;
        let core = ArcSwap::from_pointee(Core::new(&config));
        Ok(Self {
            config: Arc::new(config),
            tick: Arc::new(ArcSwapOption::empty()),
            core,
        })
    }

    pub fn config(&self) -> &ShipperConfig {
        &self.config
    }

    /// This process's random id, sent with every push (a forked child gets a new one).
    pub fn sdk_instance(&self) -> String {
        self.current().sdk_instance.clone()
    }

    /// Queues a payload for the agent. Never blocks on I/O and never panics; when the backlog
    /// is full the oldest payload is dropped and counted.
    pub fn enqueue(&self, payload: Payload) -> Enqueued {
        let core = self.current();
        let bytes = payload.encoded_len();
        let outcome = core.backlog.push(payload, bytes);
        if outcome == Enqueued::Queued {
            self.start(&core);
            core.wake.notify_one();
        }
        outcome
    }

    /// Starts the shipping thread if it is not running (e.g. in a freshly forked child), so
    /// that the tick hook runs even before the first payload.
    pub fn ensure_running(&self) {
        let core = self.current();
        self.start(&core);
    }

    /// Registers the periodic hook the monitor uses to close windows by time. It runs on the
    /// shipping thread, so it must not block for long; it should hold only a `Weak` reference
    /// to whatever owns this shipper to avoid a reference cycle.
    pub fn set_tick(&self, period: Duration, callback: impl Fn() + Send + Sync + 'static) {
        self.tick.store(Some(Arc::new(Tick {
            period: period.max(Duration::from_millis(1)),
            callback: Box::new(callback),
        })));
        let core = self.current();
        core.tick_changed.notify_one();
        self.start(&core);
    }

    pub fn clear_tick(&self) {
        self.tick.store(None);
        self.current().tick_changed.notify_one();
    }

    /// Waits until every payload enqueued before this call is delivered (or dropped).
    pub fn flush(&self, timeout: Duration) -> Result<(), ShipError> {
        let core = self.current();
        let upto = core.backlog.last_sequence();
        if !core.backlog.is_empty() {
            self.start(&core);
        }
        if core.backlog.wait_done(upto, queue::deadline_after(timeout)) {
            Ok(())
        } else {
            Err(ShipError::Timeout {
                waited: timeout,
                pending: core.backlog.stats().queued,
            })
        }
    }

    /// Flushes for at most `timeout`, then stops the thread; whatever is still undelivered is
    /// counted as dropped (reason shutdown), as is anything enqueued afterwards.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), ShipError> {
        let started = Instant::now();
        let flushed = self.flush(timeout);
        let core = self.current();
        let pending = core.backlog.stats().queued;
        core.backlog.close();
        core.stop.send_replace(true);
        let handle = core.thread.lock().take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            // The thread only finishes a tick callback or a cancelled request; both are short.
            let _ = h.join();
        }
        flushed.map_err(|_| ShipError::Timeout {
            waited: started.elapsed(),
            pending,
        })
    }

    pub fn stats(&self) -> ShipStats {
        self.current().backlog.stats()
    }

    /// The latest delivery problem (agent unreachable, payload rejected), cleared on success.
    pub fn last_error(&self) -> Option<String> {
        self.current().last_error.lock().clone()
    }

    /// Asks the agent for the reference's fixed bins of a model (empty when it knows none).
    pub fn fetch_reference_bins(
        &self,
        identity: ModelIdentity,
        timeout: Duration,
    ) -> Result<BTreeMap<String, FixedBins>, ShipError> {
        let core = self.current();
        if core.backlog.is_closed() {
            return Err(ShipError::ShutDown);
        }
        self.start(&core);
        let (reply, answer) = crossbeam_channel::bounded(1);
        core.commands
            .send(Command::FetchBins {
                identity,
                timeout,
                reply,
            })
            .map_err(|_| ShipError::ShutDown)?;
        // A little slack over the RPC deadline so its own DeadlineExceeded wins the race.
        answer
            .recv_timeout(timeout + Duration::from_millis(200))
            .map_err(|_| ShipError::Timeout {
                waited: timeout,
                pending: 0,
            })?
    }

    /// Call right before `fork()`. The child never touches state the parent's threads may be
    /// holding, so there is nothing to lock; this only makes sure the parent's thread exists
    /// before the fork rather than racing to start during it.
    pub fn before_fork(&self) {
        let core = self.current();
        if core.backlog.stats().queued > 0 {
            self.start(&core);
        }
    }

    /// Call in the parent after `fork()`: the parent's thread and backlog carry on unchanged.
    pub fn after_fork_parent(&self) {
        let core = self.current();
        core.wake.notify_one();
    }

    /// Call in the child after `fork()` (also done automatically on the first call in a new
    /// process id): fresh empty backlog, new `sdk_instance`, new thread on first use.
    pub fn after_fork_child(&self) {
        let old = self.core.load_full();
        if old.pid == std::process::id() {
            return;
        }
        let fresh = Arc::new(Core::new(&self.config));
        let previous = self.core.compare_and_swap(&old, fresh);
        if Arc::ptr_eq(&previous, &old) {
            // The parent's core may hold locks owned by threads that do not exist here, and
            // its thread handle names a thread of another process: never drop or use it.
            std::mem::forget(old);
        }
    }

    fn current(&self) -> Arc<Core> {
        let core = self.core.load_full();
        if core.pid == std::process::id() {
            return core;
        }
        drop(core);
        self.after_fork_child();
        self.core.load_full()
    }

    fn start(&self, core: &Arc<Core>) {
        if let Err(e) = core.ensure_thread(&self.config, &self.tick) {
            *core.last_error.lock() = Some(e.to_string());
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        if self.core.load().pid == std::process::id() {
            let _ = self.shutdown(self.config.drop_flush_timeout);
        }
    }
}

#[cfg(test)]
mod tests;
