//! The gRPC `IngestService` agents push to: authenticate, validate, store once, then reply.

pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use neurocloak_proto::v1::ingest_service_server::IngestService;
use neurocloak_proto::v1::{
    IngestAck, IngestBatch, ReferenceBinsRequest, ReferenceBinsResponse, ReferenceProfile,
};
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Caller, Denied};
use crate::metrics::Metrics;
use crate::store::{ModelKey, Scope, SharedStore, now_ms};
use crate::{Error, Result};
pub use validate::{Limits, Rejection};

/// Metadata key carrying the project API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Metadata key of a rate-limited call's RESOURCE_EXHAUSTED: whole seconds to wait.
pub const RETRY_AFTER_METADATA: &str = "retry-after";

/// The ingest endpoint's state; cheap to clone into tonic.
#[derive(Clone)]
pub struct Ingest {
    store: SharedStore,
    auth: Authenticator,
    metrics: Arc<Metrics>,
    limits: Limits,
}

impl Ingest {
    pub fn new(store: SharedStore, metrics: Arc<Metrics>, limits: Limits) -> Ingest {
        Ingest {
            auth: Authenticator::new(Arc::clone(&store)),
            store,
            metrics,
            limits,
        }
    }

    /// Authenticates with `auth` (e.g. one with rate limits) instead of a plain one.
    pub fn with_auth(mut self, auth: Authenticator) -> Ingest {
        self.auth = auth;
        self
    }

    async fn caller<T>(&self, req: &Request<T>, any_of: &[Scope]) -> Result<Caller, Status> {
        let key = req
            .metadata()
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok());
        let client = req.remote_addr().map(|a| a.ip());
        self.auth
            .check_from(key, any_of, client)
            .await
            .map_err(|d| {
                self.metrics.reject(d.reason());
                denied_status(&d)
            })
    }
}

pub fn denied_status(d: &Denied) -> Status {
    match d {
        Denied::Unauthenticated(why) => Status::unauthenticated(*why),
        Denied::PermissionDenied(_) => Status::permission_denied(d.to_string()),
        Denied::RateLimited(l) => {
            let mut status = Status::resource_exhausted(d.to_string());
            status
                .metadata_mut()
                .insert(RETRY_AFTER_METADATA, l.retry_after_s.into());
            status
        }
        Denied::Store(e) => store_status(e),
    }
}

/// Storage trouble is usually transient (database restarting), so agents should retry.
pub fn store_status(e: &Error) -> Status {
    match e {
        Error::Invalid(m) => Status::invalid_argument(m.clone()),
        Error::Corrupt(m) => Status::internal(m.clone()),
        other => Status::unavailable(format!("store unavailable: {other}")),
    }
}

/// Runs a store call and records its latency under `op`.
pub async fn timed<T>(
    metrics: &Metrics,
    op: &str,
    f: impl Future<Output = Result<T>>,
) -> Result<T> {
    let start = Instant::now();
    let out = f.await;
    metrics
        .store_seconds
        .with_label_values(&[op])
        .observe(start.elapsed().as_secs_f64());
    out
}

#[tonic::async_trait]
impl IngestService for Ingest {
    async fn ingest(&self, request: Request<IngestBatch>) -> Result<Response<IngestAck>, Status> {
        let caller = self.caller(&request, &[Scope::Ingest]).await?;
        let batch = request.into_inner();
        let valid = match validate::validate(&batch, &caller.project_id, &self.limits, now_ms()) {
            Ok(v) => v,
            Err(rejection) => {
                self.metrics.reject(rejection.reason);
                self.metrics.batches.with_label_values(&["rejected"]).inc();
                return Err(Status::invalid_argument(rejection.message));
            }
        };
        match timed(&self.metrics, "store_batch", self.store.store_batch(&valid)).await {
            Ok(outcome) => {
                let label = if outcome.duplicate {
                    "duplicate"
                } else {
                    "stored"
                };
                self.metrics.batches.with_label_values(&[label]).inc();
                self.metrics.items_stored.inc_by(u64::from(outcome.stored));
                Ok(Response::new(IngestAck {
                    duplicate: outcome.duplicate,
                    stored: outcome.stored,
                }))
            }
            Err(e) => {
                tracing::warn!(batch = %valid.batch_id, error = %e, "batch not stored");
                self.metrics.batches.with_label_values(&["failed"]).inc();
                Err(store_status(&e))
            }
        }
    }

    async fn get_reference_bins(
        &self,
        request: Request<ReferenceBinsRequest>,
    ) -> Result<Response<ReferenceBinsResponse>, Status> {
        let caller = self.caller(&request, &[Scope::Ingest, Scope::Read]).await?;
        let identity = request.into_inner().identity;
        let id = identity.ok_or_else(|| Status::invalid_argument("identity: missing"))?;
        let max = self.limits.max_name_len;
        for (field, value) in [
            ("project", &id.project),
            ("model", &id.model),
            ("version", &id.version),
            ("environment", &id.environment),
        ] {
            if value.is_empty() || value.len() > max {
                return Err(Status::invalid_argument(format!(
                    "identity.{field}: must be 1..={max} bytes"
                )));
            }
        }
        if id.project != caller.project_id {
            return Err(Status::permission_denied(
                "identity.project: not the api key's project",
            ));
        }
        let key = ModelKey {
            project_id: id.project,
            model: id.model,
            version: id.version,
            environment: id.environment,
        };
        let found = timed(
            &self.metrics,
            "latest_reference",
            self.store.latest_reference(&key),
        )
        .await
        .map_err(|e| store_status(&e))?;
        let bins = match found {
            None => Default::default(),
            Some(r) => {
                ReferenceProfile::decode(r.payload.as_slice())
                    .map_err(|e| {
                        Status::internal(format!("stored reference {} is corrupt: {e}", r.id))
                    })?
                    .bins
            }
        };
        Ok(Response::new(ReferenceBinsResponse { bins }))
    }
}
