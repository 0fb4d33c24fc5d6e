//! Channel definitions, their validation, and their encrypted-at-rest form.

use serde::{Deserialize, Serialize};

use crate::error::{AlertError, Result};
use crate::notify::secret::SecretBox;
use crate::selector::truncate_for_message;

const MAX_URL_LEN: usize = 2048;
const MIN_SECRET_LEN: usize = 16;
const MAX_SECRET_LEN: usize = 512;

/// What a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Generic JSON webhook, HMAC-signed.
    Webhook,
    /// Slack incoming webhook (or anything accepting Slack's `text` + `blocks`).
    Slack,
}

/// A channel with its secrets in clear; only held in memory. Webhook URLs count as secrets
/// too (Slack's carry their token in the path), so `Debug` shows neither.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: String,
    pub kind: ChannelKind,
    pub url: String,
    /// HMAC signing secret; required for webhooks, unused by Slack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .field(
                "signing_secret",
                &self.signing_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The stored form of a [`Channel`]: URL and secret sealed with the master key, each bound
/// to the channel id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedChannel {
    pub id: String,
    pub kind: ChannelKind,
    pub sealed_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_signing_secret: Option<String>,
}

impl Channel {
    /// Checks the URL (http/https with a host, bounded length) and the signing secret.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| AlertError::InvalidChannel {
            id: truncate_for_message(&self.id),
            reason,
        };
        if self.id.is_empty() || self.id.len() > 128 {
            return Err(invalid("id must be 1..=128 bytes".into()));
        }
        if self.url.len() > MAX_URL_LEN {
            return Err(invalid(format!("url longer than {MAX_URL_LEN} bytes")));
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| invalid(format!("url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid("url must be http(s) with a host".into()));
        }
        match (self.kind, &self.signing_secret) {
            (ChannelKind::Webhook, None) => Err(invalid("webhooks need a signing secret".into())),
            (ChannelKind::Webhook, Some(s))
                if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&s.len()) =>
            {
                Err(invalid(format!(
                    "signing secret must be {MIN_SECRET_LEN}..={MAX_SECRET_LEN} bytes"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Validates, then encrypts the URL and secret for storage.
    pub fn seal(&self, secrets: &SecretBox) -> Result<SealedChannel> {
        self.validate()?;
        let aad = self.id.as_bytes();
        Ok(SealedChannel {
            id: self.id.clone(),
            kind: self.kind,
            sealed_url: secrets.seal(self.url.as_bytes(), aad)?,
            sealed_signing_secret: match &self.signing_secret {
                Some(s) => Some(secrets.seal(s.as_bytes(), aad)?),
                None => None,
            },
        })
    }
}

impl SealedChannel {
    /// Decrypts a stored channel; tampered values, a wrong key or values moved between
    /// channels are errors.
    pub fn open(&self, secrets: &SecretBox) -> Result<Channel> {
        let aad = self.id.as_bytes();
        let text = |sealed: &str| -> Result<String> {
            String::from_utf8(secrets.open(sealed, aad)?)
                .map_err(|_| AlertError::Crypto("sealed value is not UTF-8"))
        };
        Ok(Channel {
            id: self.id.clone(),
            kind: self.kind,
            url: text(&self.sealed_url)?,
            signing_secret: self
                .sealed_signing_secret
                .as_deref()
                .map(text)
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    type Mutation = Box<dyn Fn(&mut Channel)>;

    fn webhook() -> Channel {
        Channel {
            id: "hook".into(),
            kind: ChannelKind::Webhook,
            url: "https://example.com/hook?token=abc".into(),
            signing_secret: Some("0123456789abcdef".into()),
        }
    }

    #[test]
    fn sealed_channels_round_trip_and_hide_secrets() {
        let sb = SecretBox::new(&[1; 32]);
        let sealed = webhook().seal(&sb).unwrap();
        let stored = serde_json::to_string(&sealed).unwrap();
        assert!(!stored.contains("token=abc") && !stored.contains("0123456789abcdef"));
        assert_eq!(sealed.open(&sb).unwrap(), webhook());
        assert!(!format!("{:?}", webhook()).contains("token"));
        let mut moved = sealed.clone();
        moved.id = "other".into();
        assert!(moved.open(&sb).is_err());
    }

    #[test]
    fn bad_channels_are_rejected() {
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.url = "ftp://x/y".into()), "http(s)"),
            (Box::new(|c| c.url = "not a url".into()), "url:"),
            (
                Box::new(|c| c.url = format!("https://x/{}", "a".repeat(3000))),
                "longer",
            ),
            (
                Box::new(|c| c.signing_secret = None),
                "need a signing secret",
            ),
            (
                Box::new(|c| c.signing_secret = Some("short".into())),
                "16..=512",
            ),
            (Box::new(|c| c.id = String::new()), "id must be"),
        ];
        for (mutate, expected) in cases {
            let mut c = webhook();
            mutate(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err.http_status(), 422);
            assert!(err.to_string().contains(expected), "{err}");
        }
        let slack = Channel {
            kind: ChannelKind::Slack,
            signing_secret: None,
            ..webhook()
        };
        slack.validate().unwrap();
    }
}
