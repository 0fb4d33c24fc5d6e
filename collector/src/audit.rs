//! The audit trail: one append-only, hash-chained log per project (and one [`GLOBAL_CHAIN`] for
//! organization-level actions) recording who changed what.
//!
//! Each entry carries `prev_hash`, the hash of the entry before it, and `hash` = SHA-256 over
//! its canonical encoding ([`entry_hash`]), so changing, removing or reordering a stored entry
//! breaks the chain at that entry, which [`verify`] reports. Appending needs no transaction:
//! the store refuses a second entry with the same (chain, seq), so of two collectors appending
//! at once one wins and the other re-reads the head and links after it ([`append`]).
//!
//! State-changing operations go through [`record`]: the entry is appended *before* the change,
//! so a change whose entry could not be written is never made (no unaudited change), and a
//! change that then fails gets a second entry, `<action>.failed`, pointing at the first.
//! Entries never hold secrets: [`Action::new`] replaces values of secret-named fields.

use std::future::Future;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::store::{AuditEntry, Store, now_ms};
use crate::{Error, Result};

/// Chain of actions that belong to no project (organizations, test jobs). `@` is not in the
/// slug alphabet, so no project can be named this.
pub const GLOBAL_CHAIN: &str = "@global";
/// `prev_hash` of the first entry of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Actor of `neurocloak-collector admin …` commands.
pub const ADMIN_CLI: &str = "admin-cli";
/// Actor of changes the collector makes on its own (default rules).
pub const COLLECTOR: &str = "collector";
/// Domain separation of the hashed encoding; a new encoding gets a new tag.
const ENCODING_TAG: &[u8] = b"neurocloak-audit-v1\n";
/// How often an append retries after losing the race for the next seq.
const MAX_APPEND_ATTEMPTS: u32 = 200;
/// Entries read per round trip while verifying.
const VERIFY_PAGE: u32 = 1000;
/// Longest actor / target / error text kept; longer text is cut (paths may be long).
const MAX_TEXT: usize = 512;
/// Field names whose values never enter an entry, at any depth.
const SECRET_FIELDS: [&str; 8] = [
    "url",
    "signing_secret",
    "secret",
    "api_key",
    "key_hash",
    "password",
    "token",
    "sealed",
];
/// What replaces a secret-named field's value.
pub const REDACTED: &str = "[redacted]";

/// The actor string of a request made with an API key.
pub fn key_actor(prefix: &str) -> String {
    format!("key:{prefix}")
}

/// A change about to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub chain: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
}

impl Action {
    /// `detail` is stored with every secret-named field redacted.
    pub fn new(chain: &str, actor: &str, action: &str, target: &str, detail: Value) -> Action {
        Action {
            chain: chain.to_owned(),
            actor: clip(actor),
            action: action.to_owned(),
            target: clip(target),
            detail: redact(detail),
        }
    }
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn redact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let secret = SECRET_FIELDS.contains(&k.to_ascii_lowercase().as_str());
                    let v = if secret {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(redact).collect()),
        other => other,
    }
}

/// JSON with object keys sorted at every depth, whatever order serde_json keeps maps in.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// The bytes an entry's hash covers: a tag, then each field as an 8-byte big-endian length and
/// its UTF-8 bytes, in the order chain, seq, time_ms, actor, action, target, detail, prev_hash
/// (numbers in decimal). Lengths make the encoding unambiguous: no field can absorb another.
pub fn canonical_encoding(e: &AuditEntry) -> Vec<u8> {
    let seq = e.seq.to_string();
    let time = e.time_ms.to_string();
    let fields: [&str; 8] = [
        &e.chain,
        &seq,
        &time,
        &e.actor,
        &e.action,
        &e.target,
        &e.detail,
        &e.prev_hash,
    ];
    let mut out = ENCODING_TAG.to_vec();
    for f in fields {
        out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

/// Hex SHA-256 of [`canonical_encoding`].
pub fn entry_hash(e: &AuditEntry) -> String {
    hex::encode(Sha256::digest(canonical_encoding(e)))
}

/// Appends `a` at the head of its chain and returns the stored entry. Losing the race for a
/// seq to another appender (this or another collector) re-reads the head and tries again.
pub async fn append(store: &dyn Store, a: &Action) -> Result<AuditEntry> {
    let detail = canonical_json(&a.detail);
    for attempt in 0..MAX_APPEND_ATTEMPTS {
        let head = store.last_audit(&a.chain).await?;
        let (seq, prev_hash, prev_time) = match &head {
            Some(h) => (h.seq + 1, h.hash.clone(), h.time_ms),
            None => (1, GENESIS_HASH.to_owned(), i64::MIN),
        };
        let mut entry = AuditEntry {
            chain: a.chain.clone(),
            seq,
            // Never before the previous entry, so time order agrees with chain order even when
            // collectors' clocks disagree a little.
            time_ms: now_ms().max(prev_time),
            actor: a.actor.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            detail: detail.clone(),
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        if store.insert_audit(&entry).await? {
            return Ok(entry);
        }
        tokio::time::sleep(std::time::Duration::from_micros(jitter_us(attempt))).await;
    }
    Err(Error::Conflict(format!(
        "audit chain {}: no free seq after {MAX_APPEND_ATTEMPTS} attempts",
        a.chain
    )))
}

/// Up to (attempt + 1) ms, spread so that appenders that collided do not collide again.
fn jitter_us(attempt: u32) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    let span = 1000 * u64::from(attempt.min(20) + 1);
    (nanos ^ (nanos >> 13)).wrapping_mul(0x9E37_79B9_7F4A_7C15) % span
}

/// Runs `op` as an audited change: appends `action` first (its failure fails the change before
/// anything is written), then runs `op`; if `op` fails, appends `<action>.failed` with the
/// error `describe` gives (the first entry stays: the chain is append-only).
pub async fn record<T, E, F>(
    store: &dyn Store,
    action: Action,
    op: F,
    describe: impl Fn(&E) -> String,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: From<Error>,
{
    let entry = append(store, &action).await?;
    match op.await {
        Ok(v) => Ok(v),
        Err(e) => {
            let failed = Action::new(
                &action.chain,
                &action.actor,
                &format!("{}.failed", action.action),
                &action.target,
                json!({ "entry": entry.seq, "error": clip(&describe(&e)) }),
            );
            if let Err(ae) = append(store, &failed).await {
                tracing::error!(chain = %action.chain, seq = entry.seq, error = %ae,
                    "failed change not marked failed in the audit trail");
            }
            Err(e)
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub ok: bool,
    /// Entries that verified (all of them when `ok`).
    pub entries: u64,
    /// The first entry that does not verify (a missing entry's seq when one was removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hash of the last entry that verified: keep it elsewhere to detect later truncation or a
    /// rewritten tail, which a chain cannot reveal on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_hash: Option<String>,
}

/// A chain head recorded earlier and kept outside the database (a verification's `entries`
/// and `head_hash`). Verifying against it also catches what a chain cannot show on its own:
/// newest entries removed, or a tail rewritten with recomputed hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

impl Anchor {
    pub fn new(seq: i64, hash: &str) -> Result<Anchor> {
        let hex64 =
            hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if seq < 1 || !hex64 {
            return Err(Error::Invalid(
                "anchor: a seq >= 1 and a hash of 64 lowercase hex digits".into(),
            ));
        }
        Ok(Anchor {
            seq,
            hash: hash.to_owned(),
        })
    }

    /// `SEQ:HASH`, as `admin verify-audit --anchor` takes it.
    pub fn parse(s: &str) -> Result<Anchor> {
        let (seq, hash) = s
            .split_once(':')
            .ok_or_else(|| Error::Invalid("anchor: expected SEQ:HASH".into()))?;
        let seq = seq
            .parse()
            .map_err(|_| Error::Invalid(format!("anchor: seq {seq:?} is not a number")))?;
        Anchor::new(seq, hash)
    }
}

/// Walks a chain from seq 1 and stops at the first entry that is missing, out of place,
/// unreadable, linked to the wrong predecessor or not matching its own hash.
pub async fn verify(store: &dyn Store, chain: &str) -> Result<Verification> {
    verify_against(store, chain, None).await
}

/// [`verify`], and the chain must still hold `anchor`'s entry with `anchor`'s hash.
pub async fn verify_against(
    store: &dyn Store,
    chain: &str,
    anchor: Option<&Anchor>,
) -> Result<Verification> {
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut expected: i64 = 1;
    let bad = |entries: i64, seq: i64, head: &str, reason: String| Verification {
        ok: false,
        entries: u64::try_from(entries).unwrap_or(0),
        first_bad_seq: Some(seq),
        reason: Some(reason),
        head_hash: (entries > 0).then(|| head.to_owned()),
    };
    let mut limit = VERIFY_PAGE;
    loop {
        let page = match store.audit_after(chain, expected - 1, limit).await {
            Ok(p) => p,
            // Somewhere in this page: read one entry at a time to find which.
            Err(Error::Corrupt(_)) if limit > 1 => {
                limit = 1;
                continue;
            }
            Err(Error::Corrupt(m)) => {
                let reason = format!("entry {expected} is unreadable: {m}");
                return Ok(bad(expected - 1, expected, &prev_hash, reason));
            }
            Err(e) => return Err(e),
        };
        if page.is_empty() {
            if let Some(a) = anchor.filter(|a| a.seq >= expected) {
                let reason = format!(
                    "the chain ends at entry {} but the anchor holds entry {}: entries from {expected} on were removed",
                    expected - 1,
                    a.seq
                );
                return Ok(bad(expected - 1, expected, &prev_hash, reason));
            }
            return Ok(Verification {
                ok: true,
                entries: u64::try_from(expected - 1).unwrap_or(0),
                first_bad_seq: None,
                reason: None,
                head_hash: (expected > 1).then_some(prev_hash),
            });
        }
        for e in &page {
            let anchored = anchor.filter(|a| a.seq == expected && a.hash != e.hash).map(|_| {
                format!("entry {expected}'s hash differs from the anchor's: the chain was rewritten from this entry or an earlier one")
            });
            if let Some(reason) = link_problem(e, chain, expected, &prev_hash).or(anchored) {
                return Ok(bad(expected - 1, expected, &prev_hash, reason));
            }
            prev_hash = e.hash.clone();
            expected += 1;
        }
    }
}

/// Why `e`, read where entry `expected` of `chain` should be, does not continue the chain
/// whose last verified hash is `prev_hash`.
fn link_problem(e: &AuditEntry, chain: &str, expected: i64, prev_hash: &str) -> Option<String> {
    if e.seq != expected {
        Some(format!(
            "entry {expected} is missing (next stored is {})",
            e.seq
        ))
    } else if e.chain != chain {
        Some(format!("entry {expected} belongs to chain {:?}", e.chain))
    } else if e.prev_hash != prev_hash {
        Some(format!(
            "entry {expected}'s prev_hash does not match entry {}'s hash: this entry or the one \
             before it was altered, removed or moved",
            expected - 1
        ))
    } else if entry_hash(e) != e.hash {
        Some(format!(
            "entry {expected}'s content does not match its hash"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn entry() -> AuditEntry {
        let mut e = AuditEntry {
            chain: "fraud".into(),
            seq: 1,
            time_ms: 1_700_000_000_000,
            actor: "key:0123456789abcdef".into(),
            action: "rule.create".into(),
            target: "rule/r1".into(),
            detail: canonical_json(
                &json!({ "b": 1, "a": { "y": [2, {"d": 0, "c": 1}], "x": null } }),
            ),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        e.hash = entry_hash(&e);
        e
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let e = entry();
        assert_eq!(e.detail, r#"{"a":{"x":null,"y":[2,{"c":1,"d":0}]},"b":1}"#);
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let e = entry();
        let changed: Vec<AuditEntry> = vec![
            AuditEntry {
                chain: "fraud2".into(),
                ..e.clone()
            },
            AuditEntry {
                seq: 2,
                ..e.clone()
            },
            AuditEntry {
                time_ms: e.time_ms + 1,
                ..e.clone()
            },
            AuditEntry {
                actor: "admin-cli".into(),
                ..e.clone()
            },
            AuditEntry {
                action: "rule.delete".into(),
                ..e.clone()
            },
            AuditEntry {
                target: "rule/r2".into(),
                ..e.clone()
            },
            AuditEntry {
                detail: "{}".into(),
                ..e.clone()
            },
            AuditEntry {
                prev_hash: "1".repeat(64),
                ..e.clone()
            },
        ];
        for c in changed {
            assert_ne!(entry_hash(&c), e.hash, "{c:?}");
        }
        // Moving bytes between neighbouring fields changes the hash too (length prefixes).
        let shifted = AuditEntry {
            action: "rule.creater".into(),
            target: "ule/r1".into(),
            ..e.clone()
        };
        assert_ne!(entry_hash(&shifted), e.hash);
        assert_eq!(e.hash.len(), 64);
    }

    #[test]
    fn secret_named_fields_are_redacted_at_any_depth() {
        let a = Action::new(
            "p",
            "admin-cli",
            "channel.put",
            "channel/c",
            json!({ "id": "c", "URL": "https://hooks.example/x", "nested": [{ "signing_secret": "s3cret" }] }),
        );
        let text = canonical_json(&a.detail);
        assert!(
            !text.contains("hooks.example") && !text.contains("s3cret"),
            "{text}"
        );
        assert_eq!(a.detail["URL"], REDACTED);
        assert_eq!(a.detail["id"], "c");
    }

    #[test]
    fn long_targets_are_clipped_on_a_char_boundary() {
        let long = "é".repeat(600);
        let a = Action::new("p", "x", "y", &long, Value::Null);
        assert!(a.target.len() <= MAX_TEXT + "…".len());
    }
}
