//! The gRPC `QueryService` (proto/neurocloak/v1/query.proto): trust scores listed per model
//! version and watched live, for the API key's project only.

use std::pin::Pin;

use futures_util::Stream;
use neurocloak_proto::v1::query_service_server::QueryService;
use neurocloak_proto::v1::{
    AlertUpdate, ListTrustScoresRequest, ListTrustScoresResponse, LiveUpdate, TrustScorePoint,
    WatchRequest, live_update,
};
use tokio::sync::broadcast::{self, error::RecvError};
use tonic::{Request, Response, Status};

use super::records::{RangeQuery, TrustPoint, list_trust};
use super::{LiveEvent, Pipeline};
use crate::auth::{Authenticator, Caller};
use crate::ingest::{API_KEY_HEADER, denied_status, store_status};
use crate::store::{PageRequest, Scope};

/// Longest name accepted in a query (the same bound ingest applies to identities).
const MAX_NAME: usize = 256;

#[derive(Clone)]
pub struct Query {
    p: Pipeline,
    auth: Authenticator,
}

impl Query {
    pub fn new(p: Pipeline) -> Query {
        Query {
            auth: Authenticator::new(p.store.clone()),
            p,
        }
    }

    /// Uses `auth` (e.g. the server's rate-limited authenticator) instead of a plain one, so
    /// queries are charged to their key like REST reads.
    pub fn with_auth(mut self, auth: Authenticator) -> Query {
        self.auth = auth;
        self
    }

    async fn caller<T>(&self, req: &Request<T>, project: &str) -> Result<Caller, Status> {
        let key = req
            .metadata()
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok());
        let client = req.remote_addr().map(|a| a.ip());
        let caller = self
            .auth
            .check_from(key, &[Scope::Read], client)
            .await
            .map_err(|d| denied_status(&d))?;
        if caller.project_id != project {
            return Err(Status::permission_denied(
                "project: not the api key's project",
            ));
        }
        Ok(caller)
    }
}

fn check_name(field: &str, v: &str, required: bool) -> Result<(), Status> {
    if (required && v.is_empty()) || v.len() > MAX_NAME {
        return Err(Status::invalid_argument(format!(
            "{field}: must be {}..={MAX_NAME} bytes",
            u8::from(required)
        )));
    }
    Ok(())
}

pub fn point_proto(t: &TrustPoint) -> TrustScorePoint {
    TrustScorePoint {
        project: t.project.clone(),
        model: t.model.clone(),
        version: t.version.clone(),
        environment: t.environment.clone(),
        window_start_ms: t.window_start_ms,
        window_length_ms: t.window_length_ms,
        score: t.trust.score,
        revision: t.revision.clone(),
        evaluated_ms: t.evaluated_ms,
        rows: t.rows,
        detail_json: serde_json::to_string(t).unwrap_or_default(),
    }
}

fn update_proto(e: &LiveEvent, lagged: u64) -> LiveUpdate {
    let event = match e {
        LiveEvent::TrustScore(t) => live_update::Event::TrustScore(point_proto(t)),
        LiveEvent::Alert(a) => live_update::Event::Alert(AlertUpdate {
            rule_id: a.rule_id.clone(),
            scope: a.scope.clone(),
            dedup_key: a.dedup_key.clone(),
            subject: a.subject.clone(),
            transition: enum_name(&a.transition),
            status: a.status.as_str().into(),
            severity: a.severity.as_str().into(),
            value: a.value,
            at_ms: a.at_ms,
            detail_json: serde_json::to_string(a).unwrap_or_default(),
        }),
    };
    LiveUpdate {
        event: Some(event),
        lagged,
    }
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Whether a live event belongs to what a watcher asked for.
pub fn wanted(e: &LiveEvent, project: &str, model: Option<&str>) -> bool {
    if e.project() != project {
        return false;
    }
    match (e, model) {
        (_, None) => true,
        (LiveEvent::TrustScore(t), Some(m)) => t.model == m,
        (LiveEvent::Alert(a), Some(m)) => a.scope.split('@').next() == Some(m),
    }
}

/// Receives the next wanted event; Ok(None) when the pipeline is gone. Lagging skips ahead and
/// counts what was lost.
pub async fn next_event(
    rx: &mut broadcast::Receiver<LiveEvent>,
    project: &str,
    model: Option<&str>,
    lagged: &mut u64,
) -> Option<LiveEvent> {
    loop {
        match rx.recv().await {
            Ok(e) if wanted(&e, project, model) => return Some(e),
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => *lagged += n,
            Err(RecvError::Closed) => return None,
        }
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<LiveUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for Query {
    async fn list_trust_scores(
        &self,
        request: Request<ListTrustScoresRequest>,
    ) -> Result<Response<ListTrustScoresResponse>, Status> {
        let r = request.get_ref().clone();
        self.caller(&request, &r.project).await?;
        check_name("model", &r.model, true)?;
        check_name("version", &r.version, false)?;
        check_name("environment", &r.environment, false)?;
        let version = match (r.version.is_empty(), r.environment.is_empty()) {
            (true, true) => None,
            (false, false) => Some((r.version, r.environment)),
            _ => {
                return Err(Status::invalid_argument(
                    "version and environment: give both or neither",
                ));
            }
        };
        let range = RangeQuery {
            project_id: r.project,
            model: r.model,
            version,
            from_ms: if r.from_ms == 0 { i64::MIN } else { r.from_ms },
            to_ms: if r.to_ms == 0 { i64::MAX } else { r.to_ms },
        };
        if range.from_ms > range.to_ms {
            return Err(Status::invalid_argument("from_ms is after to_ms"));
        }
        let page = PageRequest {
            cursor: (!r.cursor.is_empty()).then_some(r.cursor),
            limit: if r.limit == 0 { 100 } else { r.limit },
        };
        let got = list_trust(&self.p.docs, &range, &page)
            .await
            .map_err(|e| store_status(&e))?;
        Ok(Response::new(ListTrustScoresResponse {
            items: got.items.iter().map(point_proto).collect(),
            next_cursor: got.next.unwrap_or_default(),
        }))
    }

    type WatchTrustScoresStream = UpdateStream;

    async fn watch_trust_scores(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        let r = request.get_ref().clone();
        self.caller(&request, &r.project).await?;
        check_name("model", &r.model, false)?;
        let rx = self.p.subscribe();
        let model = (!r.model.is_empty()).then_some(r.model);
        let stream = futures_util::stream::unfold(
            (rx, r.project, model, 0u64),
            |(mut rx, project, model, mut lagged)| async move {
                let e = next_event(&mut rx, &project, model.as_deref(), &mut lagged).await?;
                let update = update_proto(&e, lagged);
                Some((Ok(update), (rx, project, model, lagged)))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
