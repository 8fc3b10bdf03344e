//! `smeshfleet coordinator`: the fleet's brain, serving the REST API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::CliError;
use crate::api::ApiConfig;
use crate::keystore::KdfParams;
use crate::reconcile::ReconcileConfig;
use crate::service::{self, CoordinatorOptions};

#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Directory for the SQLite database, the keystore and generated secrets (created 0700).
    #[arg(long, env = "SMESHFLEET_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address to serve the API on.
    #[arg(long, env = "SMESHFLEET_LISTEN", default_value = "127.0.0.1:7777")]
    pub listen: SocketAddr,
    /// `postgres://user@host/db` to keep state in PostgreSQL; default: SQLite in the data directory.
    #[arg(long, env = "SMESHFLEET_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the admin token (else SMESHFLEET_ADMIN_TOKEN, else one generated into the data
    /// directory on first start).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the keystore passphrase (else SMESHFLEET_KEYSTORE_PASSPHRASE).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Seconds a job lease lasts without a progress report.
    #[arg(long, env = "SMESHFLEET_LEASE_SECONDS", default_value_t = 120)]
    pub lease_seconds: u64,
    /// Seconds between two reconcile rounds (it also runs on every relevant change).
    #[arg(long, env = "SMESHFLEET_RECONCILE_SECONDS", default_value_t = 2)]
    pub reconcile_seconds: u64,
    /// JSON file with the network's proof parameters, `{"k1", "k2", "pow_difficulty": "<64 hex>"}`
    /// (devnets, tests); default: mainnet (K1 26, K2 37).
    #[arg(long, env = "SMESHFLEET_PROOF_CONFIG")]
    pub proof_config: Option<PathBuf>,
}

/// Reads `--proof-config`.
fn read_proof_config(path: &std::path::Path) -> anyhow::Result<post::proof::ProofConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let params: protocol::ProofParams =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    crate::api::proving::proof_config(&params).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub fn run(args: CoordinatorArgs) -> Result<ExitCode, CliError> {
    if args.lease_seconds == 0 || args.reconcile_seconds == 0 {
        return Err(CliError::input(
            false,
            anyhow::anyhow!("--lease-seconds and --reconcile-seconds must be at least 1"),
        ));
    }
    let proof = match &args.proof_config {
        Some(p) => read_proof_config(p).map_err(|e| CliError::input(false, e))?,
        None => post::proof::ProofConfig::MAINNET,
    };
    let api = ApiConfig {
        lease_ms: args.lease_seconds * 1000,
        proof,
        ..ApiConfig::default()
    };
    let mut reconcile = ReconcileConfig {
        interval: Duration::from_secs(args.reconcile_seconds),
        offline_after_ms: i64::try_from(api.heartbeat_interval_ms.saturating_mul(4)).unwrap_or(i64::MAX),
        ..ReconcileConfig::default()
    };
    // The planner times k2pow (and so when a proving pass may start) by the pow difficulty in use.
    reconcile.scheduler.k2pow_hashes_per_unit_group =
        crate::api::proving::k2pow_hashes_per_unit_group(&proof);
    let opts = CoordinatorOptions {
        data_dir: args.data_dir,
        listen: args.listen,
        database_url: args.database_url,
        admin_token_file: args.admin_token_file,
        passphrase_file: args.passphrase_file,
        admin_token_env: std::env::var("SMESHFLEET_ADMIN_TOKEN").ok(),
        passphrase_env: std::env::var("SMESHFLEET_KEYSTORE_PASSPHRASE").ok(),
        kdf: KdfParams::production(),
        api,
        reconcile,
        node: None,
    };
    let rt = runtime()?;
    rt.block_on(service::run_coordinator(opts, shutdown_signal(), |r| {
        println!("smeshfleet coordinator listening on http://{}", r.addr);
    }))
    .map_err(|e| CliError::runtime(false, e))?;
    Ok(ExitCode::SUCCESS)
}

/// The coordinator's runtime: at least four threads, even on a 2-core machine (a reconcile pass
/// decodes large query results between its awaits, and a request must not wait behind it for a
/// free thread; the kernel time-slices the threads instead, and heartbeats keep their latency),
/// with glibc's malloc arenas capped.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get().max(4));
    crate::reconcile::limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(|e| CliError::runtime(false, e))
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
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
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("shutting down: finishing requests in flight");
}
