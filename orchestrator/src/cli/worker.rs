//! `smeshfleet worker`: the rig agent. Discovers devices, enrolls (once), then leases and runs jobs
//! until SIGINT/SIGTERM, which hands back what it holds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::CliError;
use post::pow::RandomXMode;
use worker::agent::{self, AgentOptions};
use worker::discovery::{self, DiscoveryOptions, GpuSelection};
use worker::exec::ExecConfig;
use worker::stream::{self, server::Authorizer, server::StreamServer};

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
    /// Never let the CPU compute labels, even with `--gpus none` (a storage-only rig whose disks
    /// other rigs initialize through `--stream-listen`).
    #[arg(long, conflicts_with = "cpu_init")]
    pub no_cpu_init: bool,
    /// Take labels computed by other rigs for this rig's disks on this address (for example
    /// 0.0.0.0:7780); they arrive in BLAKE3-checksummed batches under per-lease tokens the
    /// coordinator checks. Off by default: without it only this rig's own devices initialize its
    /// disks.
    #[arg(long, value_name = "ADDR")]
    pub stream_listen: Option<std::net::SocketAddr>,
    /// The URL other rigs reach `--stream-listen` at, when it is not the listening address (NAT, a
    /// TLS-terminating proxy): e.g. https://rig7.example:443.
    #[arg(long, value_name = "URL", requires = "stream_listen")]
    pub stream_advertise: Option<String>,
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
        cpu_init: !args.no_cpu_init && (args.cpu_init || no_gpu),
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
    let (stream_listen, stream_advertise) = (args.stream_listen, args.stream_advertise.clone());
    rt.block_on(async move {
        let mut opts = opts;
        let server = match stream_listen {
            None => None,
            Some(addr) => {
                if opts.capabilities.disks.is_empty() {
                    anyhow::bail!("--stream-listen needs at least one --disk to store labels on");
                }
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr} (--stream-listen)"))?;
                let bound = listener.local_addr()?;
                let url = match &stream_advertise {
                    Some(u) => u.trim_end_matches('/').to_owned(),
                    None if bound.ip().is_unspecified() => {
                        format!("http://{}:{}", opts.name, bound.port())
                    }
                    None => format!("http://{bound}"),
                };
                opts.capabilities.stream_url = Some(url.clone());
                opts.capabilities
                    .validate()
                    .map_err(|e| anyhow::anyhow!("--stream-advertise: {e}"))?;
                let srv = Arc::new(StreamServer::new(
                    Authorizer::Lazy {
                        coordinator: opts.coordinator.clone(),
                        data_dir: opts.data_dir.clone(),
                    },
                    opts.capabilities.disks.clone(),
                ));
                let stop = Arc::new(tokio::sync::Notify::new());
                let stopped = stop.clone();
                let task = tokio::spawn(stream::server::serve(listener, srv, async move {
                    stopped.notified().await
                }));
                println!("smeshfleet stream endpoint on {bound}, advertised as {url}");
                Some((stop, task))
            }
        };
        let out = agent::run_with(opts, exec, super::coordinator::shutdown_signal()).await;
        if let Some((stop, task)) = server {
            stop.notify_one();
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the stream endpoint failed"),
                Err(e) => tracing::warn!(error = %e, "the stream endpoint task ended abnormally"),
            }
        }
        out
    })
    .map_err(|e| CliError::runtime(false, e))?;
    Ok(ExitCode::SUCCESS)
}
