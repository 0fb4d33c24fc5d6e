//! `neurocloak-collector serve | admin …` — see docs/collector.md.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use neurocloak_collector::config::{Config, Overrides};
use neurocloak_collector::pipeline;
use neurocloak_collector::server::Server;
use neurocloak_collector::store::{self, Scope};
use neurocloak_collector::{admin, audit};

#[derive(Parser)]
#[command(name = "neurocloak-collector", version, about = "NeuroCloak collector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector (gRPC ingest, HTTP API, job runner, retention sweeper).
    Serve(Overrides),
    /// Administration against the configured store.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an organization (reused if present), a project and an ingest+read API key.
    Bootstrap {
        #[arg(long)]
        org: String,
        #[arg(long)]
        project: String,
        #[arg(long, default_value = "bootstrap")]
        key_name: String,
        #[command(flatten)]
        o: Overrides,
    },
    /// Create an API key for a project; the key is printed once.
    CreateKey {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        /// Comma-separated: ingest, read, admin (rule/channel writes, acknowledgements).
        #[arg(long, default_value = "ingest")]
        scopes: String,
        #[command(flatten)]
        o: Overrides,
    },
    /// Revoke an API key (by prefix or by the whole key).
    RevokeKey {
        key: String,
        #[command(flatten)]
        o: Overrides,
    },
    /// Verify a project's audit chain (or the global one); exits non-zero when it is broken.
    VerifyAudit {
        #[arg(long, required_unless_present = "global", conflicts_with = "global")]
        project: Option<String>,
        /// The chain of organization-level actions instead of a project's.
        #[arg(long)]
        global: bool,
        /// `SEQ:HASH` of a head recorded earlier (`entries` and `head_hash` of a previous run):
        /// also fails when that entry is gone or was rewritten.
        #[arg(long)]
        anchor: Option<String>,
        #[command(flatten)]
        o: Overrides,
    },
    /// Enqueue test jobs for the lease-based job runner.
    EnqueueTestJobs {
        #[arg(long)]
        count: u32,
        #[arg(long, default_value_t = 200)]
        work_ms: i64,
        #[arg(long, default_value = "test")]
        prefix: String,
        #[command(flatten)]
        o: Overrides,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NEUROCLOAK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(o) => serve(Config::load(&o)?).await,
        Command::Admin(cmd) => admin_command(cmd).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config)
        .await
        .context("starting the collector")?;
    // One parseable line: tests and scripts started with port 0 learn the real ports here.
    println!(
        "neurocloak-collector listening grpc={} http={} store={}",
        server.grpc_addr()?,
        server.http_addr()?,
        server.store().backend()
    );
    server.run(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn open(o: &Overrides) -> anyhow::Result<store::SharedStore> {
    let config = Config::load(o)?;
    Ok(store::open(&config.storage_uri(), &config.mongo_database).await?)
}

async fn admin_command(cmd: AdminCommand) -> anyhow::Result<()> {
    let out = match cmd {
        AdminCommand::Bootstrap {
            org,
            project,
            key_name,
            o,
        } => {
            let s = open(&o).await?;
            let created = admin::bootstrap(&s, &org, &project, &key_name).await?;
            let config = Config::load(&o)?;
            let docs = store::eval::open(&config.storage_uri(), &config.mongo_database).await?;
            pipeline::alerts::create_default_rules(&docs, &s, &project, audit::ADMIN_CLI).await?;
            serde_json::to_value(created)?
        }
        AdminCommand::CreateKey {
            project,
            name,
            scopes,
            o,
        } => {
            let scopes = Scope::split(&scopes)?;
            let s = open(&o).await?;
            serde_json::to_value(admin::create_key(&s, &project, &name, &scopes).await?)?
        }
        AdminCommand::RevokeKey { key, o } => {
            let s = open(&o).await?;
            serde_json::json!({ "revoked": admin::revoke_key(&s, &key).await? })
        }
        AdminCommand::VerifyAudit {
            project,
            global,
            anchor,
            o,
        } => {
            let s = open(&o).await?;
            let project = project.as_deref().filter(|_| !global);
            let v = admin::verify_audit(&s, project, anchor.as_deref()).await?;
            println!("{}", serde_json::to_value(&v)?);
            if !v.ok {
                anyhow::bail!(
                    "audit chain broken at entry {}: {}",
                    v.first_bad_seq.unwrap_or_default(),
                    v.reason.unwrap_or_default()
                );
            }
            return Ok(());
        }
        AdminCommand::EnqueueTestJobs {
            count,
            work_ms,
            prefix,
            o,
        } => {
            let s = open(&o).await?;
            let created = admin::enqueue_test_jobs(&s, &prefix, count, work_ms).await?;
            serde_json::json!({ "enqueued": created })
        }
    };
    println!("{out}");
    Ok(())
}
