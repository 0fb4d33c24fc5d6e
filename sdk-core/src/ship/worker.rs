//! The shipping thread: one OS thread per process running a current-thread tokio runtime that
//! drains the backlog to the agent, runs the monitor's tick hook and answers reference-bin
//! look-ups.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use neurocloak_proto::v1::agent_service_client::AgentServiceClient;
use neurocloak_proto::v1::{FixedBins, ModelIdentity, PushRequest, ReferenceBinsRequest};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, mpsc, watch};
use tonic::transport::{Channel, Endpoint};

use super::ShipError;
use super::ShipperConfig;
use super::queue::{Backlog, DropReason};

/// The monitor's periodic callback (closes windows by time when no rows arrive).
pub(crate) struct Tick {
    pub period: Duration,
    pub callback: Box<dyn Fn() + Send + Sync>,
}

pub(crate) type BinsReply = Result<BTreeMap<String, FixedBins>, ShipError>;

pub(crate) enum Command {
    FetchBins {
        identity: ModelIdentity,
        timeout: Duration,
        reply: crossbeam_channel::Sender<BinsReply>,
    },
}

/// Per-process shipping state. A forked child replaces it wholesale instead of touching it,
/// because the parent's threads may have held any of its locks at the moment of `fork()`.
pub(crate) struct Core {
    pub pid: u32,
    pub sdk_instance: String,
    pub backlog: Backlog,
    pub wake: Notify,
    pub tick_changed: Notify,
    pub stop: watch::Sender<bool>,
    pub commands: mpsc::UnboundedSender<Command>,
    command_rx: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    pub thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub last_error: Mutex<Option<String>>,
}

impl Core {
    pub fn new(config: &ShipperConfig) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        Self {
            pid: std::process::id(),
            sdk_instance: uuid::Uuid::new_v4().simple().to_string(),
            backlog: Backlog::new(
                config.queue_capacity,
                config.queue_max_bytes,
                config.max_message_bytes,
            ),
            wake: Notify::new(),
            tick_changed: Notify::new(),
            stop: watch::channel(false).0,
            commands,
            command_rx: Mutex::new(Some(rx)),
            thread: Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock() = e;
    }

    /// Starts the shipping thread unless it runs already (or ran and stopped).
    pub fn ensure_thread(
        self: &Arc<Self>,
        config: &Arc<ShipperConfig>,
        tick: &Arc<arc_swap::ArcSwapOption<Tick>>,
    ) -> Result<(), ShipError> {
        let mut slot = self.thread.lock();
        if slot.is_some() {
            return Ok(());
        }
        let Some(rx) = self.command_rx.lock().take() else {
            return Ok(());
        };
        let (core, cfg, tick) = (Arc::clone(self), Arc::clone(config), Arc::clone(tick));
        let spawned = std::thread::Builder::new()
            .name("neurocloak-ship".into())
            .spawn(move || run(core, cfg, tick, rx));
        match spawned {
            Ok(h) => {
                *slot = Some(h);
                Ok(())
            }
            Err(e) => Err(ShipError::Thread(e.to_string())),
        }
    }
}

pub(crate) fn endpoint(config: &ShipperConfig) -> Result<Endpoint, ShipError> {
    let invalid = |reason: String| ShipError::InvalidEndpoint {
        endpoint: config.endpoint.clone(),
        reason,
    };
    let ep = &config.endpoint;
    if !(ep.starts_with("unix:") || ep.starts_with("http://") || ep.starts_with("https://")) {
        return Err(invalid(
            "expected unix:///path, http://host:port or https://host:port".into(),
        ));
    }
    if ep.starts_with("unix:")
        && ep
            .trim_start_matches("unix:")
            .trim_start_matches("//")
            .is_empty()
    {
        return Err(invalid("empty socket path".into()));
    }
    Ok(Endpoint::from_shared(ep.clone())
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(config.connect_timeout))
}

fn run(
    core: Arc<Core>,
    config: Arc<ShipperConfig>,
    tick: Arc<arc_swap::ArcSwapOption<Tick>>,
    commands: mpsc::UnboundedReceiver<Command>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            core.set_error(Some(format!("cannot build the shipping runtime: {e}")));
            core.backlog.close();
            return;
        }
    };
    rt.block_on(async move {
        let client = match endpoint(&config) {
            Ok(ep) => AgentServiceClient::new(ep.connect_lazy())
                .max_decoding_message_size(config.max_message_bytes)
                .max_encoding_message_size(config.max_message_bytes),
            Err(e) => {
                core.set_error(Some(e.to_string()));
                core.backlog.close();
                return;
            }
        };
        let ticker = tokio::spawn(run_ticks(Arc::clone(&core), tick));
        let answers = tokio::spawn(serve_commands(commands, client.clone()));
        deliver(&core, &config, client).await;
        ticker.abort();
        answers.abort();
    });
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An Err means the sender is gone, which also means stop.
    let _ = stop.wait_for(|s| *s).await;
}

/// gRPC codes after which the same push is tried again. Everything else means the agent
/// refused this payload for good (e.g. InvalidArgument, OutOfRange for an oversized message),
/// so it is dropped and counted as rejected instead of blocking the backlog forever.
pub const RETRYABLE_CODES: &[tonic::Code] = &[
    tonic::Code::Unavailable,
    tonic::Code::DeadlineExceeded,
    tonic::Code::ResourceExhausted,
    tonic::Code::Aborted,
    tonic::Code::Cancelled,
    tonic::Code::Unknown,
    tonic::Code::Internal,
];

/// Exponential backoff with "equal jitter": half the step is fixed, half random, so retries
/// from many processes spread out without ever spinning. The agent's forwarder uses it too.
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: SmallRng,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let jitter_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.random_range(0..=jitter_ns))
    }
}

async fn deliver(core: &Core, config: &ShipperConfig, mut client: AgentServiceClient<Channel>) {
    let mut stop = core.stop.subscribe();
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(pending) = core.backlog.take() else {
            tokio::select! {
                () = core.wake.notified() => continue,
                () = stopped(&mut stop) => return,
            }
        };
        let mut request = tonic::Request::new(PushRequest {
            sdk_instance: core.sdk_instance.clone(),
            sequence: pending.sequence,
            payload: Some(pending.payload.clone()),
        });
        request.set_timeout(config.request_timeout);
        let result = tokio::select! {
            r = client.push(request) => r,
            () = stopped(&mut stop) => {
                core.backlog.settle(Some(DropReason::Shutdown));
                return;
            }
        };
        match result {
            Ok(_) => {
                backoff.reset();
                core.set_error(None);
                core.backlog.settle(None);
            }
            Err(status) if RETRYABLE_CODES.contains(&status.code()) => {
                core.set_error(Some(format!("agent push failed, retrying: {status}")));
                core.backlog.count_retry();
                core.backlog.requeue(pending);
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = stopped(&mut stop) => return,
                }
            }
            Err(status) => {
                core.set_error(Some(format!("agent rejected a payload: {status}")));
                core.backlog.settle(Some(DropReason::Rejected));
            }
        }
    }
}

async fn run_ticks(core: Arc<Core>, tick: Arc<arc_swap::ArcSwapOption<Tick>>) {
    let mut stop = core.stop.subscribe();
    loop {
        let Some(t) = tick.load_full() else {
            tokio::select! {
                () = core.tick_changed.notified() => continue,
                () = stopped(&mut stop) => return,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(t.period) => {}
            () = core.tick_changed.notified() => continue,
            () = stopped(&mut stop) => return,
        }
        // A panicking hook must not take shipping down with it.
        if std::panic::catch_unwind(AssertUnwindSafe(|| (t.callback)())).is_err() {
            core.set_error(Some("the tick hook panicked".into()));
        }
    }
}

async fn serve_commands(
    mut commands: mpsc::UnboundedReceiver<Command>,
    client: AgentServiceClient<Channel>,
) {
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::FetchBins {
                identity,
                timeout,
                reply,
            } => {
                let mut client = client.clone();
                tokio::spawn(async move {
                    let mut req = tonic::Request::new(ReferenceBinsRequest {
                        identity: Some(identity),
                    });
                    req.set_timeout(timeout);
                    let answer = client
                        .get_reference_bins(req)
                        .await
                        .map(|r| r.into_inner().bins)
                        .map_err(|s| ShipError::Rpc {
                            code: s.code(),
                            message: s.message().to_string(),
                        });
                    // The caller may have given up already; nothing to do then.
                    let _ = reply.send(answer);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400));
        for x in &d[5..] {
            assert!(*x >= Duration::from_millis(500) && *x <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        let mut other = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let many: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| other.next_delay()).collect();
        assert!(many.len() > 10, "delays are jittered");
    }

    #[test]
    fn endpoints_are_validated() {
        let mut c = ShipperConfig::default();
        for good in ["unix:///tmp/x.sock", "http://127.0.0.1:7071"] {
            c.endpoint = good.into();
            assert!(endpoint(&c).is_ok(), "{good}");
        }
        for bad in ["", "127.0.0.1:7071", "unix://", "http://[bad"] {
            c.endpoint = bad.into();
            assert!(endpoint(&c).is_err(), "{bad}");
        }
    }
}
