//! The collector's HTTP side: `/healthz`, `/readyz`, Prometheus `/metrics` and the read API
//! under `/api/v1` (JSON, read-scope API key in `x-api-key` or `Authorization: Bearer`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use neurocloak_proto::v1::{ColumnProfile, WindowProfile};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value as JsonValue, json};

use crate::Error;
use crate::auth::{Authenticator, Caller, Denied, http_api_key};
use crate::ingest::timed;
use crate::metrics::Metrics;
use crate::store::{ModelKey, PageRequest, Scope, SharedStore, WindowPart, WindowQuery};

#[derive(Clone)]
pub struct ApiState {
    pub store: SharedStore,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/projects", get(projects))
        .route("/api/v1/projects/{project}/models", get(models))
        .route(
            "/api/v1/projects/{project}/models/{model}/versions",
            get(versions),
        )
        .route(
            "/api/v1/projects/{project}/models/{model}/windows",
            get(windows),
        )
        .route(
            "/api/v1/projects/{project}/models/{model}/windows/{start_ms}",
            get(window),
        )
        .with_state(state)
}

/// An error as the API answers it: a status and `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, m),
            Error::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            other => ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store: {other}")),
        }
    }
}

/// Status and message of a refused request (setting `Retry-After` when it was rate limited),
/// shared by both routers; a store failure is handed back for the router's own mapping.
pub(crate) fn refusal(d: Denied) -> std::result::Result<(StatusCode, String), Error> {
    match d {
        Denied::Unauthenticated(m) => Ok((StatusCode::UNAUTHORIZED, m.into())),
        Denied::PermissionDenied(_) => Ok((StatusCode::FORBIDDEN, d.to_string())),
        Denied::RateLimited(l) => {
            crate::ratelimit::set_retry_after(l.retry_after_s);
            Ok((StatusCode::TOO_MANY_REQUESTS, d.to_string()))
        }
        Denied::Store(e) => Err(e),
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        match refusal(d) {
            Ok((status, message)) => ApiError(status, message),
            Err(e) => e.into(),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn readyz(State(s): State<ApiState>) -> Response {
    match timed(&s.metrics, "ping", s.store.ping()).await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "ready": true, "store": s.store.backend() })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "store": s.store.backend(), "error": e.to_string() })),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Unauthenticated: the document describes the API and holds no data.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
        .into_response()
}

/// Authenticates with the read scope and, when a project is named, checks it is the key's.
async fn reader(s: &ApiState, headers: &HeaderMap, project: Option<&str>) -> ApiResult<Caller> {
    let caller = s
        .auth
        .check_from(
            http_api_key(headers, None),
            &[Scope::Read],
            crate::ratelimit::http_client(),
        )
        .await
        .inspect_err(|d| s.metrics.reject(d.reason()))?;
    if project.is_some_and(|p| p != caller.project_id) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "api key belongs to another project".into(),
        ));
    }
    Ok(caller)
}

#[derive(Debug, Deserialize)]
struct PageParams {
    cursor: Option<String>,
    limit: Option<u32>,
}

impl PageParams {
    fn page(&self) -> PageRequest {
        PageRequest::requested(self.cursor.clone(), self.limit)
    }
}

#[derive(Serialize)]
struct PageBody<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

async fn projects(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult<Json<JsonValue>> {
    let caller = reader(&s, &headers, None).await?;
    let project = s.store.get_project(&caller.project_id).await?;
    Ok(Json(
        json!({ "items": project.into_iter().collect::<Vec<_>>() }),
    ))
}

async fn models(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<JsonValue>> {
    reader(&s, &headers, Some(&project)).await?;
    let page = timed(
        &s.metrics,
        "list_models",
        s.store.list_models(&project, &p.page()),
    )
    .await?;
    Ok(Json(json!(PageBody {
        items: page.items,
        next_cursor: page.next
    })))
}

async fn versions(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path((project, model)): Path<(String, String)>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<JsonValue>> {
    reader(&s, &headers, Some(&project)).await?;
    let page = timed(
        &s.metrics,
        "list_versions",
        s.store.list_versions(&project, &model, &p.page()),
    )
    .await?;
    Ok(Json(json!(PageBody {
        items: page.items,
        next_cursor: page.next
    })))
}

#[derive(Debug, Deserialize)]
struct WindowParams {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    version: Option<String>,
    environment: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// A window part without its profile bytes (listing is a projection).
#[derive(Serialize)]
struct WindowSummary {
    id: String,
    version: String,
    environment: String,
    window_start_ms: i64,
    window_length_ms: i64,
    rows: u64,
    agent_id: String,
    batch_id: String,
    received_ms: i64,
}

impl From<WindowPart> for WindowSummary {
    fn from(w: WindowPart) -> WindowSummary {
        WindowSummary {
            id: w.id,
            version: w.key.version,
            environment: w.key.environment,
            window_start_ms: w.window_start_ms,
            window_length_ms: w.window_length_ms,
            rows: w.rows,
            agent_id: w.agent_id,
            batch_id: w.batch_id,
            received_ms: w.received_ms,
        }
    }
}

async fn windows(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path((project, model)): Path<(String, String)>,
    Query(p): Query<WindowParams>,
) -> ApiResult<Json<JsonValue>> {
    reader(&s, &headers, Some(&project)).await?;
    let query = WindowQuery {
        project_id: project,
        model,
        version: p.version,
        environment: p.environment,
        from_ms: p.from_ms.unwrap_or(0),
        to_ms: p.to_ms.unwrap_or(i64::MAX),
        with_profile: false,
    };
    if query.from_ms > query.to_ms {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "from_ms is after to_ms".into(),
        ));
    }
    let page = PageRequest::requested(p.cursor, p.limit);
    let page = timed(
        &s.metrics,
        "list_windows",
        s.store.list_windows(&query, &page),
    )
    .await?;
    let items: Vec<WindowSummary> = page.items.into_iter().map(Into::into).collect();
    Ok(Json(json!(PageBody {
        items,
        next_cursor: page.next
    })))
}

#[derive(Debug, Deserialize)]
struct OneWindowParams {
    version: String,
    environment: String,
}

/// One window of one model version: every stored part, merged.
async fn window(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path((project, model, start_ms)): Path<(String, String, i64)>,
    Query(p): Query<OneWindowParams>,
) -> ApiResult<Json<JsonValue>> {
    reader(&s, &headers, Some(&project)).await?;
    let key = ModelKey {
        project_id: project,
        model,
        version: p.version,
        environment: p.environment,
    };
    let parts = timed(
        &s.metrics,
        "window_parts",
        s.store.window_parts(&key, start_ms),
    )
    .await?;
    if parts.is_empty() {
        return Err(ApiError(StatusCode::NOT_FOUND, "no such window".into()));
    }
    let mut profiles = Vec::with_capacity(parts.len());
    for part in &parts {
        let profile = WindowProfile::decode(part.profile.as_slice()).map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("part {}: {e}", part.id),
            )
        })?;
        profiles.push(profile);
    }
    // Parts were each validated on ingest, so a failure here means they disagree with each
    // other (e.g. different schemas), which the caller should see rather than a partial view.
    let merged = neurocloak_core::merge_parts(&profiles).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("stored parts do not merge: {e}"),
        )
    })?;
    Ok(Json(json!({
        "project": key.project_id,
        "model": key.model,
        "version": key.version,
        "environment": key.environment,
        "window_start_ms": start_ms,
        "stored_parts": parts.len(),
        "profile": profile_json(&merged),
    })))
}

/// A JSON view of a profile: counts and moments per column (sketches stay binary).
pub fn profile_json(w: &WindowProfile) -> JsonValue {
    let features: serde_json::Map<String, JsonValue> = w
        .features
        .iter()
        .map(|(name, c)| (name.clone(), column_json(c)))
        .collect();
    json!({
        "window_length_ms": w.window_length_ms,
        "rows": w.rows,
        "parts": w.parts,
        "errors": w.errors,
        "extra_features": w.extra_features,
        "predictions_dropped": w.predictions_dropped,
        "features": features,
        "prediction": w.prediction.as_ref().map(column_json),
        "label": w.label.as_ref().map(column_json),
        "sampled_rows": w.reservoir.as_ref().map_or(0, |r| r.rows.len()),
    })
}

fn column_json(c: &ColumnProfile) -> JsonValue {
    let counters = c.counters.as_ref().map(|k| {
        json!({
            "count": k.count, "missing": k.missing, "nan": k.nan, "pos_inf": k.pos_inf,
            "neg_inf": k.neg_inf, "type_mismatch": k.type_mismatch, "truncated": k.truncated,
        })
    });
    let moments = c
        .numeric
        .as_ref()
        .and_then(|n| n.moments.as_ref())
        .map(|m| {
            let variance = if m.n > 1 {
                m.m2 / (m.n - 1) as f64
            } else {
                0.0
            };
            json!({ "n": m.n, "mean": m.mean, "variance": variance, "min": m.min, "max": m.max })
        });
    let top = c
        .categorical
        .as_ref()
        .and_then(|cat| cat.items.as_ref())
        .map(|fi| {
            let items: Vec<JsonValue> = fi
                .items
                .iter()
                .take(20)
                .map(|i| json!({ "value": i.value, "count": i.count }))
                .collect();
            json!({ "total": fi.total, "max_error": fi.max_error, "items": items })
        });
    json!({ "kind": c.kind, "counters": counters, "moments": moments, "frequent": top })
}
