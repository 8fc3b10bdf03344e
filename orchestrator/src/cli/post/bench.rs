//! `smeshfleet post bench`: labels/s, proving MiB/s and verification time on this machine,
//! printed as a table (or one JSON object). The figures go to BENCHMARKS.md.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use post::backend::{bench_labels, CpuBackend};
use post::initialize::{initialize, InitOptions};
use post::metadata::PostMetadata;
use post::pow::randomx::{RandomXMode, RandomXPow};
use post::proof::{InitConfig, ProofConfig, ProofMetadata};
use post::prove::{bench_scan, generate_proof, ProveOptions};
use post::scrypt::LabelPath;
use post::verify::{verify, Mode, VerifyOptions};
use rand::RngCore;
use serde_json::json;

use super::{emit_json, runtime, BenchArgs, CmdResult};

struct Row {
    what: String,
    value: f64,
    unit: &'static str,
}

fn threads_all(t: usize) -> usize {
    if t == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        t
    }
}

pub fn bench(a: BenchArgs) -> CmdResult {
    let json = a.common.json;
    let dur = Duration::from_secs_f64(a.seconds.clamp(0.5, 600.0));
    let all = threads_all(a.threads);
    let mut rows = Vec::new();
    let say = |r: &Row| {
        if !json {
            eprintln!("  {:<52} {:>12.1} {}", r.what, r.value, r.unit);
        }
    };

    // Labels at the mainnet scrypt N.
    for path in [LabelPath::Scalar, LabelPath::Portable, LabelPath::Avx2] {
        if !path.is_available() {
            continue;
        }
        let v = bench_labels(1, path, dur).map_err(|e| runtime(json, e))?;
        let r = Row {
            what: format!("labels, N=8192, 1 thread, {} path", path.as_str()),
            value: v,
            unit: "labels/s",
        };
        say(&r);
        rows.push(r);
    }
    let best = LabelPath::Auto.resolve().unwrap_or(LabelPath::Portable);
    let v = bench_labels(all, LabelPath::Auto, dur).map_err(|e| runtime(json, e))?;
    let r = Row {
        what: format!("labels, N=8192, {all} threads, {} path", best.as_str()),
        value: v,
        unit: "labels/s",
    };
    say(&r);
    rows.push(r);

    // Proving scan over data in memory (as from the page cache), one thread, pows given.
    let mut data = vec![0u8; 256 << 20];
    rand::thread_rng().fill_bytes(&mut data);
    for nonces in [16u32, 288] {
        let mut best = 0f64;
        let t = Instant::now();
        while t.elapsed() < dur || best == 0.0 {
            best = best.max(bench_scan(&data, nonces, 1).map_err(|e| runtime(json, e))?);
        }
        let r = Row {
            what: format!("proving scan, {nonces} nonces, 1 thread"),
            value: best,
            unit: "MiB/s",
        };
        say(&r);
        rows.push(r);
    }
    drop(data);

    // Verification of one proof with K3 = K2 = 37 at N = 8192 (RandomX light, cache built once).
    let v = verify_time(all).map_err(|e| runtime(json, e))?;
    let r = Row {
        what: "verify one proof, K3=37, N=8192, light RandomX".into(),
        value: v * 1e3,
        unit: "ms",
    };
    say(&r);
    rows.push(r);

    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| json!({"what": r.what, "value": r.value, "unit": r.unit}))
            .collect();
        emit_json(true, json!({"ok": true, "threads": all, "rows": rows}));
    } else {
        println!("| measurement | value | unit |");
        println!("|---|---:|---|");
        for r in &rows {
            println!("| {} | {:.1} | {} |", r.what, r.value, r.unit);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Make a 1024-label data set at N = 8192, prove it with an easy k2pow, and time verification
/// (median of 5 runs).
fn verify_time(threads: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut opts = InitOptions::new([7; 32], [9; 32], 4, 256, 4096);
    opts.batch_size = 256;
    let backend = CpuBackend::new(threads)?;
    let stop = AtomicBool::new(false);
    initialize(dir.path(), &opts, &backend, &|_| {}, &stop)?;
    let cfg = ProofConfig {
        k1: 26,
        k2: 37,
        pow_difficulty: [0xff; 32],
    };
    let pow = RandomXPow::new(RandomXMode::Light)?;
    let challenge = [3u8; 32];
    let proof = generate_proof(
        dir.path(),
        &challenge,
        &cfg,
        &ProveOptions {
            nonces: 64,
            threads: 1,
        },
        &pow,
        &|_| {},
        &stop,
    )?;
    let md = PostMetadata::load(dir.path())?.ok_or_else(|| anyhow::anyhow!("metadata missing"))?;
    let meta = ProofMetadata::from_post_metadata(&md, challenge);
    let init_cfg = InitConfig {
        min_num_units: 1,
        max_num_units: u32::MAX,
        labels_per_unit: 256,
        scrypt_n: 8192,
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        verify(
            &proof,
            &meta,
            &cfg,
            &init_cfg,
            &Mode::All,
            &VerifyOptions::default(),
            &pow,
        )?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
