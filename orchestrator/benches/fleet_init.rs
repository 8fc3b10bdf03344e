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
//! machine's run-to-run noise is larger than the 5% goal).

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

fn reference(cfg: &Cfg, dir: &Path) -> Result<Duration> {
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(["post", "init", "--datadir"])
        .arg(dir)
        .args(["--node-id", &node_id(), "--commitment-atx-id", &commitment()])
        .args(["--num-units", &cfg.units.to_string()])
        .args(["--labels-per-unit", &cfg.labels_per_unit.to_string()])
        .args(["--max-file-size", &(cfg.file_labels * 16).to_string()])
        .args(["--scrypt-n", &cfg.scrypt_n.to_string(), "--threads", "0"])
        .output()
        .context("running smeshfleet post init")?;
    if !out.status.success() {
        bail!("post init failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(t.elapsed())
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

/// One fleet run with `k` workers; returns the time from the identity's creation to `ready`.
async fn fleet(cfg: &Cfg, k: usize, dir: &Path) -> Result<Duration> {
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
    let _coord = coord;
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(t.elapsed())
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
    println!("| repetition | run | threads per worker | time s | labels/s | vs post init | data equal |");
    println!("|---:|---|---:|---:|---:|---:|---|");
    // Per worker count: (fleet time, fleet rate / the same repetition's reference rate).
    let mut results: Vec<(usize, Vec<(f64, f64)>)> = cfg.workers.iter().map(|&k| (k, Vec::new())).collect();
    let mut ref_times = Vec::new();
    for r in 1..=cfg.repeat {
        // The reference and the fleet runs of one repetition back to back, so that a machine that
        // drifts between repetitions moves both.
        let rep_dir = tmp.path().join(format!("rep{r}"));
        let ref_dir = rep_dir.join("reference");
        let ref_d = reference(&cfg, &ref_dir)?;
        ref_times.push(ref_d.as_secs_f64());
        let ref_rate = labels as f64 / ref_d.as_secs_f64();
        let want = data_files(&ref_dir)?;
        println!(
            "| {r} | `smeshfleet post init` | {} | {:.1} | {ref_rate:.0} | 100.0% | (reference) |",
            cores(),
            ref_d.as_secs_f64()
        );
        for (k, runs) in results.iter_mut() {
            let k = *k;
            let dir = rep_dir.join(format!("fleet{k}"));
            let d = rt.block_on(fleet(&cfg, k, &dir))?;
            let rate = labels as f64 / d.as_secs_f64();
            let mut got = Vec::new();
            for w in 0..k {
                got.extend(data_files(&dir.join(format!("disk{w}")))?);
            }
            got.sort();
            let equal = got == want;
            println!(
                "| {r} | coordinator + {k} worker{} | {} | {:.1} | {rate:.0} | {:.1}% | {} |",
                if k == 1 { "" } else { "s" },
                (cores() / k).max(1),
                d.as_secs_f64(),
                rate / ref_rate * 100.0,
                if equal { "yes" } else { "NO" }
            );
            if !equal {
                bail!(
                    "the fleet's data differs from post init's ({} files vs {})",
                    got.len(),
                    want.len()
                );
            }
            runs.push((d.as_secs_f64(), rate / ref_rate));
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
        println!("| run | median time s | median vs post init | lowest - highest |");
        println!("|---|---:|---:|---:|");
        println!(
            "| `smeshfleet post init` | {:.1} | 100.0% | {:.1} - {:.1} s |",
            median(&ref_times),
            ref_times.iter().copied().fold(f64::INFINITY, f64::min),
            ref_times.iter().copied().fold(0.0, f64::max)
        );
        for (k, runs) in &results {
            let times: Vec<f64> = runs.iter().map(|r| r.0).collect();
            let ratios: Vec<f64> = runs.iter().map(|r| r.1 * 100.0).collect();
            println!(
                "| coordinator + {k} worker{} | {:.1} | {:.1}% | {:.1}% - {:.1}% |",
                if *k == 1 { "" } else { "s" },
                median(&times),
                median(&ratios),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max)
            );
        }
    }
    println!();
    println!(
        "Fleet time: from the identity's creation over the API (every worker online and measured) to \
         the coordinator's `ready` (all labels durable and recorded, nonce found); reconcile every 1 s."
    );
    Ok(())
}
