//! The verifier (spec/post.md §5), in the reference's step order with its error kinds:
//!
//! 1. units: [`VerifyError::NumUnitsTooSmall`] / [`VerifyError::NumUnitsTooLarge`];
//! 2. k2pow: [`VerifyError::NonceGroupOutOfBounds`], then RandomX ([`VerifyError::InvalidPoW`]);
//! 3. length of `indices`: [`VerifyError::InvalidIndicesLen`];
//! 4. keys and D: [`VerifyError::InvalidNumLabels`];
//! 5. decode K2 indices; 6. select by [`Mode`];
//! 7. re-derive each selected label with the verifier's scrypt N and check it:
//!    [`VerifyError::InvalidMsb`] / [`VerifyError::InvalidLsb`] with the original position.
//!
//! The number of labels is `numUnits × InitConfig::labels_per_unit`, as in the reference.
//!
//! [`VerifyOptions::strict`] adds checks the reference does not make (spec §5.4), each with its
//! own error: `pow < 2^56`, indices below numLabels, indices strictly ascending (so no
//! duplicates; the reference's single-threaded prover and this crate's prover always emit
//! ascending indices, a multi-threaded reference prover may not), zero padding bits, and
//! `ProofMetadata::labels_per_unit` equal to the InitConfig's. Strict is a local policy: it
//! must not be used where agreement with consensus is needed.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::cipher::{GroupCipher, NonceCipher, NONCES_PER_GROUP};
use crate::compression::{compressed_len, decompress_indices, padding_is_zero};
use crate::difficulty::{
    proving_difficulty, required_bits, scale_pow_difficulty, split_difficulty, vrf_difficulty,
    DifficultyError,
};
use crate::pow::{challenge8, PowError, PowVerifier, POW_LIMIT};
use crate::proof::{InitConfig, Proof, ProofConfig, ProofMetadata};
use crate::scrypt::{commitment, label32_with_scratch};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("numunits too small: {got} < {min}")]
    NumUnitsTooSmall { min: u32, got: u32 },
    #[error("numunits too large: {got} > {max}")]
    NumUnitsTooLarge { max: u32, got: u32 },
    #[error("nonce group {nonce_group} of nonce {nonce} out of bounds (max 255)")]
    NonceGroupOutOfBounds { nonce: u32, nonce_group: u32 },
    #[error("invalid proof of work: {0}")]
    InvalidPoW(#[source] PowError),
    #[error("invalid number of indices (expected: {expected}, got: {got})")]
    InvalidIndicesLen { expected: usize, got: usize },
    #[error("invalid number of labels: {0}")]
    InvalidNumLabels(#[source] DifficultyError),
    #[error(
        "MSB value for index: {index} (id: {index_id}) doesn't satisfy difficulty: {msb} > {dmsb} \
         (label: {label:?})"
    )]
    InvalidMsb {
        index: u64,
        index_id: usize,
        msb: u8,
        dmsb: u8,
        label: [u8; 16],
    },
    #[error(
        "LSB value for index: {index} (id: {index_id}) doesn't satisfy difficulty: {lsb} >= {dlsb} \
         (label: {label:?})"
    )]
    InvalidLsb {
        index: u64,
        index_id: usize,
        lsb: u64,
        dlsb: u64,
        label: [u8; 16],
    },
    #[error("invalid scrypt N {0} (must be a power of two >= 2)")]
    InvalidScryptN(usize),
    // Strict-only checks.
    #[error("strict: labels per unit of the proof ({got}) differ from the verifier's ({expected})")]
    LabelsPerUnitMismatch { expected: u64, got: u64 },
    #[error("strict: pow {pow} is not below 2^56")]
    PowOutOfRange { pow: u64 },
    #[error("strict: index {index} (id: {index_id}) is not below the number of labels {num_labels}")]
    IndexOutOfRange {
        index: u64,
        index_id: usize,
        num_labels: u64,
    },
    #[error("strict: index {index} (id: {index_id}) repeats the index at id {first_id}")]
    DuplicateIndex {
        index: u64,
        index_id: usize,
        first_id: usize,
    },
    #[error(
        "strict: index {index} (id: {index_id}) is below the previous index {previous}; indices must ascend"
    )]
    IndicesNotAscending {
        index: u64,
        index_id: usize,
        previous: u64,
    },
    #[error("strict: padding bits after the {k2} indices are not zero")]
    NonZeroPadding { k2: u32 },
}

/// Which of the K2 listed indices are re-derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Every position, in order.
    All,
    /// Only position `index` (nothing is checked when it is >= K2).
    One { index: usize },
    /// `k3` positions picked by the BLAKE3-XOF Fisher-Yates selector seeded with
    /// `seed || node_id || challenge`; `k3 == K2` is the same as [`Mode::All`].
    Subset { k3: usize, seed: Vec<u8> },
}

/// Verifier options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Add the checks of spec §5.4 (see the module documentation).
    pub strict: bool,
    /// Threads deriving labels (0 = all logical CPUs). The first failure in selection order is
    /// reported whatever the thread count.
    pub threads: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            strict: false,
            threads: 1,
        }
    }
}

/// BLAKE3-XOF random stream of LE u16 values.
struct Blake3Rng(blake3::OutputReader);

impl Blake3Rng {
    fn new(parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(p);
        }
        Self(h.finalize_xof())
    }

    fn next_u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        self.0.fill(&mut b);
        u16::from_le_bytes(b)
    }
}

/// The partial Fisher-Yates selection of spec §5.3 over `items`: the first `min(k, len)` picks.
/// The rejection limit is `65535 - 65535 mod remaining` (65535, not 65536), as in the reference.
pub fn select_subset<T: Copy>(items: &[T], k: usize, seed_parts: &[&[u8]]) -> Vec<T> {
    let mut data = items.to_vec();
    let mut rng = Blake3Rng::new(seed_parts);
    let picks = k.min(data.len());
    for t in 0..picks {
        let remaining = data.len() - t;
        // `remaining` >= 1. Counts above 65535 (K2 that large is not realistic) are clamped.
        let rem16 = u16::try_from(remaining).unwrap_or(u16::MAX);
        let limit = u16::MAX - u16::MAX % rem16;
        let r = loop {
            let r = rng.next_u16();
            if r < limit {
                break r;
            }
        };
        data.swap(t, t + r as usize % remaining);
    }
    data.truncate(picks);
    data
}

/// The positions (0..K2) that `mode` checks, in checking order.
pub fn selected_positions(mode: &Mode, k2: u32, metadata: &ProofMetadata) -> Vec<usize> {
    let k2 = k2 as usize;
    match mode {
        Mode::All => (0..k2).collect(),
        Mode::One { index } => {
            if *index < k2 {
                vec![*index]
            } else {
                Vec::new()
            }
        }
        Mode::Subset { k3, .. } if *k3 == k2 => (0..k2).collect(),
        Mode::Subset { k3, seed } => {
            let positions: Vec<usize> = (0..k2).collect();
            select_subset(&positions, *k3, &[seed, &metadata.node_id, &metadata.challenge])
        }
    }
}

/// A proof verifier with its k2pow checker.
pub struct Verifier<P: PowVerifier> {
    pow: P,
    options: VerifyOptions,
}

impl<P: PowVerifier> std::fmt::Debug for Verifier<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("options", &self.options)
            .finish()
    }
}

impl<P: PowVerifier> Verifier<P> {
    pub fn new(pow: P) -> Self {
        Self {
            pow,
            options: VerifyOptions::default(),
        }
    }

    pub fn with_options(pow: P, options: VerifyOptions) -> Self {
        Self { pow, options }
    }

    pub fn options(&self) -> VerifyOptions {
        self.options
    }

    pub fn pow_verifier(&self) -> &P {
        &self.pow
    }

    /// Verify `proof` (spec §5.2).
    pub fn verify(
        &self,
        proof: &Proof,
        metadata: &ProofMetadata,
        cfg: &ProofConfig,
        init_cfg: &InitConfig,
        mode: &Mode,
    ) -> Result<(), VerifyError> {
        verify(proof, metadata, cfg, init_cfg, mode, &self.options, &self.pow)
    }
}

impl Verifier<crate::pow::RandomXPow> {
    /// A verifier with a light-mode RandomX (the reference verifier's default).
    pub fn light(options: VerifyOptions) -> Result<Self, PowError> {
        Ok(Self::with_options(
            crate::pow::RandomXPow::new(crate::pow::RandomXMode::Light)?,
            options,
        ))
    }
}

/// Verify `proof` (spec §5.2) with `pow` checking the k2pow.
pub fn verify(
    proof: &Proof,
    metadata: &ProofMetadata,
    cfg: &ProofConfig,
    init_cfg: &InitConfig,
    mode: &Mode,
    options: &VerifyOptions,
    pow: &dyn PowVerifier,
) -> Result<(), VerifyError> {
    let strict = options.strict;
    // 1. Units.
    if metadata.num_units < init_cfg.min_num_units {
        return Err(VerifyError::NumUnitsTooSmall {
            min: init_cfg.min_num_units,
            got: metadata.num_units,
        });
    }
    if metadata.num_units > init_cfg.max_num_units {
        return Err(VerifyError::NumUnitsTooLarge {
            max: init_cfg.max_num_units,
            got: metadata.num_units,
        });
    }
    if strict && metadata.labels_per_unit != init_cfg.labels_per_unit {
        return Err(VerifyError::LabelsPerUnitMismatch {
            expected: init_cfg.labels_per_unit,
            got: metadata.labels_per_unit,
        });
    }
    // 2. k2pow.
    let challenge = &metadata.challenge;
    let scaled = scale_pow_difficulty(&cfg.pow_difficulty, metadata.num_units)
        .map_err(VerifyError::InvalidNumLabels)?;
    let nonce_group = proof.nonce / NONCES_PER_GROUP;
    let group_u8 = u8::try_from(nonce_group).map_err(|_| VerifyError::NonceGroupOutOfBounds {
        nonce: proof.nonce,
        nonce_group,
    })?;
    if strict && proof.pow >= POW_LIMIT {
        return Err(VerifyError::PowOutOfRange { pow: proof.pow });
    }
    pow.verify(
        proof.pow,
        group_u8,
        &challenge8(challenge),
        &metadata.node_id,
        &scaled,
    )
    .map_err(VerifyError::InvalidPoW)?;
    // 3. Length.
    let num_labels = u64::from(metadata.num_units).saturating_mul(init_cfg.labels_per_unit);
    let bits = required_bits(num_labels);
    let expected = compressed_len(cfg.k2 as usize, bits);
    if proof.indices.len() != expected {
        return Err(VerifyError::InvalidIndicesLen {
            expected,
            got: proof.indices.len(),
        });
    }
    // 4. Keys and threshold.
    let commitment = commitment(&metadata.node_id, &metadata.commitment_atx_id);
    let cipher = GroupCipher::new(challenge, nonce_group, proof.pow);
    let lazy = NonceCipher::new(challenge, proof.nonce, proof.pow);
    let difficulty = proving_difficulty(cfg.k1, num_labels).map_err(VerifyError::InvalidNumLabels)?;
    let (dmsb, dlsb) = split_difficulty(difficulty);
    // 5. Decode.
    let indices: Vec<u64> = decompress_indices(&proof.indices, bits)
        .take(cfg.k2 as usize)
        .collect();
    if strict {
        strict_index_checks(&proof.indices, &indices, cfg.k2, bits, num_labels)?;
    }
    // 6. Select.
    let positions = selected_positions(mode, cfg.k2, metadata);
    // 7. Check.
    let n = init_cfg.scrypt_n;
    if n < 2 || !n.is_power_of_two() {
        return Err(VerifyError::InvalidScryptN(n));
    }
    let msb_pos = (proof.nonce % NONCES_PER_GROUP) as usize;
    let check = |index_id: usize, label: [u8; 16]| -> Result<(), VerifyError> {
        let index = indices[index_id];
        let msb = cipher.encrypt_label(&label)[msb_pos];
        match msb.cmp(&dmsb) {
            Ordering::Less => Ok(()),
            Ordering::Greater => Err(VerifyError::InvalidMsb {
                index,
                index_id,
                msb,
                dmsb,
                label,
            }),
            Ordering::Equal => {
                let lsb = lazy.lsb(&label);
                if lsb >= dlsb {
                    Err(VerifyError::InvalidLsb {
                        index,
                        index_id,
                        lsb,
                        dlsb,
                        label,
                    })
                } else {
                    Ok(())
                }
            }
        }
    };
    let derive = |index: u64, scratch: &mut Vec<_>| -> [u8; 16] {
        let l = label32_with_scratch(&commitment, index, n, scratch);
        let mut label = [0u8; 16];
        label.copy_from_slice(&l[..16]);
        label
    };
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |t| t.get())
    } else {
        options.threads
    };
    if threads <= 1 || positions.len() <= 1 {
        let mut scratch = Vec::new();
        for &id in &positions {
            check(id, derive(indices[id], &mut scratch))?;
        }
        return Ok(());
    }
    // Derive in parallel, report the first failure in selection order.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
    let run = || -> Vec<Result<(), VerifyError>> {
        positions
            .par_iter()
            .map_init(Vec::new, |scratch, &id| check(id, derive(indices[id], scratch)))
            .collect()
    };
    let results = match pool {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    };
    results.into_iter().collect()
}

fn strict_index_checks(
    raw: &[u8],
    indices: &[u64],
    k2: u32,
    bits: u32,
    num_labels: u64,
) -> Result<(), VerifyError> {
    for (index_id, &index) in indices.iter().enumerate() {
        if index >= num_labels {
            return Err(VerifyError::IndexOutOfRange {
                index,
                index_id,
                num_labels,
            });
        }
        if index_id > 0 {
            let previous = indices[index_id - 1];
            if index == previous {
                return Err(VerifyError::DuplicateIndex {
                    index,
                    index_id,
                    first_id: index_id - 1,
                });
            }
            if index < previous {
                if let Some(first_id) = indices[..index_id].iter().position(|&x| x == index) {
                    return Err(VerifyError::DuplicateIndex {
                        index,
                        index_id,
                        first_id,
                    });
                }
                return Err(VerifyError::IndicesNotAscending {
                    index,
                    index_id,
                    previous,
                });
            }
        }
    }
    if !padding_is_zero(raw, k2 as usize, bits) {
        return Err(VerifyError::NonZeroPadding { k2 });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum VrfError {
    #[error("invalid VRF nonce threshold: {0}")]
    Difficulty(#[from] DifficultyError),
    #[error("invalid scrypt N {0} (must be a power of two >= 2)")]
    InvalidScryptN(usize),
    #[error("VRF nonce {nonce} is invalid: label {label} is not below the threshold {threshold}")]
    Invalid {
        nonce: u64,
        label: String,
        threshold: String,
    },
}

/// Check a VRF nonce (spec §5.5, §3.3): `label32(nonce) < Dvrf(num_labels)` over all 32 bytes.
pub fn verify_vrf_nonce(
    node_id: &[u8; 32],
    commitment_atx_id: &[u8; 32],
    nonce: u64,
    num_labels: u64,
    scrypt_n: usize,
) -> Result<(), VrfError> {
    if scrypt_n < 2 || !scrypt_n.is_power_of_two() {
        return Err(VrfError::InvalidScryptN(scrypt_n));
    }
    let threshold = vrf_difficulty(num_labels)?;
    let label = label32_with_scratch(
        &commitment(node_id, commitment_atx_id),
        nonce,
        scrypt_n,
        &mut Vec::new(),
    );
    if label < threshold {
        Ok(())
    } else {
        Err(VrfError::Invalid {
            nonce,
            label: hex::encode(label),
            threshold: hex::encode(threshold),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AcceptAll;

    impl PowVerifier for AcceptAll {
        fn verify(&self, _: u64, _: u8, _: &[u8; 8], _: &[u8; 32], _: &[u8; 32]) -> Result<(), PowError> {
            Ok(())
        }
    }

    struct RejectAll;

    impl PowVerifier for RejectAll {
        fn verify(&self, pow: u64, g: u8, _: &[u8; 8], _: &[u8; 32], d: &[u8; 32]) -> Result<(), PowError> {
            crate::pow::check_hash(&[0xff; 32], pow, g, d)
        }
    }

    fn meta(units: u32) -> ProofMetadata {
        ProofMetadata {
            node_id: [0; 32],
            commitment_atx_id: [0; 32],
            challenge: [0; 32],
            num_units: units,
            labels_per_unit: 2048,
        }
    }

    const CFG: ProofConfig = ProofConfig {
        k1: 10,
        k2: 10,
        pow_difficulty: [0xff; 32],
    };
    const INIT: InitConfig = InitConfig {
        min_num_units: 1,
        max_num_units: 10,
        labels_per_unit: 2048,
        scrypt_n: 4,
    };

    fn run(proof: &Proof, m: &ProofMetadata, pow: &dyn PowVerifier) -> Result<(), VerifyError> {
        verify(proof, m, &CFG, &INIT, &Mode::All, &VerifyOptions::default(), pow)
    }

    #[test]
    fn subset_rng_vector_spec_7_4() {
        let items: Vec<u32> = (0..100).collect();
        let picked = select_subset(&items, 100, &[]);
        assert_eq!(
            &picked[..16],
            &[39, 13, 95, 77, 36, 41, 74, 17, 59, 87, 91, 63, 40, 20, 94, 78]
        );
        let mut sorted = picked.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, items);
        assert_eq!(select_subset(&items, 3, &[]), vec![39, 13, 95]);
        assert_eq!(select_subset(&items, 1000, &[]).len(), 100);
    }

    #[test]
    fn step_order_and_kinds() {
        let empty = Proof {
            nonce: 0,
            indices: vec![],
            pow: 0,
        };
        assert!(matches!(
            run(&empty, &meta(0), &AcceptAll),
            Err(VerifyError::NumUnitsTooSmall { min: 1, got: 0 })
        ));
        assert!(matches!(
            run(&empty, &meta(11), &AcceptAll),
            Err(VerifyError::NumUnitsTooLarge { max: 10, got: 11 })
        ));
        let far = Proof {
            nonce: 256 * 16,
            ..empty.clone()
        };
        assert!(matches!(
            run(&far, &meta(10), &RejectAll),
            Err(VerifyError::NonceGroupOutOfBounds { nonce_group: 256, .. })
        ));
        assert!(matches!(
            run(&empty, &meta(10), &RejectAll),
            Err(VerifyError::InvalidPoW(_))
        ));
        let e = run(&empty, &meta(10), &AcceptAll).expect_err("length");
        // 20480 labels -> 15 bits x 10 = 150 bits = 19 bytes.
        assert!(
            matches!(e, VerifyError::InvalidIndicesLen { expected: 19, got: 0 }),
            "{e}"
        );
        assert_eq!(e.to_string(), "invalid number of indices (expected: 19, got: 0)");
        // numLabels <= K1.
        let tiny = InitConfig {
            labels_per_unit: 5,
            ..INIT
        };
        let p = Proof {
            nonce: 0,
            indices: vec![0; 5],
            pow: 0,
        };
        let e = verify(
            &p,
            &meta(2),
            &CFG,
            &tiny,
            &Mode::All,
            &VerifyOptions::default(),
            &AcceptAll,
        )
        .expect_err("too few labels");
        assert!(matches!(e, VerifyError::InvalidNumLabels(_)), "{e}");
    }

    #[test]
    fn one_out_of_range_checks_nothing() {
        let p = Proof {
            nonce: 0,
            indices: vec![0xff; 19],
            pow: 0,
        };
        let m = meta(10);
        let one = |index| {
            verify(
                &p,
                &m,
                &CFG,
                &INIT,
                &Mode::One { index },
                &VerifyOptions::default(),
                &AcceptAll,
            )
        };
        assert!(one(10).is_ok());
        assert!(one(1_000_000).is_ok());
        // Index 32767 (all ones) almost surely fails somewhere; it must fail at the position asked.
        for i in 0..10 {
            if let Err(e) = one(i) {
                match e {
                    VerifyError::InvalidMsb { index_id, index, .. }
                    | VerifyError::InvalidLsb { index_id, index, .. } => {
                        assert_eq!((index_id, index), (i, 32767))
                    }
                    e => panic!("unexpected {e}"),
                }
            }
        }
    }

    #[test]
    fn strict_checks() {
        let m = meta(10);
        let strict = VerifyOptions {
            strict: true,
            threads: 1,
        };
        let mk = |idx: &[u64], pow: u64| Proof::new(0, idx, 20480, pow);
        let v = |p: &Proof| verify(p, &m, &CFG, &INIT, &Mode::All, &strict, &AcceptAll);
        let e = v(&mk(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 1 << 56)).expect_err("pow");
        assert!(matches!(e, VerifyError::PowOutOfRange { .. }), "{e}");
        let e = v(&mk(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 20480], 0)).expect_err("range");
        assert!(
            matches!(
                e,
                VerifyError::IndexOutOfRange {
                    index: 20480,
                    index_id: 9,
                    ..
                }
            ),
            "{e}"
        );
        let e = v(&mk(&[1, 2, 3, 3, 5, 6, 7, 8, 9, 10], 0)).expect_err("dup");
        assert!(
            matches!(
                e,
                VerifyError::DuplicateIndex {
                    index: 3,
                    index_id: 3,
                    first_id: 2
                }
            ),
            "{e}"
        );
        let e = v(&mk(&[2, 1, 3, 4, 5, 6, 7, 8, 9, 10], 0)).expect_err("order");
        assert!(
            matches!(
                e,
                VerifyError::IndicesNotAscending {
                    index: 1,
                    index_id: 1,
                    previous: 2
                }
            ),
            "{e}"
        );
        let e = v(&mk(&[1, 5, 3, 4, 6, 7, 8, 9, 10, 1], 0)).expect_err("dup later");
        assert!(matches!(e, VerifyError::IndicesNotAscending { .. }), "{e}");
        let mut p = mk(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0);
        p.indices[18] |= 0x80;
        let e = v(&p).expect_err("padding");
        assert!(matches!(e, VerifyError::NonZeroPadding { k2: 10 }), "{e}");
        let other = ProofMetadata {
            labels_per_unit: 1024,
            ..m.clone()
        };
        let e = verify(&p, &other, &CFG, &INIT, &Mode::All, &strict, &AcceptAll).expect_err("lpu");
        assert!(matches!(e, VerifyError::LabelsPerUnitMismatch { .. }), "{e}");
    }

    #[test]
    fn vrf_nonce() {
        // init_small_pairA: 4096 labels, VRF nonce 3270 at N = 8192.
        let node: [u8; 32] = hex::decode("8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924")
            .expect("hex")
            .try_into()
            .expect("32");
        let atx: [u8; 32] = hex::decode("66ec687158c86167efec0fcad4b9a6f3e98db07cc065a595a5b979f8a20dc7e2")
            .expect("hex")
            .try_into()
            .expect("32");
        verify_vrf_nonce(&node, &atx, 3270, 4096, 8192).expect("valid VRF nonce");
        let e = verify_vrf_nonce(&node, &atx, 3271, 4096, 8192).expect_err("not a VRF nonce");
        assert!(e.to_string().contains("3271"), "{e}");
        assert!(verify_vrf_nonce(&node, &atx, 3270, 8, 8192).is_err());
        assert!(verify_vrf_nonce(&node, &atx, 3270, 4096, 3).is_err());
    }
}
