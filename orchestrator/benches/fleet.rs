//! Coordinator scale: a simulated fleet heartbeating and leasing against the real
//! `smeshfleet coordinator` process, on SQLite and on PostgreSQL.
//!
//! `CARGO_TARGET_DIR=... cargo bench -p orchestrator --bench fleet` (or `scripts/bench-fleet.sh`).
//!
//! Per backend (SQLite in a temporary data directory; PostgreSQL in a fresh database of a throwaway
//! cluster, skipped with a note when the server binaries are missing):
//! 1. seed the identities through the store (no coordinator lock, before the coordinator starts):
//!    mainnet-sized (4 units of 2^32 labels, 2^32-byte files: 64 files each), random node ids;
//! 2. start the coordinator binary (admin token and passphrase from the environment, `--listen
//!    127.0.0.1:0`, the address read from its "listening" line);
//! 3. enroll the workers over HTTP (join token, then enroll), each a pseudo-random rig: 0-4 GPUs of
//!    one model, a CPU with a RandomX rate, 1-4 disks of 16-64 TB with measured speeds;
//! 4. keep every worker heartbeating (every 10 s) until the reconcile loop has planned the whole
//!    fleet (a pass that changes nothing after the last enrollment; a new fleet is placed over
//!    several passes), then time `build_snapshot_cached` (warm, as the loop's passes are; the
//!    first, cold one too) + `scheduler::plan` in this process on the same database;
//! 5. load: C client tasks over keep-alive HTTP/1.1 connections, for S seconds: heartbeats for
//!    every worker round-robin (every 10th heartbeat of a worker carries its capabilities with
//!    less free space, as a worker does when it changes), and a share of leases (max_jobs 1) by the
//!    GPU rigs; a leased job gets a progress report (the first half of an init range) and a
//!    completion (the second half), under its fencing token. Every request's latency is recorded
//!    (from its scheduled send time when paced);
//! 6. memory of the coordinator process (VmHWM, VmRSS; a PostgreSQL server's is not counted) and
//!    CPU of both processes during the load;
//! 7. SIGTERM, and the coordinator must exit 0.
//!
//! Environment: `FLEET_BENCH_WORKERS` (1000), `FLEET_BENCH_IDENTITIES` (10000),
//! `FLEET_BENCH_CONCURRENCY` (64), `FLEET_BENCH_SECONDS` (20), `FLEET_BENCH_BACKENDS`
//! ("sqlite,postgres"), `FLEET_BENCH_RATE` (total requests/s, paced; default: closed loop, as fast
//! as answered), `FLEET_BENCH_LEASE_RATE` (lease chains/s paced on their own, open loop, each in
//! its own task; the clients then only heartbeat; default: none), `FLEET_BENCH_LEASE_PERCENT` (10), `FLEET_BENCH_CAPS_EVERY` (10: every 10th
//! heartbeat of a worker carries its capabilities; 0: none does), `FLEET_BENCH_PLAN_RUNS` (3),
//! `FLEET_BENCH_SETTLE_SECONDS` (900: the longest wait for the first plan), `FLEET_BENCH_SEED` (1).
//!
//! The load generator shares the machine with the coordinator (and the PostgreSQL server): its CPU
//! share is printed next to the coordinator's.

#[allow(dead_code)]
#[path = "../tests/support/pg.rs"]
mod pg;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use futures::stream::{self, StreamExt};
use orchestrator::reconcile::{build_snapshot_cached, FileCache, ReconcileConfig, ReconcileInputs};
use orchestrator::scheduler;
use orchestrator::store::{NewIdentity, Store};
use protocol::{
    Capabilities, CompleteRequest, CpuInfo, DiskInfo, EnrollResponse, GpuInfo, HeartbeatRequest,
    JobKind as Work, LeaseRequest, LeaseResponse, ProgressRequest, ProgressResponse, RangeDone,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "fleet-bench-admin-token-0123456789abcdef";
const PASSPHRASE: &str = "fleet bench keystore passphrase";
const NUM_UNITS: u32 = 4;
const LABELS_PER_UNIT: u64 = 1 << 32;
const MAX_FILE_SIZE: u64 = 1 << 32;
const TB: u64 = 1_000_000_000_000;
const MB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// Configuration and the machine

struct Cfg {
    workers: usize,
    identities: usize,
    concurrency: usize,
    seconds: u64,
    backends: Vec<String>,
    rate: Option<f64>,
    /// Lease chains per second, paced on their own (open loop) instead of a share of the clients'
    /// operations.
    lease_rate: Option<f64>,
    lease_percent: usize,
    caps_every: usize,
    plan_runs: usize,
    settle: Duration,
    seed: u64,
}

fn env_or<T: FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| anyhow!("{name}={v:?} does not parse")),
        _ => Ok(default),
    }
}

impl Cfg {
    fn from_env() -> Result<Cfg> {
        let backends: String = env_or("FLEET_BENCH_BACKENDS", "sqlite,postgres".to_owned())?;
        let backends: Vec<String> = backends
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        for b in &backends {
            if b != "sqlite" && b != "postgres" {
                bail!("FLEET_BENCH_BACKENDS: unknown backend {b:?} (sqlite, postgres)");
            }
        }
        let rate: f64 = env_or("FLEET_BENCH_RATE", 0.0)?;
        let lease_rate: f64 = env_or("FLEET_BENCH_LEASE_RATE", 0.0)?;
        let cfg = Cfg {
            workers: env_or("FLEET_BENCH_WORKERS", 1000)?,
            identities: env_or("FLEET_BENCH_IDENTITIES", 10_000)?,
            concurrency: env_or("FLEET_BENCH_CONCURRENCY", 64)?,
            seconds: env_or("FLEET_BENCH_SECONDS", 20)?,
            backends,
            rate: (rate > 0.0).then_some(rate),
            lease_rate: (lease_rate > 0.0).then_some(lease_rate),
            lease_percent: env_or("FLEET_BENCH_LEASE_PERCENT", 10)?,
            caps_every: env_or("FLEET_BENCH_CAPS_EVERY", 10)?,
            plan_runs: env_or("FLEET_BENCH_PLAN_RUNS", 3)?,
            settle: Duration::from_secs(env_or("FLEET_BENCH_SETTLE_SECONDS", 900)?),
            seed: env_or("FLEET_BENCH_SEED", 1)?,
        };
        if cfg.workers == 0 || cfg.concurrency == 0 || cfg.seconds == 0 || cfg.lease_percent > 100 {
            bail!("FLEET_BENCH_WORKERS, _CONCURRENCY and _SECONDS must be positive, _LEASE_PERCENT 0..=100");
        }
        Ok(cfg)
    }
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / MB);
    format!(
        "nproc {}, {model}, {mem_gib:.1} GiB RAM, {}",
        command_line("nproc", &[]),
        command_line("uname", &["-sr"])
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// /proc

fn clk_tck() -> f64 {
    command_line("getconf", &["CLK_TCK"])
        .parse::<f64>()
        .ok()
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM), in kB.
fn proc_status_kb(pid: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User + system CPU ticks of a process (all its threads).
fn proc_cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state (field 3), ..., utime (14), stime (15).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Samples a process's RSS every 100 ms until stopped.
struct RssSampler {
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&samples), Arc::clone(&stop));
        let pid = pid.to_string();
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some(kb) = proc_status_kb(&pid, "VmRSS") {
                    if let Ok(mut v) = s.lock() {
                        v.push((Instant::now(), kb));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The largest sample in `[from, to]`, in MiB.
    fn max_mb(&self, from: Instant, to: Instant) -> f64 {
        self.samples.lock().map_or(0.0, |v| {
            v.iter()
                .filter(|(t, _)| *t >= from && *t <= to)
                .map(|(_, kb)| *kb)
                .max()
                .unwrap_or(0) as f64
                / 1024.0
        })
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The coordinator process

/// One reconcile pass, from the coordinator's log.
#[derive(Debug, Clone)]
struct Round {
    end: Instant,
    elapsed_ms: u64,
    changed: bool,
    report: String,
}

impl Round {
    fn start(&self) -> Instant {
        self.end
            .checked_sub(Duration::from_millis(self.elapsed_ms))
            .unwrap_or(self.end)
    }
}

#[derive(Debug, Default)]
struct LogTail {
    warnings: u64,
    errors: u64,
    failed_passes: u64,
    last: VecDeque<String>,
}

struct Coordinator {
    child: Child,
    pid: u32,
    base: String,
    rounds: Arc<Mutex<Vec<Round>>>,
    log: Arc<Mutex<LogTail>>,
    stopped: bool,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field_u64(line: &str, name: &str) -> Option<u64> {
    let at = line.find(name)? + name.len();
    let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn read_log(stderr: impl std::io::Read, rounds: &Mutex<Vec<Round>>, log: &Mutex<LogTail>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let line = strip_ansi(&line);
        if line.contains("reconcile pass") {
            if let Some(path) = std::env::var_os("FLEET_BENCH_PASS_LOG") {
                if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                    let _ = writeln!(f, "{line}");
                }
            }
        }
        let applied = line.contains("reconcile pass applied changes");
        if applied || line.contains("reconcile pass: no change") {
            if let Some(elapsed_ms) = field_u64(&line, "elapsed_ms=") {
                let report = line
                    .find("report=")
                    .map(|i| line[i + "report=".len()..].to_owned())
                    .unwrap_or_default();
                if let Ok(mut r) = rounds.lock() {
                    r.push(Round {
                        end: Instant::now(),
                        elapsed_ms,
                        changed: applied,
                        report,
                    });
                }
            }
            continue;
        }
        let warn = line.contains(" WARN ");
        let error = line.contains(" ERROR ");
        if warn || error {
            if let Ok(mut l) = log.lock() {
                if warn {
                    l.warnings += 1;
                } else {
                    l.errors += 1;
                }
                if line.contains("reconcile pass failed") {
                    l.failed_passes += 1;
                }
                if l.last.len() == 6 {
                    l.last.pop_front();
                }
                let mut short = line.clone();
                short.truncate(300);
                l.last.push_back(short);
            }
        } else if !line.contains(" INFO ") && !line.contains(" DEBUG ") && !line.trim().is_empty() {
            // Not a log line (an `error: ...` on exit, a panic): keep it.
            if let Ok(mut l) = log.lock() {
                if l.last.len() == 6 {
                    l.last.pop_front();
                }
                l.last.push_back(line.clone());
            }
        }
    }
}

impl Coordinator {
    fn start(data_dir: &Path, database_url: Option<&str>) -> Result<Coordinator> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_smeshfleet"));
        cmd.arg("coordinator")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        for var in [
            "SMESHFLEET_DATABASE_URL",
            "SMESHFLEET_LISTEN",
            "SMESHFLEET_DATA_DIR",
            "SMESHFLEET_LEASE_SECONDS",
            "SMESHFLEET_RECONCILE_SECONDS",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .env("SMESHFLEET_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SMESHFLEET_KEYSTORE_PASSPHRASE", PASSPHRASE)
            .env("RUST_LOG", "warn,orchestrator::reconcile=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the coordinator")?;
        let pid = child.id();
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(LogTail::default()));
        let stdout = child.stdout.take().context("coordinator stdout")?;
        let stderr = child.stderr.take().context("coordinator stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        {
            let (rounds, log) = (Arc::clone(&rounds), Arc::clone(&log));
            std::thread::spawn(move || read_log(stderr, &rounds, &log));
        }
        let mut c = Coordinator {
            child,
            pid,
            base: String::new(),
            rounds,
            log,
            stopped: false,
        };
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(base) => c.base = base.trim_end_matches('/').to_owned(),
            Err(_) => {
                let status = c.child.try_wait().ok().flatten();
                std::thread::sleep(Duration::from_millis(200));
                bail!(
                    "the coordinator did not print its listening line (exit: {status:?}); log:\n{}",
                    c.log_tail()
                );
            }
        }
        Ok(c)
    }

    fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|l| l.last.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    fn rounds_between(&self, from: Instant, to: Instant) -> Vec<Round> {
        self.rounds.lock().map_or_else(
            |_| Vec::new(),
            |r| {
                r.iter()
                    .filter(|x| x.start() >= from && x.end <= to)
                    .cloned()
                    .collect()
            },
        )
    }

    /// Passes that overlap `[from, to]`, cut to it (their `elapsed_ms` is the time inside).
    fn rounds_overlapping(&self, from: Instant, to: Instant) -> Vec<Round> {
        self.rounds.lock().map_or_else(
            |_| Vec::new(),
            |r| {
                r.iter()
                    .filter(|x| x.start() < to && x.end > from)
                    .map(|x| {
                        let (s, e) = (x.start().max(from), x.end.min(to));
                        Round {
                            elapsed_ms: e.saturating_duration_since(s).as_millis() as u64,
                            ..x.clone()
                        }
                    })
                    .collect()
            },
        )
    }

    /// SIGTERM, then waits for the exit: (time to exit, status).
    fn stop(&mut self) -> Result<(Duration, ExitStatus)> {
        let t = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .context("running kill")?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.pid);
        }
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the coordinator")? {
                self.stopped = true;
                return Ok((t.elapsed(), status));
            }
            if t.elapsed() > Duration::from_secs(120) {
                bail!("the coordinator did not exit within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(base: &str, pool: usize) -> Result<Http> {
        let client = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Http {
            client,
            base: base.to_owned(),
        })
    }

    async fn send(&self, path: &str, auth: Option<&str>, body: Vec<u8>) -> reqwest::Result<(u16, Vec<u8>)> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((status, bytes.to_vec()))
    }

    /// A request that must succeed; its JSON answer.
    async fn must(&self, path: &str, auth: Option<&str>, body: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(body).context("encoding a request")?;
        let (status, resp) = self
            .send(path, auth, bytes)
            .await
            .with_context(|| format!("POST {path}"))?;
        if !(200..300).contains(&status) {
            bail!("POST {path}: {status}: {}", String::from_utf8_lossy(&resp));
        }
        serde_json::from_slice(&resp).with_context(|| format!("POST {path}: answer is not JSON"))
    }
}

// ---------------------------------------------------------------------------------------------
// The simulated fleet

/// One rig of the simulated fleet.
#[derive(Debug, Clone)]
struct Sim {
    auth: String,
    caps: Capabilities,
}

fn rig(w: usize, rng: &mut StdRng) -> Capabilities {
    const MODELS: [(&str, f64, u64); 4] = [
        ("H100", 1.0e6, 80),
        ("RTX 4090", 4.5e5, 24),
        ("RTX 3090", 2.6e5, 24),
        ("RTX A4000", 1.4e5, 16),
    ];
    let n_gpus: u32 = rng.gen_range(0..=4);
    let (model, rate, mem_gib) = MODELS[rng.gen_range(0..MODELS.len())];
    let gpus = (0..n_gpus)
        .map(|index| GpuInfo {
            index,
            model: model.to_owned(),
            memory_bytes: mem_gib << 30,
            labels_per_s: rate * rng.gen_range(0.95..1.05),
            enabled: true,
            temperature_c: Some(rng.gen_range(40.0..80.0)),
            power_w: None,
            utilization_percent: None,
        })
        .collect();
    let threads = [16u32, 32, 64][rng.gen_range(0..3)];
    let cpu = CpuInfo {
        threads,
        labels_per_s: f64::from(threads) * rng.gen_range(25.0..35.0),
        randomx_hashes_per_s: f64::from(threads) * rng.gen_range(100.0..200.0),
        proving_mib_s_per_16_nonces: rng.gen_range(2000.0..4000.0),
        init_enabled: false,
    };
    let n_disks = rng.gen_range(1..=4usize);
    let disks: Vec<DiskInfo> = (0..n_disks)
        .map(|k| {
            let capacity = rng.gen_range(16..=64u64) * TB;
            DiskInfo {
                id: format!("disk{k}"),
                mount: format!("/mnt/disk{k}"),
                physical_device: format!("sd{}", char::from(b'a' + k as u8)),
                filesystem: "ext4".to_owned(),
                capacity_bytes: capacity,
                free_bytes: (capacity as f64 * rng.gen_range(0.6..1.0)) as u64,
                read_mb_s: rng.gen_range(180.0..260.0),
                write_mb_s: rng.gen_range(160.0..240.0),
            }
        })
        .collect();
    Capabilities {
        hostname: format!("rig-{w:05}"),
        version: "fleet-bench".to_owned(),
        gpus,
        cpu,
        // Storage rigs take streamed labels, so GPU rigs without disks may initialize them.
        stream_url: (!disks.is_empty()).then(|| format!("http://rig-{w:05}:7780")),
        disks,
        paused: false,
    }
}

async fn seed_identities(url: &str, n: usize, seed: u64) -> Result<Duration> {
    let t = Instant::now();
    let store = Store::connect(url)
        .await
        .context("opening the store to seed it")?;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1de7);
    let news: Vec<NewIdentity> = (0..n)
        .map(|i| NewIdentity {
            name: format!("bench-identity-{i:05}"),
            node_id: rng.gen(),
            num_units: NUM_UNITS,
            labels_per_unit: LABELS_PER_UNIT,
            max_file_size: MAX_FILE_SIZE,
            scrypt_n: 8192,
            commitment_atx_id: Some(rng.gen()),
            coinbase: None,
        })
        .collect();
    let now = now_ms();
    let results: Vec<_> = stream::iter(news.iter())
        .map(|new| store.create_identity(new, now))
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r.context("seeding an identity")?;
    }
    store.close().await;
    Ok(t.elapsed())
}

async fn enroll(http: &Http, n: usize, seed: u64) -> Result<Vec<Sim>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rigs: Vec<Capabilities> = (0..n).map(|w| rig(w, &mut rng)).collect();
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let results: Vec<Result<(usize, Sim)>> = stream::iter(rigs.into_iter().enumerate())
        .map(|(w, caps)| {
            let (http, admin) = (http.clone(), admin.clone());
            async move {
                let token = http
                    .must(
                        "/api/v1/workers/join-tokens",
                        Some(&admin),
                        &json!({"name": format!("rig-{w:05}")}),
                    )
                    .await?;
                let token = token["token"].as_str().context("join token in the answer")?;
                let resp = http
                    .must(
                        "/api/v1/worker/enroll",
                        None,
                        &json!({"join_token": token, "name": format!("rig-{w:05}"), "capabilities": caps}),
                    )
                    .await?;
                let resp: EnrollResponse = serde_json::from_value(resp).context("enroll answer")?;
                Ok((
                    w,
                    Sim {
                        auth: format!("Bearer {}", resp.credential),
                        caps,
                    },
                ))
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut sims = results.into_iter().collect::<Result<Vec<_>>>()?;
    sims.sort_by_key(|(w, _)| *w);
    Ok(sims.into_iter().map(|(_, s)| s).collect())
}

/// Heartbeats every worker every 10 s (no capabilities) until told to stop, so that none goes
/// offline while the coordinator plans.
fn keepalive(
    http: Http,
    sims: Arc<Vec<Sim>>,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<u64>) {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let auths: Vec<String> = sims.iter().map(|s| s.auth.clone()).collect();
    let handle = tokio::spawn(async move {
        let body = br#"{"jobs":[]}"#.to_vec();
        let mut failures = 0u64;
        loop {
            let statuses: Vec<u16> = stream::iter(auths.clone())
                .map(|auth| {
                    let (http, body) = (http.clone(), body.clone());
                    async move {
                        http.send("/api/v1/worker/heartbeat", Some(&auth), body)
                            .await
                            .map_or(0, |(st, _)| st)
                    }
                })
                .buffer_unordered(8)
                .collect()
                .await;
            failures += statuses.iter().filter(|s| **s != 200).count() as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                _ = rx.changed() => break,
            }
        }
        failures
    });
    (tx, handle)
}

// ---------------------------------------------------------------------------------------------
// Plan time

struct PlanTiming {
    workers: usize,
    online: usize,
    identities: usize,
    files: usize,
    snapshot_jobs: usize,
    live_jobs: usize,
    snapshot_ms: f64,
    /// The first snapshot, which fills the file cache (as after a coordinator restart).
    cold_snapshot_ms: f64,
    plan_ms: f64,
    runs: usize,
    actions: usize,
    init: usize,
    placements: usize,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn time_plan(url: &str, runs: usize) -> Result<PlanTiming> {
    let store = Store::connect(url).await.context("opening the store to plan")?;
    let live_jobs = store.list_live_jobs().await.context("listing live jobs")?.len();
    let (mut snaps, mut plans) = (Vec::new(), Vec::new());
    let mut last = None;
    // As the reconcile loop does: the files come from a cache that re-reads only what changed.
    // The first (cold) read fills it; the timed runs are warm.
    let mut cache = FileCache::new();
    let t = Instant::now();
    build_snapshot_cached(
        &store,
        &mut cache,
        now_ms(),
        &ReconcileInputs::default(),
        &ReconcileConfig::default(),
    )
    .await
    .context("building the first snapshot")?;
    let cold_ms = ms(t.elapsed());
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let snap = build_snapshot_cached(
            &store,
            &mut cache,
            now_ms(),
            &ReconcileInputs::default(),
            &ReconcileConfig::default(),
        )
        .await
        .context("building the snapshot")?;
        snaps.push(ms(t.elapsed()));
        let t = Instant::now();
        let plan = scheduler::plan(&snap);
        plans.push(ms(t.elapsed()));
        last = Some((snap, plan));
    }
    store.close().await;
    let (snap, plan) = last.context("no plan run")?;
    Ok(PlanTiming {
        workers: snap.workers.len(),
        online: snap.workers.iter().filter(|w| w.online).count(),
        identities: snap.identities.len(),
        files: snap.identities.iter().map(|i| i.files.len()).sum(),
        snapshot_jobs: snap.jobs.len(),
        live_jobs,
        snapshot_ms: median(&mut snaps),
        cold_snapshot_ms: cold_ms,
        plan_ms: median(&mut plans),
        runs: runs.max(1),
        actions: plan.action_count(),
        init: plan.init.len(),
        placements: plan.placements.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Load

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    Heartbeat,
    HeartbeatCaps,
    Lease,
    Progress,
    Complete,
}

const ROUTES: [Route; 5] = [
    Route::Heartbeat,
    Route::HeartbeatCaps,
    Route::Lease,
    Route::Progress,
    Route::Complete,
];

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Heartbeat => "heartbeat",
            Route::HeartbeatCaps => "heartbeat + capabilities",
            Route::Lease => "lease",
            Route::Progress => "progress (+ ranges)",
            Route::Complete => "complete (+ ranges)",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default)]
struct Tally {
    /// Latencies in microseconds, by route.
    lat: [Vec<u32>; 5],
    /// Answers by (route, status); 0 = no answer (connection error, timeout).
    status: BTreeMap<(Route, u16), u64>,
    leased: u64,
    empty_leases: u64,
    completed: u64,
    ranges_recorded: u64,
    bad_answers: u64,
    /// Paced lease chains not started because too many were still in flight.
    leases_dropped: u64,
}

impl Tally {
    fn record(&mut self, route: Route, status: u16, latency: Duration) {
        self.lat[route.index()].push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        *self.status.entry((route, status)).or_default() += 1;
    }

    fn merge(&mut self, o: Tally) {
        for (a, b) in self.lat.iter_mut().zip(o.lat) {
            a.extend(b);
        }
        for (k, v) in o.status {
            *self.status.entry(k).or_default() += v;
        }
        self.leased += o.leased;
        self.empty_leases += o.empty_leases;
        self.completed += o.completed;
        self.ranges_recorded += o.ranges_recorded;
        self.bad_answers += o.bad_answers;
        self.leases_dropped += o.leases_dropped;
    }

    fn errors(&self, route: Option<Route>) -> u64 {
        self.status
            .iter()
            .filter(|((r, s), _)| route.is_none_or(|x| x == *r) && !(200..300).contains(s))
            .map(|(_, n)| n)
            .sum()
    }

    fn error_summary(&self, route: Option<Route>) -> String {
        let mut by: BTreeMap<u16, u64> = BTreeMap::new();
        for ((r, s), n) in &self.status {
            if route.is_none_or(|x| x == *r) && !(200..300).contains(s) {
                *by.entry(*s).or_default() += n;
            }
        }
        if by.is_empty() {
            return "0".to_owned();
        }
        by.iter()
            .map(|(s, n)| {
                if *s == 0 {
                    format!("{n} no answer")
                } else {
                    format!("{n}×{s}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct LoadCtx {
    http: Http,
    sims: Arc<Vec<Sim>>,
    /// Indices of the rigs with GPUs (they lease init jobs).
    lessees: Vec<usize>,
    lease_percent: usize,
    caps_every: usize,
    ops: AtomicUsize,
    heartbeats: AtomicUsize,
    leases: AtomicUsize,
    start: Instant,
    end: Instant,
    /// Per task, when paced.
    pace: Option<Duration>,
}

async fn timed(
    ctx: &LoadCtx,
    t: &mut Tally,
    route: Route,
    path: &str,
    auth: &str,
    body: Vec<u8>,
    since: Instant,
) -> (u16, Vec<u8>) {
    let res = ctx.http.send(path, Some(auth), body).await;
    let latency = since.elapsed();
    let (status, bytes) = res.unwrap_or((0, Vec::new()));
    t.record(route, status, latency);
    (status, bytes)
}

fn halves(work: &Work) -> (Vec<RangeDone>, Vec<RangeDone>) {
    match work {
        Work::Init { file_index, range } | Work::Verify { file_index, range } if !range.is_empty() => {
            let file_index = u64::from(*file_index);
            let mid = range.start + range.len() / 2;
            let second = vec![RangeDone {
                file_index,
                start_label: mid.max(range.start),
                end_label: range.end,
            }];
            if mid > range.start {
                (
                    vec![RangeDone {
                        file_index,
                        start_label: range.start,
                        end_label: mid,
                    }],
                    second,
                )
            } else {
                (Vec::new(), second)
            }
        }
        _ => (Vec::new(), Vec::new()),
    }
}

async fn lease_cycle(ctx: &LoadCtx, t: &mut Tally, sim: &Sim, since: Instant) {
    let body = serde_json::to_vec(&LeaseRequest {
        kinds: Vec::new(),
        max_jobs: Some(1),
    })
    .unwrap_or_default();
    let (status, bytes) = timed(
        ctx,
        t,
        Route::Lease,
        "/api/v1/worker/lease",
        &sim.auth,
        body,
        since,
    )
    .await;
    if status != 200 {
        return;
    }
    let Ok(resp) = serde_json::from_slice::<LeaseResponse>(&bytes) else {
        t.bad_answers += 1;
        return;
    };
    if resp.jobs.is_empty() {
        t.empty_leases += 1;
    }
    for job in resp.jobs {
        t.leased += 1;
        let (first, second) = halves(&job.spec.work);
        let progress = ProgressRequest {
            fencing_token: job.fencing_token,
            done: first.iter().map(|r| r.end_label - r.start_label).sum(),
            rate_per_s: 1.0e6,
            ranges: first,
            checkpoint: None,
        };
        let path = format!("/api/v1/worker/jobs/{}/progress", job.job_id);
        let body = serde_json::to_vec(&progress).unwrap_or_default();
        let (status, bytes) = timed(ctx, t, Route::Progress, &path, &sim.auth, body, Instant::now()).await;
        if status == 200 {
            match serde_json::from_slice::<ProgressResponse>(&bytes) {
                Ok(p) => t.ranges_recorded += u64::from(p.ranges_recorded),
                Err(_) => t.bad_answers += 1,
            }
        }
        let complete = CompleteRequest {
            fencing_token: job.fencing_token,
            ranges: second,
            result: None,
        };
        let path = format!("/api/v1/worker/jobs/{}/complete", job.job_id);
        let body = serde_json::to_vec(&complete).unwrap_or_default();
        let (status, _) = timed(ctx, t, Route::Complete, &path, &sim.auth, body, Instant::now()).await;
        if status == 200 {
            t.completed += 1;
        }
    }
}

/// Open-loop lease chains: one chain started every `1 / rate` seconds, each in its own task
/// (a slow chain delays no other request), latency measured from its scheduled start; at most
/// 512 in flight (the rest are counted as dropped).
async fn lease_pacer(ctx: Arc<LoadCtx>, rate: f64) -> Tally {
    let mut t = Tally::default();
    if ctx.lessees.is_empty() {
        return t;
    }
    let step = Duration::from_secs_f64(1.0 / rate);
    let limit = Arc::new(tokio::sync::Semaphore::new(512));
    let mut set = tokio::task::JoinSet::new();
    let mut next = ctx.start;
    while next < ctx.end {
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        let since = next;
        next += step;
        let i = ctx.leases.fetch_add(1, Ordering::Relaxed) % ctx.lessees.len();
        match Arc::clone(&limit).try_acquire_owned() {
            Ok(permit) => {
                let ctx = Arc::clone(&ctx);
                set.spawn(async move {
                    let mut t = Tally::default();
                    lease_cycle(&ctx, &mut t, &ctx.sims[ctx.lessees[i]], since).await;
                    drop(permit);
                    t
                });
            }
            Err(_) => t.leases_dropped += 1,
        }
        while let Some(done) = set.try_join_next() {
            if let Ok(x) = done {
                t.merge(x);
            }
        }
    }
    while let Some(done) = set.join_next().await {
        if let Ok(x) = done {
            t.merge(x);
        }
    }
    t
}

async fn client_task(ctx: Arc<LoadCtx>, task: usize, tasks: usize) -> Tally {
    let mut t = Tally::default();
    let plain = br#"{"jobs":[]}"#.to_vec();
    let n = ctx.sims.len();
    let mut next = ctx.start
        + ctx
            .pace
            .map_or(Duration::ZERO, |p| p.mul_f64(task as f64 / tasks as f64));
    loop {
        let since = match ctx.pace {
            Some(p) => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                let s = next;
                next += p;
                s
            }
            None => Instant::now(),
        };
        if since >= ctx.end {
            break;
        }
        let k = ctx.ops.fetch_add(1, Ordering::Relaxed);
        // Evenly spread: lease_percent of every hundred operations are leases.
        let lease =
            !ctx.lessees.is_empty() && (k + 1) * ctx.lease_percent / 100 != k * ctx.lease_percent / 100;
        if lease {
            let i = ctx.leases.fetch_add(1, Ordering::Relaxed) % ctx.lessees.len();
            lease_cycle(&ctx, &mut t, &ctx.sims[ctx.lessees[i]], since).await;
        } else {
            let h = ctx.heartbeats.fetch_add(1, Ordering::Relaxed);
            let (w, round) = (h % n, h / n);
            let sim = &ctx.sims[w];
            if ctx.caps_every > 0 && (round + w) % ctx.caps_every == ctx.caps_every - 1 {
                // Free space changed: the worker sends its capabilities again.
                let mut caps = sim.caps.clone();
                for d in &mut caps.disks {
                    d.free_bytes = d.free_bytes.saturating_sub(round as u64 * 1_000_000_000);
                }
                let body = serde_json::to_vec(&HeartbeatRequest {
                    capabilities: Some(caps),
                    jobs: Vec::new(),
                })
                .unwrap_or_default();
                timed(
                    &ctx,
                    &mut t,
                    Route::HeartbeatCaps,
                    "/api/v1/worker/heartbeat",
                    &sim.auth,
                    body,
                    since,
                )
                .await;
            } else {
                timed(
                    &ctx,
                    &mut t,
                    Route::Heartbeat,
                    "/api/v1/worker/heartbeat",
                    &sim.auth,
                    plain.clone(),
                    since,
                )
                .await;
            }
        }
    }
    t
}

// ---------------------------------------------------------------------------------------------
// One backend

#[derive(Default)]
struct RoundStats {
    count: usize,
    changed: usize,
    median_ms: f64,
    max_ms: f64,
    total_ms: f64,
}

fn round_stats(rounds: &[Round]) -> RoundStats {
    let mut v: Vec<f64> = rounds.iter().map(|r| r.elapsed_ms as f64).collect();
    RoundStats {
        count: rounds.len(),
        changed: rounds.iter().filter(|r| r.changed).count(),
        total_ms: v.iter().sum::<f64>() + 0.0,
        max_ms: v.iter().copied().fold(0.0, f64::max),
        median_ms: median(&mut v),
    }
}

struct Outcome {
    backend: String,
    gpus: usize,
    disks: usize,
    seed_s: f64,
    ready_s: f64,
    enroll_s: f64,
    settle_s: f64,
    settle_note: String,
    first_round: Option<Round>,
    plan: PlanTiming,
    tally: Tally,
    load_s: f64,
    rounds_settle: RoundStats,
    rounds_load: RoundStats,
    coord_cpu_pct: f64,
    bench_cpu_pct: f64,
    rss_ready_mb: f64,
    rss_load_max_mb: f64,
    rss_max_mb: f64,
    hwm_mb: f64,
    rss_after_mb: f64,
    keepalive_failures: u64,
    stop_s: f64,
    exit: String,
    exit_ok: bool,
    warnings: u64,
    errors: u64,
    failed_passes: u64,
    log_tail: String,
}

async fn run_backend(cfg: &Cfg, backend: &str, url: String, data_dir: &Path) -> Result<Outcome> {
    let tag = format!("[{backend}]");
    let seed_d = seed_identities(&url, cfg.identities, cfg.seed).await?;
    println!(
        "{tag} seeded {} identities in {:.1} s",
        cfg.identities,
        seed_d.as_secs_f64()
    );

    let t = Instant::now();
    let db_url = (backend == "postgres").then_some(url.as_str());
    let mut coord = Coordinator::start(data_dir, db_url)?;
    let ready_d = t.elapsed();
    let pid = coord.pid.to_string();
    let sampler = RssSampler::start(coord.pid);
    let rss_ready_mb = proc_status_kb(&pid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
    println!(
        "{tag} coordinator pid {pid} listening on {} after {:.1} s (RSS {rss_ready_mb:.0} MiB)",
        coord.base,
        ready_d.as_secs_f64()
    );

    let http = Http::new(&coord.base, cfg.concurrency + 16)?;
    let t = Instant::now();
    let sims = Arc::new(enroll(&http, cfg.workers, cfg.seed).await?);
    let enroll_d = t.elapsed();
    let enrolled_at = Instant::now();
    let gpus: usize = sims.iter().map(|s| s.caps.gpus.len()).sum();
    let disks: usize = sims.iter().map(|s| s.caps.disks.len()).sum();
    let tb: u64 = sims
        .iter()
        .flat_map(|s| &s.caps.disks)
        .map(|d| d.capacity_bytes / TB)
        .sum();
    println!(
        "{tag} enrolled {} workers ({gpus} GPUs, {disks} disks, {tb} TB) in {:.1} s ({:.0} workers/s)",
        sims.len(),
        enroll_d.as_secs_f64(),
        sims.len() as f64 / enroll_d.as_secs_f64().max(1e-9)
    );

    // Keep the fleet online while the reconcile loop plans it.
    let (ka_stop, ka) = keepalive(http.clone(), Arc::clone(&sims));
    let t = Instant::now();
    let mut settle_note = String::new();
    loop {
        let after = coord.rounds_between(enrolled_at, Instant::now());
        if after.iter().any(|r| !r.changed) {
            break;
        }
        if t.elapsed() > cfg.settle {
            settle_note = format!(
                "gave up waiting after {:.0} s ({} passes since the last enrollment)",
                t.elapsed().as_secs_f64(),
                after.len()
            );
            break;
        }
        if let Ok(Some(status)) = coord.child.try_wait() {
            bail!(
                "the coordinator exited ({status}) while planning; log:\n{}",
                coord.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled_at = Instant::now();
    let settle_d = t.elapsed();
    let settle_rounds = coord.rounds_between(enrolled_at, settled_at);
    let first_round = coord
        .rounds
        .lock()
        .ok()
        .and_then(|r| r.iter().max_by_key(|x| x.elapsed_ms).cloned());
    println!(
        "{tag} fleet planned {:.1} s after the last enrollment ({} passes since, {} with changes){}",
        settle_d.as_secs_f64(),
        settle_rounds.len(),
        settle_rounds.iter().filter(|r| r.changed).count(),
        if settle_note.is_empty() {
            String::new()
        } else {
            format!(": {settle_note}")
        }
    );

    let plan = time_plan(&url, cfg.plan_runs).await?;
    println!(
        "{tag} snapshot {:.0} ms (warm file cache; the first, cold one {:.0} ms) + plan {:.0} ms \
         (median of {}): {} workers ({} online), {} identities, {} file states, {} jobs in the \
         snapshot, {} live jobs; the plan has {} actions",
        plan.snapshot_ms,
        plan.cold_snapshot_ms,
        plan.plan_ms,
        plan.runs,
        plan.workers,
        plan.online,
        plan.identities,
        plan.files,
        plan.snapshot_jobs,
        plan.live_jobs,
        plan.actions
    );
    let _ = ka_stop.send(true);
    let keepalive_failures = ka.await.unwrap_or(0);

    // The load.
    let lessees: Vec<usize> = (0..sims.len())
        .filter(|w| !sims[*w].caps.gpus.is_empty())
        .collect();
    let start = Instant::now() + Duration::from_millis(50);
    let ctx = Arc::new(LoadCtx {
        http: http.clone(),
        sims: Arc::clone(&sims),
        lessees,
        // With a lease rate, leases are paced on their own and the clients only heartbeat.
        lease_percent: if cfg.lease_rate.is_some() {
            0
        } else {
            cfg.lease_percent
        },
        caps_every: cfg.caps_every,
        ops: AtomicUsize::new(0),
        heartbeats: AtomicUsize::new(0),
        leases: AtomicUsize::new(0),
        start,
        end: start + Duration::from_secs(cfg.seconds),
        pace: cfg
            .rate
            .map(|r| Duration::from_secs_f64(cfg.concurrency as f64 / r)),
    });
    let tck = clk_tck();
    let (c0, b0) = (
        proc_cpu_ticks(&pid).unwrap_or(0),
        proc_cpu_ticks("self").unwrap_or(0),
    );
    let mut handles: Vec<_> = (0..cfg.concurrency)
        .map(|i| tokio::spawn(client_task(Arc::clone(&ctx), i, cfg.concurrency)))
        .collect();
    if let Some(r) = cfg.lease_rate {
        handles.push(tokio::spawn(lease_pacer(Arc::clone(&ctx), r)));
    }
    let mut tally = Tally::default();
    for h in handles {
        tally.merge(h.await.context("a client task panicked")?);
    }
    let load_end = Instant::now();
    let load_d = load_end.saturating_duration_since(start);
    let (c1, b1) = (
        proc_cpu_ticks(&pid).unwrap_or(0),
        proc_cpu_ticks("self").unwrap_or(0),
    );
    let secs = load_d.as_secs_f64().max(1e-9);
    let coord_cpu_pct = (c1.saturating_sub(c0)) as f64 / tck / secs * 100.0;
    let bench_cpu_pct = (b1.saturating_sub(b0)) as f64 / tck / secs * 100.0;
    // A pass still running at the end of the load is not in the log yet: wait for it (a while).
    let wait_from = Instant::now();
    while wait_from.elapsed() < Duration::from_secs(60)
        && coord
            .rounds
            .lock()
            .is_ok_and(|r| r.last().is_none_or(|x| x.end < load_end))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let load_rounds = coord.rounds_overlapping(start, load_end);
    let total: usize = tally.lat.iter().map(Vec::len).sum();
    println!(
        "{tag} load: {total} requests in {:.1} s ({:.0}/s), {} errors; coordinator CPU {coord_cpu_pct:.0}%, \
         load generator CPU {bench_cpu_pct:.0}%",
        secs,
        total as f64 / secs,
        tally.errors(None)
    );

    let hwm_mb = proc_status_kb(&pid, "VmHWM").unwrap_or(0) as f64 / 1024.0;
    let rss_after_mb = proc_status_kb(&pid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
    let rss_load_max_mb = sampler.max_mb(start, load_end);
    let rss_max_mb = sampler.max_mb(enrolled_at - enroll_d, Instant::now());
    drop(sampler);
    drop(http);
    drop(ctx);

    let (stop_d, status) = coord.stop()?;
    // Let the log reader take the last lines.
    std::thread::sleep(Duration::from_millis(200));
    let (warnings, errors, failed_passes) = coord
        .log
        .lock()
        .map_or((0, 0, 0), |l| (l.warnings, l.errors, l.failed_passes));
    println!(
        "{tag} SIGTERM: exited {status} after {:.2} s",
        stop_d.as_secs_f64()
    );
    Ok(Outcome {
        backend: backend.to_owned(),
        gpus,
        disks,
        seed_s: seed_d.as_secs_f64(),
        ready_s: ready_d.as_secs_f64(),
        enroll_s: enroll_d.as_secs_f64(),
        settle_s: settle_d.as_secs_f64(),
        settle_note,
        first_round,
        plan,
        tally,
        load_s: secs,
        rounds_settle: round_stats(&settle_rounds),
        rounds_load: round_stats(&load_rounds),
        coord_cpu_pct,
        bench_cpu_pct,
        rss_ready_mb,
        rss_load_max_mb,
        rss_max_mb,
        hwm_mb,
        rss_after_mb,
        keepalive_failures,
        stop_s: stop_d.as_secs_f64(),
        exit: status.to_string(),
        exit_ok: status.success(),
        warnings,
        errors,
        failed_passes,
        log_tail: coord.log_tail(),
    })
}

/// The throwaway PostgreSQL cluster, or why there is none.
fn pg_cluster() -> Result<&'static pg::Cluster, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(pg::shared);
    std::panic::set_hook(hook);
    r.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the PostgreSQL cluster did not start".to_owned())
    })
}

// ---------------------------------------------------------------------------------------------
// Report

fn pct(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

fn report(cfg: &Cfg, outcomes: &mut [Outcome], skipped: &[String]) {
    println!();
    println!(
        "| backend | workers | identities | live jobs | snapshot ms | plan ms | req/s | heartbeats/s | p50 ms \
         | p99 ms | max ms | errors | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for o in outcomes.iter_mut() {
        for v in &mut o.tally.lat {
            v.sort_unstable();
        }
        let mut all: Vec<u32> = o.tally.lat.iter().flatten().copied().collect();
        all.sort_unstable();
        let hb =
            o.tally.lat[Route::Heartbeat.index()].len() + o.tally.lat[Route::HeartbeatCaps.index()].len();
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {:.0} |",
            o.backend,
            o.plan.workers,
            o.plan.identities,
            o.plan.live_jobs,
            o.plan.snapshot_ms,
            o.plan.plan_ms,
            all.len() as f64 / o.load_s,
            hb as f64 / o.load_s,
            pct(&all, 0.50),
            pct(&all, 0.99),
            pct(&all, 1.0),
            o.tally.error_summary(None),
            o.hwm_mb
        );
    }
    for s in skipped {
        println!("| {s} | | | | | | | | | | | | |");
    }
    println!();
    println!(
        "Latencies of all requests (ms, from the client, {}); errors: non-2xx answers; peak RSS: the \
         coordinator's VmHWM (a PostgreSQL server's memory is not counted).",
        match cfg.rate {
            Some(r) => format!("paced at {r:.0} requests/s in total, measured from each scheduled send"),
            None => format!(
                "closed loop: {} clients, each sends when answered",
                cfg.concurrency
            ),
        }
    );

    println!();
    println!("| backend | route | requests | per s | p50 ms | p95 ms | p99 ms | max ms | non-2xx |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for o in outcomes.iter() {
        for r in ROUTES {
            let v = &o.tally.lat[r.index()];
            if v.is_empty() {
                continue;
            }
            println!(
                "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                o.backend,
                r.name(),
                v.len(),
                v.len() as f64 / o.load_s,
                pct(v, 0.50),
                pct(v, 0.95),
                pct(v, 0.99),
                pct(v, 1.0),
                o.tally.error_summary(Some(r))
            );
        }
    }

    println!();
    for o in outcomes.iter() {
        println!("{}:", o.backend);
        println!(
            "  setup: seed {:.1} s, coordinator ready {:.1} s (keystore KDF included), enroll {:.1} s ({:.0} \
             workers/s; {} GPUs, {} disks), planned {:.1} s after the last enrollment{}",
            o.seed_s,
            o.ready_s,
            o.enroll_s,
            o.plan.workers as f64 / o.enroll_s.max(1e-9),
            o.gpus,
            o.disks,
            o.settle_s,
            if o.settle_note.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.settle_note)
            }
        );
        println!(
            "  snapshot: {} workers ({} online), {} identities, {} file states, {} jobs ({} live); plan: {} \
             actions ({} placements, {} init)",
            o.plan.workers,
            o.plan.online,
            o.plan.identities,
            o.plan.files,
            o.plan.snapshot_jobs,
            o.plan.live_jobs,
            o.plan.actions,
            o.plan.placements,
            o.plan.init
        );
        if let Some(r) = &o.first_round {
            let mut report = r.report.clone();
            report.truncate(400);
            println!(
                "  coordinator's longest reconcile pass: {} ms ({})",
                r.elapsed_ms,
                if report.is_empty() { "no change" } else { &report }
            );
        }
        let rs = |s: &RoundStats| {
            format!(
                "{} passes ({} with changes), median {:.0} ms, max {:.0} ms, busy {:.0} ms",
                s.count, s.changed, s.median_ms, s.max_ms, s.total_ms
            )
        };
        println!(
            "  reconcile passes after the last enrollment until planned: {}",
            rs(&o.rounds_settle)
        );
        println!(
            "  reconcile passes overlapping the load (time inside it): {}; the loop was busy {:.0}% of the load",
            rs(&o.rounds_load),
            o.rounds_load.total_ms / 10.0 / o.load_s
        );
        println!(
            "  leases: {} jobs leased, {} empty; {} completed, {} ranges recorded by progress reports; {} \
             unreadable answers; {} paced chains dropped (too many in flight)",
            o.tally.leased,
            o.tally.empty_leases,
            o.tally.completed,
            o.tally.ranges_recorded,
            o.tally.bad_answers,
            o.tally.leases_dropped
        );
        println!(
            "  CPU during the load: coordinator {:.0}%, load generator {:.0}% (100% = one core)",
            o.coord_cpu_pct, o.bench_cpu_pct
        );
        println!(
            "  coordinator RSS: {:.0} MiB at ready, max {:.0} MiB sampled during the load, max {:.0} MiB \
             sampled from enrollment on, VmHWM {:.0} MiB, {:.0} MiB after the load",
            o.rss_ready_mb, o.rss_load_max_mb, o.rss_max_mb, o.hwm_mb, o.rss_after_mb
        );
        println!(
            "  shutdown: exited {} {:.2} s after SIGTERM; log: {} warnings, {} errors ({} failed passes); \
             keep-alive heartbeats failed: {}",
            o.exit, o.stop_s, o.warnings, o.errors, o.failed_passes, o.keepalive_failures
        );
        if o.warnings + o.errors > 0 || !o.exit_ok {
            for l in o.log_tail.lines() {
                println!("    | {l}");
            }
        }
        let hb =
            o.tally.lat[Route::Heartbeat.index()].len() + o.tally.lat[Route::HeartbeatCaps.index()].len();
        let mut hb_lat: Vec<u32> = o.tally.lat[Route::Heartbeat.index()]
            .iter()
            .chain(&o.tally.lat[Route::HeartbeatCaps.index()])
            .copied()
            .collect();
        hb_lat.sort_unstable();
        let plan_ms = o.plan.snapshot_ms + o.plan.plan_ms;
        let hb_s = hb as f64 / o.load_s;
        let p99 = pct(&hb_lat, 0.99);
        let mark = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "  goals: planning {plan_ms:.0} ms < 1 s {}; {hb_s:.0} heartbeats/s >= 5000 {}; heartbeat p99 \
             {p99:.1} ms < 50 ms {}; peak RSS {:.0} MiB < 300 MB {}",
            mark(plan_ms < 1000.0),
            mark(hb_s >= 5000.0),
            mark(p99 < 50.0),
            o.hwm_mb,
            mark(o.hwm_mb * MB < 300.0e6)
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let cfg = Cfg::from_env()?;
    let started = Instant::now();
    println!("# smeshfleet fleet benchmark");
    println!();
    println!("machine: {}", machine());
    println!("date: {}", command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    println!(
        "fleet: {} workers, {} identities ({NUM_UNITS} units × 2^32 labels, 2^32-byte files: {} files \
         each); load: {} clients for {} s, {}, capabilities in {}{}; backends: {}",
        cfg.workers,
        cfg.identities,
        u64::from(NUM_UNITS) * LABELS_PER_UNIT / (MAX_FILE_SIZE / 16),
        cfg.concurrency,
        cfg.seconds,
        match cfg.lease_rate {
            Some(r) => format!("lease chains paced at {r:.0}/s on their own"),
            None => format!("{}% leases", cfg.lease_percent),
        },
        if cfg.caps_every == 0 {
            "no heartbeat".to_owned()
        } else {
            format!("every {}th heartbeat", cfg.caps_every)
        },
        cfg.rate
            .map_or_else(String::new, |r| format!(", paced at {r:.0} requests/s")),
        cfg.backends.join(", ")
    );
    println!();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut outcomes = Vec::new();
    let mut skipped = Vec::new();
    for backend in &cfg.backends {
        let dir = tempfile::Builder::new()
            .prefix("smeshfleet-fleet-bench-")
            .tempdir()
            .context("creating a data directory")?;
        let data_dir = dir.path().join("data");
        let url = if backend == "sqlite" {
            std::fs::create_dir_all(&data_dir).context("creating the data directory")?;
            Store::sqlite_url(&data_dir.join(orchestrator::store::SQLITE_FILE_NAME))
        } else {
            match pg_cluster() {
                Ok(c) => {
                    println!("[postgres] throwaway cluster: fsync off, synchronous_commit off, shared_buffers 32MB");
                    rt.block_on(c.create_database())
                }
                Err(why) => {
                    println!("[postgres] skipped: {why}");
                    skipped.push(format!(
                        "postgres: skipped ({})",
                        why.lines().next().unwrap_or("")
                    ));
                    continue;
                }
            }
        };
        let o = rt.block_on(run_backend(&cfg, backend, url, &data_dir))?;
        outcomes.push(o);
        println!();
    }
    report(&cfg, &mut outcomes, &skipped);
    println!();
    println!("bench runtime: {:.0} s", started.elapsed().as_secs_f64());
    if outcomes.iter().any(|o| !o.exit_ok) {
        bail!("a coordinator did not exit 0 on SIGTERM");
    }
    Ok(())
}
