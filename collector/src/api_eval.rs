//! REST routes of the pipeline under `/api/v1` and the WebSocket `/api/v1/live`.
//!
//! Reads (evaluations, trust scores, alerts, rules, channels, history, deliveries, back-tests)
//! need a key with the `read` scope; writes (rules, channels) and acknowledgements need the
//! `admin` scope. A key only sees its own project. Errors answer `{"error": "..."}`; rule
//! validation problems answer 400 (not a rule at all) or 422 (every violation listed).
//!
//! Every write is an audited action of the calling key (`crate::audit::record`): a request
//! refused by its checks leaves no entry, one that passes them is recorded before the change
//! is made. `…/audit` lists a project's entries and `…/audit/verify` checks its chain.

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use neurocloak_alert::engine::MAX_USER_LEN;
use neurocloak_alert::{AlertError, Channel, Rule, Status};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Error;
use crate::audit::{self, Action};
use crate::auth::{Authenticator, Caller, http_api_key};
use crate::pipeline::alerts::{self, AlertFailure};
use crate::pipeline::records::{
    ProjectEvalConfig, RangeQuery, list_evaluations, list_trust, parse, project_config,
    put_project_config,
};
use crate::pipeline::{LiveEvent, Pipeline, join_id, query};
use crate::store::eval::Coll;
use crate::store::{AuditQuery, PageRequest, Scope};

/// Largest JSON body accepted by the write routes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct EvalApi {
    p: Pipeline,
    auth: Authenticator,
}

pub fn router(p: Pipeline) -> Router {
    let auth = Authenticator::new(p.store.clone());
    router_with_auth(p, auth)
}

/// [`router`] authenticating with `auth` (the collector's, which applies the rate limits).
pub fn router_with_auth(p: Pipeline, auth: Authenticator) -> Router {
    let state = EvalApi { auth, p };
    let model = "/api/v1/projects/{project}/models/{model}";
    let project = "/api/v1/projects/{project}";
    Router::new()
        .route("/api/v1/live", get(live))
        .route(&format!("{model}/evaluations"), get(evaluations))
        .route(&format!("{model}/trust"), get(trust))
        .route(&format!("{model}/trust/latest"), get(trust_latest))
        .route(&format!("{project}/rules"), get(rules).post(create_rule))
        .route(&format!("{project}/rules/backtest"), post(backtest))
        .route(
            &format!("{project}/rules/{{rule}}"),
            get(rule).put(replace_rule).delete(delete_rule),
        )
        .route(
            &format!("{project}/channels"),
            get(channels).post(put_channel),
        )
        .route(
            &format!("{project}/channels/{{channel}}"),
            axum::routing::delete(delete_channel),
        )
        .route(&format!("{project}/alerts"), get(alerts_list))
        .route(&format!("{project}/alerts/history"), get(history))
        .route(&format!("{project}/alerts/{{dedup}}/ack"), post(ack))
        .route(&format!("{project}/deliveries"), get(deliveries))
        .route(
            &format!("{project}/evaluation-config"),
            get(eval_config).put(put_eval_config),
        )
        .route(&format!("{project}/audit"), get(audit_list))
        .route(&format!("{project}/audit/verify"), get(audit_verify))
        .with_state(state)
}

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let f = AlertFailure::from(e);
        ApiError(status(f.status), f.message)
    }
}

impl From<AlertFailure> for ApiError {
    fn from(f: AlertFailure) -> ApiError {
        ApiError(status(f.status), f.message)
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body, refusing every key `T` does not know wherever it is nested, so a
/// misspelt setting is a 400 rather than a silently kept default. Types with
/// `deny_unknown_fields` fail inside serde; `serde_ignored` catches the keys of the others.
/// serde_path_to_error puts the path in the message (`evaluation.drift.features.age.tset: …`).
pub fn parse_strict<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    let bad = |m: String| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("malformed {what}: {}", shorten(&m)),
        )
    };
    // serde would also take a struct as a positional array; settings are named or not at all.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(bad("expected a JSON object".into()));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let value: T =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(&mut json, &mut note))
            .map_err(|e| bad(e.to_string()))?;
    json.end().map_err(|e| bad(e.to_string()))?;
    match unknown.first() {
        Some(key) => Err(bad(format!("unknown key `{key}`"))),
        None => Ok(value),
    }
}

/// serde quotes the offending value (an unknown variant, say), which may be most of a 64 KiB
/// body; an error message only needs its start.
fn shorten(message: &str) -> String {
    const MAX: usize = 300;
    if message.len() <= MAX {
        return message.to_owned();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

async fn authorize(
    s: &EvalApi,
    headers: &HeaderMap,
    query_key: Option<&str>,
    project: &str,
    scope: Scope,
) -> ApiResult<Caller> {
    let caller = s
        .auth
        .check_from(
            http_api_key(headers, query_key),
            &[scope],
            crate::ratelimit::http_client(),
        )
        .await
        .map_err(|d| {
            s.p.metrics.reject(d.reason());
            match crate::api::refusal(d) {
                Ok((status, message)) => ApiError(status, message),
                Err(e) => ApiError::from(e),
            }
        })?;
    if caller.project_id != project {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "api key belongs to another project".into(),
        ));
    }
    Ok(caller)
}

#[derive(Debug, Deserialize)]
struct RangeParams {
    version: Option<String>,
    environment: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    cursor: Option<String>,
    limit: Option<u32>,
}

impl RangeParams {
    fn range(&self, project: String, model: String) -> ApiResult<RangeQuery> {
        let version = match (&self.version, &self.environment) {
            (Some(v), e) => Some((v.clone(), e.clone().unwrap_or_else(|| "production".into()))),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "environment needs a version".into(),
                ));
            }
        };
        let q = RangeQuery {
            project_id: project,
            model,
            version,
            from_ms: self.from_ms.unwrap_or(i64::MIN),
            to_ms: self.to_ms.unwrap_or(i64::MAX),
        };
        if q.from_ms > q.to_ms {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "from_ms is after to_ms".into(),
            ));
        }
        Ok(q)
    }

    fn page(&self) -> PageRequest {
        PageRequest::requested(self.cursor.clone(), self.limit)
    }
}

fn page_json<T: serde::Serialize>(items: Vec<T>, next: Option<String>) -> Json<Value> {
    Json(json!({ "items": items, "next_cursor": next }))
}

async fn evaluations(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path((project, model)): Path<(String, String)>,
    Query(q): Query<RangeParams>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    let got = list_evaluations(&s.p.docs, &q.range(project, model)?, &q.page()).await?;
    Ok(page_json(got.items, got.next))
}

async fn trust(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path((project, model)): Path<(String, String)>,
    Query(q): Query<RangeParams>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    let got = list_trust(&s.p.docs, &q.range(project, model)?, &q.page()).await?;
    Ok(page_json(got.items, got.next))
}

async fn trust_latest(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path((project, model)): Path<(String, String)>,
    Query(q): Query<RangeParams>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    let got = list_trust(&s.p.docs, &q.range(project, model)?, &PageRequest::first(1)).await?;
    match got.items.into_iter().next() {
        Some(t) => Ok(Json(json!(t))),
        None => Err(ApiError(StatusCode::NOT_FOUND, "no trust score yet".into())),
    }
}

async fn rules(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    Ok(Json(
        json!({ "items": alerts::list_rules(&s.p, &project).await? }),
    ))
}

async fn rule(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    match alerts::get_rule(&s.p, &project, &id).await? {
        Some(r) => Ok(Json(json!(r))),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("rule {id}"))),
    }
}

fn parse_rule(body: &[u8]) -> ApiResult<Rule> {
    Rule::from_json(body).map_err(|e| ApiError(status(e.http_status()), e.to_string()))
}

/// Runs `op` as an audited change of `caller` in the project's chain.
async fn audited<T>(
    s: &EvalApi,
    caller: &Caller,
    action: &str,
    target: String,
    detail: Value,
    op: impl std::future::Future<Output = ApiResult<T>>,
) -> ApiResult<T> {
    let actor = audit::key_actor(&caller.key_prefix);
    let a = Action::new(&caller.project_id, &actor, action, &target, detail);
    audit::record(&*s.p.store, a, op, |e: &ApiError| {
        format!("{} {}", e.0.as_u16(), e.1)
    })
    .await
}

/// The checks `alerts::put_rule` makes, run before the change is audited so that a refused
/// rule leaves no entry.
async fn check_rule(s: &EvalApi, project: &str, rule: &Rule) -> ApiResult<()> {
    if rule.project != project {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "invalid rule: project: {:?} is not this project ({project:?})",
                rule.project
            ),
        ));
    }
    let channels = alerts::channel_ids(&s.p, project).await?;
    rule.validate(&channels)
        .map_err(|e| ApiError::from(AlertFailure::from(e)))
}

async fn create_rule(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = authorize(&s, &headers, None, &project, Scope::Admin).await?;
    let rule = parse_rule(&body)?;
    check_rule(&s, &project, &rule).await?;
    if alerts::get_rule(&s.p, &project, &rule.id).await?.is_some() {
        return Err(Error::Conflict(format!("rule {}", rule.id)).into());
    }
    let target = format!("rule/{}", rule.id);
    audited(
        &s,
        &caller,
        "rule.create",
        target,
        json!({ "rule": rule }),
        async { Ok(alerts::put_rule(&s.p, &project, &rule, true).await?) },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(rule))))
}

async fn replace_rule(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = authorize(&s, &headers, None, &project, Scope::Admin).await?;
    let rule = parse_rule(&body)?;
    if rule.id != id {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "invalid rule: id: {:?} does not match the path ({id:?})",
                rule.id
            ),
        ));
    }
    check_rule(&s, &project, &rule).await?;
    let target = format!("rule/{}", rule.id);
    audited(
        &s,
        &caller,
        "rule.replace",
        target,
        json!({ "rule": rule }),
        async { Ok(alerts::put_rule(&s.p, &project, &rule, false).await?) },
    )
    .await?;
    Ok(Json(json!(rule)))
}

async fn delete_rule(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let caller = authorize(&s, &headers, None, &project, Scope::Admin).await?;
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("rule {id}"));
    if alerts::get_rule(&s.p, &project, &id).await?.is_none() {
        return Err(not_found());
    }
    audited(
        &s,
        &caller,
        "rule.delete",
        format!("rule/{id}"),
        json!({}),
        async {
            match alerts::delete_rule(&s.p, &project, &id).await? {
                true => Ok(StatusCode::NO_CONTENT),
                false => Err(not_found()),
            }
        },
    )
    .await
}

async fn backtest(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<RangeParams>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    let rule = parse_rule(&body)?;
    let model = rule.model.clone().ok_or_else(|| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid rule: model: a back-test needs the rule's model".into(),
        )
    })?;
    let mut range = q.range(project.clone(), model)?;
    if range.version.is_none()
        && let Some(v) = &rule.version
    {
        range.version = Some((
            v.clone(),
            q.environment.clone().unwrap_or_else(|| "production".into()),
        ));
    }
    if rule.project != project {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid rule: project: not this project".into(),
        ));
    }
    let (windows, transitions) = alerts::backtest(&s.p, &rule, &range).await?;
    let fired: Vec<_> = transitions
        .iter()
        .filter(|t| t.kind == neurocloak_alert::TransitionKind::Fired)
        .collect();
    Ok(Json(json!({
        "windows": windows,
        "fired": fired.len(),
        "transitions": transitions,
    })))
}

async fn channels(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    Ok(Json(
        json!({ "items": alerts::list_channels(&s.p, &project).await? }),
    ))
}

async fn put_channel(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = authorize(&s, &headers, None, &project, Scope::Admin).await?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {MAX_BODY_BYTES} bytes"),
        ));
    }
    let channel: Channel = parse_strict(&body, "channel")?;
    channel
        .validate()
        .map_err(|e| ApiError::from(AlertFailure::from(e)))?;
    // Only the id and kind: the URL and signing secret never enter the audit trail.
    let detail = json!({ "id": channel.id, "kind": channel.kind });
    let target = format!("channel/{}", channel.id);
    audited(&s, &caller, "channel.put", target, detail, async {
        Ok(alerts::put_channel(&s.p, &project, &channel).await?)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": channel.id, "kind": channel.kind })),
    ))
}

async fn delete_channel(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let caller = authorize(&s, &headers, None, &project, Scope::Admin).await?;
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("channel {id}"));
    if !alerts::channel_ids(&s.p, &project).await?.contains(&id) {
        return Err(not_found());
    }
    audited(
        &s,
        &caller,
        "channel.delete",
        format!("channel/{id}"),
        json!({}),
        async {
            match alerts::delete_channel(&s.p, &project, &id).await? {
                true => Ok(StatusCode::NO_CONTENT),
                false => Err(not_found()),
            }
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct AlertParams {
    status: Option<String>,
    rule: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

impl AlertParams {
    fn page(&self) -> PageRequest {
        PageRequest::requested(self.cursor.clone(), self.limit)
    }
}

async fn alerts_list(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<AlertParams>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    if let Some(st) = &q.status
        && !["pending", "firing", "resolved"].contains(&st.as_str())
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "status: one of pending, firing, resolved".into(),
        ));
    }
    let got = alerts::list_alerts(&s.p, &project, q.status.clone(), &q.page()).await?;
    Ok(page_json(got.items, got.next))
}

async fn history(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<AlertParams>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    let got = alerts::list_history(&s.p, &project, q.rule.clone(), &q.page()).await?;
    Ok(page_json(got.items, got.next))
}

async fn deliveries(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<AlertParams>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    let got = alerts::list_deliveries(&s.p, &project, &q.page()).await?;
    Ok(page_json(got.items, got.next))
}

async fn eval_config(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    Ok(Json(json!(project_config(&s.p, &project).await?)))
}

/// Replaces the project's evaluation and trust settings (drift tests and thresholds per
/// feature, performance, fairness, explainability, operations, trust weights and ramps).
async fn put_eval_config(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = authorize(&s, &headers, None, &project, Scope::Admin).await?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {MAX_BODY_BYTES} bytes"),
        ));
    }
    let c: ProjectEvalConfig = parse_strict(&body, "config")?;
    let unprocessable = |e: Error| match e {
        Error::Invalid(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
        other => other.into(),
    };
    c.validate().map_err(unprocessable)?;
    let target = "evaluation-config".to_owned();
    audited(
        &s,
        &caller,
        "evaluation_config.replace",
        target,
        json!({ "config": c }),
        async {
            put_project_config(&s.p, &project, &c)
                .await
                .map_err(unprocessable)
        },
    )
    .await?;
    Ok(Json(json!(c)))
}

#[derive(Debug, Deserialize)]
struct AckBody {
    by: String,
}

async fn ack(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path((project, dedup)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = authorize(&s, &headers, None, &project, Scope::Admin).await?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {MAX_BODY_BYTES} bytes"),
        ));
    }
    let b: AckBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("malformed body: {e}")))?;
    // The engine's own refusals, checked before the change is audited.
    let stored =
        s.p.docs
            .get(Coll::Alerts, &join_id(&[&project, &dedup]))
            .await?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("alert {dedup}")))?;
    let current: alerts::AlertView = parse(&stored)?;
    let refused = |e: AlertError| ApiError::from(AlertFailure::from(e));
    if b.by.trim().is_empty() || b.by.len() > MAX_USER_LEN {
        return Err(refused(AlertError::InvalidArgument(format!(
            "user must be 1..={MAX_USER_LEN} bytes"
        ))));
    }
    if current.alert.status != Status::Firing {
        return Err(refused(AlertError::NotFiring {
            dedup_key: dedup.clone(),
            status: current.alert.status.as_str().to_owned(),
        }));
    }
    let detail = json!({ "by": b.by, "rule_id": current.rule_id, "scope": current.scope });
    let view = audited(
        &s,
        &caller,
        "alert.acknowledge",
        format!("alert/{dedup}"),
        detail,
        async { Ok(alerts::acknowledge(&s.p, &project, &dedup, &b.by).await?) },
    )
    .await?;
    Ok(Json(json!(view)))
}

#[derive(Debug, Deserialize)]
struct AuditParams {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// `GET …/audit?from_ms&to_ms&limit&cursor`: the project's audit entries, newest first.
async fn audit_list(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<AuditParams>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    let query = AuditQuery {
        chain: project,
        from_ms: q.from_ms.unwrap_or(i64::MIN),
        to_ms: q.to_ms.unwrap_or(i64::MAX),
    };
    if query.from_ms > query.to_ms {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "from_ms is after to_ms".into(),
        ));
    }
    let page = PageRequest::requested(q.cursor, q.limit);
    let got = s.p.store.list_audit(&query, &page).await?;
    Ok(page_json(got.items, got.next))
}

#[derive(Debug, Deserialize)]
struct AnchorParams {
    anchor_seq: Option<i64>,
    anchor_hash: Option<String>,
}

/// `GET …/audit/verify[?anchor_seq=&anchor_hash=]`: `{ok, entries, first_bad_seq?, reason?,
/// head_hash?}`, 200 either way (a broken chain is a finding, not a failed request).
async fn audit_verify(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<AnchorParams>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers, None, &project, Scope::Read).await?;
    let anchor = match (q.anchor_seq, q.anchor_hash.as_deref()) {
        (Some(seq), Some(hash)) => Some(audit::Anchor::new(seq, hash)?),
        (None, None) => None,
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "anchor_seq and anchor_hash go together".into(),
            ));
        }
    };
    let v = audit::verify_against(&*s.p.store, &project, anchor.as_ref()).await?;
    if !v.ok {
        s.p.metrics.reject("audit_chain_broken");
    }
    Ok(Json(json!(v)))
}

#[derive(Debug, Deserialize)]
struct LiveParams {
    project: String,
    model: Option<String>,
    /// Browsers cannot set headers on a WebSocket handshake.
    api_key: Option<String>,
}

/// `GET /api/v1/live?project=P[&model=M][&api_key=K]`: JSON events (`{"type":
/// "trust_score", ...}` / `{"type": "alert", ...}`); a `{"type": "lagged", "missed": n}` frame
/// tells a slow reader how many events it lost.
async fn live(
    State(s): State<EvalApi>,
    headers: HeaderMap,
    Query(q): Query<LiveParams>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    authorize(&s, &headers, q.api_key.as_deref(), &q.project, Scope::Read).await?;
    let rx = s.p.subscribe();
    Ok(ws
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| stream_live(socket, rx, q.project, q.model)))
}

async fn stream_live(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<LiveEvent>,
    project: String,
    model: Option<String>,
) {
    let mut lagged = 0u64;
    loop {
        let before = lagged;
        tokio::select! {
            event = query::next_event(&mut rx, &project, model.as_deref(), &mut lagged) => {
                let Some(event) = event else { break };
                if lagged > before {
                    let note = json!({ "type": "lagged", "missed": lagged - before }).to_string();
                    if socket.send(Message::Text(note.into())).await.is_err() {
                        break;
                    }
                }
                let Ok(text) = serde_json::to_string(&event) else { continue };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                // Clients only listen; anything but a close is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
