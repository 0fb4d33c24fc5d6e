//! The evaluation pipeline: `store → evaluate → score → alert → api`.
//!
//! - [`runner`] finds windows closed for longer than the grace period (and windows changed by
//!   late parts or late labels), evaluates each under a lease, stores the evaluation and trust
//!   score once, and publishes them;
//! - [`labels`] joins delayed labels to the prediction records of their windows;
//! - [`records`] is the typed view of what the pipeline stores (evaluations, trust scores);
//! - [`alerts`] turns each trust score into a metrics document, runs the alert engine, persists
//!   state and history, and sends notifications; it also owns rules and channels;
//! - [`query`] is the gRPC `QueryService`; `crate::api_eval` serves REST and the WebSocket.
//!
//! New results reach live clients through one [`tokio::sync::broadcast`] channel of
//! [`LiveEvent`]s; a slow client loses events (counted on its side), never blocks the pipeline.

pub mod alerts;
pub mod labels;
pub mod query;
pub mod records;
pub mod runner;

use std::path::Path;
use std::sync::Arc;

use neurocloak_alert::{Notifier, SecretBox};
use neurocloak_evaluate::{EvalConfig, TrustConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::store::eval::SharedEvalStore;
use crate::store::{ModelKey, SharedStore};
use crate::{Error, Result};

/// Environment variable holding the base64 master key that seals channel secrets.
pub const MASTER_KEY_ENV: &str = "NEUROCLOAK_MASTER_KEY";
/// File in the data directory holding a generated master key when none is configured.
pub const MASTER_KEY_FILE: &str = "master.key";

/// `[pipeline]` section of the collector configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    pub enabled: bool,
    /// How long after a window's end it is evaluated, so late parts from agents (which wait
    /// their own grace period) are in. Env `NEUROCLOAK_PIPELINE_GRACE_MS`.
    pub grace_ms: i64,
    /// How often the runner looks for new parts and labels. Env `NEUROCLOAK_PIPELINE_POLL_MS`.
    pub poll_ms: u64,
    /// How far back a starting collector looks for windows that still need evaluating.
    pub lookback_ms: i64,
    /// Trust scores of earlier windows fed to the trend (EWMA and slope).
    pub history_windows: u32,
    /// How often escalation and renotification timers run.
    pub alert_tick_ms: u64,
    /// Base64 key sealing channel secrets; empty reads `NEUROCLOAK_MASTER_KEY`, then
    /// `<data_dir>/master.key` (generated on first start).
    pub master_key: String,
    /// Live events buffered per subscriber before the slowest ones start losing events.
    pub live_buffer: usize,
    pub evaluation: EvalConfig,
    pub trust: TrustConfig,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            enabled: true,
            grace_ms: 5_000,
            poll_ms: 500,
            lookback_ms: 6 * 3_600_000,
            history_windows: 20,
            alert_tick_ms: 5_000,
            master_key: String::new(),
            live_buffer: 1024,
            evaluation: EvalConfig::default(),
            trust: TrustConfig::default(),
        }
    }
}

impl PipelineConfig {
    /// Applies `NEUROCLOAK_PIPELINE_*` environment overrides, then checks the values.
    pub fn with_env(mut self) -> Result<PipelineConfig> {
        fn var<T: std::str::FromStr>(name: &str) -> Result<Option<T>> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => v
                    .parse()
                    .map(Some)
                    .map_err(|_| Error::Config(format!("{name}={v:?} does not parse"))),
                _ => Ok(None),
            }
        }
        if let Some(v) = var("NEUROCLOAK_PIPELINE_ENABLED")? {
            self.enabled = v;
        }
        if let Some(v) = var("NEUROCLOAK_PIPELINE_GRACE_MS")? {
            self.grace_ms = v;
        }
        if let Some(v) = var("NEUROCLOAK_PIPELINE_POLL_MS")? {
            self.poll_ms = v;
        }
        if let Some(v) = var("NEUROCLOAK_PIPELINE_ALERT_TICK_MS")? {
            self.alert_tick_ms = v;
        }
        self.check()?;
        Ok(self)
    }

    pub fn check(&self) -> Result<()> {
        if self.grace_ms < 0 || self.lookback_ms < 0 {
            return Err(Error::Config(
                "pipeline: grace_ms and lookback_ms must be >= 0".into(),
            ));
        }
        if self.live_buffer == 0 || self.live_buffer > 1 << 20 {
            return Err(Error::Config("pipeline.live_buffer: 1..=1048576".into()));
        }
        self.evaluation
            .validate()
            .map_err(|e| Error::Config(format!("pipeline.evaluation: {e}")))?;
        self.trust
            .validate()
            .map_err(|e| Error::Config(format!("pipeline.trust: {e}")))?;
        Ok(())
    }
}

/// What live clients (WebSocket, gRPC watch) receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A window's trust score was stored (first evaluation or a re-evaluation).
    TrustScore(records::TrustPoint),
    /// An alert changed (pending, fired, resolved, acknowledged, escalated, renotified).
    Alert(alerts::AlertEvent),
}

impl LiveEvent {
    pub fn project(&self) -> &str {
        match self {
            LiveEvent::TrustScore(t) => &t.project,
            LiveEvent::Alert(a) => &a.project,
        }
    }
}

/// Everything the pipeline's parts share; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    pub store: SharedStore,
    pub docs: SharedEvalStore,
    pub metrics: Arc<Metrics>,
    pub config: Arc<PipelineConfig>,
    pub events: broadcast::Sender<LiveEvent>,
    pub secrets: Arc<Secrets>,
    pub notifier: Arc<Notifier>,
    pub holder: String,
    pub lease_ms: i64,
    /// Serialises alert-state updates inside this process: a lease keeps other collectors
    /// out, but its holder may re-enter it (the runner and an acknowledgement, say).
    pub alert_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Pipeline {
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    /// Sends to whoever listens; nobody listening is not an error.
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.events.send(event);
    }
}

/// Opens the pipeline's store on the collector's database and, when enabled, starts the
/// runner on a background task pushed to `background`. The returned handle serves the APIs.
pub async fn start(
    config: &crate::config::Config,
    store: &SharedStore,
    metrics: &Arc<Metrics>,
    stop: &tokio::sync::watch::Receiver<bool>,
    background: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Pipeline> {
    let pc = config.pipeline.clone().with_env()?;
    let docs = crate::store::eval::open(&config.storage_uri(), &config.mongo_database).await?;
    let secrets = Secrets::new(&pc.master_key, &config.data_dir)?;
    let notifier = Notifier::new(neurocloak_alert::RetryPolicy::default())
        .map_err(|e| Error::Config(format!("notifier: {e}")))?;
    let holder = if config.jobs.holder.is_empty() {
        crate::schedule::default_holder()
    } else {
        config.jobs.holder.clone()
    };
    let (events, _) = broadcast::channel(pc.live_buffer);
    let enabled = pc.enabled;
    let p = Pipeline {
        store: Arc::clone(store),
        docs,
        metrics: Arc::clone(metrics),
        config: Arc::new(pc),
        events,
        secrets: Arc::new(secrets),
        notifier: Arc::new(notifier),
        holder,
        lease_ms: config.jobs.lease_ms,
        alert_lock: Arc::new(tokio::sync::Mutex::new(())),
    };
    if enabled {
        background.push(runner::spawn(p.clone(), stop.clone()));
    }
    Ok(p)
}

/// The gRPC `QueryService` with the collector's message size bound, authenticating (and rate
/// limiting) with `auth`.
pub fn query_server(
    p: &Pipeline,
    max_message_bytes: usize,
    auth: crate::auth::Authenticator,
) -> neurocloak_proto::v1::query_service_server::QueryServiceServer<query::Query> {
    neurocloak_proto::v1::query_service_server::QueryServiceServer::new(
        query::Query::new(p.clone()).with_auth(auth),
    )
    .max_decoding_message_size(max_message_bytes)
}

/// Separator of composite ids. Identity fields are validated on ingest to hold no control
/// characters, so it cannot occur inside a part.
pub const SEP: char = '\u{1f}';

pub fn join_id(parts: &[&str]) -> String {
    let mut s = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            s.push(SEP);
        }
        s.push_str(p);
    }
    s
}

/// The `scope` field of per-version documents.
pub fn version_scope(key: &ModelKey) -> String {
    join_id(&[&key.model, &key.version, &key.environment])
}

/// A window's id: unique across projects, models and versions.
pub fn window_id(key: &ModelKey, window_start_ms: i64) -> String {
    join_id(&[
        &key.project_id,
        &key.model,
        &key.version,
        &key.environment,
        &window_start_ms.to_string(),
    ])
}

/// The master key sealing channel secrets: configured, else from the environment, else a key
/// file generated in the data directory (mode 0600) the first time a channel needs it — so a
/// collector that never stores a channel writes no key file.
pub struct Secrets {
    data_dir: std::path::PathBuf,
    key: std::sync::Mutex<Option<Arc<SecretBox>>>,
}

impl Secrets {
    /// Parses a configured or environment key now, so a bad one stops the start.
    pub fn new(configured: &str, data_dir: &Path) -> Result<Secrets> {
        let given = if !configured.is_empty() {
            Some(parse_key(configured, "pipeline.master_key")?)
        } else {
            match std::env::var(MASTER_KEY_ENV) {
                Ok(k) if !k.is_empty() => Some(parse_key(&k, MASTER_KEY_ENV)?),
                _ => None,
            }
        };
        Ok(Secrets {
            data_dir: data_dir.to_path_buf(),
            key: std::sync::Mutex::new(given.map(Arc::new)),
        })
    }

    pub fn get(&self) -> Result<Arc<SecretBox>> {
        let mut key = self
            .key
            .lock()
            .map_err(|_| Error::Corrupt("master key mutex poisoned".into()))?;
        if let Some(k) = key.as_ref() {
            return Ok(Arc::clone(k));
        }
        let k = Arc::new(load_master_key("", &self.data_dir)?);
        *key = Some(Arc::clone(&k));
        Ok(k)
    }
}

fn parse_key(k: &str, from: &str) -> Result<SecretBox> {
    SecretBox::from_base64(k.trim()).map_err(|e| Error::Config(format!("{from}: {e}")))
}

/// The master key: configured, else from the environment, else the key file in `data_dir`
/// (generated when missing).
pub fn load_master_key(configured: &str, data_dir: &Path) -> Result<SecretBox> {
    if !configured.is_empty() {
        return parse_key(configured, "pipeline.master_key");
    }
    if let Ok(k) = std::env::var(MASTER_KEY_ENV)
        && !k.is_empty()
    {
        return parse_key(&k, MASTER_KEY_ENV);
    }
    let path = data_dir.join(MASTER_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(k) => parse_key(&k, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key = SecretBox::generate_key_base64();
            write_private(&path, &key)?;
            tracing::info!(path = %path.display(), "generated a master key for channel secrets");
            parse_key(&key, &path.display().to_string())
        }
        Err(e) => Err(e.into()),
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn master_key_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_master_key("", dir.path()).unwrap();
        let sealed = a.seal(b"secret", b"aad").unwrap();
        let b = load_master_key("", dir.path()).unwrap();
        assert_eq!(b.open(&sealed, b"aad").unwrap(), b"secret");
        assert!(load_master_key("not base64!", dir.path()).is_err());
    }

    #[test]
    fn config_rejects_bad_values() {
        let mut c = PipelineConfig::default();
        c.check().unwrap();
        c.grace_ms = -1;
        assert!(c.check().is_err());
        let c = PipelineConfig {
            live_buffer: 0,
            ..PipelineConfig::default()
        };
        assert!(c.check().is_err());
    }
}
