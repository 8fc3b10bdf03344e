//! `smeshfleet worker`: the rig agent. Discovers devices, enrolls (once), then leases and runs jobs
//! until SIGINT/SIGTERM, which hands back what it holds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::CliError;
use post::pow::RandomXMode;
use worker::agent::{self, AgentOptions};
use worker::discovery::{self, DiscoveryOptions, GpuSelection};
use worker::exec::ExecConfig;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinator's URL, e.g. http://10.0.0.2:7777.
    #[arg(long, env = "SMESHFLEET_COORDINATOR")]
    pub coordinator: String,
    /// One-time join token (`POST /api/v1/workers/join-tokens`); needed on the first start only.
    #[arg(long, env = "SMESHFLEET_JOIN_TOKEN")]
    pub join_token: Option<String>,
    /// Where the worker keeps its enrollment and credential (0600).
    #[arg(long, env = "SMESHFLEET_WORKER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// A directory on a disk to store PoST data in; repeat for every disk.
    #[arg(long = "disk")]
    pub disks: Vec<PathBuf>,
    /// GPUs to use: all, none, or indices like 0,2.
    #[arg(long, default_value = "all")]
    pub gpus: String,
    /// Most CPU threads to use (default: all).
    #[arg(long)]
    pub cpu_threads: Option<u32>,
    /// Let the CPU compute labels (about 1000x slower than a GPU; on for rigs without one).
    #[arg(long)]
    pub cpu_init: bool,
    /// The rig's name as operators see it (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Skip the start-up measurements (rates are then reported as 0).
    #[arg(long)]
    pub no_measure: bool,
    /// Seconds each start-up measurement runs.
    #[arg(long, default_value_t = 1.0)]
    pub measure_seconds: f64,
    /// Size of each disk's write/read test file, MiB.
    #[arg(long, default_value_t = 64)]
    pub disk_test_mib: u64,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 5)]
    pub heartbeat_seconds: u64,
    /// Run RandomX (k2pow) in light mode: no 2 GiB dataset, much slower hashes, the same pows.
    /// For tests and small machines.
    #[arg(long)]
    pub randomx_light: bool,
}

pub fn run(args: WorkerArgs) -> Result<ExitCode, CliError> {
    let gpus: GpuSelection = args
        .gpus
        .parse()
        .map_err(|e| CliError::input(false, anyhow::anyhow!("--gpus: {e}")))?;
    if args.heartbeat_seconds == 0 {
        return Err(CliError::input(
            false,
            anyhow::anyhow!("--heartbeat-seconds must be at least 1"),
        ));
    }
    let no_gpu = matches!(gpus, GpuSelection::None);
    let dopts = DiscoveryOptions {
        disks: args.disks.clone(),
        gpus,
        cpu_threads: args.cpu_threads,
        cpu_init: args.cpu_init || no_gpu,
        measure: !args.no_measure,
        measure_seconds: args.measure_seconds,
        disk_test_bytes: args.disk_test_mib << 20,
        ..DiscoveryOptions::default()
    };
    eprintln!(
        "discovering devices{}",
        if dopts.measure { " and measuring them" } else { "" }
    );
    let caps = discovery::discover(&dopts)
        .context("discovering this rig's devices")
        .map_err(|e| CliError::input(false, e))?;
    let threads = caps.cpu.threads.max(1) as usize;
    let opts = AgentOptions {
        coordinator: args.coordinator,
        join_token: args.join_token,
        data_dir: args.data_dir,
        name: args.name.unwrap_or_else(discovery::hostname),
        cpu_threads: threads,
        capabilities: caps,
        heartbeat_interval: Duration::from_secs(args.heartbeat_seconds),
        lease_poll: Duration::from_millis(500),
        progress_interval: Duration::from_secs(2),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(|e| CliError::runtime(false, e))?;
    let exec = ExecConfig {
        randomx_mode: if args.randomx_light {
            RandomXMode::Light
        } else {
            RandomXMode::Fast
        },
        ..ExecConfig::default()
    };
    rt.block_on(agent::run_with(opts, exec, super::coordinator::shutdown_signal()))
        .map_err(|e| CliError::runtime(false, e))?;
    Ok(ExitCode::SUCCESS)
}
