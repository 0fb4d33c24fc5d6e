//! Delivery: one HTTP POST per attempt, bounded retries with exponential backoff and jitter,
//! and a report of every attempt for the collector to store.
//!
//! Retried: connection errors and timeouts, 408, 429 and 5xx (a `Retry-After` header, in
//! seconds or as an HTTP date, is honoured as the minimum wait). Not retried: any other status,
//! which means the receiver understood and refused. Redirects are not followed, so a webhook
//! cannot bounce deliveries to an address nobody configured.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use futures_util::future::join_all;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};

use crate::engine::{Action, Notification, NotificationKind};
use crate::error::{AlertError, Result};
use crate::notify::ID_HEADER;
use crate::notify::channel::{Channel, ChannelKind};
use crate::notify::payload::{slack_payload, webhook_body};
use crate::notify::sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time, then "equal jitter" picks a wait in
    /// [d/2, d] so receivers recovering from an outage are not hit in lockstep.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this ends the delivery as failed instead of holding it.
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    /// Failed in a retryable way; another attempt follows after `retry_in_ms`.
    Retry,
    /// Failed for good: refused by the receiver, out of attempts, or not sendable at all.
    Failed,
}

/// One delivery attempt, as stored by the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub started_at_ms: i64,
    pub elapsed_ms: u64,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
    pub retry_in_ms: Option<u64>,
}

/// The fate of one notification on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    pub notification_id: String,
    pub channel_id: String,
    pub kind: NotificationKind,
    pub delivered: bool,
    pub attempts: Vec<Attempt>,
}

/// Sends notifications. Cheap to clone-share behind an `Arc`; holds one connection pool.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    policy: RetryPolicy,
}

/// What a single attempt produced before it is turned into an [`Attempt`].
enum Response {
    Ok(u16),
    Retryable {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    Refused {
        status: Option<u16>,
        error: String,
    },
}

impl Notifier {
    pub fn new(policy: RetryPolicy) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .connect_timeout(policy.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("neurocloak-alert/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AlertError::Http(describe(&e)))?;
        Ok(Self {
            client,
            policy: RetryPolicy {
                max_attempts: policy.max_attempts.max(1),
                ..policy
            },
        })
    }

    /// Sends `action` to each of its channels (looked up in `channels` by id) concurrently, so
    /// one channel stuck in retries does not hold back the others; reports come back in the
    /// action's channel order. A channel id that is not there yields a failed report rather
    /// than being skipped silently.
    pub async fn dispatch(&self, action: &Action, channels: &[Channel]) -> Vec<DeliveryReport> {
        join_all(action.channels.iter().map(|id| async move {
            match channels.iter().find(|c| &c.id == id) {
                Some(channel) => self.deliver(channel, &action.notification).await,
                None => failed_before_sending(&action.notification, id, "unknown channel".into()),
            }
        }))
        .await
    }

    /// Delivers one notification to one channel, retrying per the policy.
    pub async fn deliver(&self, channel: &Channel, notification: &Notification) -> DeliveryReport {
        let body = match channel
            .validate()
            .and_then(|()| render(channel.kind, notification))
        {
            Ok(body) => body,
            Err(e) => return failed_before_sending(notification, &channel.id, e.to_string()),
        };
        let mut report = DeliveryReport {
            notification_id: notification.id.clone(),
            channel_id: channel.id.clone(),
            kind: notification.kind,
            delivered: false,
            attempts: Vec::new(),
        };
        for number in 1..=self.policy.max_attempts {
            let started_at_ms = now_ms();
            let clock = std::time::Instant::now();
            let response = self.attempt(channel, notification, &body).await;
            let elapsed_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
            let mut attempt = Attempt {
                number,
                started_at_ms,
                elapsed_ms,
                status: None,
                error: None,
                outcome: AttemptOutcome::Failed,
                retry_in_ms: None,
            };
            let wait = match response {
                Response::Ok(status) => {
                    attempt.status = Some(status);
                    attempt.outcome = AttemptOutcome::Delivered;
                    report.delivered = true;
                    report.attempts.push(attempt);
                    return report;
                }
                Response::Refused { status, error } => {
                    (attempt.status, attempt.error) = (status, Some(error));
                    None
                }
                Response::Retryable {
                    status,
                    error,
                    retry_after,
                } => {
                    (attempt.status, attempt.error) = (status, Some(error));
                    self.next_wait(number, retry_after, &mut attempt)
                }
            };
            if let Some(wait) = wait {
                attempt.outcome = AttemptOutcome::Retry;
                attempt.retry_in_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                report.attempts.push(attempt);
                tokio::time::sleep(wait).await;
            } else {
                report.attempts.push(attempt);
                break;
            }
        }
        report
    }

    /// The wait before the next attempt, or `None` when the delivery should stop.
    fn next_wait(
        &self,
        number: u32,
        retry_after: Option<Duration>,
        attempt: &mut Attempt,
    ) -> Option<Duration> {
        if number >= self.policy.max_attempts {
            return None;
        }
        if let Some(asked) = retry_after.filter(|d| *d > self.policy.max_retry_after) {
            let error = attempt.error.take().unwrap_or_default();
            attempt.error = Some(format!(
                "{error}; Retry-After of {}s exceeds the {}s limit",
                asked.as_secs(),
                self.policy.max_retry_after.as_secs()
            ));
            return None;
        }
        let backoff = backoff(&self.policy, number, OsRng.next_u64());
        Some(retry_after.map_or(backoff, |asked| asked.max(backoff)))
    }

    async fn attempt(
        &self,
        channel: &Channel,
        notification: &Notification,
        body: &[u8],
    ) -> Response {
        let mut request = self
            .client
            .post(&channel.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ID_HEADER, &notification.id)
            .body(body.to_vec());
        if channel.kind == ChannelKind::Webhook {
            // Signed per attempt: a retry an hour later must still pass the receiver's
            // timestamp tolerance.
            let timestamp = now_ms().div_euclid(1000).to_string();
            let secret = channel.signing_secret.as_deref().unwrap_or_default();
            match sign(secret.as_bytes(), &timestamp, body) {
                Ok(signature) => {
                    request = request
                        .header(TIMESTAMP_HEADER, timestamp)
                        .header(SIGNATURE_HEADER, signature);
                }
                Err(e) => {
                    return Response::Refused {
                        status: None,
                        error: e.to_string(),
                    };
                }
            }
        }
        match request.send().await {
            Ok(response) => classify(response.status(), response.headers()),
            Err(e) if e.is_builder() => Response::Refused {
                status: None,
                error: describe(&e),
            },
            Err(e) => Response::Retryable {
                status: None,
                error: describe(&e),
                retry_after: None,
            },
        }
    }
}

fn render(kind: ChannelKind, notification: &Notification) -> Result<Vec<u8>> {
    match kind {
        ChannelKind::Webhook => webhook_body(notification),
        ChannelKind::Slack => Ok(serde_json::to_vec(&slack_payload(notification))?),
    }
}

fn classify(status: StatusCode, headers: &HeaderMap) -> Response {
    let code = status.as_u16();
    if status.is_success() {
        return Response::Ok(code);
    }
    let error = format!("HTTP {status}");
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Response::Retryable {
            status: Some(code),
            error,
            retry_after: retry_after(headers),
        }
    } else {
        Response::Refused {
            status: Some(code),
            error,
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date; anything else is ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Exponential backoff with equal jitter: the n-th retry waits in [d/2, d] with
/// d = min(max_delay, base · 2^(n-1)); `random` picks the point.
fn backoff(policy: &RetryPolicy, number: u32, random: u64) -> Duration {
    let factor = 1u32
        .checked_shl(number.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let full = policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay);
    let half = full / 2;
    let span = u64::try_from((full - half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(if span == 0 { 0 } else { random % (span + 1) })
}

fn failed_before_sending(
    notification: &Notification,
    channel_id: &str,
    error: String,
) -> DeliveryReport {
    DeliveryReport {
        notification_id: notification.id.clone(),
        channel_id: channel_id.to_owned(),
        kind: notification.kind,
        delivered: false,
        attempts: vec![Attempt {
            number: 0,
            started_at_ms: now_ms(),
            elapsed_ms: 0,
            status: None,
            error: Some(error),
            outcome: AttemptOutcome::Failed,
            retry_in_ms: None,
        }],
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// reqwest's top-level message is often just "error sending request"; the cause chain says
/// what actually happened (connection refused, timeout, TLS).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_caps() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for (n, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let low = backoff(&policy, n, 0);
            let high = backoff(&policy, n, u64::MAX - 1);
            assert_eq!(low, Duration::from_millis(full / 2), "attempt {n}");
            assert!(
                high <= Duration::from_millis(full) && high >= low,
                "attempt {n}: {high:?}"
            );
        }
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&headers).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn statuses_are_classified() {
        let h = HeaderMap::new();
        assert!(matches!(
            classify(StatusCode::NO_CONTENT, &h),
            Response::Ok(204)
        ));
        for s in [429, 408, 500, 502, 503] {
            let status = StatusCode::from_u16(s).unwrap();
            assert!(
                matches!(classify(status, &h), Response::Retryable { .. }),
                "{s}"
            );
        }
        for s in [400, 401, 404, 410, 301] {
            let status = StatusCode::from_u16(s).unwrap();
            assert!(
                matches!(classify(status, &h), Response::Refused { .. }),
                "{s}"
            );
        }
    }
}
