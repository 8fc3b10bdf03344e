//! k2pow with RandomX v1.2.1 (through `randomx-rs`), cache key `spacemesh-randomx-cache-key`.
//!
//! - [`RandomXMode::Light`]: cache only (256 MiB, about 0.5 s to build), slow hashes; the
//!   verifier's default.
//! - [`RandomXMode::Fast`]: builds the 2080 MiB dataset (about a minute or more, single
//!   threaded inside `randomx-rs`), fast hashes; for proving.
//!
//! Both give identical hashes. The search runs one VM per thread; thread `t` of `T` tries
//! `t, t+T, t+2T, ...` and every thread keeps going until its next candidate is above the best
//! valid pow found so far, so the result is always the **smallest** valid pow whatever the
//! thread count (a 1-thread search simply scans 0, 1, 2, ...).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use randomx_rs::{RandomXCache, RandomXDataset, RandomXFlag, RandomXVM};

use super::{check_hash, pow_input, PowError, PowSolver, PowVerifier, POW_LIMIT};

/// The RandomX cache key of Spacemesh (fixed for all time).
pub const RANDOMX_CACHE_KEY: &[u8] = b"spacemesh-randomx-cache-key";

/// RandomX hash of 48 zero bytes under [`RANDOMX_CACHE_KEY`] (spec §7.3), checked on start.
const SELF_TEST_HASH: &str = "42f1af4705a986a364efcdf9d0c98cde07d5d650fc717b5fc6d38dfbdf2c20ef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomXMode {
    /// Full dataset (FLAG_FULL_MEM): fast hashes, about 2080 MiB.
    Fast,
    /// Cache only: slow hashes, about 256 MiB.
    Light,
}

impl std::str::FromStr for RandomXMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fast" => Ok(Self::Fast),
            "light" => Ok(Self::Light),
            other => Err(format!("unknown RandomX mode {other:?} (expected fast or light)")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RandomXOptions {
    pub mode: RandomXMode,
    /// Threads (one VM each) for the search; 0 means all logical CPUs.
    pub threads: usize,
    /// Try large pages first (falls back to normal pages when they cannot be allocated).
    pub large_pages: bool,
}

impl Default for RandomXOptions {
    fn default() -> Self {
        Self {
            mode: RandomXMode::Light,
            threads: 1,
            large_pages: false,
        }
    }
}

/// Sharing of the RandomX C objects between threads.
#[allow(unsafe_code)]
mod shared {
    use randomx_rs::{RandomXCache, RandomXDataset, RandomXVM};

    /// The read-only RandomX memory (cache or dataset) that every VM of a [`super::RandomXPow`]
    /// points to.
    pub(super) struct Memory {
        pub cache: Option<RandomXCache>,
        pub dataset: Option<RandomXDataset>,
    }

    // SAFETY: `randomx-rs` wraps the C cache and dataset in `Arc`s around raw pointers and so
    // does not mark them Send/Sync. After `randomx_init_cache`/`randomx_init_dataset` both are
    // only read; the RandomX API documents that one cache or dataset may back many VMs running
    // concurrently on different threads. The `Arc` reference counts are atomic and the C
    // release functions may run on any thread.
    unsafe impl Send for Memory {}
    // SAFETY: see above; `&Memory` only allows cloning the `Arc`s and creating VMs from them.
    unsafe impl Sync for Memory {}

    /// A VM that may move between threads; it is used by one thread at a time (it lives either
    /// in the pool's mutex or in exactly one worker).
    pub(super) struct Vm(pub RandomXVM);

    // SAFETY: a RandomX VM must not be used by two threads at once, but it is not tied to the
    // thread that created it. `Vm` is only `Send`, never `Sync`, so it is never shared.
    unsafe impl Send for Vm {}
}

/// Local RandomX k2pow: both [`PowSolver`] and [`PowVerifier`].
pub struct RandomXPow {
    mode: RandomXMode,
    flags: RandomXFlag,
    threads: usize,
    memory: shared::Memory,
    vms: Mutex<Vec<shared::Vm>>,
}

impl std::fmt::Debug for RandomXPow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomXPow")
            .field("mode", &self.mode)
            .field("flags", &self.flags)
            .field("threads", &self.threads)
            .finish()
    }
}

fn rx_err(what: &str, e: impl std::fmt::Display) -> PowError {
    PowError::RandomX(format!("{what}: {e}"))
}

impl RandomXPow {
    /// Light or fast mode with 1 search thread and the Spacemesh cache key. Runs the self-test.
    pub fn new(mode: RandomXMode) -> Result<Self, PowError> {
        Self::with_options(RandomXOptions {
            mode,
            ..RandomXOptions::default()
        })
    }

    /// Build with `options` and the Spacemesh cache key; runs the self-test (one hash).
    pub fn with_options(options: RandomXOptions) -> Result<Self, PowError> {
        let pow = Self::with_key(RANDOMX_CACHE_KEY, options)?;
        let got = pow.hash(&[0u8; 48])?;
        if hex::encode(got) != SELF_TEST_HASH {
            return Err(PowError::SelfTest {
                got: hex::encode(got),
                expected: SELF_TEST_HASH.to_string(),
            });
        }
        Ok(pow)
    }

    /// Build with another cache key (tests against the standard RandomX vectors). No self-test.
    pub fn with_key(key: &[u8], options: RandomXOptions) -> Result<Self, PowError> {
        let mut base = RandomXFlag::get_recommended_flags();
        if options.mode == RandomXMode::Fast {
            base |= RandomXFlag::FLAG_FULL_MEM;
        }
        let attempt = |flags: RandomXFlag| -> Result<shared::Memory, PowError> {
            let cache = RandomXCache::new(flags, key).map_err(|e| rx_err("allocating the cache", e))?;
            Ok(match options.mode {
                RandomXMode::Light => shared::Memory {
                    cache: Some(cache),
                    dataset: None,
                },
                RandomXMode::Fast => shared::Memory {
                    cache: None,
                    dataset: Some(
                        RandomXDataset::new(flags, cache, 0)
                            .map_err(|e| rx_err("building the dataset", e))?,
                    ),
                },
            })
        };
        let (flags, memory) = if options.large_pages {
            let lp = base | RandomXFlag::FLAG_LARGE_PAGES;
            match attempt(lp) {
                Ok(m) => (lp, m),
                Err(_) => (base, attempt(base)?),
            }
        } else {
            (base, attempt(base)?)
        };
        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.threads
        };
        Ok(Self {
            mode: options.mode,
            flags,
            threads,
            memory,
            vms: Mutex::new(Vec::new()),
        })
    }

    pub fn mode(&self) -> RandomXMode {
        self.mode
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Change the number of search threads (0 = all logical CPUs).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
    }

    fn take_vm(&self) -> Result<shared::Vm, PowError> {
        if let Some(vm) = self.vms.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(vm);
        }
        let vm = RandomXVM::new(self.flags, self.memory.cache.clone(), self.memory.dataset.clone())
            .map_err(|e| rx_err("creating a VM", e))?;
        Ok(shared::Vm(vm))
    }

    fn put_vm(&self, vm: shared::Vm) {
        if let Ok(mut v) = self.vms.lock() {
            v.push(vm);
        }
    }

    fn hash_with(vm: &shared::Vm, input: &[u8]) -> Result<[u8; 32], PowError> {
        let h = vm.0.calculate_hash(input).map_err(|e| rx_err("hashing", e))?;
        h.try_into()
            .map_err(|h: Vec<u8>| PowError::RandomX(format!("hash has {} bytes, expected 32", h.len())))
    }

    /// The RandomX hash of `input`.
    pub fn hash(&self, input: &[u8]) -> Result<[u8; 32], PowError> {
        let vm = self.take_vm()?;
        let r = Self::hash_with(&vm, input);
        self.put_vm(vm);
        r
    }

    /// Scan `first, first + step, ...` until a valid pow, a candidate above `best`, or `stop`.
    fn scan(
        &self,
        first: u64,
        step: u64,
        template: [u8; 48],
        difficulty: &[u8; 32],
        best: &AtomicU64,
        stop: &AtomicBool,
    ) -> Result<(), PowError> {
        let vm = self.take_vm()?;
        let mut input = template;
        let mut x = first;
        let result = loop {
            if x >= POW_LIMIT || x > best.load(Ordering::Acquire) || stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            input[..7].copy_from_slice(&x.to_le_bytes()[..7]);
            match Self::hash_with(&vm, &input) {
                Ok(h) if h < *difficulty => {
                    best.fetch_min(x, Ordering::AcqRel);
                    break Ok(());
                }
                Ok(_) => {}
                Err(e) => break Err(e),
            }
            x += step;
        };
        self.put_vm(vm);
        result
    }
}

impl PowSolver for RandomXPow {
    fn solve(
        &self,
        nonce_group: u8,
        challenge: &[u8; 8],
        miner_id: &[u8; 32],
        scaled_difficulty: &[u8; 32],
    ) -> Result<u64, PowError> {
        self.solve_with_stop(
            nonce_group,
            challenge,
            miner_id,
            scaled_difficulty,
            &AtomicBool::new(false),
        )
    }

    fn solve_with_stop(
        &self,
        nonce_group: u8,
        challenge: &[u8; 8],
        miner_id: &[u8; 32],
        scaled_difficulty: &[u8; 32],
        stop: &AtomicBool,
    ) -> Result<u64, PowError> {
        let template = pow_input(0, nonce_group, challenge, miner_id);
        let best = AtomicU64::new(u64::MAX);
        let threads = self.threads.max(1) as u64;
        if threads == 1 {
            self.scan(0, 1, template, scaled_difficulty, &best, stop)?;
        } else {
            let errors: Vec<PowError> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let best = &best;
                        s.spawn(move || self.scan(t, threads, template, scaled_difficulty, best, stop))
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| match h.join() {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(_) => Some(PowError::RandomX("a search thread panicked".into())),
                    })
                    .collect()
            });
            if let Some(e) = errors.into_iter().next() {
                return Err(e);
            }
        }
        match best.load(Ordering::Acquire) {
            u64::MAX if stop.load(Ordering::Relaxed) => Err(PowError::Stopped { nonce_group }),
            u64::MAX => Err(PowError::NotFound { nonce_group }),
            x => Ok(x),
        }
    }
}

impl PowVerifier for RandomXPow {
    fn verify(
        &self,
        pow: u64,
        nonce_group: u8,
        challenge: &[u8; 8],
        miner_id: &[u8; 32],
        scaled_difficulty: &[u8; 32],
    ) -> Result<(), PowError> {
        let hash = self.hash(&pow_input(pow, nonce_group, challenge, miner_id))?;
        check_hash(&hash, pow, nonce_group, scaled_difficulty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn light() -> &'static RandomXPow {
        static POW: OnceLock<RandomXPow> = OnceLock::new();
        POW.get_or_init(|| RandomXPow::new(RandomXMode::Light).expect("light RandomX"))
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).expect("hex").try_into().expect("32 bytes")
    }

    #[test]
    fn standard_randomx_vector() {
        let pow = RandomXPow::with_key(b"test key 000", RandomXOptions::default()).expect("RandomX");
        assert_eq!(
            hex::encode(pow.hash(b"This is a test").expect("hash")),
            "639183aae1bf4c9a35884cb46b09cad9175f04efd7684e7262a0ac1c2f0b4e3f"
        );
    }

    #[test]
    fn spacemesh_hashes() {
        // vectors/randomx_hash.json (the self-test hash was checked in `new`).
        let pow = light();
        for (input, hash) in [
            (
                "184900000000000068656c6c6f20776f8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924",
                "00000457b9c08086a223f663f37023f1dd9aa84b4368168a57cc742d7bbd801d",
            ),
            (
                "174900000000000068656c6c6f20776f8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924",
                "60aced3146feb5a50b2d43ea4e4ded65637e6f2249bf5fd8326e997a1282209b",
            ),
        ] {
            let input = hex::decode(input).expect("hex");
            assert_eq!(hex::encode(pow.hash(&input).expect("hash")), hash);
        }
    }

    #[test]
    fn mode_parses() {
        assert_eq!("fast".parse::<RandomXMode>(), Ok(RandomXMode::Fast));
        assert_eq!("light".parse::<RandomXMode>(), Ok(RandomXMode::Light));
        assert!("medium".parse::<RandomXMode>().is_err());
    }

    #[test]
    fn spec_7_3_group_7_smallest_is_11() {
        // Spec §7.3: threshold 0f ff.., group 7, challenge "hello!!!", miner 06 x 32 -> x = 11.
        let mut d = [0xff; 32];
        d[0] = 0x0f;
        let pow = light();
        assert_eq!(pow.solve(7, b"hello!!!", &[6; 32], &d).expect("pow"), 11);
        assert_eq!(
            hex::encode(pow.hash(&pow_input(11, 7, b"hello!!!", &[6; 32])).expect("hash")),
            "0ac7ee491508a84ae09161ac961750ce668a69e0e6def2271b811e162c217f0e"
        );
        // The miner id matters (spec §7.7 invariant 7).
        assert_ne!(
            pow.hash(&pow_input(11, 7, b"hello!!!", &[7; 32])).expect("hash"),
            pow.hash(&pow_input(11, 7, b"hello!!!", &[6; 32])).expect("hash")
        );
    }

    #[test]
    fn k2pow_easy_groups_smallest() {
        // vectors/k2pow.json, easy difficulty: group 4 -> 63, group 2 -> 243 (1 thread).
        let miner = hex32("8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924");
        let d = hex32("00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
        let pow = light();
        assert_eq!(pow.solve(4, b"hello wo", &miner, &d).expect("pow"), 63);
        // The other valid pows listed for group 4 verify as well; 62 does not.
        for x in [63, 72, 284] {
            pow.verify(x, 4, b"hello wo", &miner, &d).expect("valid");
        }
        assert!(pow.verify(62, 4, b"hello wo", &miner, &d).is_err());
    }

    #[test]
    fn k2pow_easy_group_2_two_threads() {
        let miner = hex32("8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924");
        let d = hex32("00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
        let mut pow = RandomXPow::new(RandomXMode::Light).expect("light");
        pow.set_threads(2);
        // Two threads still give the smallest valid pow.
        assert_eq!(pow.solve(2, b"hello wo", &miner, &d).expect("pow"), 243);
    }

    #[test]
    fn k2pow_mainnet_pows_verify() {
        let pow = light();
        let miner = hex32("8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924");
        let d4 = hex32("00037ec8ec25e6d2c00000000000000000000000000000000000000000000000");
        pow.verify(18712, 0, b"hello wo", &miner, &d4).expect("group 0");
        pow.verify(17957, 1, b"hello wo", &miner, &d4).expect("group 1");
        let err = pow
            .verify(18711, 0, b"hello wo", &miner, &d4)
            .expect_err("18711 invalid");
        assert!(
            matches!(
                err,
                PowError::InvalidPow {
                    pow: 18711,
                    nonce_group: 0,
                    ..
                }
            ),
            "{err}"
        );
        // The high byte does not enter RandomX.
        pow.verify(18712 | (0x5a << 56), 0, b"hello wo", &miner, &d4)
            .expect("high byte ignored");

        let seq = hex32("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let d1 = hex32("000dfb23b0979b4b000000000000000000000000000000000000000000000000");
        let c8 = [0, 1, 2, 3, 4, 5, 6, 7];
        for (g, x) in [(0u8, 2854u64), (1, 1999), (2, 7828)] {
            pow.verify(x, g, &c8, &seq, &d1).expect("mainnet 1 unit");
        }
    }

    #[test]
    fn stop_interrupts_search() {
        let pow = light();
        let stop = AtomicBool::new(true);
        let err = pow
            .solve_with_stop(0, b"hello wo", &[0; 32], &[0; 32], &stop)
            .expect_err("stopped");
        assert!(matches!(err, PowError::Stopped { nonce_group: 0 }), "{err}");
    }

    #[test]
    #[ignore = "fast mode builds the 2 GiB dataset (minutes on 2 cores)"]
    fn fast_mode_equals_light() {
        let fast = RandomXPow::new(RandomXMode::Fast).expect("fast RandomX");
        let input = pow_input(18712, 0, b"hello wo", &[9; 32]);
        assert_eq!(
            fast.hash(&input).expect("fast"),
            light().hash(&input).expect("light")
        );
    }
}
