//! Wiring of the stages: binds the listeners, starts the queue writer, the forwarder and the
//! HTTP endpoints, and stops them in order (stop accepting → finish writes → drain).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use neurocloak_proto::v1::agent_service_server::AgentServiceServer;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use crate::config::Config;
use crate::error::AgentError;
use crate::forward::{Collector, ForwardStats, Forwarder};
use crate::ops::{self, OpsState};
use crate::queue::{DiskQueue, QueueStats};
use crate::receive::{AgentServer, Appender, ReceiveStats, Receiver};

/// A started agent. Dropping it without [`RunningAgent::shutdown`] aborts nothing gracefully.
pub struct RunningAgent {
    pub tcp_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub uds_path: Option<PathBuf>,
    queue: Arc<Mutex<DiskQueue>>,
    stop_servers: watch::Sender<bool>,
    stop_http: watch::Sender<bool>,
    appender: Appender,
    drain: watch::Sender<bool>,
    draining: Arc<AtomicBool>,
    health: tonic_health::server::HealthReporter,
    servers: Vec<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
    forwarder: JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn bind_uds(path: &str) -> Result<tokio::net::UnixListener, AgentError> {
    let p = PathBuf::from(path);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| AgentError::Serve(format!("creating {}: {e}", parent.display())))?;
    }
    // A socket file left by a killed agent would make bind fail.
    if std::os::unix::net::UnixStream::connect(&p).is_err() {
        let _ = std::fs::remove_file(&p);
    }
    let listener = tokio::net::UnixListener::bind(&p)
        .map_err(|e| AgentError::Serve(format!("binding {}: {e}", p.display())))?;
    // The model container usually runs as another user: anyone who can reach the socket's
    // directory (a pod-private volume) may push.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| AgentError::Serve(format!("chmod {}: {e}", p.display())))?;
    Ok(listener)
}

/// Aborts the task it guards when dropped, so aborting the supervising task stops it too.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a stage that must live as long as the agent. A panic would otherwise end only its task
/// (tokio keeps it to the task), leaving an agent that looks healthy but never forwards again;
/// aborting instead lets the orchestrator restart it, and a restart recovers the queue from
/// disk. Aborting the returned future stops the stage.
async fn abort_on_panic(stage: &'static str, run: impl Future<Output = ()> + Send + 'static) {
    let mut task = AbortOnDrop(tokio::spawn(run));
    if let Err(e) = (&mut task.0).await
        && e.is_panic()
    {
        tracing::error!(stage, "panicked; exiting");
        std::process::abort();
    }
}

impl RunningAgent {
    /// Opens the queue (recovering what is on disk), binds every listener and starts serving.
    pub async fn start(config: &Config) -> Result<Self, AgentError> {
        let queue = Arc::new(Mutex::new(DiskQueue::open(config.queue())?));
        if queue.lock().state_was_damaged() {
            tracing::error!("forward.state was damaged; re-sending everything on disk");
        }
        let appended = Arc::new(Notify::new());
        let (appender, writer) = Appender::start(Arc::clone(&queue), Arc::clone(&appended))
            .map_err(|e| AgentError::Serve(format!("starting the queue writer: {e}")))?;
        let collector = Collector::new(&config.collector())?;
        let receive_stats = Arc::new(ReceiveStats::default());
        let forward_stats = Arc::new(ForwardStats::default());
        let receiver = Arc::new(Receiver::new(
            appender.clone(),
            Some(collector.clone()),
            Arc::clone(&receive_stats),
        ));
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<AgentServiceServer<Receiver>>().await;
        let service = AgentServer::new(receiver, config.max_message_bytes);
        let (stop_servers, stop_rx) = watch::channel(false);
        let mut servers = Vec::new();
        let mut tcp_addr = None;
        let mut uds_path = None;
        if !config.tcp_addr.is_empty() {
            let addr: SocketAddr = config
                .tcp_addr
                .parse()
                .map_err(|e| AgentError::Config(format!("tcp_addr: {e}")))?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| AgentError::Serve(format!("binding {addr}: {e}")))?;
            tcp_addr = l.local_addr().ok();
            let router = tonic::transport::Server::builder()
                .add_service(health_service.clone())
                .add_service(service.clone());
            let stop = stopped(stop_rx.clone());
            servers.push(tokio::spawn(async move {
                if let Err(e) = router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(l), stop)
                    .await
                {
                    tracing::error!(error = %e, "tcp server failed");
                }
            }));
        }
        if !config.uds_path.is_empty() {
            let l = bind_uds(&config.uds_path)?;
            uds_path = Some(PathBuf::from(&config.uds_path));
            let router = tonic::transport::Server::builder()
                .add_service(health_service.clone())
                .add_service(service.clone());
            let stop = stopped(stop_rx.clone());
            servers.push(tokio::spawn(async move {
                if let Err(e) = router
                    .serve_with_incoming_shutdown(UnixListenerStream::new(l), stop)
                    .await
                {
                    tracing::error!(error = %e, "unix socket server failed");
                }
            }));
        }
        drop(service);
        let draining = Arc::new(AtomicBool::new(false));
        let mut http_addr = None;
        let mut http = None;
        let (stop_http, stop_http_rx) = watch::channel(false);
        if !config.http_addr.is_empty() {
            let addr: SocketAddr = config
                .http_addr
                .parse()
                .map_err(|e| AgentError::Config(format!("http_addr: {e}")))?;
            let l = ops::bind(addr).await?;
            http_addr = l.local_addr().ok();
            let state = OpsState {
                queue: Arc::clone(&queue),
                receive: receive_stats,
                forward: Arc::clone(&forward_stats),
                draining: Arc::clone(&draining),
            };
            let stop = stopped(stop_http_rx);
            http = Some(tokio::spawn(async move {
                if let Err(e) = ops::serve(l, state, stop).await {
                    tracing::error!(error = %e, "http server failed");
                }
            }));
        }
        let (drain, drain_rx) = watch::channel(false);
        let forwarder = tokio::spawn(abort_on_panic(
            "the forwarder",
            Forwarder {
                queue: Arc::clone(&queue),
                collector,
                cfg: config.forward(),
                stats: forward_stats,
                appended,
                drain: drain_rx,
            }
            .run(),
        ));
        Ok(Self {
            tcp_addr,
            http_addr,
            uds_path,
            queue,
            stop_servers,
            stop_http,
            appender,
            drain,
            draining,
            health,
            servers,
            http,
            forwarder,
            writer,
        })
    }

    pub fn queue_stats(&self) -> QueueStats {
        self.queue.lock().stats()
    }

    /// Graceful stop: refuse new pushes, let accepted ones reach the disk, then forward
    /// everything (grace periods ignored) for at most `drain_timeout`. Whatever is left stays
    /// on disk for the next start.
    pub async fn shutdown(self, drain_timeout: Duration) -> QueueStats {
        self.draining.store(true, Ordering::Relaxed);
        self.health
            .set_not_serving::<AgentServiceServer<Receiver>>()
            .await;
        let _ = self.stop_servers.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        // Pushes accepted before the stop are written; then the writer thread exits.
        self.appender.close();
        let _ = tokio::task::spawn_blocking(move || self.writer.join()).await;
        let _ = self.drain.send(true);
        let mut forwarder = self.forwarder;
        if tokio::time::timeout(drain_timeout, &mut forwarder)
            .await
            .is_err()
        {
            forwarder.abort();
            tracing::warn!("drain deadline reached; the rest stays queued on disk");
        }
        let _ = self.stop_http.send(true);
        if let Some(h) = self.http {
            let _ = h.await;
        }
        if let Some(p) = &self.uds_path {
            let _ = std::fs::remove_file(p);
        }
        self.queue.lock().stats()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn aborting_the_supervisor_stops_the_stage_and_an_ended_stage_ends_it() {
        let (alive, gone) = tokio::sync::oneshot::channel::<()>();
        let stage = async move {
            let _alive = alive;
            std::future::pending::<()>().await;
        };
        let supervisor = tokio::spawn(abort_on_panic("test stage", stage));
        tokio::task::yield_now().await;
        supervisor.abort();
        // The stage's future was dropped (not left running detached): its sender is gone.
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .expect("the stage was stopped")
            .expect_err("the stage never sends");

        let done = tokio::spawn(abort_on_panic("test stage", async {}));
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("the supervisor ends with its stage")
            .unwrap();
    }
}
