//! `ikd serve`: finished runs behind HTTP (the service itself is the `ikd-serve` crate).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use ikd::KernelPolicy;
use ikd_serve::{Reloader, RunSpec, ServeConfig, Server, TlsFiles};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per event for people.
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

#[derive(Args)]
pub struct ServeArgs {
    /// A finished run to serve: DIR (named after its folder in the URLs) or NAME=DIR; repeat for
    /// several runs.
    #[arg(long = "run", required = true, value_name = "[NAME=]DIR")]
    runs: Vec<String>,
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Access tokens, one a line: TOKEN or NAME TOKEN (the name is what logs and metrics show).
    /// Every route but /healthz and /readyz then needs `Authorization: Bearer TOKEN`. The file
    /// must be readable by its owner only; SIGHUP reads it again.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain; SIGHUP reads it again.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve /metrics on this address (no token; HTTPS with --tls-cert) instead of --addr.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// cpu or cuda:N for every run (default: each run's own).
    #[arg(long)]
    device: Option<String>,
    /// Most images scored in one call of the network.
    #[arg(long, default_value_t = ServeConfig::default().max_batch)]
    max_batch: usize,
    /// Longest time (ms) the first image of a batch waits for more.
    #[arg(long, default_value_t = ServeConfig::default().max_wait.as_millis() as u64)]
    max_wait_ms: u64,
    /// Images each run's queue holds; requests beyond get 503 with Retry-After.
    #[arg(long, default_value_t = ServeConfig::default().queue)]
    queue: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = ServeConfig::default().body_limit)]
    body_limit: usize,
    /// A score request not answered in this many ms gets 504.
    #[arg(long, default_value_t = ServeConfig::default().request_timeout.as_millis() as u64)]
    timeout_ms: u64,
    /// Log lines as text or JSON (level from RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Waits for SIGINT or SIGTERM; a second one exits at once with status 130.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) =
            (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            tracing::error!("cannot install the SIGINT/SIGTERM handlers");
            return std::future::pending().await;
        };
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        tokio::spawn(async move {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            eprintln!("second signal: exiting without answering the queued requests");
            std::process::exit(ikd_cli::EXIT_INTERRUPTED.into());
        });
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reads the token file and the certificate again on each SIGHUP (the handler is in place when
/// this returns); a file that cannot be read or is wrong is logged and the previous ones stay in
/// force.
fn reload_on_sighup(reloader: Reloader) -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if let Err(e) = reloader.reload() {
                    tracing::error!(
                        "SIGHUP: {e}; the previous tokens and certificate stay in force"
                    );
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reloader;
    Ok(())
}

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    let runs = args.runs.iter().map(|r| RunSpec::parse(r)).collect::<Result<Vec<_>, _>>()?;
    let config = ServeConfig {
        device: args.device,
        kernels: KernelPolicy::from_env(),
        max_batch: args.max_batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        queue: args.queue,
        body_limit: args.body_limit,
        request_timeout: Duration::from_millis(args.timeout_ms),
        token_file: args.token_file,
        tls: args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles { cert, key }),
        metrics_addr: args.metrics_addr,
        ..ServeConfig::new(runs)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ikd-serve-http")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let server = Server::bind(config, args.addr.as_str())
            .await
            .with_context(|| format!("serving on {}", args.addr))?;
        reload_on_sighup(server.reloader())?;
        let scheme = if server.is_tls() { "https" } else { "http" };
        println!("listening on {scheme}://{}", server.local_addr());
        if let Some(m) = server.metrics_addr() {
            println!("metrics on {scheme}://{m}/metrics");
        }
        let signal = termination();
        tokio::pin!(signal);
        let ready = tokio::select! {
            r = server.ready() => Some(r),
            () = &mut signal => None,
        };
        match ready {
            Some(Ok(())) => {
                let names: Vec<String> = server.runs().into_iter().map(|r| r.name).collect();
                println!("ready: {}", names.join(", "));
                server.shutdown_on(signal).await?;
            }
            Some(Err(e)) => {
                let _ = server.shutdown().await;
                return Err(e.into());
            }
            None => server.shutdown().await?,
        }
        eprintln!("stopped: every accepted request was answered");
        Ok(ExitCode::SUCCESS)
    })
}
