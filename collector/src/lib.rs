//! NeuroCloak collector: receives window profiles from agents and keeps them for evaluation.
//!
//! Data flows `ingest → store → evaluate → score → alert → api`:
//! - [`ingest`] authenticates agents ([`auth`]), validates batches and writes them idempotently;
//! - [`store`] is the one storage interface with its SQLite (embedded) and MongoDB backends;
//! - [`schedule`] partitions per-window jobs between collectors with database leases;
//! - [`retention`] deletes what is older than the configured retention;
//! - [`api`] serves health, Prometheus metrics and the read API over HTTP;
//! - [`pipeline`] evaluates closed windows, scores trust and runs alerts; [`api_eval`] serves
//!   their REST routes and the live WebSocket;
//! - [`audit`] keeps the hash-chained audit trail of every state-changing operation;
//! - [`ratelimit`] holds the per-key and per-address budgets [`auth`] applies;
//! - [`server`] wires them into the `serve` command, [`admin`] runs the `admin` commands.

pub mod admin;
pub mod api;
pub mod api_eval;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod ratelimit;
pub mod retention;
pub mod schedule;
pub mod server;
pub mod store;

pub use error::{Error, Result};
