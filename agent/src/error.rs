//! The agent library's single error type.

/// Every error the agent's library code returns.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration (file, environment or flags) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The durable queue could not read or write its files.
    #[error("queue: {0}")]
    Queue(String),
    /// Binding or serving a listener failed.
    #[error("server: {0}")]
    Serve(String),
    /// Talking to the collector failed in a way that is not retried.
    #[error("collector: {0}")]
    Collector(String),
}
