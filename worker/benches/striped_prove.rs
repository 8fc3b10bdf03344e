//! Proving throughput of one identity striped over ONE and over TWO independent disks.
//!
//! `cargo bench -p worker --bench striped_prove` (as root; prints `SKIPPED: <reason>` and exits 0
//! where loop devices, mounting or cgroup v1 blkio throttling are unavailable).
//!
//! Two independent disks on a machine that has one: two small ext4 images, each attached as a
//! loop device and mounted, the reads of each loop device throttled to the same rate with the
//! cgroup v1 blkio controller (`blkio.throttle.read_bps_device`) while the pass runs (the bench
//! process joins a child cgroup for the pass only). Each pass starts with both file systems
//! unmounted and mounted again, so no label comes from the page cache; the bytes the cgroup saw
//! read from each device are printed next to the pass, as the proof that the disks served them.
//!
//! One identity is initialized (post's initializer, scrypt N = 2: label values do not matter to
//! read throughput) and laid out as the worker lays it out:
//!
//! - `one disk`: every `postdata_<k>.bin` in `<disk A>/smeshfleet/<node id>/`;
//! - `two disks`: the odd files moved to `<disk B>/smeshfleet/<node id>/` (with its own metadata,
//!   `worker::exec::init::ensure_metadata`), then `worker::exec::stripe::sync_home`, which makes
//!   disk A's directory the official one, with links to disk B's files.
//!
//! Each pass is the worker's own prover, `worker::exec::prove::{ProveTask::new, run_prove}`,
//! over the disks as `worker::discovery::disk::probe_disk` reports them (so the physical device
//! of each is its loop device): one reader thread per physical device. K2 is set out of reach
//! so that every pass reads all the data (a real pass stops at the first proof). A last pass over
//! the page cache, unthrottled, shows the scan's CPU ceiling: the throttled figures are only
//! meaningful while well below it.
//!
//! Environment: `STRIPED_BENCH_FILES` (8), `STRIPED_BENCH_FILE_MIB` (16 MiB per file),
//! `STRIPED_BENCH_MBPS` (40 MB/s read per device, 10^6 bytes), `STRIPED_BENCH_RUNS` (3 passes
//! per layout; the table gives the median), `STRIPED_BENCH_NONCES` (16), `STRIPED_BENCH_THREADS`
//! (scan threads, all CPUs), `STRIPED_BENCH_DIR` (where the images go, the temp dir).
//!
//! Everything is undone on exit, also on a panic (a guard): the process leaves the cgroup, the
//! cgroup is removed, the file systems unmounted, the loop devices detached, the images deleted.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use post::backend::CpuBackend;
use post::data::file_name;
use post::initialize::{initialize, InitOptions};
use post::proof::ProofConfig;
use protocol::{DiskInfo, GroupPow, IdentityParams};
use worker::discovery::disk::{all_mounts, dev_major_minor, probe_disk};
use worker::exec::identity_dir;
use worker::exec::init::{ensure_metadata, metadata_for};
use worker::exec::prove::{run_prove, ProveTask};
use worker::exec::stripe::sync_home;

const BLKIO: &str = "/sys/fs/cgroup/blkio";
const MIB: u64 = 1 << 20;
const NODE: [u8; 32] = [0x5a; 32];
const ATX: [u8; 32] = [0x3c; 32];
const SCRYPT_N: u32 = 2;

fn env_or<T: FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| anyhow!("{name}={v:?} does not parse")),
        _ => Ok(default),
    }
}

struct Cfg {
    files: u64,
    file_mib: u64,
    mbps: u64,
    runs: usize,
    nonces: u32,
    threads: usize,
    dir: PathBuf,
}

impl Cfg {
    fn from_env() -> Result<Self> {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let cfg = Cfg {
            files: env_or("STRIPED_BENCH_FILES", 8)?,
            file_mib: env_or("STRIPED_BENCH_FILE_MIB", 16)?,
            mbps: env_or("STRIPED_BENCH_MBPS", 40)?,
            runs: env_or("STRIPED_BENCH_RUNS", 3)?,
            nonces: env_or("STRIPED_BENCH_NONCES", 16)?,
            threads: env_or("STRIPED_BENCH_THREADS", cpus)?,
            dir: env_or("STRIPED_BENCH_DIR", std::env::temp_dir())?,
        };
        if cfg.files < 2 || cfg.file_mib == 0 || cfg.mbps == 0 || cfg.runs == 0 {
            bail!("STRIPED_BENCH_FILES must be at least 2, the file size, rate and runs above 0");
        }
        Ok(cfg)
    }

    fn total_bytes(&self) -> u64 {
        self.files * self.file_mib * MIB
    }
}

/// Runs a command; its stdout, or an error with its stderr.
fn run(cmd: &str, args: &[&OsStr]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Why this machine cannot run the bench, if it cannot.
fn preflight() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("loop devices and cgroup v1 blkio are Linux only".into());
    }
    let euid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    });
    if euid.as_deref() != Some("0") {
        return Some(format!(
            "not root (effective uid {}): loop devices, mounts and blkio throttling need root",
            euid.unwrap_or_else(|| "unknown".into())
        ));
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control (no loop device support)".into());
    }
    if !Path::new(BLKIO).join("blkio.throttle.read_bps_device").exists() {
        return Some(format!(
            "no cgroup v1 blkio throttling ({BLKIO}/blkio.throttle.read_bps_device)"
        ));
    }
    for tool in ["mkfs.ext4", "losetup", "mount", "umount"] {
        if run("sh", &["-c".as_ref(), format!("command -v {tool}").as_ref()]).is_err() {
            return Some(format!("{tool} not found"));
        }
    }
    None
}

/// One throttled disk: an ext4 image on a loop device, mounted.
struct Disk {
    name: &'static str,
    loop_dev: String,
    major_minor: String,
    mount: PathBuf,
    mounted: bool,
}

/// Everything the bench set up, undone when dropped (in reverse order).
struct Rig {
    disks: Vec<Disk>,
    cgroup: Option<PathBuf>,
    in_cgroup: bool,
    // Last: the images go once the loop devices are detached.
    root_dir: tempfile::TempDir,
}

impl Rig {
    fn new(base: &Path) -> Result<Self> {
        std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
        let root = tempfile::Builder::new()
            .prefix("smeshfleet-striped-bench-")
            .tempdir_in(base)
            .context("creating the bench directory")?;
        Ok(Rig {
            disks: Vec::new(),
            cgroup: None,
            in_cgroup: false,
            root_dir: root,
        })
    }

    fn root(&self) -> &Path {
        self.root_dir.path()
    }

    /// A new ext4 image of `bytes`, attached and mounted.
    fn add_disk(&mut self, name: &'static str, bytes: u64) -> Result<()> {
        let img = self.root().join(format!("{name}.img"));
        let mount = self.root().join(format!("disk-{name}"));
        std::fs::create_dir_all(&mount).context("creating the mount point")?;
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(bytes))
            .with_context(|| format!("creating {}", img.display()))?;
        run("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), img.as_os_str()])?;
        let loop_dev = run("losetup", &["-f".as_ref(), "--show".as_ref(), img.as_os_str()])?;
        let rdev = std::fs::metadata(&loop_dev)
            .with_context(|| format!("stat {loop_dev}"))?
            .rdev();
        let (major, minor) = dev_major_minor(rdev);
        self.disks.push(Disk {
            name,
            loop_dev,
            major_minor: format!("{major}:{minor}"),
            mount,
            mounted: false,
        });
        self.mount_all()
    }

    fn mount_all(&mut self) -> Result<()> {
        for d in self.disks.iter_mut().filter(|d| !d.mounted) {
            run(
                "mount",
                &[
                    "-t".as_ref(),
                    "ext4".as_ref(),
                    d.loop_dev.as_ref(),
                    d.mount.as_os_str(),
                ],
            )?;
            d.mounted = true;
        }
        Ok(())
    }

    /// Unmounts and mounts every disk again: their file systems' pages leave the page cache.
    fn remount_all(&mut self) -> Result<()> {
        for d in self.disks.iter_mut().filter(|d| d.mounted) {
            run("umount", &[d.mount.as_os_str()])?;
            d.mounted = false;
        }
        self.mount_all()
    }

    /// A child blkio cgroup reading each loop device at most `bps` bytes per second.
    fn throttle(&mut self, bps: u64) -> Result<()> {
        let cg = Path::new(BLKIO).join(format!("smeshfleet-striped-bench-{}", std::process::id()));
        std::fs::create_dir(&cg).with_context(|| format!("creating the cgroup {}", cg.display()))?;
        self.cgroup = Some(cg.clone());
        let file = cg.join("blkio.throttle.read_bps_device");
        for d in &self.disks {
            std::fs::write(&file, format!("{} {bps}\n", d.major_minor))
                .with_context(|| format!("throttling {} in {}", d.loop_dev, file.display()))?;
        }
        let set = std::fs::read_to_string(&file).context("reading the throttle back")?;
        for d in &self.disks {
            let want = format!("{} {bps}", d.major_minor);
            if !set.lines().any(|l| l.trim() == want) {
                bail!("the throttle of {} did not take: {set:?}", d.loop_dev);
            }
        }
        Ok(())
    }

    fn enter_cgroup(&mut self) -> Result<()> {
        let cg = self.cgroup.as_ref().context("no cgroup")?;
        std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string())
            .context("joining the cgroup")?;
        self.in_cgroup = true;
        Ok(())
    }

    fn leave_cgroup(&mut self) -> Result<()> {
        if self.in_cgroup {
            std::fs::write(
                Path::new(BLKIO).join("cgroup.procs"),
                std::process::id().to_string(),
            )
            .context("leaving the cgroup")?;
            self.in_cgroup = false;
        }
        Ok(())
    }

    /// Bytes the cgroup has read, by loop device.
    fn read_bytes(&self) -> Vec<u64> {
        let stats = self
            .cgroup
            .as_ref()
            .and_then(|cg| std::fs::read_to_string(cg.join("blkio.throttle.io_service_bytes")).ok())
            .unwrap_or_default();
        self.disks
            .iter()
            .map(|d| {
                stats
                    .lines()
                    .filter_map(|l| {
                        let mut w = l.split_whitespace();
                        match (w.next(), w.next(), w.next()) {
                            (Some(mm), Some("Read"), Some(n)) if mm == d.major_minor => n.parse::<u64>().ok(),
                            _ => None,
                        }
                    })
                    .sum()
            })
            .collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Err(e) = self.leave_cgroup() {
            eprintln!("cleanup: {e:#}");
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = std::fs::remove_dir(&cg) {
                eprintln!("cleanup: removing the cgroup {}: {e}", cg.display());
            }
        }
        for d in self.disks.iter().rev() {
            if d.mounted {
                if let Err(e) = run("umount", &[d.mount.as_os_str()]) {
                    eprintln!("cleanup: {e:#}; detaching lazily");
                    let _ = run("umount", &["-l".as_ref(), d.mount.as_os_str()]);
                }
            }
            if let Err(e) = run("losetup", &["-d".as_ref(), d.loop_dev.as_ref()]) {
                eprintln!("cleanup: {e:#}");
            }
        }
    }
}

/// One measured pass.
struct Pass {
    seconds: f64,
    bytes: u64,
    /// Bytes the cgroup saw read, per loop device.
    device_bytes: Vec<u64>,
}

/// A prove pass over `disks` with the worker's prover; throttled (from a cold cache) or not.
fn prove_pass(rig: &mut Rig, cfg: &Cfg, id: &IdentityParams, disks: &[&DiskInfo], throttled: bool) -> Pass {
    let groups = cfg.nonces / 16;
    let pows: Vec<GroupPow> = (0..groups).map(|group| GroupPow { group, pow: 0 }).collect();
    let challenge = hex::encode([0x77u8; 32]);
    // K2 out of reach: no nonce ever qualifies, so every pass reads everything.
    let proof = ProofConfig {
        k1: ProofConfig::MAINNET.k1,
        k2: 1 << 20,
        pow_difficulty: ProofConfig::MAINNET.pow_difficulty,
    };
    if throttled {
        rig.remount_all().expect("remounting (cold page cache)");
    }
    let task =
        ProveTask::new(id, Some(&challenge), 0, cfg.nonces, &pows, disks, cfg.threads).expect("prove task");
    let stop = AtomicBool::new(false);
    let before = rig.read_bytes();
    if throttled {
        rig.enter_cgroup().expect("joining the throttled cgroup");
    }
    let t = Instant::now();
    let result = run_prove(&task, &proof, None, &stop, &|_| {});
    let seconds = t.elapsed().as_secs_f64();
    rig.leave_cgroup().expect("leaving the cgroup");
    let result = result.expect("prove pass");
    assert!(!result.found, "K2 is out of reach: no proof");
    let after = rig.read_bytes();
    Pass {
        seconds,
        bytes: result.labels_read * 16,
        device_bytes: after.iter().zip(&before).map(|(a, b)| a - b).collect(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The physical devices the prover reads `disks` with (one reader each).
fn devices(id: &IdentityParams, disks: &[&DiskInfo]) -> String {
    let task = ProveTask::new(
        id,
        Some(&"00".repeat(32)),
        0,
        16,
        &[GroupPow { group: 0, pow: 0 }],
        disks,
        1,
    )
    .expect("prove task");
    let mut d: Vec<&str> = task.files.iter().map(|f| f.device.as_str()).collect();
    d.sort_unstable();
    d.dedup();
    d.join("+")
}

fn main() {
    let cfg = match Cfg::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("striped_prove: {e:#}");
            std::process::exit(2);
        }
    };
    if let Some(why) = preflight() {
        println!("SKIPPED: {why}");
        return;
    }
    // Arguments (`cargo bench` passes `--bench`, maybe a filter) are ignored.
    let total = cfg.total_bytes();
    let mut rig = match Rig::new(&cfg.dir) {
        Ok(r) => r,
        Err(e) => {
            println!("SKIPPED: {e:#}");
            return;
        }
    };
    // Room for the data plus ext4's own (journal, inode tables); the images are sparse.
    let image = total + total / 8 + 64 * MIB;
    let setup = rig
        .add_disk("a", image)
        .and_then(|()| rig.add_disk("b", image))
        .and_then(|()| rig.throttle(cfg.mbps * 1_000_000));
    if let Err(e) = setup {
        drop(rig);
        println!("SKIPPED: {e:#}");
        return;
    }
    let mounts = all_mounts();
    let probe = |d: &Disk| probe_disk(&d.mount, &mounts).map(|p| p.info);
    let (disk_a, disk_b) = match (probe(&rig.disks[0]), probe(&rig.disks[1])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            drop(rig);
            println!("SKIPPED: probing the loop disks: {e}");
            return;
        }
    };

    let uname = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "machine: nproc {cpus}, kernel {}, load average {}",
        uname.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "disks: {} ({}, {}) and {} ({}, {}), ext4 on loop devices, reads throttled to {} MB/s each (cgroup v1 blkio)",
        rig.disks[0].name,
        rig.disks[0].loop_dev,
        disk_a.physical_device,
        rig.disks[1].name,
        rig.disks[1].loop_dev,
        disk_b.physical_device,
        cfg.mbps
    );

    // The identity: `files` files of `file_mib` MiB, 1 MiB per unit.
    let labels_per_unit = MIB / 16;
    let id = IdentityParams {
        identity_id: uuid::Uuid::nil(),
        node_id: hex::encode(NODE),
        commitment_atx_id: Some(hex::encode(ATX)),
        num_units: u32::try_from(cfg.files * cfg.file_mib).expect("units fit u32"),
        labels_per_unit,
        max_file_size: cfg.file_mib * MIB,
        scrypt_n: SCRYPT_N,
    };
    let dir_a = identity_dir(&disk_a, &id.node_id);
    let dir_b = identity_dir(&disk_b, &id.node_id);
    let mut opts = InitOptions::new(NODE, ATX, id.num_units, labels_per_unit, id.max_file_size);
    opts.scrypt_n = SCRYPT_N as usize;
    let backend = CpuBackend::new(cfg.threads).expect("CPU label backend");
    let t = Instant::now();
    initialize(&dir_a, &opts, &backend, &|_| {}, &AtomicBool::new(false)).expect("initializing");
    println!(
        "identity: {} files x {} MiB = {} MiB, scrypt N = {SCRYPT_N} (initialized in {:.1} s); {} nonces, {} scan threads, {} passes per layout (median)",
        cfg.files,
        cfg.file_mib,
        total / MIB,
        t.elapsed().as_secs_f64(),
        cfg.nonces,
        cfg.threads,
        cfg.runs
    );

    struct Row {
        layout: &'static str,
        disks: usize,
        devices: String,
        passes: Vec<Pass>,
    }
    let measure = |rig: &mut Rig, layout: &'static str, disks: &[&DiskInfo]| -> Row {
        let passes = (0..cfg.runs)
            .map(|_| prove_pass(rig, &cfg, &id, disks, true))
            .collect();
        Row {
            layout,
            disks: disks.len(),
            devices: devices(&id, disks),
            passes,
        }
    };

    // (a) Every file on disk A.
    let one = measure(&mut rig, "one disk", &[&disk_a]);
    // The scan's ceiling: the same pass again from the page cache, unthrottled.
    let _ = prove_pass(&mut rig, &cfg, &id, &[&disk_a], false);
    let cached = prove_pass(&mut rig, &cfg, &id, &[&disk_a], false);

    // (b) The odd files moved to disk B, as the scheduler stripes them; A stays home.
    let md = metadata_for(&id).expect("metadata");
    ensure_metadata(&dir_b, &md).expect("disk B's metadata");
    for k in (1..cfg.files).step_by(2) {
        let (from, to) = (dir_a.join(file_name(k)), dir_b.join(file_name(k)));
        std::fs::copy(&from, &to).expect("copying a file to disk B");
        std::fs::File::open(&to)
            .and_then(|f| f.sync_all())
            .expect("syncing");
        std::fs::remove_file(&from).expect("removing the moved file");
    }
    let synced = sync_home(&[dir_a.clone(), dir_b.clone()], SCRYPT_N as usize).expect("sync_home");
    assert_eq!(synced.home.as_ref(), Some(&dir_a), "disk A holds file 0");
    assert_eq!(
        synced.linked,
        (1..cfg.files).step_by(2).collect::<Vec<_>>(),
        "a link in the home for every file on disk B"
    );
    let two = measure(&mut rig, "two disks", &[&disk_a, &disk_b]);

    println!();
    println!(
        "| layout | disks | physical devices | bytes | seconds | MB/s | runs (MB/s) | read per device (blkio, last run) |"
    );
    println!("|---|---:|---|---:|---:|---:|---|---|");
    let mut rates = Vec::new();
    for row in [&one, &two] {
        let per_run: Vec<f64> = row
            .passes
            .iter()
            .map(|p| p.bytes as f64 / 1e6 / p.seconds)
            .collect();
        let secs = median(row.passes.iter().map(|p| p.seconds).collect());
        let rate = median(per_run.clone());
        rates.push(rate);
        let last = row.passes.last().expect("at least one pass");
        let per_device = rig
            .disks
            .iter()
            .zip(&last.device_bytes)
            .map(|(d, b)| format!("{} {:.1} MB", d.loop_dev, *b as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.1} | {} | {} |",
            row.layout,
            row.disks,
            row.devices,
            last.bytes,
            secs,
            rate,
            per_run
                .iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(" / "),
            per_device
        );
    }
    println!(
        "| one disk, page cache, unthrottled (CPU ceiling) | 1 | {} | {} | {:.2} | {:.1} | | |",
        one.devices,
        cached.bytes,
        cached.seconds,
        cached.bytes as f64 / 1e6 / cached.seconds
    );
    println!();
    println!(
        "two / one: {:.2}x (throttle {} MB/s per device; ideal 2.00x while the scan ceiling is above {} MB/s)",
        rates[1] / rates[0],
        cfg.mbps,
        2 * cfg.mbps
    );
    drop(rig);
}
