//! The `otpgw` binary's library: configuration, assembly of the gateway, and the
//! commands (`serve`, `check-config`, `sim`, `demo`, `bench`). `main.rs` only parses
//! the command line and calls into here.

pub mod bench;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod ops;

pub use config::Config;
pub use gateway::Gateway;

/// Install the log subscriber: `RUST_LOG` or `info`. Logs never carry message text,
/// passwords or full phone numbers (types that hold them redact their `Debug`).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
