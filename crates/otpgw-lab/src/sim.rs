//! `otpgw sim`: a simulated carrier SMSC from the command line, until a signal.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{LabError, Result};

/// The options of `otpgw sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    #[arg(long, default_value = "127.0.0.1:2776")]
    pub listen: SocketAddr,
    /// Required credentials as system_id:password (any are accepted when absent).
    #[arg(long)]
    pub credentials: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub receipt_delay_ms: u64,
    /// Outcome weights delivered:undeliverable:expired.
    #[arg(long, default_value = "100:0:0")]
    pub outcomes: String,
    /// Submits per second across binds; above it ESME_RTHROTTLED.
    #[arg(long)]
    pub rate_cap: Option<u32>,
    /// Per-prefix behaviour for a share of messages: PREFIX:PERCENT:drop (lose
    /// the receipt), :undeliv, or :delay=MS (repeatable; the first that applies).
    #[arg(long)]
    pub rule: Vec<String>,
    /// Serve SMPP over TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Require clients to present a certificate signed by these PEM roots (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
}

impl SimArgs {
    /// The simulator's settings these options ask for.
    pub fn sim_config(&self) -> Result<otpgw_sim::SimConfig> {
        let mut c = otpgw_sim::SimConfig::new(self.listen);
        c.credentials = self.credentials.as_ref().and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        });
        c.receipt_delay = Duration::from_millis(self.receipt_delay_ms);
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            c.tls = Some(
                otpgw_accept::tls::server_config_with_clients(
                    cert,
                    key,
                    self.tls_client_ca.as_deref(),
                )
                .map_err(LabError::Usage)?,
            );
        }
        let w: Vec<u32> = self
            .outcomes
            .split(':')
            .map(|x| x.parse())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| LabError::Usage("--outcomes takes numbers".into()))?;
        let [delivered, undeliverable, expired] = w[..] else {
            return Err(LabError::Usage(
                "--outcomes takes delivered:undeliverable:expired".into(),
            ));
        };
        c.outcomes = otpgw_sim::Outcomes {
            delivered,
            undeliverable,
            expired,
        };
        c.rate_cap = self.rate_cap;
        c.rules = self
            .rule
            .iter()
            .map(|r| otpgw_sim::Rule::parse(r))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| LabError::Usage(format!("--rule {e}")))?;
        Ok(c)
    }
}

/// Run the simulator until `stop` resolves, then print what it did.
pub async fn run(args: SimArgs, stop: impl Future<Output = ()>) -> Result<()> {
    let c = args.sim_config()?;
    let sim = otpgw_sim::SimHandle::start(c)
        .await
        .map_err(|e| LabError::io(format!("listening on {}", args.listen), e))?;
    println!("simulated carrier listening on {}", sim.addr());
    stop.await;
    println!(
        "received {} messages, sent {} receipts",
        sim.received(),
        sim.receipts_sent()
    );
    sim.shutdown();
    Ok(())
}
