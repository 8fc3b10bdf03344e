//! The prover and the verifier against the reference (post-rs v0.8.5) vectors in
//! `shared/vectors` and spec/post.md §7, plus round-trip property tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use aes::cipher::{BlockEncrypt, KeyInit};
use post::compression::{compress_indices, decompress_indices};
use post::difficulty::{proving_difficulty, required_bits, scale_pow_difficulty};
use post::metadata::PostMetadata;
use post::pow::{pow_input, PowError, PowSolver, PowVerifier, RandomXMode, RandomXOptions, RandomXPow};
use post::proof::{InitConfig, Proof, ProofConfig, ProofMetadata, MAINNET_POW_DIFFICULTY};
use post::prove::{generate_proof, scan_buffer, scan_pass, ProveError, ProveOptions, ProveProgress, Prover};
use post::scrypt::{commitment, label, label32};
use post::verify::{
    select_subset, selected_positions, verify, verify_vrf_nonce, Mode, VerifyError, VerifyOptions,
};
use proptest::prelude::*;
use rayon::prelude::*;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

fn vectors() -> PathBuf {
    PathBuf::from(VECTORS)
}

fn read_json(name: &str) -> serde_json::Value {
    let path = vectors().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

fn proof_of(v: &serde_json::Value) -> Proof {
    serde_json::from_value(v.clone()).expect("proof json")
}

/// One light-mode RandomX instance (2 search threads) for the whole test binary.
fn randomx() -> &'static RandomXPow {
    static RX: OnceLock<RandomXPow> = OnceLock::new();
    RX.get_or_init(|| {
        RandomXPow::with_options(RandomXOptions {
            mode: RandomXMode::Light,
            threads: 2,
            large_pages: false,
        })
        .expect("light RandomX")
    })
}

fn no_progress(_: ProveProgress) {}

/// A cheap stand-in for RandomX in property tests: BLAKE3 of the same 48-byte input.
struct Blake3Pow;

impl Blake3Pow {
    fn hash(pow: u64, g: u8, c: &[u8; 8], m: &[u8; 32]) -> [u8; 32] {
        *blake3::hash(&pow_input(pow, g, c, m)).as_bytes()
    }
}

impl PowSolver for Blake3Pow {
    fn solve(&self, g: u8, c: &[u8; 8], m: &[u8; 32], d: &[u8; 32]) -> Result<u64, PowError> {
        (0..1u64 << 20)
            .find(|&x| Self::hash(x, g, c, m) < *d)
            .ok_or(PowError::NotFound { nonce_group: g })
    }
}

impl PowVerifier for Blake3Pow {
    fn verify(&self, pow: u64, g: u8, c: &[u8; 8], m: &[u8; 32], d: &[u8; 32]) -> Result<(), PowError> {
        post::pow::check_hash(&Self::hash(pow, g, c, m), pow, g, d)
    }
}

/// Stands in for the RandomX *search* only: returns known pows, each checked with RandomX.
struct KnownPows(HashMap<u8, u64>);

impl PowSolver for KnownPows {
    fn solve(&self, g: u8, c: &[u8; 8], m: &[u8; 32], d: &[u8; 32]) -> Result<u64, PowError> {
        let pow = *self.0.get(&g).ok_or(PowError::NotFound { nonce_group: g })?;
        randomx().verify(pow, g, c, m, d)?;
        Ok(pow)
    }
}

/// Write a data directory of `units × lpu` labels at scrypt N `n`; returns the labels.
fn make_data(
    dir: &Path,
    node_id: [u8; 32],
    atx_id: [u8; 32],
    lpu: u64,
    units: u32,
    labels_per_file: u64,
    n: usize,
) -> Vec<[u8; 16]> {
    let c = commitment(&node_id, &atx_id);
    let total = lpu * u64::from(units);
    let labels: Vec<[u8; 16]> = (0..total).into_par_iter().map(|i| label(&c, i, n)).collect();
    for (k, chunk) in labels.chunks(labels_per_file as usize).enumerate() {
        let bytes: Vec<u8> = chunk.iter().flatten().copied().collect();
        std::fs::write(dir.join(post::data::file_name(k as u64)), bytes).expect("write data file");
    }
    PostMetadata {
        node_id,
        commitment_atx_id: atx_id,
        labels_per_unit: lpu,
        num_units: units,
        max_file_size: labels_per_file * 16,
        nonce: None,
        nonce_value: None,
        last_position: None,
    }
    .save(dir)
    .expect("metadata");
    labels
}

/// Independent model of spec §4.5-4.6: whether `label` qualifies for `nonce`.
fn model_qualifies(challenge: &[u8; 32], nonce: u32, pow: u64, label: &[u8; 16], d: u64) -> bool {
    let g = nonce / 16;
    let key = |extra: &[u8]| -> aes::Aes128 {
        let mut h = blake3::Hasher::new();
        h.update(challenge);
        h.update(&g.to_le_bytes());
        h.update(&pow.to_le_bytes());
        h.update(extra);
        let k: [u8; 16] = h.finalize().as_bytes()[..16].try_into().expect("16");
        aes::Aes128::new(&k.into())
    };
    let mut a = aes::Block::from(*label);
    key(&[]).encrypt_block(&mut a);
    let mut b = aes::Block::from(*label);
    key(&nonce.to_le_bytes()).encrypt_block(&mut b);
    let lsb = u64::from_le_bytes(b[..8].try_into().expect("8")) & ((1 << 56) - 1);
    ((u64::from(a[(nonce % 16) as usize]) << 56) | lsb) < d
}

// ---------------------------------------------------------------------------------------------
// Spec §7.4 vectors.

#[test]
fn proving_vector_spec_7_4() {
    let data: Vec<u8> = (0..2048).map(|k| (k % 12) as u8).collect();
    let d = proving_difficulty(4, 128).expect("D");
    let prover = Prover::new(b"hello world, CHALLENGE me!!!!!!!", 0, &[0], d).expect("prover");
    let (nonce, indices) = scan_buffer(&data, &prover, 32, 1).expect("a proof");
    assert_eq!(nonce, 3);
    assert_eq!(indices, (0..32).map(|i| 3 * i).collect::<Vec<u64>>());
}

#[test]
fn subset_rng_vector_spec_7_4() {
    let items: Vec<usize> = (0..100).collect();
    let all = select_subset(&items, 100, &[]);
    assert_eq!(
        &all[..16],
        &[39, 13, 95, 77, 36, 41, 74, 17, 59, 87, 91, 63, 40, 20, 94, 78]
    );
    assert_eq!(all[99], 47);
}

// ---------------------------------------------------------------------------------------------
// Spec §7.5: end-to-end vector A (a post-rs proof), N = 2.

#[test]
fn vector_a_post_rs_proof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = make_data(dir.path(), [0; 32], [0; 32], 200, 2, 200, 2);
    assert_eq!(labels.len(), 400);
    let challenge = *b"hello world, challenge me!!!!!!!";
    let cfg = ProofConfig {
        k1: 20,
        k2: 30,
        pow_difficulty: [0xff; 32],
    };
    let opts = ProveOptions {
        nonces: 32,
        threads: 1,
    };
    let proof = generate_proof(
        dir.path(),
        &challenge,
        &cfg,
        &opts,
        randomx(),
        &no_progress,
        &AtomicBool::new(false),
    )
    .expect("proof");
    assert_eq!(proof.nonce, 16);
    assert_eq!(proof.pow, 0);
    assert_eq!(
        hex::encode(&proof.indices),
        "040c3890504184891662cea8791347932759c3c895033850e3cfad5dc7b28d7b3831"
    );
    assert_eq!(
        proof.decoded_indices(400, 30),
        vec![
            4, 6, 14, 18, 21, 34, 38, 45, 98, 103, 106, 111, 113, 154, 158, 178, 195, 228, 229, 256, 259,
            282, 319, 347, 349, 355, 364, 369, 391, 393
        ]
    );
    let meta = ProofMetadata {
        node_id: [0; 32],
        commitment_atx_id: [0; 32],
        challenge,
        num_units: 2,
        labels_per_unit: 200,
    };
    let init = InitConfig {
        min_num_units: 1,
        max_num_units: 1000,
        labels_per_unit: 200,
        scrypt_n: 2,
    };
    verify(
        &proof,
        &meta,
        &cfg,
        &init,
        &Mode::All,
        &VerifyOptions::default(),
        randomx(),
    )
    .expect("valid");
    // VRF nonce 153 (label32 0101fa29...).
    assert_eq!(
        hex::encode(&label32(&commitment(&[0; 32], &[0; 32]), 153, 2)[..8]),
        "0101fa29082cf033"
    );
    verify_vrf_nonce(&[0; 32], &[0; 32], 153, 400, 2).expect("VRF nonce 153");
}

// ---------------------------------------------------------------------------------------------
// Spec §7.6: end-to-end vector B (a model proof accepted by post-rs), N = 8192.

struct VectorB {
    _dir: tempfile::TempDir,
    path: PathBuf,
    meta: ProofMetadata,
    cfg: ProofConfig,
    init: InitConfig,
}

fn seq32(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start + i as u8)
}

fn vector_b() -> &'static VectorB {
    static B: OnceLock<VectorB> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels = make_data(dir.path(), seq32(0), seq32(0x20), 256, 4, 512, 8192);
        let want = [
            "ae0c877245a2c6bd3a9aa436c500e547",
            "cec4231645eb430f47d6b8b71ed99c8f",
            "a0d76c7b858b39156411e62ae9e2e74e",
            "8f3779bd4345ec4ceb8cfc630a710fef",
        ];
        for (l, w) in labels.iter().zip(want) {
            assert_eq!(hex::encode(l), w);
        }
        let mut pow_difficulty = [0xff; 32];
        pow_difficulty[0] = 0x0f;
        VectorB {
            path: dir.path().to_path_buf(),
            _dir: dir,
            meta: ProofMetadata {
                node_id: seq32(0),
                commitment_atx_id: seq32(0x20),
                challenge: seq32(0x40),
                num_units: 4,
                labels_per_unit: 256,
            },
            cfg: ProofConfig {
                k1: 26,
                k2: 37,
                pow_difficulty,
            },
            init: InitConfig {
                min_num_units: 1,
                max_num_units: 100,
                labels_per_unit: 256,
                scrypt_n: 8192,
            },
        }
    })
}

const B_INDICES: [u64; 37] = [
    23, 28, 41, 84, 86, 172, 202, 216, 241, 287, 291, 297, 321, 325, 329, 331, 341, 346, 350, 351, 352, 393,
    412, 416, 434, 452, 469, 480, 510, 557, 586, 622, 645, 659, 670, 693, 699,
];
const B_COMPRESSED: &str =
    "17e0400aa860055628031bf1f8c848521294a224652955d18a57be0296c4700634b2214e75c0e39f1629c94d859a94a76ab52b";

fn b_proof() -> Proof {
    Proof {
        nonce: 36,
        indices: hex::decode(B_COMPRESSED).expect("hex"),
        pow: 7,
    }
}

#[test]
fn vector_b_thresholds_and_vrf() {
    let b = vector_b();
    assert_eq!(proving_difficulty(26, 1024).expect("D"), 0x0680_0000_0000_0000);
    let mut dpow = [0xff; 32];
    dpow[0] = 0x03;
    assert_eq!(
        scale_pow_difficulty(&b.cfg.pow_difficulty, 4).expect("Dpow"),
        dpow
    );
    assert_eq!(required_bits(1024), 11);
    assert_eq!(
        hex::encode(commitment(&b.meta.node_id, &b.meta.commitment_atx_id)),
        "4eed7141ea4a5cd4b788606bd23f46e212af9cacebacdc7d1f4c6dc7f2511b98"
    );
    verify_vrf_nonce(&b.meta.node_id, &b.meta.commitment_atx_id, 779, 1024, 8192).expect("VRF nonce 779");
    assert!(verify_vrf_nonce(&b.meta.node_id, &b.meta.commitment_atx_id, 780, 1024, 8192).is_err());
}

#[test]
fn vector_b_prover_finds_the_proof() {
    let b = vector_b();
    let opts = ProveOptions {
        nonces: 32,
        threads: 1,
    };
    let events = Mutex::new(Vec::new());
    let progress = |p: ProveProgress| events.lock().expect("lock").push(p);
    let proof = generate_proof(
        &b.path,
        &b.meta.challenge,
        &b.cfg,
        &opts,
        randomx(),
        &progress,
        &AtomicBool::new(false),
    )
    .expect("proof");
    assert_eq!(proof, b_proof());
    assert_eq!(proof.decoded_indices(1024, 37), B_INDICES.to_vec());
    assert_eq!(
        hex::encode(
            randomx()
                .hash(&pow_input(
                    7,
                    2,
                    &seq32(0x40)[..8].try_into().expect("8"),
                    &seq32(0)
                ))
                .expect("hash")
        ),
        "00b02c021cec7f5a6926f40c6b12263ccb38e631d72c1a28fec0a62d11427e11"
    );
    // Found in pass 2 (pass index 1): k2pow of groups 0..3 was reported, then scans.
    let events = events.into_inner().expect("lock");
    let groups: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            ProveProgress::K2Pow { nonce_group, .. } => Some(*nonce_group),
            _ => None,
        })
        .collect();
    assert_eq!(groups, vec![0, 1, 2, 3]);
    assert!(events.iter().any(|e| matches!(
        e,
        ProveProgress::Scan {
            pass: 1,
            bytes_done: 16384,
            bytes_total: 16384,
            ..
        }
    )));

    // With two scan threads the proof may differ but must verify (and is sorted).
    let opts2 = ProveOptions {
        nonces: 32,
        threads: 2,
    };
    let p2 = generate_proof(
        &b.path,
        &b.meta.challenge,
        &b.cfg,
        &opts2,
        randomx(),
        &no_progress,
        &AtomicBool::new(false),
    )
    .expect("proof");
    let strict = VerifyOptions {
        strict: true,
        threads: 2,
    };
    verify(&p2, &b.meta, &b.cfg, &b.init, &Mode::All, &strict, randomx()).expect("2-thread proof verifies");
}

#[test]
fn vector_b_subset_picks() {
    let b = vector_b();
    let peer = Mode::Subset {
        k3: 1,
        seed: b"peer".to_vec(),
    };
    assert_eq!(selected_positions(&peer, 37, &b.meta), vec![26]);
    let five = Mode::Subset { k3: 5, seed: vec![] };
    assert_eq!(selected_positions(&five, 37, &b.meta), vec![8, 23, 7, 24, 27]);
    let all37 = Mode::Subset {
        k3: 37,
        seed: vec![1],
    };
    assert_eq!(
        selected_positions(&all37, 37, &b.meta),
        (0..37).collect::<Vec<_>>()
    );
}

#[test]
fn vector_b_verifier_outcomes() {
    let b = vector_b();
    let v = |p: &Proof, mode: &Mode| {
        verify(
            p,
            &b.meta,
            &b.cfg,
            &b.init,
            mode,
            &VerifyOptions::default(),
            randomx(),
        )
    };
    let vs = |p: &Proof| {
        let strict = VerifyOptions {
            strict: true,
            threads: 2,
        };
        verify(p, &b.meta, &b.cfg, &b.init, &Mode::All, &strict, randomx())
    };
    let proof = b_proof();
    for mode in [
        Mode::All,
        Mode::One { index: 0 },
        Mode::One { index: 99 },
        Mode::Subset {
            k3: 1,
            seed: b"peer".to_vec(),
        },
        Mode::Subset {
            k3: 37,
            seed: b"x".to_vec(),
        },
    ] {
        v(&proof, &mode).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
    }
    vs(&proof).expect("strict accepts the honest proof");

    let pow8 = Proof {
        pow: 8,
        ..proof.clone()
    };
    assert!(matches!(v(&pow8, &Mode::All), Err(VerifyError::InvalidPoW(_))));

    let high = Proof {
        pow: 7 + (1 << 56),
        ..proof.clone()
    };
    match v(&high, &Mode::All) {
        Err(VerifyError::InvalidMsb {
            index_id: 0,
            index: 23,
            msb: 8,
            dmsb: 6,
            ..
        }) => {}
        other => panic!("pow 7 + 2^56: {other:?}"),
    }
    assert!(matches!(vs(&high), Err(VerifyError::PowOutOfRange { .. })));

    let n37 = Proof {
        nonce: 37,
        ..proof.clone()
    };
    assert!(matches!(
        v(&n37, &Mode::All),
        Err(VerifyError::InvalidMsb { index_id: 0, .. })
    ));

    let n4096 = Proof {
        nonce: 4096,
        ..proof.clone()
    };
    assert!(matches!(
        v(&n4096, &Mode::All),
        Err(VerifyError::NonceGroupOutOfBounds { nonce_group: 256, .. })
    ));

    let mut short = proof.clone();
    short.indices.pop();
    assert!(matches!(
        v(&short, &Mode::All),
        Err(VerifyError::InvalidIndicesLen {
            expected: 51,
            got: 50
        })
    ));

    // 37 × 11 = 407 bits: the top bit of byte 50 is padding.
    let mut pad = proof.clone();
    pad.indices[50] ^= 0x80;
    v(&pad, &Mode::All).expect("padding bits are ignored");
    assert!(matches!(vs(&pad), Err(VerifyError::NonZeroPadding { .. })));

    let mut idx = B_INDICES.to_vec();
    idx[0] = 1127;
    let out_of_range = Proof::new(36, &idx, 1024, 7);
    v(&out_of_range, &Mode::All).expect("out-of-range index 1127 qualifies");
    assert!(matches!(
        vs(&out_of_range),
        Err(VerifyError::IndexOutOfRange {
            index: 1127,
            index_id: 0,
            ..
        })
    ));

    let repeated = Proof::new(36, &[23; 37], 1024, 7);
    v(&repeated, &Mode::All).expect("index 23 repeated 37 times");
    assert!(matches!(
        vs(&repeated),
        Err(VerifyError::DuplicateIndex {
            index: 23,
            index_id: 1,
            first_id: 0
        })
    ));

    // Corrupting position 26 is caught by Subset(1, "peer"); position 25 is not.
    let peer = Mode::Subset {
        k3: 1,
        seed: b"peer".to_vec(),
    };
    let corrupt = |pos: usize| {
        let mut idx = B_INDICES.to_vec();
        // Index 0 does not qualify for nonce 36 (it is not among the proof's indices... checked below).
        idx[pos] = 0;
        Proof::new(36, &idx, 1024, 7)
    };
    assert!(
        v(&corrupt(0), &Mode::One { index: 0 }).is_err(),
        "label 0 must not qualify"
    );
    match v(&corrupt(26), &peer) {
        Err(VerifyError::InvalidMsb {
            index_id: 26,
            index: 0,
            ..
        })
        | Err(VerifyError::InvalidLsb {
            index_id: 26,
            index: 0,
            ..
        }) => {}
        other => panic!("corrupt 26: {other:?}"),
    }
    v(&corrupt(25), &peer).expect("position 25 is not checked by Subset(1, peer)");
    match v(&corrupt(25), &Mode::All) {
        Err(VerifyError::InvalidMsb { index_id: 25, .. })
        | Err(VerifyError::InvalidLsb { index_id: 25, .. }) => {}
        other => panic!("corrupt 25 in All: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The reference proof over init_small_pairA (vectors/proof_small_pairA.json).

struct PairA {
    meta: ProofMetadata,
    cfg: ProofConfig,
    init: InitConfig,
    proof: Proof,
}

fn pair_a() -> PairA {
    let j = read_json("proof_small_pairA.json");
    let s = |k: &str| j[k].as_str().expect("string").to_string();
    let cfg = ProofConfig {
        k1: j["k1"].as_u64().expect("k1") as u32,
        k2: j["k2"].as_u64().expect("k2") as u32,
        pow_difficulty: hex32(&s("pow_difficulty")),
    };
    assert_eq!(cfg.pow_difficulty, MAINNET_POW_DIFFICULTY);
    PairA {
        meta: ProofMetadata {
            node_id: hex32(&s("node_id")),
            commitment_atx_id: hex32(&s("commitment_atx_id")),
            challenge: hex32(&s("challenge")),
            num_units: 4,
            labels_per_unit: 1024,
        },
        cfg,
        init: InitConfig {
            min_num_units: 4,
            max_num_units: u32::MAX,
            labels_per_unit: 1024,
            scrypt_n: 8192,
        },
        proof: proof_of(&j["proof"]),
    }
}

#[test]
fn pair_a_prover_reproduces_reference_proof() {
    let a = pair_a();
    assert_eq!(&a.meta.challenge, b"hello world, challenge me!!!!!!!");
    let opts = ProveOptions {
        nonces: 16,
        threads: 1,
    };
    let solver = KnownPows(HashMap::from([(0u8, 18712u64)]));
    let dir = vectors().join("init_small_pairA");
    let proof = generate_proof(
        &dir,
        &a.meta.challenge,
        &a.cfg,
        &opts,
        &solver,
        &no_progress,
        &AtomicBool::new(false),
    )
    .expect("proof");
    assert_eq!(proof, a.proof);
    assert_eq!(proof.to_json(), serde_json::to_string(&a.proof).expect("json"));
    // The scan alone, with the pow given.
    let scanned = scan_pass(
        &dir,
        &a.meta.challenge,
        &a.cfg,
        0,
        &[18712],
        1,
        &no_progress,
        &AtomicBool::new(false),
    )
    .expect("scan");
    assert_eq!(scanned, Some(a.proof.clone()));
    let j = read_json("proof_small_pairA.json");
    let want: Vec<u64> = j["proof_indices_decoded"]
        .as_array()
        .expect("decoded")
        .iter()
        .map(|v| v.as_u64().expect("u64"))
        .collect();
    assert_eq!(proof.decoded_indices(4096, 37), want);
}

#[test]
fn pair_a_reference_proof_verifies() {
    let a = pair_a();
    let cases = read_json("verify_proof_small_pairA.json");
    for (name, mode) in [
        ("all", Mode::All),
        ("subset_k3_1_seed00", Mode::Subset { k3: 1, seed: vec![0] }),
        ("one_idx5", Mode::One { index: 5 }),
    ] {
        assert_eq!(cases["results"][name]["valid"], true);
        verify(
            &a.proof,
            &a.meta,
            &a.cfg,
            &a.init,
            &mode,
            &VerifyOptions::default(),
            randomx(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let strict = VerifyOptions {
        strict: true,
        threads: 0,
    };
    verify(&a.proof, &a.meta, &a.cfg, &a.init, &Mode::All, &strict, randomx()).expect("strict");
}

#[test]
fn pair_a_corrupted_proofs_are_rejected() {
    let a = pair_a();
    let j = read_json("verify_corrupted_proofs.json");
    let r = &j["results"];
    let run = |proof: &Proof, meta: &ProofMetadata, init: &InitConfig| {
        verify(
            proof,
            meta,
            &a.cfg,
            init,
            &Mode::All,
            &VerifyOptions::default(),
            randomx(),
        )
    };
    let same_file = |case: &str, file: &str| {
        let from_file = proof_of(&read_json(file));
        assert_eq!(from_file, proof_of(&r[case]["proof"]), "{file}");
        from_file
    };

    let e = run(
        &same_file("index_bitflip", "proof_corrupted_index_bitflip.json"),
        &a.meta,
        &a.init,
    )
    .expect_err("index bit flip");
    assert!(
        matches!(
            e,
            VerifyError::InvalidMsb {
                index: 456,
                index_id: 2,
                msb: 231,
                dmsb: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.to_string(), r["index_bitflip"]["error"].as_str().expect("text"));

    let e = run(
        &same_file("nonce_plus1", "proof_corrupted_nonce_plus1.json"),
        &a.meta,
        &a.init,
    )
    .expect_err("nonce");
    assert!(
        matches!(
            e,
            VerifyError::InvalidMsb {
                index: 220,
                index_id: 0,
                msb: 204,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.to_string(), r["nonce_plus1"]["error"].as_str().expect("text"));

    let e = run(
        &same_file("pow_plus1", "proof_corrupted_pow_plus1.json"),
        &a.meta,
        &a.init,
    )
    .expect_err("pow");
    assert!(
        matches!(
            e,
            VerifyError::InvalidPoW(PowError::InvalidPow {
                pow: 18713,
                nonce_group: 0,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("invalid proof of work"), "{e}");

    let e = run(
        &same_file("indices_truncated", "proof_corrupted_indices_truncated.json"),
        &a.meta,
        &a.init,
    )
    .expect_err("truncated");
    assert!(
        matches!(
            e,
            VerifyError::InvalidIndicesLen {
                expected: 61,
                got: 60
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        r["indices_truncated"]["error"].as_str().expect("text")
    );

    let zero = ProofMetadata {
        challenge: [0; 32],
        ..a.meta.clone()
    };
    let e = run(&a.proof, &zero, &a.init).expect_err("wrong challenge");
    assert!(matches!(e, VerifyError::InvalidPoW(_)), "{e:?}");

    let min5 = InitConfig {
        min_num_units: 5,
        ..a.init
    };
    let e = run(&a.proof, &a.meta, &min5).expect_err("min units");
    assert!(
        matches!(e, VerifyError::NumUnitsTooSmall { min: 5, got: 4 }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        r["min_num_units_5"]["error"].as_str().expect("text")
    );
}

#[test]
fn pair_a_mutated_proofs_default_accepts_strict_rejects() {
    let a = pair_a();
    let strict = VerifyOptions {
        strict: true,
        threads: 2,
    };
    for (file, check) in [
        (
            "proof_mutated_still_valid_indices_swapped_0_1.json",
            (|e: &VerifyError| {
                matches!(
                    e,
                    VerifyError::IndicesNotAscending {
                        index: 220,
                        index_id: 1,
                        previous: 340
                    }
                )
            }) as fn(&VerifyError) -> bool,
        ),
        (
            "proof_mutated_still_valid_index_duplicated.json",
            |e: &VerifyError| {
                matches!(
                    e,
                    VerifyError::DuplicateIndex {
                        index: 220,
                        index_id: 1,
                        first_id: 0
                    }
                )
            },
        ),
    ] {
        let p = proof_of(&read_json(file));
        verify(
            &p,
            &a.meta,
            &a.cfg,
            &a.init,
            &Mode::All,
            &VerifyOptions::default(),
            randomx(),
        )
        .unwrap_or_else(|e| panic!("{file}: default mode must accept: {e}"));
        let e =
            verify(&p, &a.meta, &a.cfg, &a.init, &Mode::All, &strict, randomx()).expect_err("strict rejects");
        assert!(check(&e), "{file}: {e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Prover errors.

fn small_dir(units: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    make_data(dir.path(), [3; 32], [4; 32], 128, units, 128, 2);
    dir
}

const EASY: ProofConfig = ProofConfig {
    k1: 8,
    k2: 6,
    pow_difficulty: [0xff; 32],
};

#[test]
fn prover_errors_name_the_problem() {
    let stop = AtomicBool::new(false);
    let opts = ProveOptions::default();
    let run = |dir: &Path, cfg: &ProofConfig, opts: &ProveOptions| {
        generate_proof(dir, &[5; 32], cfg, opts, &Blake3Pow, &no_progress, &stop)
    };

    let empty = tempfile::tempdir().expect("tempdir");
    let e = run(empty.path(), &EASY, &opts).expect_err("no metadata");
    assert!(matches!(e, ProveError::MissingMetadata { .. }), "{e}");
    assert!(e.to_string().contains("postdata_metadata.json"), "{e}");

    let d = small_dir(3);
    std::fs::remove_file(d.path().join("postdata_1.bin")).expect("rm");
    let e = run(d.path(), &EASY, &opts).expect_err("missing file");
    assert!(matches!(e, ProveError::MissingFile { k: 1, .. }), "{e}");
    assert!(e.to_string().contains("postdata_1.bin"), "{e}");

    let d = small_dir(3);
    std::fs::write(d.path().join("postdata_2.bin"), vec![0u8; 100]).expect("truncate");
    let e = run(d.path(), &EASY, &opts).expect_err("short file");
    assert!(
        matches!(
            e,
            ProveError::WrongFileSize {
                k: 2,
                expected: 2048,
                got: 100,
                ..
            }
        ),
        "{e}"
    );

    let d = small_dir(2);
    let e = run(
        d.path(),
        &EASY,
        &ProveOptions {
            nonces: 24,
            threads: 1,
        },
    )
    .expect_err("nonces");
    assert!(matches!(e, ProveError::InvalidNonces(24)), "{e}");
    let e = run(
        d.path(),
        &EASY,
        &ProveOptions {
            nonces: 4112,
            threads: 1,
        },
    )
    .expect_err("nonces");
    assert!(matches!(e, ProveError::InvalidNonces(4112)), "{e}");

    // K2 above the number of labels: no nonce can win; 14 passes of 288, then the groups run out.
    let impossible = ProofConfig { k2: 300, ..EASY };
    let e = run(
        d.path(),
        &impossible,
        &ProveOptions {
            nonces: 288,
            threads: 2,
        },
    )
    .expect_err("exhausted");
    assert!(
        matches!(
            e,
            ProveError::NoncesExhausted {
                next_nonce: 4032,
                per_pass: 288
            }
        ),
        "{e}"
    );

    let e = run(d.path(), &ProofConfig { k1: 300, ..EASY }, &opts).expect_err("K1 too big");
    assert!(matches!(e, ProveError::Difficulty(_)), "{e}");

    // Stop before anything and in the middle of the scan.
    let stopped = AtomicBool::new(true);
    let e = generate_proof(
        d.path(),
        &[5; 32],
        &EASY,
        &opts,
        &Blake3Pow,
        &no_progress,
        &stopped,
    )
    .expect_err("stopped");
    assert!(matches!(e, ProveError::Stopped { pass: 0 }), "{e}");
    let flag = AtomicBool::new(false);
    let stop_on_scan = |p: ProveProgress| {
        if let ProveProgress::Scan { .. } = p {
            flag.store(true, Ordering::Relaxed);
        }
    };
    let e = generate_proof(
        d.path(),
        &[5; 32],
        &impossible,
        &opts,
        &Blake3Pow,
        &stop_on_scan,
        &flag,
    )
    .expect_err("stopped");
    assert!(matches!(e, ProveError::Stopped { pass: 0 }), "{e}");
}

#[test]
fn files_are_found_by_number_not_by_listing_order() {
    // Files 0..11: names sort as 0, 1, 10, 11, 2, ... in a listing; labels must stay in place.
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = make_data(dir.path(), [6; 32], [7; 32], 128, 12, 128, 2);
    let challenge = [8; 32];
    let cfg = ProofConfig {
        k1: 20,
        k2: 12,
        pow_difficulty: [0xff; 32],
    };
    let proof = generate_proof(
        dir.path(),
        &challenge,
        &cfg,
        &ProveOptions::default(),
        &Blake3Pow,
        &no_progress,
        &AtomicBool::new(false),
    )
    .expect("proof");
    let d = proving_difficulty(cfg.k1, labels.len() as u64).expect("D");
    let mut data = Vec::new();
    for l in &labels {
        data.extend_from_slice(l);
    }
    let groups = proof.nonce / 16 + 1;
    let scaled = scale_pow_difficulty(&cfg.pow_difficulty, 12).expect("Dpow");
    let pows: Vec<u64> = (0..groups)
        .map(|g| Blake3Pow.solve(g as u8, &[8; 8], &[6; 32], &scaled).expect("pow"))
        .collect();
    // The in-memory scan of the concatenation, pass by pass (16 nonces each), gives the same proof.
    let mut want = None;
    for pass in 0..groups {
        let p = Prover::new(&challenge, pass * 16, &pows[pass as usize..=pass as usize], d).expect("prover");
        if let Some(hit) = scan_buffer(&data, &p, cfg.k2, 1) {
            want = Some(hit);
            break;
        }
    }
    let (nonce, indices) = want.expect("in-memory proof");
    assert_eq!(
        proof,
        Proof::new(nonce, &indices, labels.len() as u64, pows[(nonce / 16) as usize])
    );
}

#[test]
fn partial_chunk_at_file_end_is_skipped() {
    // 100 labels per file: the last 4 labels of every file (a partial 8-label chunk) are never
    // scanned, as in the reference.
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = make_data(dir.path(), [9; 32], [10; 32], 100, 4, 100, 2);
    let challenge = [11; 32];
    let cfg = ProofConfig {
        k1: 30,
        k2: 24,
        pow_difficulty: [0xff; 32],
    };
    let stop = AtomicBool::new(false);
    let proof = generate_proof(
        dir.path(),
        &challenge,
        &cfg,
        &ProveOptions::default(),
        &Blake3Pow,
        &no_progress,
        &stop,
    )
    .expect("proof");
    let indices = proof.decoded_indices(400, cfg.k2);
    assert!(indices.iter().all(|i| i % 100 < 96), "{indices:?}");
    // ...although some of those skipped labels qualify for the winning nonce.
    assert!((0..400u64).filter(|i| i % 100 >= 96).any(|i| model_qualifies(
        &challenge,
        proof.nonce,
        proof.pow,
        &labels[i as usize],
        proving_difficulty(30, 400).expect("D")
    )));
    // Model: pass by pass, file by file, with `scan_batch` on each whole file.
    let d = proving_difficulty(cfg.k1, 400).expect("D");
    let scaled = scale_pow_difficulty(&cfg.pow_difficulty, 4).expect("Dpow");
    let mut want = None;
    'passes: for pass in 0..=proof.nonce / 16 {
        let pow = Blake3Pow
            .solve(pass as u8, &[11; 8], &[9; 32], &scaled)
            .expect("pow");
        let prover = Prover::new(&challenge, pass * 16, &[pow], d).expect("prover");
        let mut found: HashMap<u32, Vec<u64>> = HashMap::new();
        for k in 0..4u64 {
            let bytes: Vec<u8> = labels[(k * 100) as usize..][..100]
                .iter()
                .flatten()
                .copied()
                .collect();
            let mut winner = None;
            let hit = prover.scan_batch(&bytes, k * 100, &mut |n, i| {
                let v = found.entry(n).or_default();
                v.push(i);
                if v.len() == cfg.k2 as usize {
                    winner = Some((n, v.clone()));
                    true
                } else {
                    false
                }
            });
            if hit {
                want = winner.map(|(n, v)| Proof::new(n, &v, 400, pow));
                break 'passes;
            }
        }
    }
    assert_eq!(Some(proof), want);
}

// ---------------------------------------------------------------------------------------------
// Round trips on small random data (N = 2) with a BLAKE3 stand-in for RandomX.

fn round_trip_case(seed: u8, units: u32, lpu: u64, k1: u32, k2: u32, nonces: u32, threads: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = [seed; 32];
    let atx = [seed ^ 0x55; 32];
    let labels = make_data(dir.path(), node, atx, lpu, units, 64, 2);
    let num_labels = labels.len() as u64;
    let challenge: [u8; 32] = *blake3::hash(&[seed, 1]).as_bytes();
    let cfg = ProofConfig {
        k1,
        k2,
        pow_difficulty: [0xff; 32],
    };
    let opts = ProveOptions { nonces, threads };
    let proof = match generate_proof(
        dir.path(),
        &challenge,
        &cfg,
        &opts,
        &Blake3Pow,
        &no_progress,
        &AtomicBool::new(false),
    ) {
        Ok(p) => p,
        Err(ProveError::NoncesExhausted { .. }) => return,
        Err(e) => panic!("prove: {e}"),
    };
    let meta = ProofMetadata {
        node_id: node,
        commitment_atx_id: atx,
        challenge,
        num_units: units,
        labels_per_unit: lpu,
    };
    let init = InitConfig {
        min_num_units: 1,
        max_num_units: 100,
        labels_per_unit: lpu,
        scrypt_n: 2,
    };
    let strict = VerifyOptions {
        strict: true,
        threads: 1,
    };
    let v = |p: &Proof| {
        verify(
            p,
            &meta,
            &cfg,
            &init,
            &Mode::All,
            &VerifyOptions::default(),
            &Blake3Pow,
        )
    };
    v(&proof).expect("every emitted proof verifies");
    verify(&proof, &meta, &cfg, &init, &Mode::All, &strict, &Blake3Pow).expect("and passes strict");

    let d = proving_difficulty(k1, num_labels).expect("D");
    let bits = required_bits(num_labels);
    let indices = proof.decoded_indices(num_labels, k2);
    let label_at = |i: u64| -> [u8; 16] {
        labels
            .get(i as usize)
            .copied()
            .unwrap_or_else(|| label(&commitment(&node, &atx), i, 2))
    };
    // Whether a (nonce, pow, indices) triple is valid per the independent model.
    let scaled = scale_pow_difficulty(&cfg.pow_difficulty, units).expect("Dpow");
    let c8: [u8; 8] = challenge[..8].try_into().expect("8");
    let model_ok = |nonce: u32, pow: u64, idx: &[u64]| {
        nonce / 16 <= 255
            && Blake3Pow::hash(pow, (nonce / 16) as u8, &c8, &node) < scaled
            && idx
                .iter()
                .all(|&i| model_qualifies(&challenge, nonce, pow, &label_at(i), d))
    };
    let mut rejected = 0;
    let mut flips = 0;
    for bit in 0..32 {
        let p = Proof {
            nonce: proof.nonce ^ (1 << bit),
            ..proof.clone()
        };
        flips += 1;
        let ok = model_ok(p.nonce, p.pow, &indices);
        assert_eq!(v(&p).is_ok(), ok, "nonce bit {bit}");
        rejected += usize::from(!ok);
    }
    for bit in 0..64 {
        let p = Proof {
            pow: proof.pow ^ (1 << bit),
            ..proof.clone()
        };
        flips += 1;
        let ok = model_ok(p.nonce, p.pow, &indices);
        assert_eq!(v(&p).is_ok(), ok, "pow bit {bit}");
        rejected += usize::from(!ok);
    }
    for bit in 0..(k2 * bits) as usize {
        let mut p = proof.clone();
        p.indices[bit / 8] ^= 1 << (bit % 8);
        flips += 1;
        let changed = bit / bits as usize;
        let new_idx: Vec<u64> = decompress_indices(&p.indices, bits).take(k2 as usize).collect();
        let new_index = new_idx[changed];
        let ok = model_qualifies(&challenge, proof.nonce, proof.pow, &label_at(new_index), d);
        match v(&p) {
            Ok(()) => assert!(ok, "index bit {bit}: accepted a non-qualifying index {new_index}"),
            Err(VerifyError::InvalidMsb { index_id, index, .. })
            | Err(VerifyError::InvalidLsb { index_id, index, .. }) => {
                assert!(!ok, "index bit {bit}: rejected a qualifying index");
                assert_eq!((index_id, index), (changed, new_index));
            }
            Err(e) => panic!("index bit {bit}: {e}"),
        }
        rejected += usize::from(!ok);
        // Strict mode additionally rejects the flips that break ordering or range.
        if ok && verify(&p, &meta, &cfg, &init, &Mode::All, &strict, &Blake3Pow).is_ok() {
            assert!(new_idx.windows(2).all(|w| w[0] < w[1]) && new_index < num_labels);
        }
    }
    // Almost every flip breaks the proof.
    assert!(
        rejected * 10 >= flips * 8,
        "only {rejected} of {flips} flips rejected"
    );
    assert_eq!(compress_indices(&indices, bits), proof.indices);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn round_trip_prove_verify(
        seed in any::<u8>(),
        units in 1u32..5,
        lpu in prop::sample::select(vec![64u64, 128, 192]),
        k1 in 2u32..10,
        k2_delta in 0u32..4,
        nonces in prop::sample::select(vec![16u32, 32, 64]),
        threads in 1usize..3,
    ) {
        let k2 = (k1 + 1).saturating_sub(k2_delta).max(1);
        round_trip_case(seed, units, lpu, k1, k2, nonces, threads);
    }
}
