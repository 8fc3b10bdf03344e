//! Fleet init throughput against `smeshfleet post init` alone, with real processes on this machine.
//!
//! `cargo bench -p orchestrator --bench fleet_init`.
//!
//! 1. `smeshfleet post init` of one identity, all cores: the reference rate.
//! 2. For k = 1, 2, 3 CPU workers: a coordinator (SQLite, `--reconcile-seconds 1`) and k workers
//!    on this machine (each its own data directory and disk directory, `--cpu-init`, the cores
//!    shared: `--cpu-threads max(1, cores / k)`); once every worker is online the identity is
//!    created over the API, and the time runs until the coordinator reports it `ready` (every
//!    label recorded durable by the workers, the VRF nonce found). The data is then checked
//!    against the reference, byte for byte.
//!
//! The overhead of coordination is `1 - fleet rate / reference rate`; the goal is under 5%.
//!
//! Environment: `FLEET_INIT_UNITS` (4), `FLEET_INIT_LABELS_PER_UNIT` (32768), `FLEET_INIT_FILE_LABELS`
//! (16384 labels per file), `FLEET_INIT_SCRYPT_N` (8192, mainnet), `FLEET_INIT_WORKERS` ("1,2,3"),
//! `FLEET_INIT_STREAM` (0; 1: every worker runs `--stream-listen 127.0.0.1:0`, so that workers
//! without the identity's files stream their labels to the one with them), `FLEET_INIT_REPEAT` (1;
//! N: N repetitions, each the reference then every fleet run, and a table of medians: this
//! machine's run-to-run noise is larger than the 5% goal), `FLEET_INIT_POLL_MS` (250: how often
//! the bench asks whether the identity is ready; the time is then up to that much late).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");
const ADMIN: &str = "fleet-init-bench-admin-token-0123456789";
const PASSPHRASE: &str = "fleet init bench passphrase";
const LISTENING: &str = "smeshfleet coordinator listening on ";

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
    units: u32,
    labels_per_unit: u64,
    file_labels: u64,
    scrypt_n: u32,
    workers: Vec<usize>,
    stream: bool,
    repeat: usize,
    /// How often the bench asks the coordinator whether the identity is ready: each answer costs
    /// the coordinator CPU that the label threads then miss, so not faster than an operator's
    /// dashboard would.
    poll_ms: u64,
}

/// A child process killed when dropped (a failed run leaves nothing behind).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_until(cmd: &mut Command, ready: &str) -> Result<(Guard, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning smeshfleet")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let guard = Guard(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut found = None;
    for line in lines.by_ref() {
        let line = line.context("reading stdout")?;
        if line.starts_with(ready) {
            found = Some(line);
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let line = found.ok_or_else(|| anyhow!("the process never printed {ready:?}"))?;
    Ok((guard, line))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The fields after the command name of a `/proc/.../stat` line (field 3 on), and the name.
fn stat_fields(path: &str) -> Result<(String, Vec<String>)> {
    let stat = std::fs::read_to_string(path).with_context(|| path.to_owned())?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let (head, rest) = stat.rsplit_once(')').context("malformed stat")?;
    let name = head
        .split_once('(')
        .map(|(_, n)| n.to_owned())
        .unwrap_or_default();
    Ok((name, rest.split_whitespace().map(str::to_owned).collect()))
}

/// Clock ticks of fields `a` and `b` (1-based, as proc(5) numbers them) of a stat line.
fn ticks(fields: &[String], a: usize, b: usize) -> Result<f64> {
    let at = |field: usize| -> Result<f64> {
        fields
            .get(field - 3)
            .context("short stat")?
            .parse::<f64>()
            .context("stat field")
    };
    Ok(at(a)? + at(b)?)
}

/// CPU seconds (user + system) of process `pid` so far; with `children`, those of its
/// waited-for children instead.
fn cpu_secs(pid: &str, children: bool) -> Result<f64> {
    let (_, f) = stat_fields(&format!("/proc/{pid}/stat"))?;
    let t = if children {
        ticks(&f, 16, 17)?
    } else {
        ticks(&f, 14, 15)?
    };
    Ok(t / clock_ticks())
}

/// CPU seconds of process `pid` so far, split: its label threads (`post-labels-*`, the CPU
/// backend's pool) and everything else (its other threads, live or ended).
fn cpu_split(pid: &str) -> Result<(f64, f64)> {
    let total = cpu_secs(pid, false)?;
    let mut labels = 0.0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).context("tasks")? {
        let tid = entry?.file_name().to_string_lossy().into_owned();
        // A thread may end between the listing and the read.
        if let Ok((name, f)) = stat_fields(&format!("/proc/{pid}/task/{tid}/stat")) {
            if name.starts_with("post-labels") {
                labels += ticks(&f, 14, 15)? / clock_ticks();
            }
        }
    }
    Ok((labels, (total - labels).max(0.0)))
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds a run took: label threads, the rest of the label processes (workers, or `post
/// init` itself), and the coordinator.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    labels: f64,
    other: f64,
    coordinator: f64,
}

impl Cpu {
    fn minus(self, o: Cpu) -> Cpu {
        Cpu {
            labels: self.labels - o.labels,
            other: self.other - o.other,
            coordinator: self.coordinator - o.coordinator,
        }
    }

    /// CPU spent beyond the reference's, over the reference's CPU.
    fn overhead_vs(&self, reference: &Cpu) -> f64 {
        let total = reference.labels + reference.other;
        (self.labels + self.other + self.coordinator - total) / total
    }

    /// CPU spent on anything but labels beyond the reference's, over the reference's CPU.
    fn coordination_vs(&self, reference: &Cpu) -> f64 {
        (self.other + self.coordinator - reference.other) / (reference.labels + reference.other)
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The benchmark's identity key (imported, so that the reference can be initialized for the same
/// node id before the fleet runs): a fixed seed, nothing secret.
fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32])
}

fn node_id() -> String {
    hex::encode(key().verifying_key().as_bytes())
}

fn commitment() -> String {
    "c3".repeat(32)
}

/// `post init` alone: its time and CPU seconds (its label threads sampled every 50 ms while it
/// runs, the rest from its total once it ended).
fn reference(cfg: &Cfg, dir: &Path) -> Result<(Duration, Cpu)> {
    let cpu0 = cpu_secs("self", true)?;
    let t = Instant::now();
    let mut child = Command::new(BIN)
        .args(["post", "init", "--datadir"])
        .arg(dir)
        .args(["--node-id", &node_id(), "--commitment-atx-id", &commitment()])
        .args(["--num-units", &cfg.units.to_string()])
        .args(["--labels-per-unit", &cfg.labels_per_unit.to_string()])
        .args(["--max-file-size", &(cfg.file_labels * 16).to_string()])
        .args(["--scrypt-n", &cfg.scrypt_n.to_string(), "--threads", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running smeshfleet post init")?;
    let pid = child.id().to_string();
    let mut labels = 0.0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok((l, _)) = cpu_split(&pid) {
            labels = l;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = t.elapsed();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("post init failed: {err}");
    }
    let total = cpu_secs("self", true)? - cpu0;
    Ok((
        took,
        Cpu {
            labels,
            other: (total - labels).max(0.0),
            coordinator: 0.0,
        },
    ))
}

async fn admin(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http.request(method, url).bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.with_context(|| url.to_string())?;
    let status = r.status();
    let v: Value = r.json().await.with_context(|| format!("{url}: body"))?;
    if !status.is_success() {
        bail!("{url}: {status}: {v}");
    }
    Ok(v)
}

fn walk(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every `postdata_<k>.bin` under `root`, by name, with its bytes (a link is followed).
fn data_files(root: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.starts_with("postdata_") && name.ends_with(".bin") {
            out.push((name, std::fs::read(&f).with_context(|| f.display().to_string())?));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// One fleet run with `k` workers; returns the time from the identity's creation to `ready`, and
/// the CPU seconds the coordinator and the workers spent in it.
async fn fleet(cfg: &Cfg, k: usize, dir: &Path) -> Result<(Duration, Cpu)> {
    let (coord, line) = spawn_until(
        Command::new(BIN)
            .args(["coordinator", "--data-dir"])
            .arg(dir.join("coord"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port()?)])
            .args(["--reconcile-seconds", "1", "--lease-seconds", "60"])
            .env("SMESHFLEET_ADMIN_TOKEN", ADMIN)
            .env("SMESHFLEET_KEYSTORE_PASSPHRASE", PASSPHRASE),
        LISTENING,
    )?;
    let coord_guard = coord;
    let url = line.trim_start_matches(LISTENING).to_owned();
    let http = reqwest::Client::new();
    let threads = (cores() / k).max(1);
    let mut workers = Vec::new();
    for w in 0..k {
        let join = admin(
            &http,
            reqwest::Method::POST,
            &format!("{url}/api/v1/workers/join-tokens"),
            None,
        )
        .await?;
        let token = join["token"].as_str().context("join token")?.to_owned();
        let (g, _) = spawn_until(
            Command::new(BIN)
                .args(["worker", "--coordinator", &url, "--join-token", &token])
                .arg("--data-dir")
                .arg(dir.join(format!("worker{w}")))
                .arg("--disk")
                .arg(dir.join(format!("disk{w}")))
                .args([
                    "--gpus",
                    "none",
                    "--cpu-init",
                    "--cpu-threads",
                    &threads.to_string(),
                ])
                // With `FLEET_INIT_STREAM=1` every rig takes streamed labels, so that all CPUs can
                // work on an identity whose files the planner keeps on one rig.
                .args(if cfg.stream {
                    &["--stream-listen", "127.0.0.1:0"][..]
                } else {
                    &[][..]
                })
                .args([
                    "--measure-seconds",
                    "1",
                    "--disk-test-mib",
                    "16",
                    "--heartbeat-seconds",
                    "1",
                ])
                .args(["--name", &format!("bench-{w}")]),
            "smeshfleet worker ",
        )?;
        workers.push(g);
    }
    // Every worker online and measured before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = admin(
            &http,
            reqwest::Method::GET,
            &format!("{url}/api/v1/workers"),
            None,
        )
        .await?;
        let online = list
            .as_array()
            .map_or(0, |a| a.iter().filter(|w| w["state"] == "online").count());
        if online == k {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {online} of {k} workers online: {list}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pids: Vec<String> = std::iter::once(&coord_guard)
        .chain(&workers)
        .map(|g| g.0.id().to_string())
        .collect();
    let cpu_now = |pids: &[String]| -> Result<Cpu> {
        let mut c = Cpu {
            coordinator: cpu_secs(&pids[0], false)?,
            ..Cpu::default()
        };
        for p in &pids[1..] {
            let (l, o) = cpu_split(p)?;
            c.labels += l;
            c.other += o;
        }
        Ok(c)
    };
    let cpu0 = cpu_now(&pids)?;
    let t = Instant::now();
    let identity = admin(
        &http,
        reqwest::Method::POST,
        &format!("{url}/api/v1/identities/import"),
        Some(
            json!({"name": "bench", "key": format!("{}{}", hex::encode(key().to_bytes()), node_id()),
            "num_units": cfg.units, "labels_per_unit": cfg.labels_per_unit,
            "max_file_size": cfg.file_labels * 16, "scrypt_n": cfg.scrypt_n,
            "commitment_atx_id": commitment()}),
        ),
    )
    .await?;
    let id = identity[0]["id"].as_str().context("identity id")?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let v = admin(
            &http,
            reqwest::Method::GET,
            &format!("{url}/api/v1/identities/{id}"),
            None,
        )
        .await?;
        if v["state"] == "ready" {
            break;
        }
        if Instant::now() > deadline {
            bail!("not ready after an hour: {v}");
        }
        tokio::time::sleep(Duration::from_millis(cfg.poll_ms)).await;
    }
    let took = t.elapsed();
    let cpu1 = cpu_now(&pids)?;
    Ok((took, cpu1.minus(cpu0)))
}

fn main() -> Result<()> {
    let workers: String = env_or("FLEET_INIT_WORKERS", "1,2,3".to_owned())?;
    let cfg = Cfg {
        units: env_or("FLEET_INIT_UNITS", 4)?,
        labels_per_unit: env_or("FLEET_INIT_LABELS_PER_UNIT", 32768)?,
        file_labels: env_or("FLEET_INIT_FILE_LABELS", 16384)?,
        scrypt_n: env_or("FLEET_INIT_SCRYPT_N", 8192)?,
        stream: env_or("FLEET_INIT_STREAM", 0u8)? != 0,
        repeat: env_or("FLEET_INIT_REPEAT", 1usize)?.max(1),
        poll_ms: env_or("FLEET_INIT_POLL_MS", 250u64)?.max(1),
        workers: workers
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| anyhow!("FLEET_INIT_WORKERS: {s:?}"))
            })
            .collect::<Result<_>>()?,
    };
    if cfg.workers.contains(&0) {
        bail!("FLEET_INIT_WORKERS: counts must be positive");
    }
    let labels = u64::from(cfg.units) * cfg.labels_per_unit;
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()?;
    println!("# smeshfleet fleet init benchmark");
    println!();
    println!(
        "streaming between the workers: {}",
        if cfg.stream { "on (--stream-listen)" } else { "off" }
    );
    println!(
        "date: {}; {} cores; identity: {} units x {} labels = {labels} labels ({} files of {} labels), scrypt N = {}",
        String::from_utf8_lossy(&date.stdout).trim(),
        cores(),
        cfg.units,
        cfg.labels_per_unit,
        labels.div_ceil(cfg.file_labels),
        cfg.file_labels,
        cfg.scrypt_n
    );
    println!();

    let tmp = tempfile::Builder::new()
        .prefix("smeshfleet-fleet-init-bench-")
        .tempdir()
        .context("temporary directory")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("async runtime")?;
    println!(
        "| repetition | run | threads per worker | time s | labels/s | vs post init | CPU s: label threads | CPU s: rest of post init / workers | CPU s: coordinator | CPU beyond post init's | of it, not labels | data equal |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    // Per worker count: (fleet time, fleet rate / the same repetition's reference rate, CPU
    // beyond the reference's, non-label CPU beyond the reference's).
    type Run = (f64, f64, f64, f64);
    let mut results: Vec<(usize, Vec<Run>)> = cfg.workers.iter().map(|&k| (k, Vec::new())).collect();
    let mut ref_times = Vec::new();
    for r in 1..=cfg.repeat {
        // The reference and the fleet runs of one repetition back to back, so that a machine that
        // drifts between repetitions moves both.
        let rep_dir = tmp.path().join(format!("rep{r}"));
        let ref_dir = rep_dir.join("reference");
        let (ref_d, ref_cpu) = reference(&cfg, &ref_dir)?;
        ref_times.push(ref_d.as_secs_f64());
        let ref_rate = labels as f64 / ref_d.as_secs_f64();
        let want = data_files(&ref_dir)?;
        println!(
            "| {r} | `smeshfleet post init` | {} | {:.1} | {ref_rate:.0} | 100.0% | {:.1} | {:.1} | | | | (reference) |",
            cores(),
            ref_d.as_secs_f64(),
            ref_cpu.labels,
            ref_cpu.other
        );
        for (k, runs) in results.iter_mut() {
            let k = *k;
            let dir = rep_dir.join(format!("fleet{k}"));
            let (d, cpu) = rt.block_on(fleet(&cfg, k, &dir))?;
            let rate = labels as f64 / d.as_secs_f64();
            let mut got = Vec::new();
            for w in 0..k {
                got.extend(data_files(&dir.join(format!("disk{w}")))?);
            }
            got.sort();
            let equal = got == want;
            println!(
                "| {r} | coordinator + {k} worker{} | {} | {:.1} | {rate:.0} | {:.1}% | {:.1} | {:.1} | {:.1} | {:+.1}% | {:+.1}% | {} |",
                if k == 1 { "" } else { "s" },
                (cores() / k).max(1),
                d.as_secs_f64(),
                rate / ref_rate * 100.0,
                cpu.labels,
                cpu.other,
                cpu.coordinator,
                cpu.overhead_vs(&ref_cpu) * 100.0,
                cpu.coordination_vs(&ref_cpu) * 100.0,
                if equal { "yes" } else { "NO" }
            );
            if !equal {
                bail!(
                    "the fleet's data differs from post init's ({} files vs {})",
                    got.len(),
                    want.len()
                );
            }
            runs.push((
                d.as_secs_f64(),
                rate / ref_rate,
                cpu.overhead_vs(&ref_cpu),
                cpu.coordination_vs(&ref_cpu),
            ));
        }
        // Keep the disk use to one repetition's data.
        std::fs::remove_dir_all(&rep_dir).with_context(|| format!("removing {}", rep_dir.display()))?;
    }
    if cfg.repeat > 1 {
        println!();
        println!(
            "Medians over {} repetitions (vs post init: the median of each repetition's own ratio):",
            cfg.repeat
        );
        println!();
        println!(
            "| run | median time s | median vs post init | lowest - highest | median CPU beyond post init's | median non-label CPU beyond post init's |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        println!(
            "| `smeshfleet post init` | {:.1} | 100.0% | {:.1} - {:.1} s | | |",
            median(&ref_times),
            ref_times.iter().copied().fold(f64::INFINITY, f64::min),
            ref_times.iter().copied().fold(0.0, f64::max)
        );
        for (k, runs) in &results {
            let times: Vec<f64> = runs.iter().map(|r| r.0).collect();
            let ratios: Vec<f64> = runs.iter().map(|r| r.1 * 100.0).collect();
            let beyond: Vec<f64> = runs.iter().map(|r| r.2 * 100.0).collect();
            let coordination: Vec<f64> = runs.iter().map(|r| r.3 * 100.0).collect();
            println!(
                "| coordinator + {k} worker{} | {:.1} | {:.1}% | {:.1}% - {:.1}% | {:+.1}% | {:+.1}% |",
                if *k == 1 { "" } else { "s" },
                median(&times),
                median(&ratios),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max),
                median(&beyond),
                median(&coordination)
            );
        }
    }
    println!();
    println!(
        "Fleet time: from the identity's creation over the API (every worker online and measured) to \
         the coordinator's `ready` (all labels durable and recorded, nonce found); reconcile every 1 s. \
         CPU s: user + system seconds over the same span (/proc): the label threads (`post-labels-*`, \
         the CPU backend's pool), the rest of `post init` or of the workers together, and the \
         coordinator. CPU beyond post init's: (all of the run's CPU - post init's) / post init's; \
         of it, not labels: (the workers' non-label CPU + the coordinator's - post init's non-label \
         CPU) / post init's CPU, i.e. the cost of coordination itself, which time-sharing noise on \
         the label threads does not blur."
    );
    Ok(())
}
