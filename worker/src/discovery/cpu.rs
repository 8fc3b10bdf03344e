//! The CPU: how many threads the worker may use, and what they measure with the real PoST code
//! (labels, RandomX, the proving scan).
//!
//! Every measurement is a plain blocking function bounded in time (about the duration it is
//! given, plus a fixed set-up cost named on each); async callers run them with
//! `tokio::task::spawn_blocking`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use post::backend::{bench_labels_n, BackendError, LabelPath};
use post::pow::{PowError, RandomXMode, RandomXOptions, RandomXPow};
use post::prove::{bench_scan, ProveError};

/// Light-mode to fast-mode RandomX speed ratio used to turn a light-mode measurement into the
/// fast-mode rate the scheduler plans k2pow with.
///
/// A light-mode hash computes every dataset item it touches from the 256 MiB cache instead of
/// reading it from the 2080 MiB dataset. The RandomX README's table shows fast mode 5-7x faster
/// than light mode; on the 2-core development machine (JIT, hardware AES, no large pages, busy)
/// the calibration test `randomx_light_to_fast_ratio` (ignored by default: it builds the 2 GiB
/// dataset) measured light 10.2 H/s and fast 65.8 H/s on 2 threads, a ratio of 6.5. 6 errs
/// slightly low, so planned k2pow time errs long rather than short. The ratio depends on the
/// CPU's caches and memory; operators who want the exact rate measure in fast mode
/// ([`RandomXMode::Fast`]) at the cost of building the dataset (1-3 minutes, single-threaded
/// inside `randomx-rs`) and 2 GiB of memory during discovery.
pub const RANDOMX_LIGHT_TO_FAST: f64 = 6.0;

/// Bytes of random labels the proving measurement scans per pass (kept in memory).
pub const PROVING_BENCH_BYTES: usize = 32 << 20;

/// Threads the worker may use: every logical CPU, or fewer when `cap` (`--cpu-threads`) says so.
/// `Some(0)` means no cap. Never below 1.
pub fn cpu_threads(cap: Option<u32>) -> u32 {
    let all = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    match cap {
        Some(c) if c > 0 => c.min(all),
        _ => all,
    }
}

/// Labels per second of all `threads` at scrypt N = `scrypt_n` (the identity's N, 8192 on
/// mainnet) with [`post::backend::CpuBackend`] on its fastest path, measured for about
/// `duration` after one warm-up call (a few tens of milliseconds at N = 8192).
pub fn measure_labels(threads: u32, scrypt_n: u32, duration: Duration) -> Result<f64, BackendError> {
    bench_labels_n(
        threads.max(1) as usize,
        LabelPath::Auto,
        scrypt_n as usize,
        duration,
    )
}

/// A RandomX measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomXRate {
    /// The mode the hashes were computed in.
    pub mode: RandomXMode,
    /// Hashes per second of all threads, as measured in `mode`.
    pub measured: f64,
    /// The fast-mode estimate: `measured` itself in fast mode, `measured` times
    /// [`RANDOMX_LIGHT_TO_FAST`] in light mode.
    pub fast_equivalent: f64,
}

/// RandomX hashes per second of `threads` threads (one VM each) hashing 48-byte k2pow inputs
/// for about `duration`.
///
/// Light mode ([`RandomXMode::Light`], the quick estimate) first builds the 256 MiB cache
/// (about half a second) and reports the fast-mode rate as `measured × RANDOMX_LIGHT_TO_FAST`.
/// Fast mode builds the 2080 MiB dataset first (a minute or more, and 2 GiB of memory) and
/// reports what it measures.
pub fn measure_randomx(threads: u32, mode: RandomXMode, duration: Duration) -> Result<RandomXRate, PowError> {
    let threads = threads.max(1) as usize;
    let pow = RandomXPow::with_options(RandomXOptions {
        mode,
        threads,
        large_pages: false,
    })?;
    let failed = AtomicBool::new(false);
    // Each thread hashes once (creating its VM and JIT code) before its clock starts, then
    // reports its own rate; the rig's rate is their sum.
    let results: Vec<Result<f64, PowError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (pow, failed) = (&pow, &failed);
                s.spawn(move || {
                    let r = hash_rate(pow, t as u64, duration, failed);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(PowError::RandomX("a measuring thread panicked".into())))
            })
            .collect()
    });
    let mut measured = 0.0;
    for r in results {
        measured += r?;
    }
    let fast_equivalent = match mode {
        RandomXMode::Fast => measured,
        RandomXMode::Light => measured * RANDOMX_LIGHT_TO_FAST,
    };
    Ok(RandomXRate {
        mode,
        measured,
        fast_equivalent,
    })
}

/// Hashes per second of one thread for about `duration` after one warm-up hash; stops early
/// when `stop` is set.
fn hash_rate(pow: &RandomXPow, thread: u64, duration: Duration, stop: &AtomicBool) -> Result<f64, PowError> {
    let mut input = [0u8; post::pow::POW_INPUT_LEN];
    input[8..16].copy_from_slice(&thread.to_le_bytes());
    pow.hash(&input)?;
    let start = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        input[..8].copy_from_slice(&n.to_le_bytes());
        pow.hash(&input)?;
        if start.elapsed() >= duration {
            break;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Proving scan throughput in MiB/s of all `threads` at 16 nonces per pass, over
/// [`PROVING_BENCH_BYTES`] of random labels in memory (no disk, no RandomX), repeated for about
/// `duration` (at least one pass). Filling the buffer costs a few tens of milliseconds first.
pub fn measure_proving(threads: u32, duration: Duration) -> Result<f64, ProveError> {
    let mut data = vec![0u8; PROVING_BENCH_BYTES];
    blake3::Hasher::new()
        .update(b"smeshfleet proving bench")
        .finalize_xof()
        .fill(&mut data);
    let mib = data.len() as f64 / (1024.0 * 1024.0);
    let start = Instant::now();
    let (mut total_mib, mut total_s) = (0.0f64, 0.0f64);
    loop {
        let rate = bench_scan(&data, 16, threads.max(1) as usize)?;
        total_mib += mib;
        total_s += mib / rate.max(1e-9);
        if start.elapsed() >= duration {
            break;
        }
    }
    Ok(total_mib / total_s.max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_capped_but_never_zero() {
        let all = cpu_threads(None);
        assert!(all >= 1);
        assert_eq!(cpu_threads(Some(0)), all);
        assert_eq!(cpu_threads(Some(1)), 1);
        assert_eq!(cpu_threads(Some(u32::MAX)), all);
    }

    #[test]
    fn labels_at_small_n() {
        let r = measure_labels(1, 16, Duration::from_millis(20)).expect("bench");
        assert!(r > 0.0);
        assert!(matches!(
            measure_labels(1, 3, Duration::from_millis(1)),
            Err(BackendError::BadN(3))
        ));
    }
}
