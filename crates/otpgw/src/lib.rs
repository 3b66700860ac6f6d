//! The `otpgw` binary's library: configuration, assembly of the gateway, and the
//! commands (`serve`, `check-config`, `sim`, `demo`, `bench`, `bench-http`,
//! `soak`). `main.rs` only parses
//! the command line and calls into here.

pub mod assurance;
pub mod bench;
pub mod bench_http;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod ops;
pub mod soak;

pub use config::Config;
pub use gateway::Gateway;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (brand, carrier, ids).
    Json,
}

/// Install the log subscriber on stderr: `RUST_LOG` or `info`. Logs never carry
/// message text, passwords or full phone numbers (types that hold them redact their
/// `Debug`, and no code logs them).
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => b.with_ansi(ansi).try_init(),
        LogFormat::Json => b.json().with_current_span(true).try_init(),
    };
}
