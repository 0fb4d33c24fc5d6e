//! Where data leaves: batches from the queue go to the collector's `IngestService.Ingest`,
//! gzip-compressed, with the project API key in `x-api-key` and an idempotency id per batch
//! that the queue keeps across retries and restarts. Records leave the queue only after the
//! collector acknowledged the batch (it answers after a durable write).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use neurocloak_core::ship::Backoff;
use neurocloak_proto::v1::ingest_service_client::IngestServiceClient;
use neurocloak_proto::v1::{IngestBatch, ReferenceBinsRequest, ReferenceBinsResponse};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::error::AgentError;
use crate::merge::merge_batch;
use crate::queue::{BatchLimits, DiskQueue};

/// gRPC codes after which the same batch is sent again (same id). `Unauthenticated` and
/// `PermissionDenied` are retried too: a wrong or revoked key is fixed by an operator, and the
/// data waits on disk (bounded by the disk cap) rather than being thrown away. Every other
/// code means the collector refused the batch for good; see [`DiskQueue::reject`].
pub const RETRYABLE_CODES: &[Code] = &[
    Code::Unavailable,
    Code::DeadlineExceeded,
    Code::ResourceExhausted,
    Code::Aborted,
    Code::Cancelled,
    Code::Unknown,
    Code::Internal,
    Code::Unauthenticated,
    Code::PermissionDenied,
];

/// Whether the batch is worth sending again as it is. A RESOURCE_EXHAUSTED is retried when it
/// is back-pressure (rate limiting, which carries `retry-after`), but not when the message
/// exceeded the collector's size limit: that would fail forever and hold the queue's head, so it
/// takes the refused path, which retries the records one per batch (unmerged, so smaller).
pub fn retryable(status: &Status) -> bool {
    if status.code() == Code::ResourceExhausted
        && status.metadata().get("retry-after").is_none()
        && status.message().contains("too large")
    {
        return false;
    }
    RETRYABLE_CODES.contains(&status.code())
}

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// `http://host:port` or `https://host:port`.
    pub endpoint: String,
    pub api_key: String,
    /// PEM CA bundle for `https`; without it the system roots are used.
    pub ca_file: Option<PathBuf>,
    pub agent_id: String,
    pub request_timeout: Duration,
    pub max_message_bytes: usize,
}

/// A client of the collector's `IngestService`.
#[derive(Clone)]
pub struct Collector {
    client: IngestServiceClient<Channel>,
    api_key: MetadataValue<tonic::metadata::Ascii>,
    agent_id: String,
    timeout: Duration,
}

impl Collector {
    /// Connects lazily: a collector that is down is retried by the forwarder, not fatal here.
    pub fn new(cfg: &CollectorConfig) -> Result<Self, AgentError> {
        let bad = |e: String| AgentError::Config(format!("collector endpoint: {e}"));
        let mut ep = Endpoint::from_shared(cfg.endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if cfg.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &cfg.ca_file {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .map_err(|e| bad(format!("reading CA {}: {e}", path.display())))?;
                    tls.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls.with_native_roots(),
            };
            ep = ep.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        }
        let api_key = cfg
            .api_key
            .parse()
            .map_err(|_| AgentError::Config("api key must be printable ASCII".into()))?;
        let client = IngestServiceClient::new(ep.connect_lazy())
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_encoding_message_size(cfg.max_message_bytes)
            .max_decoding_message_size(cfg.max_message_bytes);
        Ok(Self {
            client,
            api_key,
            agent_id: cfg.agent_id.clone(),
            timeout: cfg.request_timeout,
        })
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.timeout);
        req.metadata_mut().insert("x-api-key", self.api_key.clone());
        req
    }

    pub async fn ingest(&self, batch: IngestBatch) -> Result<(), Status> {
        let mut client = self.client.clone();
        client.ingest(self.request(batch)).await.map(|_| ())
    }

    pub async fn reference_bins(
        &self,
        req: ReferenceBinsRequest,
    ) -> Result<ReferenceBinsResponse, Status> {
        let mut client = self.client.clone();
        Ok(client
            .get_reference_bins(self.request(req))
            .await?
            .into_inner())
    }

    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }
}

#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub limits: BatchLimits,
    /// A batch smaller than the limits waits this long for more ready records.
    pub linger: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// Counters of the forward stage.
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub batches_sent: AtomicU64,
    pub items_sent: AtomicU64,
    pub retries: AtomicU64,
    pub batches_rejected: AtomicU64,
    pub parts_merged: AtomicU64,
    pub merge_failures: AtomicU64,
    pub last_ack_ms: AtomicI64,
}

/// Drives the forward stage until `drain` is set and the queue is empty (or forever).
pub struct Forwarder {
    pub queue: Arc<Mutex<DiskQueue>>,
    pub collector: Collector,
    pub cfg: ForwardConfig,
    pub stats: Arc<ForwardStats>,
    /// Signalled by the writer after each append.
    pub appended: Arc<Notify>,
    /// Becomes true on SIGTERM: forward everything now, grace periods ignored, then stop.
    pub drain: watch::Receiver<bool>,
}

enum Next {
    Send,
    Wait(Option<Duration>),
    Done,
}

impl Forwarder {
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(self.cfg.backoff_initial, self.cfg.backoff_max);
        let mut sent_since_trim = false;
        loop {
            let draining = *self.drain.borrow();
            match self.decide(draining) {
                Next::Done => return,
                Next::Wait(d) => {
                    // A forwarding burst is over: what it freed goes back to the OS.
                    if std::mem::take(&mut sent_since_trim) {
                        crate::memory::release_free_memory();
                    }
                    let sleep = tokio::time::sleep(d.unwrap_or(Duration::from_secs(3600)));
                    tokio::select! {
                        () = sleep => {}
                        () = self.appended.notified() => {}
                        _ = self.drain.changed() => {}
                    }
                    continue;
                }
                Next::Send => {}
            }
            match self.send_one(draining).await {
                Ok(true) => {
                    backoff.reset();
                    sent_since_trim = true;
                }
                Ok(false) => {}
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "forwarding failed; retrying");
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = self.drain.changed() => {}
                    }
                }
            }
        }
    }

    fn decide(&self, draining: bool) -> Next {
        let now = crate::now_ms();
        let ready = self.queue.lock().ready(now, draining);
        if ready.inflight {
            return Next::Send;
        }
        if ready.items == 0 {
            if draining {
                return Next::Done;
            }
            let until = ready
                .next_ready_ms
                .map(|t| Duration::from_millis(u64::try_from(t - now).unwrap_or(0)));
            return Next::Wait(until);
        }
        let full =
            ready.items >= self.cfg.limits.max_items || ready.bytes >= self.cfg.limits.max_bytes;
        let linger_ms = i64::try_from(self.cfg.linger.as_millis()).unwrap_or(i64::MAX);
        let waited = ready.since_ms.map_or(0, |s| now - s);
        if full || draining || waited >= linger_ms {
            Next::Send
        } else {
            Next::Wait(Some(Duration::from_millis(
                u64::try_from(linger_ms - waited).unwrap_or(0),
            )))
        }
    }

    /// Sends the next batch once. Ok(true): acknowledged; Ok(false): nothing to do or refused
    /// for good (handled); Err: retry later with the same batch id.
    async fn send_one(&self, draining: bool) -> Result<bool, Status> {
        let batch = {
            let q = Arc::clone(&self.queue);
            let limits = self.cfg.limits;
            tokio::task::block_in_place(move || {
                q.lock().next_batch(crate::now_ms(), limits, draining)
            })
        };
        let batch = match batch {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(false),
            Err(e) => {
                tracing::error!(error = %e, "reading the queue failed");
                return Err(Status::internal(e.to_string()));
            }
        };
        let merged = merge_batch(&batch.records);
        let batch_id = batch.batch_id;
        // The encoded records are not needed any more: free them before the request is encoded.
        drop(batch.records);
        let n_items = merged.items.len() as u64;
        let undecodable = merged.undecodable;
        let sent = if merged.items.is_empty() {
            // Nothing decodable in it (counted as corrupt on ack): nothing to send.
            Ok(())
        } else {
            self.collector
                .ingest(IngestBatch {
                    batch_id: batch_id.clone(),
                    agent_id: self.collector.agent_id().to_string(),
                    items: merged.items,
                })
                .await
        };
        if undecodable > 0 {
            tracing::error!(
                records = undecodable,
                batch = %batch_id,
                "queued records passed their checksum but did not decode; dropped as corrupt"
            );
        }
        match sent {
            Ok(()) => {
                let q = Arc::clone(&self.queue);
                let id = batch_id.clone();
                let acked = tokio::task::block_in_place(move || {
                    q.lock().ack_without(&id, undecodable, crate::now_ms())
                });
                if let Err(e) = acked {
                    tracing::error!(error = %e, "recording the collector's ack failed");
                    return Err(Status::internal(e.to_string()));
                }
                self.stats.batches_sent.fetch_add(1, Ordering::Relaxed);
                self.stats.items_sent.fetch_add(n_items, Ordering::Relaxed);
                self.stats
                    .parts_merged
                    .fetch_add(merged.parts_merged, Ordering::Relaxed);
                self.stats
                    .merge_failures
                    .fetch_add(merged.merge_failures, Ordering::Relaxed);
                self.stats
                    .last_ack_ms
                    .store(crate::now_ms(), Ordering::Relaxed);
                Ok(true)
            }
            Err(status) if retryable(&status) => Err(status),
            Err(status) => {
                tracing::error!(code = ?status.code(), message = status.message(), batch = %batch_id, "collector refused a batch");
                self.stats.batches_rejected.fetch_add(1, Ordering::Relaxed);
                let q = Arc::clone(&self.queue);
                let id = batch_id;
                tokio::task::block_in_place(move || q.lock().reject(&id, crate::now_ms()))
                    .map_err(|e| Status::internal(e.to_string()))?;
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn an_oversized_message_is_refused_but_back_pressure_is_retried() {
        let oversized = Status::resource_exhausted(
            "message length too large: found 20000000 bytes, the limit is: 16777216 bytes",
        );
        assert!(!retryable(&oversized));
        let mut limited = Status::resource_exhausted("rate limit: too large a burst");
        limited
            .metadata_mut()
            .insert("retry-after", "2".parse().unwrap());
        assert!(retryable(&limited));
        assert!(retryable(&Status::resource_exhausted("quota exhausted")));
        assert!(retryable(&Status::unavailable("down")));
        assert!(!retryable(&Status::invalid_argument("bad")));
    }
}
