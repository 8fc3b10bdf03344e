//! Labels against the reference vectors (shared/vectors, produced by post-rs v0.8.5 with
//! scrypt-jane), through the scalar reference and through every `CpuBackend` path, plus
//! property tests that the SIMD, portable and scalar paths agree everywhere.

use std::path::PathBuf;
use std::time::Duration;

use post::backend::{
    bench_labels_n, best_candidate, BackendError, CpuBackend, LabelBackend, LabelPath, LabelRequest,
    VrfCandidate,
};
use post::scrypt::{commitment, label, label32, labels32, LabelScratch};
use proptest::prelude::*;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

struct Vectors {
    name: &'static str,
    commitment: [u8; 32],
    n: usize,
    /// (index, label32)
    labels: Vec<(u64, [u8; 32])>,
}

fn hex32(v: &serde_json::Value) -> [u8; 32] {
    let s = v.as_str().expect("hex string");
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

fn load(name: &'static str) -> Vectors {
    let path = PathBuf::from(VECTORS).join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let j: serde_json::Value = serde_json::from_str(&text).expect("json");
    let stated = hex32(&j["commitment"]);
    if let (Some(_), Some(_)) = (j["node_id"].as_str(), j["atx_id"].as_str()) {
        let c = commitment(&hex32(&j["node_id"]), &hex32(&j["atx_id"]));
        assert_eq!(c, stated, "{name}: commitment = BLAKE3(node_id || atx_id)");
    }
    assert_eq!(j["scrypt"]["r"], 1);
    assert_eq!(j["scrypt"]["p"], 1);
    let n = j["scrypt"]["n"].as_u64().expect("n") as usize;
    let labels: Vec<(u64, [u8; 32])> = j["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| {
            let out32 = hex32(&l["scrypt_out32"]);
            assert_eq!(
                l["label"].as_str().expect("label"),
                hex::encode(&out32[..16]),
                "{name}"
            );
            (l["index"].as_u64().expect("index"), out32)
        })
        .collect();
    assert!(!labels.is_empty());
    Vectors {
        name,
        commitment: stated,
        n,
        labels,
    }
}

const N8192: [&str; 3] = [
    "labels_pairA_n8192",
    "labels_pairB_n8192",
    "labels_commitment0_n8192",
];
const SMALL: [&str; 2] = ["labels_pairA_n2", "labels_pairA_n16"];

/// Every concrete path this CPU can run (`Auto` is one of them under another name).
fn paths() -> Vec<LabelPath> {
    LabelPath::ALL
        .into_iter()
        .filter(|p| *p != LabelPath::Auto && p.is_available())
        .collect()
}

fn backend(threads: usize, path: LabelPath) -> CpuBackend {
    CpuBackend::with_path(threads, path).expect("backend")
}

/// Labels `[start, start + count)` through a backend: (16-byte labels, candidates).
fn run(
    b: &CpuBackend,
    c: &[u8; 32],
    n: usize,
    start: u64,
    count: usize,
    threshold: Option<&[u8; 32]>,
) -> (Vec<[u8; 16]>, Vec<VrfCandidate>) {
    let mut out = vec![0u8; 16 * count];
    let req = LabelRequest {
        commitment: c,
        scrypt_n: n,
        start,
        vrf_threshold: threshold,
    };
    let cands = b.compute(&req, &mut out).expect("compute");
    let labels = out.chunks_exact(16).map(|l| l.try_into().expect("16")).collect();
    (labels, cands)
}

/// Check every vector that falls in `[start, start + count)` against a backend run; returns
/// how many were checked.
fn check_range(b: &CpuBackend, v: &Vectors, start: u64, count: usize) -> usize {
    let (labels, _) = run(b, &v.commitment, v.n, start, count, None);
    let mut checked = 0;
    for (index, out32) in &v.labels {
        if let Some(k) = index.checked_sub(start).filter(|k| *k < count as u64) {
            assert_eq!(
                labels[k as usize][..],
                out32[..16],
                "{} index {index} via {} (range {start}+{count})",
                v.name,
                b.name()
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn vectors_scalar_reference() {
    for name in N8192.into_iter().chain(SMALL) {
        let v = load(name);
        for (index, out32) in &v.labels {
            assert_eq!(
                label32(&v.commitment, *index, v.n),
                *out32,
                "{name} index {index}"
            );
            assert_eq!(label(&v.commitment, *index, v.n)[..], out32[..16]);
        }
    }
}

#[test]
fn vectors_batched_label32() {
    // The raw batched API, full 32-byte outputs, every path.
    for name in N8192.into_iter().chain(SMALL) {
        let v = load(name);
        for path in paths() {
            let mut s = LabelScratch::new();
            for (index, out32) in &v.labels {
                // A batch of 3 around each vector (a lone label takes the scalar fallback).
                let start = index.saturating_sub(1).min(u64::MAX - 2);
                let mut out = [[0u8; 32]; 3];
                labels32(path, &v.commitment, start, v.n, &mut s, &mut out);
                assert_eq!(out[(index - start) as usize], *out32, "{name} {index} {path}");
            }
        }
    }
}

#[test]
fn vectors_backend_every_path_and_thread_count() {
    for name in N8192 {
        let v = load(name);
        let contiguous = v.labels.iter().take_while(|(i, _)| *i < 64).count() as u64;
        for path in paths() {
            for threads in [1, 2, 3] {
                let b = backend(threads, path);
                // The whole run 0..63 (or 0..15) in one call, then ranges that start off the
                // lane grid and cross the vectors past 2^32 and at 2^64 - 2.
                let mut checked = check_range(&b, &v, 0, contiguous as usize);
                checked += check_range(&b, &v, 3, 13);
                checked += check_range(&b, &v, (1 << 32) - 3, 10); // 2^32-1, 2^32, 2^32+5
                checked += check_range(&b, &v, (1 << 33) + 6, 2);
                checked += check_range(&b, &v, (1 << 40) + 123, 1);
                checked += check_range(&b, &v, u64::MAX - 8, 8); // ends at 2^64 - 2
                let expected = v.labels.len() + 13.min(contiguous.saturating_sub(3) as usize);
                assert_eq!(checked, expected, "{name} via {}", b.name());
            }
        }
    }
}

#[test]
fn vectors_small_n_backend() {
    for name in SMALL {
        let v = load(name);
        for path in paths() {
            for threads in [1, 2] {
                let b = backend(threads, path);
                let mut checked = check_range(&b, &v, 0, 16);
                checked += check_range(&b, &v, 5, 9);
                checked += check_range(&b, &v, (1 << 32) + 1, 11);
                assert_eq!(checked, v.labels.len() + 9, "{name} via {}", b.name());
            }
        }
    }
}

/// Labels of `[start, start + count)` by the scalar reference.
fn reference(c: &[u8; 32], n: usize, start: u64, count: usize) -> Vec<[u8; 32]> {
    (0..count as u64).map(|k| label32(c, start + k, n)).collect()
}

#[test]
fn range_ending_at_u64_max() {
    let c = [0xa5; 32];
    let expect = reference(&c, 16, u64::MAX - 10, 11);
    for path in paths() {
        let (labels, _) = run(&backend(2, path), &c, 16, u64::MAX - 10, 11, None);
        for (l, e) in labels.iter().zip(&expect) {
            assert_eq!(l[..], e[..16], "{path}");
        }
    }
}

/// Candidates by brute force: label32 < threshold (all 32 bytes), ascending index.
fn brute_force(c: &[u8; 32], n: usize, start: u64, count: usize, t: &[u8; 32]) -> Vec<VrfCandidate> {
    reference(c, n, start, count)
        .into_iter()
        .enumerate()
        .filter(|(_, l)| l < t)
        .map(|(k, l)| VrfCandidate {
            index: start + k as u64,
            label32: l,
        })
        .collect()
}

#[test]
fn vrf_candidates_equal_brute_force() {
    let c = [0x11; 32];
    let (n, start, count) = (16, 1_000_003, 203);
    let all = reference(&c, n, start, count);
    // A threshold taking roughly one label in eight.
    let mut coarse = [0u8; 32];
    coarse[0] = 0x20;
    // Thresholds equal to a label32 and one above it: the label itself must be excluded by the
    // first (strictly less) and included by the second; both differ from it only in byte 31, so
    // a 16-byte compare would get them wrong.
    let mut sorted = all.clone();
    sorted.sort();
    let mid = sorted[count / 2];
    let mut above = mid;
    above[31] = above[31].wrapping_add(1);
    assert!(above > mid, "pick a label whose last byte is not 0xff");
    for t in [coarse, mid, above, [0u8; 32], [0xff; 32]] {
        let expect = brute_force(&c, n, start, count, &t);
        for path in paths() {
            for threads in [1, 3] {
                let (_, got) = run(&backend(threads, path), &c, n, start, count, Some(&t));
                assert_eq!(got, expect, "{path} threads {threads}");
                assert_eq!(best_candidate(&got), best_candidate(&expect));
            }
        }
    }
    assert_eq!(brute_force(&c, n, start, count, &mid).len(), count / 2);
    assert_eq!(brute_force(&c, n, start, count, &above).len(), count / 2 + 1);
}

#[test]
fn bad_inputs_give_typed_errors() {
    let c = [0u8; 32];
    for path in paths() {
        let b = backend(1, path);
        let req = |start, n| LabelRequest {
            commitment: &c,
            scrypt_n: n,
            start,
            vrf_threshold: None,
        };
        let mut buf = vec![0u8; 17];
        assert!(matches!(
            b.compute(&req(0, 16), &mut buf),
            Err(BackendError::BadBuffer(17))
        ));
        let mut buf = vec![0u8; 48];
        assert!(matches!(
            b.compute(&req(u64::MAX - 1, 16), &mut buf),
            Err(BackendError::RangeOverflow { start, count: 3 }) if start == u64::MAX - 1
        ));
        for bad_n in [0usize, 1, 3, 12, 8191] {
            assert!(matches!(b.compute(&req(0, bad_n), &mut buf), Err(BackendError::BadN(n)) if n == bad_n));
        }
        // The edges that are fine: an empty buffer, and the very last index.
        assert!(b.compute(&req(u64::MAX, 16), &mut []).expect("empty").is_empty());
        let mut one = [0u8; 16];
        b.compute(&req(u64::MAX, 16), &mut one).expect("last index");
        assert_eq!(one[..], label32(&c, u64::MAX, 16)[..16]);
    }
}

#[test]
fn backend_reports_threads_and_path() {
    for path in LabelPath::ALL.into_iter().filter(|p| p.is_available()) {
        let b = backend(3, path);
        assert_eq!(b.threads(), 3);
        assert_ne!(b.path(), LabelPath::Auto);
        assert_eq!(Some(b.path()), path.resolve());
        assert!(b.name().contains(b.path().as_str()), "{}", b.name());
        assert!(b.preferred_batch() >= 3);
    }
    assert_eq!(
        CpuBackend::new(2).expect("new").path(),
        LabelPath::Auto.resolve().expect("auto")
    );
    if !LabelPath::Avx2.is_available() {
        assert!(CpuBackend::with_path(1, LabelPath::Avx2).is_err());
    }
}

#[test]
fn bench_function_runs() {
    let r = bench_labels_n(1, LabelPath::Auto, 16, Duration::from_millis(20)).expect("bench");
    assert!(r > 0.0);
}

fn start_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..1000,
        ((1u64 << 32) - 50)..((1u64 << 32) + 50),
        (u64::MAX - 80)..=u64::MAX,
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn simd_equals_portable_equals_scalar(
        c in any::<[u8; 32]>(),
        start in start_strategy(),
        count in 0usize..40,
        n in prop::sample::select(vec![2usize, 4, 16, 64]),
        threads in 1usize..4,
    ) {
        // Clip the range so that it does not run past u64::MAX.
        let count = count.min((u64::MAX - start) as usize + 1);
        let expect = reference(&c, n, start, count);
        let mut t = [0u8; 32];
        t[0] = 0x30;
        let cands = brute_force(&c, n, start, count, &t);
        for path in paths() {
            let (labels, got) = run(&backend(threads, path), &c, n, start, count, Some(&t));
            for (k, (l, e)) in labels.iter().zip(&expect).enumerate() {
                prop_assert_eq!(&l[..], &e[..16], "{} label {} of {}+{}", path, k, start, count);
            }
            prop_assert_eq!(&got, &cands, "{}", path);
            let mut s = LabelScratch::new();
            let mut full = vec![[0u8; 32]; count];
            labels32(path, &c, start, n, &mut s, &mut full);
            prop_assert_eq!(&full, &expect, "{} label32", path);
        }
    }
}

proptest! {
    // One full-size case: N = 8192, a random commitment and a random range of 9 to 12 labels (a
    // full AVX2 batch plus a ragged tail), every path against the scalar reference.
    #![proptest_config(ProptestConfig { cases: 1, ..ProptestConfig::default() })]

    #[test]
    fn n8192_random_case(c in any::<[u8; 32]>(), start in start_strategy(), count in 9usize..=12) {
        let start = start.min(u64::MAX - count as u64 + 1);
        let expect = reference(&c, 8192, start, count);
        for path in paths() {
            let (labels, _) = run(&backend(2, path), &c, 8192, start, count, None);
            for (k, (l, e)) in labels.iter().zip(&expect).enumerate() {
                prop_assert_eq!(&l[..], &e[..16], "{} label {} of {}+{}", path, k, start, count);
            }
        }
    }
}
