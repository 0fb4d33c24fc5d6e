//! End-to-end alerting against a real HTTP receiver: an axum server on 127.0.0.1:0 started by
//! each test, which verifies every signature the way a customer's endpoint would, records
//! what it accepted, and can be told to fail first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use neurocloak_alert::notify::{DEFAULT_TOLERANCE, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use neurocloak_alert::{
    Action, AttemptOutcome, Channel, ChannelKind, Comparator, Engine, Escalation, NotificationKind,
    Notifier, RetryPolicy, Rule, RuleState, SecretBox, Severity, Status, TransitionKind,
    verify_signature,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SECRET: &str = "test-signing-secret-0123456789";
const MIN: i64 = 60_000;

/// One request the receiver accepted.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    json: Value,
}

#[derive(Default)]
struct Inner {
    accepted: Vec<Received>,
    /// Per path, replies to give before accepting anything: (status, Retry-After seconds).
    failures: BTreeMap<String, VecDeque<(u16, Option<u64>)>>,
    failed_requests: usize,
    bad_signatures: usize,
    seen_ids: Vec<String>,
    replays: usize,
}

struct Receiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    async fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    async fn start_on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{path}", post(accept))
            .with_state(inner.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            inner,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn fail_next(&self, path: &str, replies: &[(u16, Option<u64>)]) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .failures
            .entry(path.to_owned())
            .or_default()
            .extend(replies.iter().copied());
    }

    fn accepted(&self, path: &str) -> Vec<Received> {
        self.inner
            .lock()
            .unwrap()
            .accepted
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn kinds(&self, path: &str) -> Vec<String> {
        self.accepted(path)
            .iter()
            .map(|r| r.json["type"].as_str().unwrap().to_owned())
            .collect()
    }

    fn counters(&self) -> (usize, usize, usize) {
        let inner = self.inner.lock().unwrap();
        (inner.failed_requests, inner.bad_signatures, inner.replays)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What a receiving service does: reject bad signatures and stale timestamps, drop replays by
/// notification id, accept the rest.
async fn accept(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let planned = inner.failures.get_mut(&path).and_then(VecDeque::pop_front);
    if let Some((status, retry_after)) = planned {
        inner.failed_requests += 1;
        let mut response = StatusCode::from_u16(status).unwrap().into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        return response;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (timestamp, signature) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
    if path != "slack" {
        let verified = verify_signature(
            SECRET.as_bytes(),
            &timestamp,
            &body,
            &signature,
            now_secs(),
            DEFAULT_TOLERANCE,
        );
        if verified.is_err() {
            inner.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    let id = header(ID_HEADER);
    let json: Value = serde_json::from_slice(&body).unwrap();
    if path != "slack" {
        assert_eq!(
            json["id"].as_str(),
            Some(id.as_str()),
            "id header matches the body"
        );
    }
    if inner.seen_ids.contains(&format!("{path}/{id}")) {
        inner.replays += 1;
        return StatusCode::OK.into_response();
    }
    inner.seen_ids.push(format!("{path}/{id}"));
    inner.accepted.push(Received {
        path,
        timestamp,
        signature,
        body: body.to_vec(),
        json,
    });
    StatusCode::NO_CONTENT.into_response()
}

/// The channels as the collector would use them: stored sealed, opened just before sending.
fn channels(receiver: &Receiver) -> Vec<Channel> {
    let secrets = SecretBox::new(&[42; 32]);
    stored_channels(receiver)
        .iter()
        .map(|c| c.seal(&secrets).unwrap())
        .map(|sealed| sealed.open(&secrets).unwrap())
        .collect()
}

fn stored_channels(receiver: &Receiver) -> Vec<Channel> {
    let webhook = |id: &str| Channel {
        id: id.into(),
        kind: ChannelKind::Webhook,
        url: receiver.url(id),
        signing_secret: Some(SECRET.into()),
    };
    vec![
        webhook("hook"),
        webhook("oncall"),
        Channel {
            id: "slack".into(),
            kind: ChannelKind::Slack,
            url: receiver.url("slack"),
            signing_secret: None,
        },
    ]
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
    }
}

fn trust_rule() -> Rule {
    Rule {
        id: "trust".into(),
        project: "p".into(),
        model: None,
        version: None,
        name: "Trust score below 60".into(),
        metric: "trust_score".into(),
        comparator: Comparator::Lt,
        threshold: 60.0,
        resolve_threshold: Some(65.0),
        for_windows: 3,
        resolve_after_windows: 2,
        severity: Severity::Critical,
        labels: BTreeMap::from([("team".into(), "ml".into())]),
        channels: vec!["hook".into(), "slack".into()],
        escalation: Some(Escalation {
            after_secs: 600,
            channel: "oncall".into(),
        }),
        renotify_secs: Some(3600),
    }
}

/// Drives the engine window by window and delivers every action, like the collector will.
struct Harness {
    engine: Engine,
    notifier: Notifier,
    rule: Rule,
    channels: Vec<Channel>,
    state: RuleState,
    deliveries: usize,
}

impl Harness {
    fn new(rule: Rule, receiver: &Receiver) -> Self {
        rule.validate(&["hook", "oncall", "slack"]).unwrap();
        Self {
            engine: Engine::default(),
            notifier: Notifier::new(fast_policy()).unwrap(),
            state: RuleState::new(rule.id.clone(), "credit@v3"),
            rule,
            channels: channels(receiver),
            deliveries: 0,
        }
    }

    async fn window(&mut self, minute: i64, doc: Value) -> Vec<NotificationKind> {
        let (state, actions) = self
            .engine
            .observe(
                &self.state,
                &self.rule,
                minute * MIN,
                &doc,
                minute * MIN + MIN,
            )
            .unwrap();
        self.state = state;
        self.send(actions).await
    }

    async fn tick(&mut self, now_ms: i64) -> Vec<NotificationKind> {
        let (state, actions) = self.engine.tick(&self.state, &self.rule, now_ms).unwrap();
        self.state = state;
        self.send(actions).await
    }

    async fn send(&mut self, actions: Vec<Action>) -> Vec<NotificationKind> {
        for action in &actions {
            for report in self.notifier.dispatch(action, &self.channels).await {
                assert!(report.delivered, "{report:?}");
                self.deliveries += 1;
            }
        }
        actions.iter().map(|a| a.notification.kind).collect()
    }

    fn key(&self) -> String {
        self.state.alerts.values().next().unwrap().dedup_key.clone()
    }
}

fn trust(v: f64) -> Value {
    json!({"trust_score": v, "components": {"drift": 80}})
}

#[tokio::test]
async fn full_lifecycle_fires_once_is_acknowledged_and_resolves() {
    let receiver = Receiver::start().await;
    let mut h = Harness::new(trust_rule(), &receiver);
    assert!(h.window(0, trust(72.0)).await.is_empty());
    assert!(h.window(1, trust(58.0)).await.is_empty());
    assert_eq!(
        h.state.alerts.values().next().unwrap().status,
        Status::Pending
    );
    assert!(h.window(2, trust(55.0)).await.is_empty());
    assert_eq!(h.window(3, trust(41.0)).await, vec![NotificationKind::Fire]);
    assert_eq!(
        h.state.alerts.values().next().unwrap().status,
        Status::Firing
    );

    // The collector re-evaluating the same window (restart, late parts) sends nothing new.
    for _ in 0..5 {
        assert!(h.window(3, trust(41.0)).await.is_empty());
    }
    assert_eq!(receiver.kinds("hook"), vec!["alert.fire"]);
    assert_eq!(receiver.accepted("slack").len(), 1);

    let key = h.key();
    h.state = h
        .engine
        .acknowledge(&h.state, &key, "alice@example.com", 4 * MIN)
        .unwrap();
    // Past the escalation timeout and the renotify interval, nothing is sent: acknowledged.
    assert!(h.tick(4 * MIN + 3_601_000).await.is_empty());

    assert!(
        h.window(4, trust(63.0)).await.is_empty(),
        "inside the hysteresis band"
    );
    assert!(
        h.window(5, trust(70.0)).await.is_empty(),
        "first healthy window"
    );
    assert_eq!(
        h.window(6, trust(71.0)).await,
        vec![NotificationKind::Resolve]
    );

    assert_eq!(receiver.kinds("hook"), vec!["alert.fire", "alert.resolve"]);
    assert!(receiver.accepted("oncall").is_empty());
    let resolve = &receiver.accepted("hook")[1].json["alert"];
    assert_eq!(resolve["status"], "resolved");
    assert_eq!(resolve["dedup_key"], key.as_str());
    assert_eq!(resolve["value"], 71.0);
    assert_eq!(resolve["labels"]["team"], "ml");
    let fire_id = receiver.accepted("hook")[0].json["id"].clone();
    assert_ne!(fire_id, receiver.accepted("hook")[1].json["id"]);

    let history: Vec<_> = h
        .state
        .history
        .iter()
        .map(|t| (t.kind, t.window_start_ms))
        .collect();
    assert_eq!(
        history,
        vec![
            (TransitionKind::Pending, Some(MIN)),
            (TransitionKind::Fired, Some(3 * MIN)),
            (TransitionKind::Acknowledged, None),
            (TransitionKind::Resolved, Some(6 * MIN)),
        ]
    );
    assert_eq!(h.state.history[2].by.as_deref(), Some("alice@example.com"));
    assert_eq!(h.deliveries, 4, "fire and resolve, each to hook and slack");
    assert_eq!(receiver.counters(), (0, 0, 0));
    receiver.stop().await;
}

#[tokio::test]
async fn unacknowledged_alert_escalates_once_then_renotifies() {
    let receiver = Receiver::start().await;
    let rule = Rule {
        for_windows: 1,
        ..trust_rule()
    };
    let mut h = Harness::new(rule, &receiver);
    assert_eq!(h.window(0, trust(10.0)).await, vec![NotificationKind::Fire]);
    let fired_at = MIN;
    assert!(h.tick(fired_at + 599_000).await.is_empty());
    assert_eq!(
        h.tick(fired_at + 600_000).await,
        vec![NotificationKind::Escalate]
    );
    assert!(h.tick(fired_at + 601_000).await.is_empty());
    assert_eq!(
        h.tick(fired_at + 3_600_000).await,
        vec![NotificationKind::Renotify]
    );
    assert_eq!(receiver.kinds("oncall"), vec!["alert.escalate"]);
    assert_eq!(receiver.kinds("hook"), vec!["alert.fire", "alert.renotify"]);

    // Once resolved, whoever was paged hears it too.
    h.window(1, trust(90.0)).await;
    assert_eq!(
        h.window(2, trust(90.0)).await,
        vec![NotificationKind::Resolve]
    );
    assert_eq!(
        receiver.kinds("oncall"),
        vec!["alert.escalate", "alert.resolve"]
    );
    receiver.stop().await;
}

#[tokio::test]
async fn hysteresis_stops_a_metric_oscillating_around_the_threshold_from_flapping() {
    let receiver = Receiver::start().await;
    let psi = |v: f64| json!({"drift": {"features": {"income": {"psi": v}}}});
    let base = Rule {
        id: "psi".into(),
        name: "Income PSI".into(),
        metric: "drift.features.*.psi".into(),
        comparator: Comparator::Gt,
        threshold: 0.25,
        resolve_threshold: None,
        for_windows: 1,
        resolve_after_windows: 1,
        channels: vec!["hook".into()],
        escalation: None,
        renotify_secs: None,
        ..trust_rule()
    };
    let oscillating: Vec<f64> = (0..20)
        .map(|i| if i % 2 == 0 { 0.27 } else { 0.23 })
        .collect();

    // Without a band the same series notifies on every swing: the metric really flaps.
    let mut naive = Harness::new(base.clone(), &receiver);
    for (minute, v) in oscillating.iter().enumerate() {
        naive.window(minute as i64, psi(*v)).await;
    }
    assert_eq!(receiver.accepted("hook").len(), 20);

    let damped_receiver = Receiver::start().await;
    let damped = Rule {
        resolve_threshold: Some(0.2),
        resolve_after_windows: 2,
        ..base
    };
    let mut h = Harness::new(damped, &damped_receiver);
    for (minute, v) in oscillating.iter().enumerate() {
        h.window(minute as i64, psi(*v)).await;
    }
    assert_eq!(damped_receiver.kinds("hook"), vec!["alert.fire"]);
    assert_eq!(
        damped_receiver.accepted("hook")[0].json["alert"]["subject"],
        "income"
    );
    // It still resolves once the metric really recovers.
    h.window(20, psi(0.1)).await;
    h.window(21, psi(0.1)).await;
    assert_eq!(
        damped_receiver.kinds("hook"),
        vec!["alert.fire", "alert.resolve"]
    );
    receiver.stop().await;
    damped_receiver.stop().await;
}

fn sample_action(channels: &[&str]) -> Action {
    let engine = Engine::default();
    let rule = Rule {
        for_windows: 1,
        ..trust_rule()
    };
    let (_, mut actions) = engine
        .observe(
            &RuleState::new("trust", "credit@v3"),
            &rule,
            0,
            &trust(12.5),
            1_800_000_000_000,
        )
        .unwrap();
    let mut action = actions.remove(0);
    action.channels = channels.iter().map(|c| (*c).to_owned()).collect();
    action
}

#[tokio::test]
async fn server_errors_and_429_are_retried_and_delivered_exactly_once() {
    let receiver = Receiver::start().await;
    receiver.fail_next("hook", &[(503, None), (500, None), (429, Some(1))]);
    let notifier = Notifier::new(fast_policy()).unwrap();
    let reports = notifier
        .dispatch(&sample_action(&["hook"]), &channels(&receiver))
        .await;
    let report = &reports[0];
    assert!(report.delivered);
    let statuses: Vec<_> = report.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![Some(503), Some(500), Some(429), Some(204)]);
    let outcomes: Vec<_> = report.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes[..3], [AttemptOutcome::Retry; 3]);
    assert_eq!(outcomes[3], AttemptOutcome::Delivered);
    assert!(
        report.attempts[2].retry_in_ms.unwrap() >= 1000,
        "Retry-After honoured"
    );
    assert!(
        report.attempts[0].retry_in_ms.unwrap() <= 20,
        "first backoff within base delay"
    );
    assert_eq!(receiver.accepted("hook").len(), 1);
    assert_eq!(receiver.counters(), (3, 0, 0));
    receiver.stop().await;
}

#[tokio::test]
async fn receiver_down_then_up_gets_the_notification_once() {
    // Reserve a port, then close it so the first attempts are refused.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = |path: &str| format!("http://127.0.0.1:{port}/{path}");
    let channel = Channel {
        id: "hook".into(),
        kind: ChannelKind::Webhook,
        url: url("hook"),
        signing_secret: Some(SECRET.into()),
    };
    let policy = RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(100),
        ..fast_policy()
    };
    let notifier = Notifier::new(policy).unwrap();
    let action = sample_action(&["hook"]);
    let delivery = tokio::spawn(async move { notifier.dispatch(&action, &[channel]).await });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let receiver = Receiver::start_on(TcpListener::bind(("127.0.0.1", port)).await.unwrap()).await;
    let report = delivery.await.unwrap().remove(0);
    assert!(report.delivered, "{report:?}");
    assert!(report.attempts.len() >= 2);
    let first = &report.attempts[0];
    assert_eq!((first.status, first.outcome), (None, AttemptOutcome::Retry));
    assert!(
        first
            .error
            .as_deref()
            .unwrap()
            .to_lowercase()
            .contains("connect"),
        "{first:?}"
    );
    assert_eq!(receiver.accepted("hook").len(), 1);
    receiver.stop().await;
}

#[tokio::test]
async fn refusals_are_not_retried_and_attempts_are_bounded() {
    let receiver = Receiver::start().await;
    receiver.fail_next("hook", &[(400, None)]);
    let notifier = Notifier::new(fast_policy()).unwrap();
    let report = notifier
        .dispatch(&sample_action(&["hook"]), &channels(&receiver))
        .await
        .remove(0);
    assert!(!report.delivered);
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].outcome, AttemptOutcome::Failed);

    receiver.fail_next("hook", &[(503, None); 10]);
    let report = notifier
        .dispatch(&sample_action(&["hook"]), &channels(&receiver))
        .await
        .remove(0);
    assert!(!report.delivered);
    assert_eq!(report.attempts.len(), 5, "max_attempts");
    assert_eq!(report.attempts[4].outcome, AttemptOutcome::Failed);

    receiver.inner.lock().unwrap().failures.clear();
    receiver.fail_next("hook", &[(429, Some(3600))]);
    let report = notifier
        .dispatch(&sample_action(&["hook"]), &channels(&receiver))
        .await
        .remove(0);
    assert!(!report.delivered);
    assert!(
        report.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("exceeds"),
        "{report:?}"
    );

    let report = notifier
        .dispatch(&sample_action(&["missing"]), &channels(&receiver))
        .await
        .remove(0);
    assert!(!report.delivered);
    assert_eq!(report.attempts[0].error.as_deref(), Some("unknown channel"));
    assert!(receiver.accepted("hook").is_empty());
    receiver.stop().await;
}

#[tokio::test]
async fn signatures_verify_and_tampering_or_replay_fails() {
    let receiver = Receiver::start().await;
    let notifier = Notifier::new(fast_policy()).unwrap();
    let action = sample_action(&["hook"]);
    notifier.dispatch(&action, &channels(&receiver)).await;
    let got = receiver.accepted("hook").remove(0);
    assert!(got.signature.starts_with("v1=") && got.signature.len() == 3 + 64);
    let now = now_secs();
    let verify = |secret: &str, ts: &str, body: &[u8], now: i64| {
        verify_signature(
            secret.as_bytes(),
            ts,
            body,
            &got.signature,
            now,
            DEFAULT_TOLERANCE,
        )
    };
    verify(SECRET, &got.timestamp, &got.body, now).unwrap();
    let mut tampered = got.body.clone();
    let at = tampered.iter().position(|b| *b == b'2').unwrap();
    tampered[at] = b'9';
    assert!(verify(SECRET, &got.timestamp, &tampered, now).is_err());
    assert!(verify("another-secret-0123456789", &got.timestamp, &got.body, now).is_err());
    assert!(
        verify(SECRET, &got.timestamp, &got.body, now + 301).is_err(),
        "stale timestamp"
    );

    // The same notification sent twice is the same id: the receiver drops the replay.
    notifier.dispatch(&action, &channels(&receiver)).await;
    assert_eq!(receiver.accepted("hook").len(), 1);
    assert_eq!(receiver.counters().2, 1);

    // A channel configured with the wrong secret is refused by the receiver (401, no retry).
    let mut wrong = channels(&receiver);
    wrong[0].signing_secret = Some("wrong-secret-0123456789".into());
    let report = notifier
        .dispatch(&sample_action(&["hook"]), &wrong)
        .await
        .remove(0);
    assert_eq!(
        (report.delivered, report.attempts[0].status),
        (false, Some(401))
    );
    assert_eq!(receiver.counters().1, 1);
    receiver.stop().await;
}

#[tokio::test]
async fn slack_payload_has_text_and_blocks() {
    let receiver = Receiver::start().await;
    let notifier = Notifier::new(fast_policy()).unwrap();
    let report = notifier
        .dispatch(&sample_action(&["slack"]), &channels(&receiver))
        .await
        .remove(0);
    assert!(report.delivered);
    let got = receiver.accepted("slack").remove(0);
    assert!(
        got.signature.is_empty(),
        "Slack webhooks are not HMAC-signed"
    );
    let payload = got.json;
    let text = payload["text"].as_str().unwrap();
    assert!(
        text.contains("FIRING") && text.contains("trust_score &lt; 60") && text.contains("12.5"),
        "{text}"
    );
    let blocks = payload["blocks"].as_array().unwrap();
    let types: Vec<_> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["header", "section", "context"]);
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    let fields = blocks[1]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 4);
    assert!(fields.iter().all(|f| f["type"] == "mrkdwn"));
    assert_eq!(fields[0]["text"], "*Severity*\ncritical");
    assert_eq!(fields[2]["text"], "*Value*\n12.5 (&lt; 60)");
    let context = blocks[2]["elements"][0]["text"].as_str().unwrap();
    assert!(
        context.contains("rule `trust`") && context.contains("<!date^0^"),
        "{context}"
    );
    receiver.stop().await;
}

#[tokio::test]
async fn a_retrying_channel_does_not_delay_the_others() {
    let receiver = Receiver::start().await;
    receiver.fail_next("hook", &[(503, Some(1)), (503, Some(1))]);
    let notifier = Notifier::new(fast_policy()).unwrap();
    let reports = notifier
        .dispatch(&sample_action(&["hook", "slack"]), &channels(&receiver))
        .await;
    let (hook, slack) = (&reports[0], &reports[1]);
    assert_eq!(
        (hook.channel_id.as_str(), slack.channel_id.as_str()),
        ("hook", "slack")
    );
    assert!(hook.delivered && slack.delivered);
    assert_eq!((hook.attempts.len(), slack.attempts.len()), (3, 1));
    // Sent one after the other, Slack would only start once the hook's last attempt (after
    // two one-second Retry-After waits) was over.
    let hook_done = hook.attempts[2].started_at_ms;
    let slack_done = slack.attempts[0].started_at_ms + slack.attempts[0].elapsed_ms as i64;
    assert!(
        slack_done < hook_done,
        "slack {slack_done} vs hook {hook_done}"
    );
    receiver.stop().await;
}
