//! Why a node could not start.

use std::net::SocketAddr;

/// See the module docs.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or read.
    #[error("{what}: {reason}")]
    Store { what: String, reason: String },
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A part of the node could not be started.
    #[error("cannot start {what}: {reason}")]
    Part { what: &'static str, reason: String },
}

impl StartError {
    /// The store failed while `what`.
    pub(crate) fn store(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Store {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
