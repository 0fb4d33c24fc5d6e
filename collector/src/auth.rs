//! Project API keys: how they are made, stored and checked.
//!
//! A key reads `nck_<prefix>_<secret>`: 8 random bytes of public prefix (hex) used to find the
//! record, and 32 random bytes of secret (base64url). Only SHA-256 of the whole key is stored.
//! A slow password hash (argon2) protects low-entropy secrets chosen by people against offline
//! guessing; a 256-bit random secret cannot be guessed whatever the hash, so one SHA-256 is as
//! safe here and keeps the per-request check in microseconds.

use base64::Engine as _;
use rand::TryRngCore as _;
use sha2::{Digest, Sha256};

use std::net::IpAddr;
use std::sync::Arc;

use crate::ratelimit::{Limited, RateLimiter, Surface};
use crate::store::{ApiKeyRecord, Scope, SharedStore, now_ms};
use crate::{Error, Result};

const KEY_PREFIX: &str = "nck_";
const PREFIX_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
/// Longer input is not a key of ours; refuse it before hashing anything.
pub const MAX_KEY_LEN: usize = 128;
/// last_used is written at most this often per key, so a busy agent is not a write per batch.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// A freshly generated key: the plaintext (shown once) and the record to store.
pub struct NewKey {
    pub plaintext: String,
    pub record: ApiKeyRecord,
}

/// Generates a key from the operating system's random source.
pub fn generate(project_id: &str, name: &str, scopes: &[Scope]) -> Result<NewKey> {
    let mut prefix = [0u8; PREFIX_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    let mut rng = rand::rngs::OsRng;
    rng.try_fill_bytes(&mut prefix)
        .and_then(|()| rng.try_fill_bytes(&mut secret))
        .map_err(|e| Error::Config(format!("operating system random source failed: {e}")))?;
    let prefix = hex::encode(prefix);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let plaintext = format!("{KEY_PREFIX}{prefix}_{secret}");
    let record = ApiKeyRecord {
        prefix,
        hash: hash(&plaintext),
        project_id: project_id.to_owned(),
        name: name.to_owned(),
        scopes: scopes.to_vec(),
        created_ms: now_ms(),
        revoked_ms: None,
        last_used_ms: None,
    };
    Ok(NewKey { plaintext, record })
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The lookup prefix of a well-formed key, or None.
pub fn parse_prefix(key: &str) -> Option<&str> {
    if key.len() > MAX_KEY_LEN {
        return None;
    }
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    let well_formed = prefix.len() == PREFIX_BYTES * 2
        && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        && !secret.is_empty();
    well_formed.then_some(prefix)
}

/// Compares without an early exit, so timing does not reveal how many bytes matched.
fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who is calling, once the key checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub project_id: String,
    pub key_prefix: String,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// No key, a malformed key, an unknown key or a revoked key.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A valid key without the needed scope.
    #[error("api key lacks the {0} scope")]
    PermissionDenied(&'static str),
    /// Over a rate limit: the key's on this surface, or the client's failed-auth budget.
    #[error("rate limit exceeded ({}); retry after {} s", .0.surface.as_str(), .0.retry_after_s)]
    RateLimited(Limited),
    #[error(transparent)]
    Store(#[from] Error),
}

impl Denied {
    /// Label for the rejects metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Unauthenticated(_) => "unauthenticated",
            Denied::PermissionDenied(_) => "permission_denied",
            Denied::RateLimited(_) => "rate_limited",
            Denied::Store(_) => "store_error",
        }
    }
}

/// The API key a REST request carries: `x-api-key`, else `Authorization: Bearer`, else (for
/// the WebSocket, which browsers cannot give headers) the `api_key` query parameter.
pub fn http_api_key<'a>(
    headers: &'a http::HeaderMap,
    query_key: Option<&'a str>,
) -> Option<&'a str> {
    if let Some(v) = headers.get(crate::ingest::API_KEY_HEADER) {
        return v.to_str().ok();
    }
    if let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return auth.strip_prefix("Bearer ").map(str::trim);
    }
    query_key
}

/// Checks API keys against the store and, when it has a limiter, the rate limits.
#[derive(Clone)]
pub struct Authenticator {
    store: SharedStore,
    limiter: Option<Arc<RateLimiter>>,
}

impl Authenticator {
    /// Without rate limits.
    pub fn new(store: SharedStore) -> Authenticator {
        Authenticator {
            store,
            limiter: None,
        }
    }

    pub fn limited(store: SharedStore, limiter: Arc<RateLimiter>) -> Authenticator {
        Authenticator {
            store,
            limiter: Some(limiter),
        }
    }

    /// Accepts the key when it exists, is not revoked and carries one of `any_of`.
    pub async fn check(&self, key: Option<&str>, any_of: &[Scope]) -> Result<Caller, Denied> {
        self.check_from(key, any_of, None).await
    }

    /// [`Authenticator::check`] for a request from `client`, charging the key's bucket of the
    /// surface `any_of` names once it checked out, and counting a failure against `client`.
    pub async fn check_from(
        &self,
        key: Option<&str>,
        any_of: &[Scope],
        client: Option<IpAddr>,
    ) -> Result<Caller, Denied> {
        let Some(limiter) = &self.limiter else {
            return self.verify(key, any_of).await;
        };
        if let Some(ip) = client {
            let known = key
                .and_then(parse_prefix)
                .is_some_and(|p| limiter.knows_key(p));
            if !known {
                limiter.check_client(ip).map_err(Denied::RateLimited)?;
            }
        }
        let caller = self.verify(key, any_of).await;
        match &caller {
            Err(Denied::Unauthenticated(_)) => {
                if let Some(ip) = client {
                    limiter.record_failure(ip);
                }
            }
            // A key that checked out pays for the request, whether or not its scope fits.
            Ok(_) | Err(Denied::PermissionDenied(_)) => {
                if let Some(prefix) = key.and_then(parse_prefix) {
                    limiter
                        .charge_key(prefix, Surface::for_scopes(any_of))
                        .map_err(Denied::RateLimited)?;
                }
            }
            Err(_) => {}
        }
        caller
    }

    async fn verify(&self, key: Option<&str>, any_of: &[Scope]) -> Result<Caller, Denied> {
        let key = key.ok_or(Denied::Unauthenticated("missing api key"))?;
        let prefix = parse_prefix(key).ok_or(Denied::Unauthenticated("malformed api key"))?;
        let record = self
            .store
            .find_api_key(prefix)
            .await?
            .filter(|r| same_hash(&r.hash, &hash(key)))
            .ok_or(Denied::Unauthenticated("unknown api key"))?;
        if record.revoked_ms.is_some() {
            return Err(Denied::Unauthenticated("revoked api key"));
        }
        if !any_of.iter().any(|s| record.scopes.contains(s)) {
            let needed = any_of.first().map_or("required", |s| s.as_str());
            return Err(Denied::PermissionDenied(needed));
        }
        let now = now_ms();
        let stale = record
            .last_used_ms
            .is_none_or(|t| now - t >= TOUCH_INTERVAL_MS);
        if stale && let Err(e) = self.store.touch_api_key(&record.prefix, now).await {
            // Usage time is informational; failing the request for it would be worse.
            tracing::warn!(key = %record.prefix, error = %e, "could not record key use");
        }
        Ok(Caller {
            project_id: record.project_id,
            key_prefix: record.prefix,
            scopes: record.scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash_to_their_record() {
        let k = generate("p", "agent", &[Scope::Ingest]).unwrap();
        assert_eq!(parse_prefix(&k.plaintext), Some(k.record.prefix.as_str()));
        assert_eq!(hash(&k.plaintext), k.record.hash);
        let other = generate("p", "agent", &[Scope::Ingest]).unwrap();
        assert_ne!(k.plaintext, other.plaintext);
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        for bad in [
            "",
            "nck_",
            "nck_zz_secret",
            "nck_0123456789abcdef_",
            "xyz_0123456789abcdef_s",
        ] {
            assert_eq!(parse_prefix(bad), None, "{bad:?}");
        }
        let long = format!("nck_0123456789abcdef_{}", "a".repeat(200));
        assert_eq!(parse_prefix(&long), None);
    }
}
