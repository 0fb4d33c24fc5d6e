//! Where SDK data enters: the `AgentService` gRPC service. A push is validated, handed to the
//! queue's group-commit writer and acknowledged only once it is on disk.
//!
//! [`AgentServer`] serves `Push` from the message's bytes: a push is decoded only when one of
//! [`MAX_DECODING`] permits is free, and encoded for the queue before the permit is released.
//! At a window's end every SDK process pushes at the same moment, and a decoded push (plus the
//! profile built to validate it) is several times its wire size.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::convert::Infallible;
use std::task::{Context, Poll};

use neurocloak_proto::v1::agent_service_server::{AgentService, AgentServiceServer, SERVICE_NAME};
use neurocloak_proto::v1::push_request::Payload as PushPayload;
use neurocloak_proto::v1::{
    IngestItem, ModelIdentity, PushRequest, PushResponse, ReferenceBinsRequest,
    ReferenceBinsResponse, ingest_item,
};
use parking_lot::Mutex;
use prost::Message;
use prost::bytes::{Buf, Bytes};
use tokio::sync::{Notify, Semaphore, oneshot};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::forward::Collector;
use crate::queue::{Appended, DiskQueue, NewRecord};

const MAX_NAME: usize = 256;
/// The collector's own limit per label batch; larger pushes could never be forwarded.
const MAX_LABELS: usize = 100_000;
/// Pushes written with one write + fdatasync at most.
const MAX_GROUP: usize = 1024;
/// Pushes decoded and validated at once: pure CPU work, so more at once than the runtime has
/// workers would only add memory.
pub const MAX_DECODING: usize = 2;
const PUSH_PATH: &str = "/neurocloak.v1.AgentService/Push";

/// Counters of the receive stage (pushes, not records).
#[derive(Debug, Default)]
pub struct ReceiveStats {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub invalid: AtomicU64,
    pub failed: AtomicU64,
}

type Reply = oneshot::Sender<Result<Appended, String>>;
type AppendRequest = (NewRecord, Reply);

/// Handle to the queue's writer thread, which batches concurrent pushes into one fsync.
#[derive(Clone)]
pub struct Appender {
    tx: Arc<Mutex<Option<crossbeam_channel::Sender<AppendRequest>>>>,
}

impl Appender {
    /// Starts the writer thread; it ends after [`Appender::close`].
    pub fn start(
        queue: Arc<Mutex<DiskQueue>>,
        appended: Arc<Notify>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = crossbeam_channel::unbounded::<AppendRequest>();
        let handle = std::thread::Builder::new()
            .name("neurocloak-queue-writer".into())
            .spawn(move || {
                let wrote = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    write_groups(&rx, &queue, &appended);
                }));
                if wrote.is_err() {
                    // Alone, a dead writer leaves an agent that still answers health checks
                    // but refuses every push for good. Exiting instead lets the orchestrator
                    // restart it, and a restart recovers the queue from disk.
                    tracing::error!("the queue writer panicked; exiting");
                    std::process::abort();
                }
            })?;
        Ok((
            Self {
                tx: Arc::new(Mutex::new(Some(tx))),
            },
            handle,
        ))
    }

    /// Refuses further appends; the writer finishes what it was given and exits.
    pub fn close(&self) {
        self.tx.lock().take();
    }

    pub async fn append(&self, record: NewRecord) -> Result<Appended, String> {
        let (reply, answer) = oneshot::channel();
        let sent = match self.tx.lock().as_ref() {
            Some(tx) => tx.send((record, reply)).is_ok(),
            None => false,
        };
        if !sent {
            return Err("the agent is shutting down".into());
        }
        answer
            .await
            .map_err(|_| "the queue writer has stopped".to_string())?
    }
}

/// The writer thread's loop: one write (and fsync) per group of waiting pushes, until
/// [`Appender::close`].
fn write_groups(
    rx: &crossbeam_channel::Receiver<AppendRequest>,
    queue: &Mutex<DiskQueue>,
    appended: &Notify,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(more) => group.push(more),
                Err(_) => break,
            }
        }
        let (records, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let result = queue.lock().append(records, crate::now_ms());
        match result {
            Ok(outcomes) => {
                for (reply, o) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(o));
                }
                appended.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, "queue append failed");
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// The `AgentService` implementation.
pub struct Receiver {
    appender: Appender,
    collector: Option<Collector>,
    stats: Arc<ReceiveStats>,
    bins_cache: Mutex<HashMap<String, (Instant, ReferenceBinsResponse)>>,
    bins_ttl: Duration,
    decoding: Semaphore,
}

impl Receiver {
    pub fn new(appender: Appender, collector: Option<Collector>, stats: Arc<ReceiveStats>) -> Self {
        Self {
            appender,
            collector,
            stats,
            bins_cache: Mutex::new(HashMap::new()),
            bins_ttl: Duration::from_secs(60),
            decoding: Semaphore::new(MAX_DECODING),
        }
    }
}

fn check_identity(id: Option<&ModelIdentity>) -> Result<(), String> {
    let id = id.ok_or("missing identity")?;
    if id.project.is_empty() || id.model.is_empty() {
        return Err("identity needs a project and a model".into());
    }
    for (name, v) in [
        ("project", &id.project),
        ("model", &id.model),
        ("version", &id.version),
        ("environment", &id.environment),
    ] {
        if v.len() > MAX_NAME {
            return Err(format!("identity {name} longer than {MAX_NAME} bytes"));
        }
    }
    Ok(())
}

/// Rejects what the collector could never accept, before it takes space in the queue.
pub fn validate(req: PushRequest) -> Result<NewRecord, String> {
    if req.sdk_instance.is_empty() || req.sdk_instance.len() > 128 {
        return Err("sdk_instance must be 1 to 128 bytes".into());
    }
    let payload = match req.payload {
        None => return Err("push without a payload".into()),
        Some(PushPayload::Window(w)) => {
            check_identity(w.identity.as_ref())?;
            // Aligned windows are what lets parts of different processes merge.
            if w.window_length_ms <= 0
                || w.window_start_ms < 0
                || w.window_start_ms % w.window_length_ms != 0
            {
                return Err("window_start_ms must be a non-negative multiple of a positive window_length_ms".into());
            }
            neurocloak_core::WindowProfile::from_proto(&w).map_err(|e| e.to_string())?;
            ingest_item::Payload::Window(w)
        }
        Some(PushPayload::Labels(l)) => {
            check_identity(l.identity.as_ref())?;
            if l.labels.len() > MAX_LABELS {
                return Err(format!("more than {MAX_LABELS} labels in one push"));
            }
            if l.labels
                .iter()
                .any(|r| r.id.is_empty() || r.id.len() > MAX_NAME)
            {
                return Err(format!("label ids must be 1 to {MAX_NAME} bytes"));
            }
            ingest_item::Payload::Labels(l)
        }
        Some(PushPayload::Reference(r)) => {
            check_identity(r.identity.as_ref())?;
            if let Some(p) = &r.profile {
                neurocloak_core::WindowProfile::from_proto(p).map_err(|e| e.to_string())?;
            }
            if r.bins
                .values()
                .any(|b| b.edges.iter().any(|e| !e.is_finite()))
            {
                return Err("reference bin edges must be finite".into());
            }
            ingest_item::Payload::Reference(r)
        }
    };
    Ok(NewRecord::new(
        req.sdk_instance,
        req.sequence,
        IngestItem {
            payload: Some(payload),
        },
    ))
}

impl Receiver {
    /// A push as it came off the wire: decoded, validated and encoded for the queue under a
    /// decode permit, then stored.
    async fn push_bytes(&self, body: Bytes) -> Result<PushResponse, Status> {
        let record = {
            // Never closed, so acquiring cannot fail; without a permit, decode anyway.
            let _permit = self.decoding.acquire().await.ok();
            let req = PushRequest::decode(body)
                .map_err(|e| Status::internal(format!("failed to decode PushRequest: {e}")))?;
            self.validated(req)?
        };
        self.store(record).await
    }

    fn validated(&self, req: PushRequest) -> Result<NewRecord, Status> {
        validate(req).map_err(|e| {
            self.stats.invalid.fetch_add(1, Ordering::Relaxed);
            Status::invalid_argument(e)
        })
    }

    async fn store(&self, record: NewRecord) -> Result<PushResponse, Status> {
        match self.appender.append(record).await {
            Ok(Appended::Stored(_)) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(PushResponse { duplicate: false })
            }
            Ok(Appended::Duplicate) => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                Ok(PushResponse { duplicate: true })
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                // Unavailable: the SDK keeps the payload and retries.
                Err(Status::unavailable(format!("agent queue: {e}")))
            }
        }
    }
}

#[tonic::async_trait]
impl AgentService for Receiver {
    /// The generated path (already decoded); [`AgentServer`] routes pushes to `push_bytes`.
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let record = self.validated(request.into_inner())?;
        self.store(record).await.map(Response::new)
    }

    async fn get_reference_bins(
        &self,
        request: Request<ReferenceBinsRequest>,
    ) -> Result<Response<ReferenceBinsResponse>, Status> {
        let req = request.into_inner();
        check_identity(req.identity.as_ref()).map_err(Status::invalid_argument)?;
        let key = format!("{:?}", req.identity);
        if let Some((at, bins)) = self.bins_cache.lock().get(&key)
            && at.elapsed() < self.bins_ttl
        {
            return Ok(Response::new(bins.clone()));
        }
        let Some(collector) = &self.collector else {
            return Ok(Response::new(ReferenceBinsResponse::default()));
        };
        let bins = collector.reference_bins(req).await?;
        let mut cache = self.bins_cache.lock();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), bins.clone()));
        Ok(Response::new(bins))
    }
}

/// The `AgentService` as served to SDKs: `Push` through [`Receiver::push_bytes`], every other
/// method through the generated server.
#[derive(Clone)]
pub struct AgentServer {
    receiver: Arc<Receiver>,
    generated: AgentServiceServer<Receiver>,
    max_message_bytes: usize,
}

impl AgentServer {
    pub fn new(receiver: Arc<Receiver>, max_message_bytes: usize) -> Self {
        Self {
            generated: AgentServiceServer::from_arc(Arc::clone(&receiver))
                .max_decoding_message_size(max_message_bytes),
            receiver,
            max_message_bytes,
        }
    }
}

impl NamedService for AgentServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for AgentServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <AgentServiceServer<Receiver> as Service<http::Request<B>>>::poll_ready(
            &mut self.generated,
            cx,
        )
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != PUSH_PATH {
            return self.generated.call(req);
        }
        let push = RawPush(Arc::clone(&self.receiver));
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawPushCodec)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(push, req).await)
        })
    }
}

struct RawPush(Arc<Receiver>);

impl UnaryService<Bytes> for RawPush {
    type Response = PushResponse;
    type Future = BoxFuture<Response<PushResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let receiver = Arc::clone(&self.0);
        Box::pin(async move {
            receiver
                .push_bytes(request.into_inner())
                .await
                .map(Response::new)
        })
    }
}

/// Takes a push's message bytes as they are (the gRPC framing and size limit are tonic's) and
/// encodes the reply with prost.
struct RawPushCodec;

impl Codec for RawPushCodec {
    type Encode = PushResponse;
    type Decode = Bytes;
    type Encoder = RawPushCodec;
    type Decoder = RawPushCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawPushCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawPushCodec
    }
}

impl Encoder for RawPushCodec {
    type Item = PushResponse;
    type Error = Status;

    fn encode(&mut self, item: PushResponse, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the reply: {e}")))
    }
}

impl Decoder for RawPushCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
