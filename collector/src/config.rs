//! Collector configuration: defaults < TOML file < environment (`NEUROCLOAK_*`) < flags.
//! clap resolves flag-over-environment; this module lays the result over the file and defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ingest::Limits;
use crate::ratelimit::RateLimitConfig;
use crate::{Error, Result};

pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:7070";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7080";
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded store (and anything else on disk) lives.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `mongodb://…`; empty means `sqlite://<data_dir>/neurocloak.db`.
    pub storage: String,
    /// Database name used on MongoDB.
    pub mongo_database: String,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// PEM certificate chain and private key: both set turns TLS on for gRPC ingest.
    pub grpc_tls_cert: Option<PathBuf>,
    pub grpc_tls_key: Option<PathBuf>,
    /// Largest gRPC message accepted (after decompression); larger gets RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    pub limits: Limits,
    /// Requests per API key and failed authentications per client address.
    pub rate_limit: RateLimitConfig,
    pub retention: Retention,
    pub jobs: Jobs,
    pub pipeline: crate::pipeline::PipelineConfig,
}

/// Days to keep each kind of data; 0 keeps it forever. `crate::retention` maps every swept
/// table and collection to one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub windows_days: u32,
    pub labels_days: u32,
    /// Batch markers: keep at least as long as windows, or old replays would be stored again.
    pub batches_days: u32,
    pub leases_days: u32,
    pub jobs_days: u32,
    /// Evaluations and trust scores, by window start. As long as the windows by default, so
    /// every stored score can still be traced to (and recomputed from) its profile.
    pub evaluations_days: u32,
    /// The prediction index and joined labels: how late a label may arrive and still join
    /// its prediction. Longer than `windows_days` buys nothing, since a window whose parts
    /// are gone cannot be re-evaluated.
    pub predictions_days: u32,
    /// Alert history and notification deliveries, by the time they happened. Small, and the
    /// record post-mortems and audits read, so kept longer than the data by default.
    pub alerts_days: u32,
    /// Seconds between sweeps.
    pub sweep_interval_s: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            windows_days: 90,
            labels_days: 90,
            batches_days: 90,
            leases_days: 2,
            jobs_days: 30,
            evaluations_days: 90,
            predictions_days: 90,
            alerts_days: 365,
            sweep_interval_s: 3600,
        }
    }
}

/// Per-window job scheduling between collectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Jobs {
    pub enabled: bool,
    /// How long a lease lasts without renewal; a dead holder's jobs move after this.
    pub lease_ms: i64,
    /// How often idle collectors look for pending jobs.
    pub poll_ms: u64,
    /// Name of this collector in leases; empty means `<hostname>-<pid>-<random>`.
    pub holder: String,
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs {
            enabled: true,
            lease_ms: 10_000,
            poll_ms: 1_000,
            holder: String::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("neurocloak-data"),
            storage: String::new(),
            mongo_database: "neurocloak".into(),
            grpc_addr: DEFAULT_GRPC_ADDR
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7070))),
            http_addr: DEFAULT_HTTP_ADDR
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7080))),
            grpc_tls_cert: None,
            grpc_tls_key: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            limits: Limits::default(),
            rate_limit: RateLimitConfig::default(),
            retention: Retention::default(),
            jobs: Jobs::default(),
            pipeline: crate::pipeline::PipelineConfig::default(),
        }
    }
}

/// Settings that may come from the environment or flags (clap fills these).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "NEUROCLOAK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (embedded store).
    #[arg(long, env = "NEUROCLOAK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Storage URI: sqlite://PATH or mongodb://HOST:PORT/…
    #[arg(long, env = "NEUROCLOAK_STORAGE")]
    pub storage: Option<String>,
    /// MongoDB database name.
    #[arg(long, env = "NEUROCLOAK_MONGO_DATABASE")]
    pub mongo_database: Option<String>,
    /// gRPC listen address (ingest).
    #[arg(long, env = "NEUROCLOAK_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP listen address (health, metrics, REST API).
    #[arg(long, env = "NEUROCLOAK_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// PEM certificate chain for gRPC TLS (with --grpc-tls-key).
    #[arg(long, env = "NEUROCLOAK_GRPC_TLS_CERT")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// PEM private key for gRPC TLS (with --grpc-tls-cert).
    #[arg(long, env = "NEUROCLOAK_GRPC_TLS_KEY")]
    pub grpc_tls_key: Option<PathBuf>,
    /// Largest accepted gRPC message in bytes.
    #[arg(long, env = "NEUROCLOAK_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Run per-window jobs (true/false).
    #[arg(long, env = "NEUROCLOAK_JOBS_ENABLED")]
    pub jobs_enabled: Option<bool>,
    /// Job lease duration in milliseconds.
    #[arg(long, env = "NEUROCLOAK_JOBS_LEASE_MS")]
    pub jobs_lease_ms: Option<i64>,
    /// Job poll interval in milliseconds.
    #[arg(long, env = "NEUROCLOAK_JOBS_POLL_MS")]
    pub jobs_poll_ms: Option<u64>,
    /// Name of this collector in leases.
    #[arg(long, env = "NEUROCLOAK_JOBS_HOLDER")]
    pub jobs_holder: Option<String>,
    /// Seconds between retention sweeps.
    #[arg(long, env = "NEUROCLOAK_RETENTION_SWEEP_S")]
    pub retention_sweep_s: Option<u64>,
}

impl Config {
    /// Defaults, then the file (if any), then environment/flags.
    pub fn load(o: &Overrides) -> Result<Config> {
        let mut c = match &o.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($field:expr, $value:expr) => {
                if let Some(v) = $value.clone() {
                    $field = v;
                }
            };
        }
        set!(c.data_dir, o.data_dir);
        set!(c.storage, o.storage);
        set!(c.mongo_database, o.mongo_database);
        set!(c.grpc_addr, o.grpc_addr);
        set!(c.http_addr, o.http_addr);
        if o.grpc_tls_cert.is_some() {
            c.grpc_tls_cert = o.grpc_tls_cert.clone();
        }
        if o.grpc_tls_key.is_some() {
            c.grpc_tls_key = o.grpc_tls_key.clone();
        }
        set!(c.max_message_bytes, o.max_message_bytes);
        set!(c.jobs.enabled, o.jobs_enabled);
        set!(c.jobs.lease_ms, o.jobs_lease_ms);
        set!(c.jobs.poll_ms, o.jobs_poll_ms);
        set!(c.jobs.holder, o.jobs_holder);
        set!(c.retention.sweep_interval_s, o.retention_sweep_s);
        c.check()?;
        Ok(c)
    }

    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    fn check(&self) -> Result<()> {
        if self.grpc_tls_cert.is_some() != self.grpc_tls_key.is_some() {
            return Err(Error::Config(
                "grpc_tls_cert and grpc_tls_key go together".into(),
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(Error::Config(
                "max_message_bytes must be at least 1024".into(),
            ));
        }
        self.rate_limit.check()?;
        if self.jobs.lease_ms < 100 {
            return Err(Error::Config("jobs.lease_ms must be at least 100".into()));
        }
        if self.limits.min_window_ms <= 0 || self.limits.min_window_ms > self.limits.max_window_ms {
            return Err(Error::Config(
                "limits: need 0 < min_window_ms <= max_window_ms".into(),
            ));
        }
        Ok(())
    }

    /// The storage URI with the default filled in.
    pub fn storage_uri(&self) -> String {
        if self.storage.is_empty() {
            format!("sqlite://{}", self.data_dir.join("neurocloak.db").display())
        } else {
            self.storage.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn file_overrides_defaults_and_flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "grpc_addr = \"127.0.0.1:9000\"\nhttp_addr = \"127.0.0.1:9001\"\n[retention]\nwindows_days = 7\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path),
            http_addr: Some("127.0.0.1:9999".parse().unwrap()),
            ..Overrides::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.grpc_addr.port(), 9000);
        assert_eq!(c.http_addr.port(), 9999);
        assert_eq!(c.retention.windows_days, 7);
        assert_eq!(c.retention.labels_days, Retention::default().labels_days);
        assert!(c.storage_uri().starts_with("sqlite://"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "grpc_adr = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::load(&Overrides {
            config: Some(path.clone()),
            ..Default::default()
        });
        assert!(matches!(err, Err(Error::Config(m)) if m.contains("grpc_adr")));
        std::fs::write(&path, "max_message_bytes = 10\n").unwrap();
        assert!(
            Config::load(&Overrides {
                config: Some(path),
                ..Default::default()
            })
            .is_err()
        );
    }
}
