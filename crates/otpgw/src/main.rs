//! The `otpgw` command line: parses it, loads the configuration, installs the log
//! subscriber, handles signals, and calls into the libraries (`otpgw-node` serves,
//! `otpgw-lab` runs the demo, the simulator, the load generators and the campaigns).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use otpgw_node::{Config, Gateway, LogFormat};

/// mimalloc instead of the system allocator: the hot path allocates and frees small
/// buffers on one thread and drops them on another, where glibc malloc spent a
/// quarter of the gateway's CPU (see docs/benchmarks.md, "Where the time goes").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "otpgw",
    version,
    about = "SMS one-time-password gateway speaking SMPP"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway with a configuration file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and exit (0 when valid).
    CheckConfig { file: PathBuf },
    /// Read a brand password from standard input (one line) and print its argon2id
    /// hash for `password_hash` in the config. Never pass a password as an argument.
    HashPassword,
    /// Make a new HTTP API key (32 random bytes): prints the key (give it to the
    /// brand) and its hash (for `api_key_hash`; the key itself is never stored).
    NewApiKey,
    /// Print the HTTP API's OpenAPI 3 document (docs/openapi.json).
    Openapi,
    /// Seal every stored record again with the active key of [store.encryption]
    /// (run with the gateway stopped), so an older key can then be removed.
    Rekey {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The audit log of admin changes.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Run the gateway with an in-process simulated carrier on 127.0.0.1:2775 (demo/demo).
    Demo {
        #[arg(long, default_value = "127.0.0.1:2775")]
        listen: SocketAddr,
        /// The HTTP API (brand `demo`, key `demo-key`).
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Messages pushed through at start to show the path works (0: none).
        #[arg(long, default_value_t = 1000)]
        selftest: u64,
        /// Exit after the self-test.
        #[arg(long)]
        exit: bool,
    },
    /// Run a simulated carrier SMSC.
    Sim(otpgw_lab::sim::SimArgs),
    /// Brand-side load generator.
    Bench(otpgw_lab::bench::BenchArgs),
    /// Load generator for the HTTP API (messages or verifications).
    BenchHttp(otpgw_lab::bench_http::BenchHttpArgs),
    /// The fraud guard's simulator: the demo gateway under honest users who type
    /// their codes and an SMS-pumping attack on random numbers of some prefixes.
    Pumping(otpgw_lab::pumping::PumpingArgs),
    /// Fault campaign: real gateway processes under load while nodes are killed,
    /// carrier links flap, stall and slow down, the disk fills and Redis restarts;
    /// an independent ledger checks nothing acknowledged was lost.
    Soak(otpgw_lab::soak::SoakArgs),
    /// Redis failover campaign (scripts/failover.sh): a primary, two replicas and
    /// three Sentinels under two nodes' load; primaries are killed or stopped and
    /// replicas promoted; an independent ledger checks nothing acknowledged was lost.
    Failover(otpgw_lab::soak::failover::FailoverArgs),
    /// Live-server fuzz: mutated PDUs over sockets at a real `otpgw serve`; every
    /// batch must end answered or closed, and the server must live on and serve.
    FuzzLive(otpgw_lab::soak::fuzz_live::FuzzLiveArgs),
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain of an audit log: exits 0 and prints its line count and
    /// head hash when it holds, non-zero naming the first line that breaks it.
    Verify {
        file: PathBuf,
        /// The head hash kept elsewhere (`GET /admin/audit`, the log): the file's
        /// must equal it, which catches lines cut from its end.
        #[arg(long)]
        head: Option<String>,
    },
}

fn audit_verify(file: &std::path::Path, head: Option<&str>) -> ExitCode {
    match otpgw_node::audit::verify_hex(file) {
        Ok((lines, got)) => {
            if let Some(want) = head
                && !want.eq_ignore_ascii_case(&got)
            {
                eprintln!(
                    "{}: the chain holds for {lines} lines but its head {got} is not {want}: lines were cut from its end",
                    file.display()
                );
                return ExitCode::FAILURE;
            }
            println!("{}: ok, {lines} lines, head {got}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Audit {
        cmd: AuditCmd::Verify { file, head },
    } = &cli.cmd
    {
        return audit_verify(file, head.as_deref());
    }
    if let Cmd::HashPassword = &cli.cmd {
        return hash_password();
    }
    if let Cmd::NewApiKey = &cli.cmd {
        return match otpgw_http::auth::new_api_key() {
            Ok((key, hash)) => {
                println!("key:  {key}");
                println!("hash: {hash}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("no randomness: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Openapi = &cli.cmd {
        print!("{}", otpgw_http::openapi::json());
        return ExitCode::SUCCESS;
    }
    if let Cmd::CheckConfig { file } = &cli.cmd {
        return match Config::load(file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    // `serve` logs in the format its config asks for; the other commands in text.
    let format = match &cli.cmd {
        Cmd::Serve { config } => Config::load(config)
            .map(|c| c.log.format)
            .unwrap_or_default(),
        _ => LogFormat::Text,
    };
    init_logs(format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::CheckConfig { .. }
        | Cmd::HashPassword
        | Cmd::NewApiKey
        | Cmd::Openapi
        | Cmd::Audit { .. } => Ok(()),
        Cmd::Rekey { config } => {
            let cfg = Config::load(&config)?;
            let done = otpgw_node::rekey(&cfg).await?;
            println!("{}: {done}", cfg.store.path.display());
            Ok(())
        }
        Cmd::Serve { config } => {
            let cfg = Config::load(&config)?;
            let gw = Gateway::start(&cfg).await?;
            serve_until_stopped(&gw, &config).await;
            tracing::info!("shutting down");
            gw.shutdown().await;
            Ok(())
        }
        Cmd::Demo {
            listen,
            http,
            selftest,
            exit,
        } => Ok(otpgw_lab::demo::run(otpgw_lab::demo::DemoOptions {
            listen,
            http,
            selftest,
            exit_after_selftest: exit,
        })
        .await?),
        Cmd::Sim(args) => Ok(otpgw_lab::sim::run(args, shutdown_signal()).await?),
        Cmd::Bench(args) => Ok(otpgw_lab::bench::run(args).await?),
        Cmd::BenchHttp(args) => Ok(otpgw_lab::bench_http::run(args).await?),
        Cmd::Pumping(args) => Ok(otpgw_lab::pumping::run(args).await?),
        Cmd::Soak(args) => Ok(otpgw_lab::soak::run(args).await?),
        Cmd::Failover(args) => Ok(otpgw_lab::soak::failover::run(args).await?),
        Cmd::FuzzLive(args) => Ok(otpgw_lab::soak::fuzz_live::run(args).await?),
    }
}

/// Run until Ctrl-C or SIGTERM; on SIGHUP reload the configuration file, keeping
/// the old configuration when the new one is invalid.
async fn serve_until_stopped(gw: &Gateway, path: &std::path::Path) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            loop {
                tokio::select! {
                    _ = shutdown_signal() => return,
                    _ = hup.recv() => reload(gw, path),
                }
            }
        }
    }
    shutdown_signal().await;
}

fn reload(gw: &Gateway, path: &std::path::Path) {
    match Config::load(path) {
        Ok(new) => match gw.reload(&new) {
            Ok(restart) => {
                tracing::info!("configuration reloaded");
                for r in restart {
                    tracing::warn!(change = %r, "this change takes effect after a restart");
                }
            }
            Err(e) => tracing::error!(error = %e, "reload refused; old configuration kept"),
        },
        Err(e) => {
            gw.record("reload", "invalid");
            tracing::error!(error = %e, "new configuration invalid; old configuration kept");
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `otpgw hash-password`: one line from stdin, its hash on stdout.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        eprintln!("could not read the password from standard input");
        return ExitCode::FAILURE;
    }
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.is_empty() || pw.len() > 8 || !pw.is_ascii() {
        eprintln!("a brand password must be 1 to 8 ASCII characters (SMPP limit)");
        return ExitCode::FAILURE;
    }
    match otpgw_accept::auth::hash_password(pw) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hashing failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Install the log subscriber on stderr: `RUST_LOG` or `info`. Logs never carry
/// message text, passwords or full phone numbers (types that hold them redact their
/// `Debug`, and no code logs them).
fn init_logs(format: LogFormat) {
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
