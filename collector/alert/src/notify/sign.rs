//! Webhook signatures: `v1=` hex(HMAC-SHA256(secret, timestamp + "." + body)).
//!
//! The timestamp is unix seconds and travels in `X-NeuroCloak-Timestamp`. Because it is inside
//! the signed string, a receiver that rejects timestamps outside a tolerance (5 minutes) and
//! remembers the notification ids it has seen for that long is safe against replays.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{AlertError, Result};

/// Header carrying the unix-seconds timestamp that is part of the signed string.
pub const TIMESTAMP_HEADER: &str = "X-NeuroCloak-Timestamp";
/// Header carrying `v1=<hex>`; several comma-separated values are accepted when verifying, so
/// a secret can be rotated without a gap.
pub const SIGNATURE_HEADER: &str = "X-NeuroCloak-Signature";
/// The tolerance receivers should apply.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Result<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| AlertError::Signature("unusable signing secret"))?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// The `X-NeuroCloak-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> Result<String> {
    Ok(format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body)?.finalize().into_bytes())
    ))
}

/// Checks a received webhook: the timestamp must be within `tolerance` of `now_secs` (either
/// direction) and one of the `v1=` signatures must match, compared in constant time.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_secs: i64,
    tolerance: Duration,
) -> Result<()> {
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| AlertError::Signature("malformed timestamp"))?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now_secs.saturating_sub(sent).saturating_abs() > tolerance {
        return Err(AlertError::Signature("timestamp outside the tolerance"));
    }
    let expected = mac(secret, timestamp.trim(), body)?;
    let matched = signature
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        .any(|candidate| expected.clone().verify_slice(&candidate).is_ok());
    if matched {
        Ok(())
    } else {
        Err(AlertError::Signature("no matching v1 signature"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn known_vector() {
        // Computed independently: python3 -c "import hmac,hashlib;
        // print(hmac.new(b'secret', b'1700000000.{}', hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(b"secret", "1700000000", b"{}").unwrap(),
            "v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }

    #[test]
    fn verifies_and_rejects() {
        let sig = sign(b"k", "1000", b"body").unwrap();
        let tol = DEFAULT_TOLERANCE;
        verify_signature(b"k", "1000", b"body", &sig, 1000, tol).unwrap();
        verify_signature(b"k", "1000", b"body", &format!("v1=00, {sig}"), 1299, tol).unwrap();
        let reject = |secret: &[u8], ts: &str, body: &[u8], sig: &str, now: i64| {
            verify_signature(secret, ts, body, sig, now, tol)
                .unwrap_err()
                .to_string()
        };
        assert!(reject(b"k", "1000", b"bodY", &sig, 1000).contains("no matching"));
        assert!(reject(b"x", "1000", b"body", &sig, 1000).contains("no matching"));
        assert!(reject(b"k", "1001", b"body", &sig, 1000).contains("no matching"));
        assert!(reject(b"k", "1000", b"body", &sig, 1301).contains("tolerance"));
        assert!(reject(b"k", "1000", b"body", &sig, 699).contains("tolerance"));
        assert!(reject(b"k", "soon", b"body", &sig, 1000).contains("malformed"));
        assert!(reject(b"k", "1000", b"body", "v1=zz", 1000).contains("no matching"));
        assert!(reject(b"k", "1000", b"body", &sig.replace("v1=", "v0="), 1000).contains("no"));
    }
}
