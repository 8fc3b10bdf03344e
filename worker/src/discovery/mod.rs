//! What the rig has: GPUs (NVML, loaded at run time), CPU, disks; and what they measure.
//!
//! [`discover`] runs once at start: it checks every `--disk` directory (creating it if missing),
//! lists the GPUs and the CPU, and, with [`DiscoveryOptions::measure`], measures what the
//! scheduler plans with: CPU labels/s at the identity's scrypt N, RandomX hashes/s (fast-mode
//! rate), proving MiB/s at 16 nonces, and each disk's sequential write and read MB/s. With
//! `measure: false` every rate is 0 ("not measured") and discovery takes milliseconds.
//! [`refresh`] is the cheap heartbeat update: free space and GPU telemetry, no benchmarks.
//!
//! Everything here blocks (benchmarks run for seconds): async callers use
//! `tokio::task::spawn_blocking`.

pub mod cpu;
pub mod disk;
pub mod gpu;

use std::path::{Path, PathBuf};
use std::time::Duration;

use post::pow::RandomXMode;
use protocol::{Capabilities, CpuInfo};

pub use cpu::{RandomXRate, RANDOMX_LIGHT_TO_FAST};
pub use disk::{DiskProbe, DiskSpeed};
pub use gpu::{discover_gpus, sample_gpu_telemetry, GpuProbe, GpuSelection, GpuSelectionError};

/// What to discover and how long to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryOptions {
    /// The `--disk` directories (created if missing).
    pub disks: Vec<PathBuf>,
    /// Which GPUs the worker may use; the others are reported with `enabled = false`.
    pub gpus: GpuSelection,
    /// At most this many CPU threads (`--cpu-threads`); `None` or `Some(0)` = all.
    pub cpu_threads: Option<u32>,
    /// Whether the CPU may compute labels (reported as `init_enabled`).
    pub cpu_init: bool,
    /// Run the benchmarks; when false every rate is reported as 0.
    pub measure: bool,
    /// Scrypt N of the label measurement (the identities' N; 8192 on mainnet).
    pub scrypt_n: u32,
    /// About how long each measurement runs, in seconds (labels, RandomX, proving, and each
    /// phase of each disk test).
    pub measure_seconds: f64,
    /// Size of each disk's write-then-read test file, in bytes.
    pub disk_test_bytes: u64,
    /// RandomX mode of the k2pow measurement: `Light` (default) is quick and converted to a
    /// fast-mode estimate with [`RANDOMX_LIGHT_TO_FAST`]; `Fast` builds the 2 GiB dataset (a
    /// minute or more) and measures the real rate.
    pub randomx_mode: RandomXMode,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            disks: Vec::new(),
            gpus: GpuSelection::All,
            cpu_threads: None,
            cpu_init: false,
            measure: true,
            scrypt_n: 8192,
            measure_seconds: 2.0,
            disk_test_bytes: 256 << 20,
            randomx_mode: RandomXMode::Light,
        }
    }
}

impl DiscoveryOptions {
    fn check(&self) -> Result<Duration, DiscoveryError> {
        if self.scrypt_n < 2 || !self.scrypt_n.is_power_of_two() {
            return Err(DiscoveryError::BadOption {
                option: "scrypt_n",
                why: format!("{} is not a power of two >= 2", self.scrypt_n),
            });
        }
        if !(self.measure_seconds.is_finite() && self.measure_seconds > 0.0 && self.measure_seconds <= 3600.0)
        {
            return Err(DiscoveryError::BadOption {
                option: "measure_seconds",
                why: format!("{} is not in (0, 3600]", self.measure_seconds),
            });
        }
        if self.disk_test_bytes == 0 {
            return Err(DiscoveryError::BadOption {
                option: "disk_test_bytes",
                why: "must be > 0".into(),
            });
        }
        Ok(Duration::from_secs_f64(self.measure_seconds))
    }
}

/// Why discovery failed: the step, and the path for disk steps.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("invalid discovery option {option}: {why}")]
    BadOption { option: &'static str, why: String },
    #[error("disk {path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error("disk {path}: creating the directory: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("disk {path}: resolving the path: {source}")]
    Canonicalize { path: PathBuf, source: std::io::Error },
    #[error("disk {path}: creating a file there: {source}")]
    NotWritable { path: PathBuf, source: std::io::Error },
    #[error("disk {path}: no mounted file system contains it")]
    NoFileSystem { path: PathBuf },
    #[error("disk {path}: listed twice (also as {other})")]
    DuplicateDisk { path: PathBuf, other: PathBuf },
    #[error("disk {path}: write test: {source}")]
    WriteTest { path: PathBuf, source: std::io::Error },
    #[error("disk {path}: read test: {source}")]
    ReadTest { path: PathBuf, source: std::io::Error },
    #[error("cpu: measuring labels/s: {0}")]
    LabelBench(#[source] post::backend::BackendError),
    #[error("cpu: measuring proving throughput: {0}")]
    ProvingBench(#[source] post::prove::ProveError),
}

impl DiscoveryError {
    /// The disk path the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DiscoveryError::NotADirectory { path }
            | DiscoveryError::CreateDir { path, .. }
            | DiscoveryError::Canonicalize { path, .. }
            | DiscoveryError::NotWritable { path, .. }
            | DiscoveryError::NoFileSystem { path }
            | DiscoveryError::DuplicateDisk { path, .. }
            | DiscoveryError::WriteTest { path, .. }
            | DiscoveryError::ReadTest { path, .. } => Some(path),
            DiscoveryError::BadOption { .. }
            | DiscoveryError::LabelBench(_)
            | DiscoveryError::ProvingBench(_) => None,
        }
    }
}

/// The rig's capabilities, loading NVML for this call. See [`discover_with`].
pub fn discover(opts: &DiscoveryOptions) -> Result<Capabilities, DiscoveryError> {
    discover_with(opts, &GpuProbe::new())
}

/// The rig's capabilities with an already loaded [`GpuProbe`] (keep it for [`refresh`]).
///
/// Disks come first, so a bad `--disk` fails before any benchmark runs. A RandomX measurement
/// that fails (for instance the 256 MiB cache cannot be allocated) is logged and reported as 0,
/// which tells the scheduler this rig does no k2pow; every other failure is an error.
pub fn discover_with(opts: &DiscoveryOptions, gpus: &GpuProbe) -> Result<Capabilities, DiscoveryError> {
    let duration = opts.check()?;
    let disks = discover_disks(opts)?;
    let threads = cpu::cpu_threads(opts.cpu_threads);
    let mut cpu = CpuInfo {
        threads,
        init_enabled: opts.cpu_init,
        ..CpuInfo::default()
    };
    if opts.measure {
        cpu.labels_per_s =
            cpu::measure_labels(threads, opts.scrypt_n, duration).map_err(DiscoveryError::LabelBench)?;
        cpu.randomx_hashes_per_s = match cpu::measure_randomx(threads, opts.randomx_mode, duration) {
            Ok(r) => {
                tracing::info!(
                    mode = ?r.mode,
                    measured = r.measured,
                    fast = r.fast_equivalent,
                    "RandomX measured"
                );
                r.fast_equivalent
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot measure RandomX: reporting no k2pow on this rig");
                0.0
            }
        };
        cpu.proving_mib_s_per_16_nonces =
            cpu::measure_proving(threads, duration).map_err(DiscoveryError::ProvingBench)?;
        tracing::info!(
            threads,
            labels_per_s = cpu.labels_per_s,
            scrypt_n = opts.scrypt_n,
            proving_mib_s = cpu.proving_mib_s_per_16_nonces,
            "CPU measured"
        );
    }
    Ok(Capabilities {
        hostname: hostname(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        gpus: gpus.discover(&opts.gpus),
        cpu,
        disks: disks.into_iter().map(|d| d.info).collect(),
        paused: false,
        stream_url: None,
    })
}

/// Probe (and with `measure`, time) every `--disk` directory, in order. The [`DiskProbe`]s keep
/// each directory's canonical path beside its id, for the executors.
pub fn discover_disks(opts: &DiscoveryOptions) -> Result<Vec<DiskProbe>, DiscoveryError> {
    let duration = opts.check()?;
    let mounts = disk::all_mounts();
    let mut out: Vec<DiskProbe> = Vec::new();
    for path in &opts.disks {
        let mut probe = disk::probe_disk(path, &mounts)?;
        if let Some(other) = out
            .iter()
            .find(|d| d.dir == probe.dir || d.info.id == probe.info.id)
        {
            return Err(DiscoveryError::DuplicateDisk {
                path: path.clone(),
                other: other.dir.clone(),
            });
        }
        if opts.measure {
            // Leave room: never fill a disk to measure it.
            let known = probe.info.capacity_bytes > 0;
            if known && probe.info.free_bytes < opts.disk_test_bytes.saturating_mul(2) {
                tracing::warn!(
                    disk = %probe.dir.display(),
                    free = probe.info.free_bytes,
                    "too little free space to measure the disk; its speed is reported as unknown"
                );
            } else {
                let s = disk::measure_disk(&probe.dir, opts.disk_test_bytes, duration)?;
                tracing::info!(
                    disk = %probe.dir.display(),
                    physical_device = %probe.info.physical_device,
                    write_mb_s = s.write_mb_s,
                    read_mb_s = s.read_mb_s,
                    read_direct = s.read_direct,
                    bytes = s.bytes,
                    "disk measured"
                );
                probe.info.write_mb_s = s.write_mb_s;
                probe.info.read_mb_s = s.read_mb_s;
            }
        }
        out.push(probe);
    }
    Ok(out)
}

/// The heartbeat update: GPU temperature, power and utilization, and each disk's capacity and
/// free space (looked up by the mount its directory lives on). No benchmarks; milliseconds.
pub fn refresh(caps: &mut Capabilities, gpus: &GpuProbe) {
    gpus.sample_telemetry(&mut caps.gpus);
    let mounts = disk::sysinfo_mounts();
    for d in caps.disks.iter_mut() {
        let found = disk::longest_mount_prefix(
            Path::new(&d.mount),
            mounts.iter().map(|m| m.mount_point.as_path()),
        )
        .and_then(|i| mounts.get(i));
        if let Some(m) = found {
            d.capacity_bytes = m.capacity_bytes.unwrap_or(d.capacity_bytes);
            d.free_bytes = m.free_bytes.unwrap_or(d.free_bytes);
        }
    }
}

/// This machine's host name: the kernel's (`uname`), else `/etc/hostname`, else "unknown".
pub fn hostname() -> String {
    sysinfo::System::host_name()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string())
}
