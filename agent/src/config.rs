//! Agent configuration: defaults < TOML file (`--config`) < environment
//! (`NEUROCLOAK_AGENT_*`) < flags. clap resolves flag over environment; this module lays the
//! result over the file and the defaults. docs/agent.md lists every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::AgentError;
use crate::forward::{CollectorConfig, ForwardConfig};
use crate::queue::{BatchLimits, FsyncPolicy, QueueConfig};

pub const DEFAULT_UDS: &str = "/tmp/neurocloak/agent.sock";
pub const DEFAULT_TCP: &str = "127.0.0.1:7071";
pub const DEFAULT_HTTP: &str = "127.0.0.1:7072";

/// Every setting, with the key names used in the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Unix socket for SDKs; empty disables it.
    pub uds_path: String,
    /// Loopback TCP address for SDKs; empty disables it.
    pub tcp_addr: String,
    /// `/healthz` and `/metrics`; empty disables it.
    pub http_addr: String,
    /// Largest SDK push accepted (bytes); larger ones get a gRPC error.
    pub max_message_bytes: usize,
    pub data_dir: PathBuf,
    pub queue_max_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub merge_grace_ms: u64,
    /// Collector gRPC endpoint, `http://` or `https://`.
    pub collector: String,
    pub api_key: String,
    /// Read the API key from this file instead (e.g. a mounted Kubernetes secret).
    pub api_key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// Sent with every batch; defaults to the host name.
    pub agent_id: String,
    pub batch_max_items: usize,
    pub batch_max_bytes: u64,
    pub linger_ms: u64,
    pub request_timeout_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// After SIGTERM: how long to keep forwarding before exiting (data stays on disk).
    pub drain_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            uds_path: DEFAULT_UDS.into(),
            tcp_addr: DEFAULT_TCP.into(),
            http_addr: DEFAULT_HTTP.into(),
            max_message_bytes: 16 << 20,
            data_dir: PathBuf::from("/var/lib/neurocloak-agent"),
            queue_max_bytes: 1 << 30,
            segment_bytes: 8 << 20,
            fsync: FsyncPolicy::Always,
            merge_grace_ms: 10_000,
            collector: "http://127.0.0.1:7070".into(),
            api_key: String::new(),
            api_key_file: None,
            ca_file: None,
            agent_id: String::new(),
            batch_max_items: 500,
            batch_max_bytes: 4 << 20,
            linger_ms: 1000,
            request_timeout_ms: 30_000,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            drain_timeout_ms: 20_000,
        }
    }
}

/// Command-line flags; each also reads `NEUROCLOAK_AGENT_<NAME>` from the environment.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "NEUROCLOAK_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "NEUROCLOAK_AGENT_UDS_PATH")]
    pub uds_path: Option<String>,
    #[arg(long, env = "NEUROCLOAK_AGENT_TCP_ADDR")]
    pub tcp_addr: Option<String>,
    #[arg(long, env = "NEUROCLOAK_AGENT_HTTP_ADDR")]
    pub http_addr: Option<String>,
    #[arg(long, env = "NEUROCLOAK_AGENT_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    #[arg(long, env = "NEUROCLOAK_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "NEUROCLOAK_AGENT_QUEUE_MAX_BYTES")]
    pub queue_max_bytes: Option<u64>,
    #[arg(long, env = "NEUROCLOAK_AGENT_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// `always` (group commit) or `never`.
    #[arg(long, env = "NEUROCLOAK_AGENT_FSYNC")]
    pub fsync: Option<FsyncPolicy>,
    #[arg(long, env = "NEUROCLOAK_AGENT_MERGE_GRACE_MS")]
    pub merge_grace_ms: Option<u64>,
    #[arg(long, env = "NEUROCLOAK_AGENT_COLLECTOR")]
    pub collector: Option<String>,
    #[arg(long, env = "NEUROCLOAK_AGENT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[arg(long, env = "NEUROCLOAK_AGENT_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    #[arg(long, env = "NEUROCLOAK_AGENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    #[arg(long, env = "NEUROCLOAK_AGENT_ID")]
    pub agent_id: Option<String>,
    #[arg(long, env = "NEUROCLOAK_AGENT_BATCH_MAX_ITEMS")]
    pub batch_max_items: Option<usize>,
    #[arg(long, env = "NEUROCLOAK_AGENT_BATCH_MAX_BYTES")]
    pub batch_max_bytes: Option<u64>,
    #[arg(long, env = "NEUROCLOAK_AGENT_LINGER_MS")]
    pub linger_ms: Option<u64>,
    #[arg(long, env = "NEUROCLOAK_AGENT_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    #[arg(long, env = "NEUROCLOAK_AGENT_BACKOFF_INITIAL_MS")]
    pub backoff_initial_ms: Option<u64>,
    #[arg(long, env = "NEUROCLOAK_AGENT_BACKOFF_MAX_MS")]
    pub backoff_max_ms: Option<u64>,
    #[arg(long, env = "NEUROCLOAK_AGENT_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
}

impl Config {
    /// Defaults, then the file named by `--config` (if any), then environment and flags.
    pub fn load(o: &Overrides) -> Result<Self, AgentError> {
        let mut c = match &o.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => {$(
                if let Some(v) = o.$f.clone() {
                    c.$f = v;
                }
            )*};
        }
        set!(
            uds_path,
            tcp_addr,
            http_addr,
            max_message_bytes,
            data_dir,
            queue_max_bytes,
            segment_bytes,
            fsync,
            merge_grace_ms,
            collector,
            api_key,
            agent_id,
            batch_max_items,
            batch_max_bytes,
            linger_ms,
            request_timeout_ms,
            backoff_initial_ms,
            backoff_max_ms,
            drain_timeout_ms
        );
        if o.api_key_file.is_some() {
            c.api_key_file = o.api_key_file.clone();
        }
        if o.ca_file.is_some() {
            c.ca_file = o.ca_file.clone();
        }
        if let Some(path) = &c.api_key_file {
            c.api_key = std::fs::read_to_string(path)
                .map_err(|e| AgentError::Config(format!("api_key_file {}: {e}", path.display())))?
                .trim()
                .to_string();
        }
        if c.agent_id.is_empty() {
            c.agent_id = std::env::var("HOSTNAME").unwrap_or_else(|_| "neurocloak-agent".into());
        }
        c.validate()?;
        Ok(c)
    }

    pub fn from_file(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::Config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| AgentError::Config(format!("{}: {e}", path.display())))
    }

    fn validate(&self) -> Result<(), AgentError> {
        let bad = |m: String| Err(AgentError::Config(m));
        if self.uds_path.is_empty() && self.tcp_addr.is_empty() {
            return bad("enable at least one of uds_path and tcp_addr".into());
        }
        for (k, v) in [("tcp_addr", &self.tcp_addr), ("http_addr", &self.http_addr)] {
            if !v.is_empty() && v.parse::<SocketAddr>().is_err() {
                return bad(format!("{k} {v:?} is not an address like 127.0.0.1:7071"));
            }
        }
        if self.max_message_bytes < 1024 {
            return bad("max_message_bytes must be at least 1024".into());
        }
        if self.segment_bytes < 4096 || self.queue_max_bytes < 4 * self.segment_bytes {
            return bad(
                "segment_bytes must be >= 4096 and queue_max_bytes >= 4 x segment_bytes".into(),
            );
        }
        if self.batch_max_items == 0 || self.batch_max_bytes < 1024 {
            return bad("batch_max_items must be > 0 and batch_max_bytes >= 1024".into());
        }
        if !(self.collector.starts_with("http://") || self.collector.starts_with("https://")) {
            return bad(format!(
                "collector {:?} must start with http:// or https://",
                self.collector
            ));
        }
        if !self.api_key.chars().all(|ch| ch.is_ascii_graphic()) {
            return bad("api_key must be printable ASCII without spaces".into());
        }
        Ok(())
    }

    pub fn queue(&self) -> QueueConfig {
        QueueConfig {
            dir: self.data_dir.join("queue"),
            max_bytes: self.queue_max_bytes,
            segment_bytes: self.segment_bytes,
            fsync: self.fsync,
            merge_grace_ms: i64::try_from(self.merge_grace_ms).unwrap_or(i64::MAX),
        }
    }

    pub fn collector(&self) -> CollectorConfig {
        CollectorConfig {
            endpoint: self.collector.clone(),
            api_key: self.api_key.clone(),
            ca_file: self.ca_file.clone(),
            agent_id: self.agent_id.clone(),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            // Room for a full batch after merging (merged items can be a little larger).
            max_message_bytes: usize::try_from(self.batch_max_bytes)
                .unwrap_or(usize::MAX)
                .saturating_mul(2)
                .max(self.max_message_bytes),
        }
    }

    pub fn forward(&self) -> ForwardConfig {
        ForwardConfig {
            limits: BatchLimits {
                max_items: self.batch_max_items,
                max_bytes: self.batch_max_bytes,
            },
            linger: Duration::from_millis(self.linger_ms),
            backoff_initial: Duration::from_millis(self.backoff_initial_ms.max(1)),
            backoff_max: Duration::from_millis(self.backoff_max_ms.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "tcp_addr = \"127.0.0.1:9000\"\nfsync = \"never\"\nlinger_ms = 5\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            linger_ms: Some(7),
            ..Overrides::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.tcp_addr, "127.0.0.1:9000");
        assert_eq!(c.fsync, FsyncPolicy::Never);
        assert_eq!(c.linger_ms, 7);
        assert_eq!(c.uds_path, DEFAULT_UDS);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "tcp_adr = \"x\"\n").unwrap();
        let err = Config::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("tcp_adr"), "{err}");
        let err = Config::load(&Overrides {
            tcp_addr: Some("localhost".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("tcp_addr"), "{err}");
        let err = Config::load(&Overrides {
            api_key: Some("has space".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("api_key"), "{err}");
    }
}
