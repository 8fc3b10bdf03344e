//! Labels/s for each label path through `CpuBackend`, N = 8192 by default. Quick:
//! `cargo bench -p post --bench labels` (about 20 s). Options after `--`:
//! `--secs S` per measurement (default 2), `--n N`, `--threads 1,2`, `--paths scalar,avx2`.
//!
//! Besides wall-clock labels/s (what `post::backend::bench_labels` returns), it prints labels per
//! CPU-second of the whole process (from /proc/self/stat on Linux): on a machine shared with
//! other work that is the steadier per-core figure.

use std::time::{Duration, Instant};

use post::backend::{CpuBackend, LabelBackend, LabelPath, LabelRequest};

/// User + system CPU seconds of this process so far (all threads), if /proc is there.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime is field 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn measure(threads: usize, path: LabelPath, n: usize, secs: f64) -> Result<(f64, Option<f64>), String> {
    let b = CpuBackend::with_path(threads, path).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; 16 * 4 * b.threads() * b.path().lanes()];
    let c = [0x5au8; 32];
    let mut req = LabelRequest {
        commitment: &c,
        scrypt_n: n,
        start: 0,
        vrf_threshold: None,
    };
    b.compute(&req, &mut out).map_err(|e| e.to_string())?;
    let (t, cpu0) = (Instant::now(), cpu_seconds());
    let mut done = 0u64;
    while t.elapsed() < Duration::from_secs_f64(secs) {
        req.start = done;
        b.compute(&req, &mut out).map_err(|e| e.to_string())?;
        done += (out.len() / 16) as u64;
    }
    let wall = t.elapsed().as_secs_f64();
    let per_cpu = match (cpu0, cpu_seconds()) {
        (Some(a), Some(z)) if z > a => Some(done as f64 / (z - a)),
        _ => None,
    };
    Ok((done as f64 / wall, per_cpu))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secs: f64 = get("--secs").and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let n: usize = get("--n").and_then(|s| s.parse().ok()).unwrap_or(8192);
    let threads: Vec<usize> = get("--threads")
        .map(|s| s.split(',').filter_map(|t| t.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    let paths: Vec<LabelPath> = match get("--paths") {
        Some(p) => p.split(',').filter_map(|t| t.parse().ok()).collect(),
        None => vec![LabelPath::Scalar, LabelPath::Portable, LabelPath::Avx2],
    };
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("loadavg before: {}", l.trim());
    }
    for &t in &threads {
        for &p in paths.iter().filter(|p| p.is_available()) {
            match measure(t, p, n, secs) {
                Ok((wall, cpu)) => println!(
                    "path={p:<8} N={n} threads={t}: {wall:8.1} labels/s wall ({:.1}/thread), {}",
                    wall / t as f64,
                    cpu.map_or("cpu time n/a".into(), |c| format!("{c:.1} labels per CPU-second")),
                ),
                Err(e) => println!("path={p} threads={t}: {e}"),
            }
        }
    }
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("loadavg after: {}", l.trim());
    }
}
