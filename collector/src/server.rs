//! `serve`: binds the gRPC and HTTP listeners, then runs ingest, the API, the job runner and the
//! retention sweeper until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use neurocloak_proto::v1::ingest_service_server::IngestServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;

use crate::api::{ApiState, router};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::ingest::{Ingest, RETRY_AFTER_METADATA};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimiter, SystemClock};
use crate::schedule::{JobRunner, Leases, default_holder};
use crate::store::{self, SharedStore};
use crate::{Result, retention};

/// A collector with its store open and its ports bound, ready to [`Server::run`].
pub struct Server {
    config: Config,
    store: SharedStore,
    metrics: Arc<Metrics>,
    grpc: TcpListener,
    http: TcpListener,
}

impl Server {
    pub async fn bind(config: Config) -> Result<Server> {
        let store = store::open(&config.storage_uri(), &config.mongo_database).await?;
        let metrics = Arc::new(Metrics::new()?);
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        let http = TcpListener::bind(config.http_addr).await?;
        Ok(Server {
            config,
            store,
            metrics,
            grpc,
            http,
        })
    }

    pub fn grpc_addr(&self) -> Result<SocketAddr> {
        Ok(self.grpc.local_addr()?)
    }

    pub fn http_addr(&self) -> Result<SocketAddr> {
        Ok(self.http.local_addr()?)
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Serves until `shutdown` completes, then stops background work and drains requests.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Server {
            config,
            store,
            metrics,
            grpc,
            http,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = Vec::new();
        if config.jobs.enabled {
            let holder = if config.jobs.holder.is_empty() {
                default_holder()
            } else {
                config.jobs.holder.clone()
            };
            tracing::info!(%holder, "job runner started");
            let leases = Leases::new(Arc::clone(&store), holder, config.jobs.lease_ms);
            let poll = Duration::from_millis(config.jobs.poll_ms.max(10));
            let runner = JobRunner::new(Arc::clone(&store), leases, Arc::clone(&metrics), poll);
            background.push(tokio::spawn(runner.run(stop_rx.clone())));
        }
        let pipeline =
            crate::pipeline::start(&config, &store, &metrics, &stop_rx, &mut background).await?;
        // The pipeline's store is open even when this collector does not evaluate
        // (`pipeline.enabled = false`): its history ages out whoever wrote it.
        let sweeper = retention::Sweeper::new(
            Arc::clone(&store),
            Arc::clone(&pipeline.docs),
            config.retention.clone(),
            Arc::clone(&metrics),
        );
        background.push(tokio::spawn(sweeper.run(stop_rx.clone())));
        let limiter = RateLimiter::new(&config.rate_limit, Arc::new(SystemClock::default()))
            .with_metric(metrics.rate_limited.clone());
        let auth = Authenticator::limited(Arc::clone(&store), Arc::new(limiter));
        let ingest = Ingest::new(
            Arc::clone(&store),
            Arc::clone(&metrics),
            config.limits.clone(),
        )
        .with_auth(auth.clone());
        let ingest = IngestServiceServer::new(ingest)
            .max_decoding_message_size(config.max_message_bytes)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip);
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<IngestServiceServer<Ingest>>().await;
        let m = Arc::clone(&metrics);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = grpc_tls(&config)? {
            builder = builder.tls_config(tls)?;
        }
        let grpc_server = builder
            .layer(tower::util::MapResponseLayer::new(move |res| {
                oversized_as_resource_exhausted(&m, res)
            }))
            .add_service(health_service)
            .add_service(ingest)
            .add_service(crate::pipeline::query_server(
                &pipeline,
                config.max_message_bytes,
                auth.clone(),
            ));
        let api = router(ApiState {
            store: Arc::clone(&store),
            auth: auth.clone(),
            metrics: Arc::clone(&metrics),
        })
        .merge(crate::api_eval::router_with_auth(pipeline, auth))
        .layer(axum::middleware::from_fn(crate::ratelimit::http_layer));

        let mut grpc_stop = stop_rx.clone();
        let mut http_stop = stop_rx.clone();
        let grpc_task = tokio::spawn(async move {
            grpc_server
                .serve_with_incoming_shutdown(TcpIncoming::from(grpc), async move {
                    let _ = grpc_stop.wait_for(|s| *s).await;
                })
                .await
        });
        let http_task = tokio::spawn(async move {
            // The peer address is what failed authentications are counted against.
            axum::serve(
                http,
                api.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
        });

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        grpc_task.await??;
        http_task.await??;
        for task in background {
            task.await?;
        }
        Ok(())
    }
}

/// The gRPC TLS settings when a certificate and key are configured.
fn grpc_tls(config: &Config) -> Result<Option<tonic::transport::ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.grpc_tls_cert, &config.grpc_tls_key) else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| crate::Error::Config(format!("{}: {e}", p.display())))
    };
    let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
    Ok(Some(
        tonic::transport::ServerTlsConfig::new().identity(identity),
    ))
}

/// tonic answers an over-limit message with OUT_OF_RANGE; gRPC's convention (and what agents
/// treat as "do not retry this as is") is RESOURCE_EXHAUSTED, as tonic already uses for an
/// over-limit decompressed message. Undecodable protobuf keeps tonic's INTERNAL (the gRPC
/// status-code table's choice for request parse errors) but is counted as a rejection.
fn oversized_as_resource_exhausted<B>(
    metrics: &Metrics,
    mut res: http::Response<B>,
) -> http::Response<B> {
    let headers = res.headers_mut();
    let status = headers
        .get("grpc-status")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("");
    let too_large = message.contains("too%20large") || message.contains("too large");
    let undecodable = message.contains("decode%20Protobuf") || message.contains("decode Protobuf");
    match status.as_slice() {
        b"11" if too_large => {
            headers.insert("grpc-status", HeaderValue::from_static("8"));
            metrics.reject("oversized");
        }
        // A rate-limited call carries retry-after and is counted as rate limited instead.
        b"8" if !headers.contains_key(RETRY_AFTER_METADATA) => metrics.reject("oversized"),
        b"13" if undecodable => metrics.reject("malformed"),
        _ => {}
    }
    res
}
