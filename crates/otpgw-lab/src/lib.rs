//! What drives an otpgw gateway from outside, behind the binary's commands:
//!
//! - [`demo`]: `otpgw demo`, a gateway with a simulated carrier in one process;
//! - [`bench`]: `otpgw bench`, the brand-side SMPP load generator's report
//!   (progress bar, percentiles, SVG chart);
//! - [`bench_http`]: `otpgw bench-http`, the same for the HTTP API;
//! - [`sim`]: `otpgw sim`, a simulated carrier from the command line;
//! - [`soak`]: `otpgw soak`, the fault campaign against real `otpgw serve`
//!   processes, checked by an independent ledger, and `otpgw fuzz-live`.

pub mod bench;
pub mod bench_http;
pub mod demo;
pub mod pumping;
pub mod sim;
pub mod soak;

/// Why a command of this crate failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// An option out of range, or options that do not go together.
    #[error("{0}")]
    Usage(String),
    /// A file or socket.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The gateway under test would not start.
    #[error(transparent)]
    Gateway(#[from] otpgw_node::StartError),
    /// The run itself failed, or found a fault (the report says which).
    #[error("{0}")]
    Failed(String),
}

impl LabError {
    /// An IO error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// The result of a command of this crate.
pub type Result<T> = std::result::Result<T, LabError>;

impl From<std::io::Error> for LabError {
    fn from(source: std::io::Error) -> Self {
        Self::io("input/output", source)
    }
}

impl From<otpgw_sim::loadgen::LoadError> for LabError {
    fn from(e: otpgw_sim::loadgen::LoadError) -> Self {
        Self::Failed(format!("load run: {e}"))
    }
}

impl From<tokio::task::JoinError> for LabError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Failed(format!("a task of the run failed: {e}"))
    }
}

impl From<serde_json::Error> for LabError {
    fn from(e: serde_json::Error) -> Self {
        Self::Failed(format!("JSON report: {e}"))
    }
}

/// Say what failed: a result's error, or a missing value, becomes
/// [`LabError::Failed`] naming `what`.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|e| LabError::Failed(format!("{what}: {e}")))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: &str) -> Result<T> {
        self.ok_or_else(|| LabError::Failed(what.to_string()))
    }
}

/// Refuse options out of range: `Err(LabError::Usage)` with `why`.
pub(crate) fn usage<T>(why: impl Into<String>) -> Result<T> {
    Err(LabError::Usage(why.into()))
}
