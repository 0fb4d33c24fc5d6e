//! What a notification looks like on the wire: the generic webhook body and Slack's payload.

use serde_json::{Value, json};

use crate::engine::{Notification, NotificationKind};
use crate::error::Result;
use crate::rule::Severity;

/// Slack rejects header blocks over 150 characters and section fields over 2000.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_FIELD_MAX: usize = 2000;

/// The generic webhook body: `{"version":1,"id","type":"alert.<kind>","alert":{…}}`. The same
/// notification always gives the same bytes, so a retried delivery carries an identical body.
pub fn webhook_body(notification: &Notification) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&json!({
        "version": 1,
        "id": notification.id,
        "type": format!("alert.{}", notification.kind.as_str()),
        "alert": notification,
    }))?)
}

/// A Slack incoming-webhook payload: `text` (the notification fallback) plus `blocks`.
pub fn slack_payload(n: &Notification) -> Value {
    let headline = headline(n);
    let subject = if n.subject.is_empty() {
        n.scope.clone()
    } else {
        format!("{} · {}", n.scope, n.subject)
    };
    let value = n.value.map_or_else(|| "no data".to_owned(), format_number);
    let fields = [
        ("Severity", n.severity.as_str().to_owned()),
        ("Metric", format!("`{}`", escape(&n.metric))),
        (
            "Value",
            escape(&format!(
                "{} ({} {})",
                value,
                n.comparator,
                format_number(n.threshold)
            )),
        ),
        ("Subject", escape(&subject)),
    ];
    let window = n.window_start_ms.map_or_else(String::new, |ms| {
        let secs = ms.div_euclid(1000);
        format!(" · window <!date^{secs}^{{date_short_pretty}} {{time}}|{secs}>")
    });
    json!({
        "text": escape(&format!("{headline}: {} {} {} (value {value})", n.metric, n.comparator, format_number(n.threshold))),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": clip(&headline, SLACK_HEADER_MAX), "emoji": true}},
            {"type": "section", "fields": fields.iter().map(|(name, text)| json!({
                "type": "mrkdwn", "text": clip(&format!("*{name}*\n{text}"), SLACK_FIELD_MAX)
            })).collect::<Vec<_>>()},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(&format!(
                "rule `{}` · alert `{}`{window}", escape(&n.rule_id), n.dedup_key
            ), SLACK_FIELD_MAX)}]},
        ],
    })
}

fn headline(n: &Notification) -> String {
    let (icon, verb) = match n.kind {
        NotificationKind::Fire => (severity_icon(n.severity), "FIRING"),
        NotificationKind::Renotify => (severity_icon(n.severity), "STILL FIRING"),
        NotificationKind::Escalate => ("🚨", "ESCALATED"),
        NotificationKind::Resolve => ("✅", "RESOLVED"),
    };
    format!("{icon} {verb}: {}", n.rule_name)
}

fn severity_icon(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "ℹ️",
        Severity::Warning => "⚠️",
        Severity::Critical => "🔴",
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max_chars - 1).collect();
    clipped.push('…');
    clipped
}

fn format_number(v: f64) -> String {
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn numbers_render_compactly() {
        assert_eq!(format_number(55.0), "55");
        assert_eq!(format_number(0.312_345_6), "0.3123");
        assert_eq!(format_number(-0.00001), "0");
    }

    #[test]
    fn clipping_and_escaping() {
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
