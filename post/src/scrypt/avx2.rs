//! AVX2 ROMix for 8 or 16 labels at once (x86_64 only, chosen at run time).
//!
//! Layout: word-sliced. The state of 8 chunks is 32 `__m256i`, register `k` holding word `k`
//! of every chunk (lane `l` = label `l`). A ChaCha20/8 step is then one vector add / xor /
//! rotate for all 8 labels: rotations by 16 and 8 are byte shuffles, by 12 and 7 two shifts and
//! an or. No lane ever talks to another, so there are no diagonal shuffles.
//!
//! The scratch `V` is stored per label, one 128-byte row per (entry, lane): entry `i` of lane
//! `l` is chunk `i * 8 + l`, exactly as in [`super::lanes`]. Writing a sliced state into eight
//! rows and reading eight rows back into a sliced state are 4x4 transposes inside each 128-bit
//! half (lanes `l` and `l + 4` share a register), so the data-dependent reads of the second
//! loop touch only the two cache lines of each label's own entry.
//!
//! [`romix16`] runs two such groups of 8 in turn, each with its own scratch. A group's next
//! reads are prefetched as soon as its BlockMix ends and are used only after the other group's
//! BlockMix, so the memory latency of the data-dependent reads is hidden behind useful work. At
//! N = 8192 a group's 8 MiB is mostly outside the caches; with the other core busy, the second
//! ROMix loop of [`romix8`] measured ~150 ns per 8-lane core against ~82 ns with cache-resident
//! scratch, [`romix16`] ~120 ns. On an idle machine the two are within noise.
//!
//! Measured on the 2-core AMD EPYC (Zen 3) this was written on, cache-resident: the ChaCha
//! core is about 85% of the time, the transposes and scratch traffic the rest. Tried and dropped
//! for no measurable gain: transparent huge pages for the scratch, and other schedules of the
//! rounds (one quarter round at a time, four interleaved, intrinsics instead of assembly).

#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m128i, __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_castsi128_si256, _mm256_castsi256_si128,
    _mm256_extracti128_si256, _mm256_inserti128_si256, _mm256_set1_epi32, _mm256_setzero_si256,
    _mm256_storeu_si256, _mm256_unpackhi_epi32, _mm256_unpackhi_epi64, _mm256_unpacklo_epi32,
    _mm256_unpacklo_epi64, _mm256_xor_si256, _mm_loadu_si128, _mm_prefetch, _mm_storeu_si128, _MM_HINT_T0,
};

use super::portable::{AlignedChunk, Chunk};

/// Labels in one word-sliced group.
pub const LANES: usize = 8;

/// Whether this CPU can run the AVX2 path.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// ROMix of 8 chunks at once: `x[l]` is replaced by ROMix(`x[l]`, `n`). `v` needs at least
/// `8 * n` chunks; `n` must be a power of two.
///
/// # Panics
/// If the CPU has no AVX2 (check [`available`] first) or the scratch is too small.
pub fn romix8(x: &mut [Chunk; LANES], n: usize, v: &mut [AlignedChunk]) {
    assert!(available(), "AVX2 is not available on this CPU");
    assert!(n.is_power_of_two() && v.len() >= n * LANES, "bad ROMix scratch");
    // SAFETY: AVX2 support was checked just above, and `v` holds at least `8 * n` chunks, which
    // covers every address `romix8_avx2` reads or writes.
    unsafe { romix8_avx2(x, n, v.as_mut_ptr()) }
}

/// ROMix of 16 chunks at once, as two interleaved groups of 8 (see the module docs). `v` needs
/// at least `16 * n` chunks; `n` must be a power of two.
///
/// # Panics
/// If the CPU has no AVX2 (check [`available`] first) or the scratch is too small.
pub fn romix16(x: &mut [Chunk; 2 * LANES], n: usize, v: &mut [AlignedChunk]) {
    assert!(available(), "AVX2 is not available on this CPU");
    assert!(
        n.is_power_of_two() && v.len() >= 2 * n * LANES,
        "bad ROMix scratch"
    );
    // SAFETY: AVX2 support was checked just above, and `v` holds at least `16 * n` chunks, which
    // covers every address `romix16_avx2` reads or writes.
    unsafe { romix16_avx2(x, n, v.as_mut_ptr()) }
}

/// Two quarter rounds, `(a0, b0, c0, d0)` and `(a1, b1, c1, d1)`, interleaved step by step, as
/// assembly text on fixed registers. `ymm14`/`ymm15` are temporaries for the rotations by 12 and
/// 7 (two shifts and an or); `[{m}]` and `[{m} + 32]` are the byte-shuffle masks that rotate by
/// 16 and by 8.
macro_rules! qr2_asm {
    ($a0:literal, $b0:literal, $c0:literal, $d0:literal,
     $a1:literal, $b1:literal, $c1:literal, $d1:literal) => {
        concat!(
            qr2_asm!(@step $a0, $b0, $c0, $d0, $a1, $b1, $c1, $d1, "[{m}]", "12", "20"),
            qr2_asm!(@step $a0, $b0, $c0, $d0, $a1, $b1, $c1, $d1, "[{m} + 32]", "7", "25"),
        )
    };
    (@step $a0:literal, $b0:literal, $c0:literal, $d0:literal, $a1:literal, $b1:literal, $c1:literal,
     $d1:literal, $mask:literal, $l:literal, $r:literal) => {
        concat!(
            "vpaddd ", $a0, ", ", $a0, ", ", $b0, "\n",
            "vpaddd ", $a1, ", ", $a1, ", ", $b1, "\n",
            "vpxor ", $d0, ", ", $d0, ", ", $a0, "\n",
            "vpxor ", $d1, ", ", $d1, ", ", $a1, "\n",
            "vpshufb ", $d0, ", ", $d0, ", ", $mask, "\n",
            "vpshufb ", $d1, ", ", $d1, ", ", $mask, "\n",
            "vpaddd ", $c0, ", ", $c0, ", ", $d0, "\n",
            "vpaddd ", $c1, ", ", $c1, ", ", $d1, "\n",
            "vpxor ", $b0, ", ", $b0, ", ", $c0, "\n",
            "vpxor ", $b1, ", ", $b1, ", ", $c1, "\n",
            "vpslld ymm14, ", $b0, ", ", $l, "\n",
            "vpslld ymm15, ", $b1, ", ", $l, "\n",
            "vpsrld ", $b0, ", ", $b0, ", ", $r, "\n",
            "vpsrld ", $b1, ", ", $b1, ", ", $r, "\n",
            "vpor ", $b0, ", ", $b0, ", ymm14\n",
            "vpor ", $b1, ", ", $b1, ", ymm15\n",
        )
    };
}

/// Byte-shuffle masks: rotate each 32-bit word left by 16, then by 8.
#[repr(C, align(32))]
struct RotMasks([u8; 64]);

#[rustfmt::skip]
static ROT_MASKS: RotMasks = RotMasks([
    // rotate by 16, both 128-bit halves
    2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
    2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
    // rotate by 8
    3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14,
    3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14,
]);

/// ChaCha20/8 core on 8 word-sliced blocks (spec §2.5).
///
/// The rounds are inline assembly with a fixed register allocation: words 0-3, 4-7 and 12-15
/// stay in `ymm0-11`; words 8-11 take turns in `ymm12-13`, two at a time, the other two waiting
/// in memory, so the 16 state words, two temporaries and no mask register fit the 16 registers
/// and nothing on the dependency chains is spilled. Inside BlockMix this measured about 10%
/// faster than the same schedule written with intrinsics, where LLVM spilled around it (the
/// core alone is about 210 cycles on Zen 3 either way).
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn core(w: &mut [__m256i; 16]) {
    let [mut a0, mut a1, mut a2, mut a3] = [w[0], w[1], w[2], w[3]];
    let [mut b0, mut b1, mut b2, mut b3] = [w[4], w[5], w[6], w[7]];
    let [mut c0, mut c1, c2, c3] = [w[8], w[9], w[10], w[11]];
    let [mut d0, mut d1, mut d2, mut d3] = [w[12], w[13], w[14], w[15]];
    // Memory for words 8-11 while out of registers: slots 0-1 hold 8-9, slots 2-3 hold 10-11.
    let mut spill = [_mm256_setzero_si256(), _mm256_setzero_si256(), c2, c3];
    for _ in 0..4 {
        // One double round. Column round: (0,4,8,12) (1,5,9,13), swap 8-9 out for 10-11,
        // (2,6,10,14) (3,7,11,15). Diagonal round: (0,5,10,15) (1,6,11,12), swap 10-11 out for
        // 8-9, (2,7,8,13) (3,4,9,14). It ends with 8-9 in ymm12-13, as it started.
        // SAFETY: `spill` is 4 aligned `__m256i` of this frame (the offsets 0..128 stay inside),
        // `ROT_MASKS` is 64 readable bytes aligned to 32, and every register written is declared.
        std::arch::asm!(
            qr2_asm!("ymm0", "ymm4", "ymm12", "ymm8", "ymm1", "ymm5", "ymm13", "ymm9"),
            "vmovdqa [{s}], ymm12",
            "vmovdqa [{s} + 32], ymm13",
            "vmovdqa ymm12, [{s} + 64]",
            "vmovdqa ymm13, [{s} + 96]",
            qr2_asm!("ymm2", "ymm6", "ymm12", "ymm10", "ymm3", "ymm7", "ymm13", "ymm11"),
            qr2_asm!("ymm0", "ymm5", "ymm12", "ymm11", "ymm1", "ymm6", "ymm13", "ymm8"),
            "vmovdqa [{s} + 64], ymm12",
            "vmovdqa [{s} + 96], ymm13",
            "vmovdqa ymm12, [{s}]",
            "vmovdqa ymm13, [{s} + 32]",
            qr2_asm!("ymm2", "ymm7", "ymm12", "ymm9", "ymm3", "ymm4", "ymm13", "ymm10"),
            m = in(reg) ROT_MASKS.0.as_ptr(),
            s = in(reg) spill.as_mut_ptr(),
            inout("ymm0") a0, inout("ymm1") a1, inout("ymm2") a2, inout("ymm3") a3,
            inout("ymm4") b0, inout("ymm5") b1, inout("ymm6") b2, inout("ymm7") b3,
            inout("ymm8") d0, inout("ymm9") d1, inout("ymm10") d2, inout("ymm11") d3,
            inout("ymm12") c0, inout("ymm13") c1,
            out("ymm14") _, out("ymm15") _,
            options(nostack, preserves_flags),
        );
    }
    let x = [
        a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, spill[2], spill[3], d0, d1, d2, d3,
    ];
    for i in 0..16 {
        w[i] = _mm256_add_epi32(w[i], x[i]);
    }
}

/// BlockMix (r = 1) on 8 word-sliced chunks.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_mix(b: &mut [__m256i; 32]) {
    let mut y0 = [_mm256_setzero_si256(); 16];
    for i in 0..16 {
        y0[i] = _mm256_xor_si256(b[i], b[16 + i]);
    }
    core(&mut y0);
    let mut y1 = [_mm256_setzero_si256(); 16];
    for i in 0..16 {
        y1[i] = _mm256_xor_si256(y0[i], b[16 + i]);
    }
    core(&mut y1);
    b[..16].copy_from_slice(&y0);
    b[16..].copy_from_slice(&y1);
}

/// 4x4 transpose of 32-bit words inside each 128-bit half of four registers.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn transpose4(a: [__m256i; 4]) -> [__m256i; 4] {
    let t0 = _mm256_unpacklo_epi32(a[0], a[1]);
    let t1 = _mm256_unpackhi_epi32(a[0], a[1]);
    let t2 = _mm256_unpacklo_epi32(a[2], a[3]);
    let t3 = _mm256_unpackhi_epi32(a[2], a[3]);
    [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
    ]
}

/// Read eight 32-word rows (`rows[l]` is lane `l`) into a word-sliced state, xoring into `s`
/// when `XOR`, replacing it otherwise.
///
/// # Safety
/// The CPU must support AVX2 and every `rows[l]` must be valid for reading 32 `u32`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_rows<const XOR: bool>(rows: &[*const u32; LANES], s: &mut [__m256i; 32]) {
    for g in 0..8 {
        let mut a = [_mm256_setzero_si256(); 4];
        for (l, a) in a.iter_mut().enumerate() {
            let lo = _mm_loadu_si128(rows[l].add(4 * g) as *const __m128i);
            let hi = _mm_loadu_si128(rows[l + 4].add(4 * g) as *const __m128i);
            *a = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
        }
        let w = transpose4(a);
        for m in 0..4 {
            s[4 * g + m] = if XOR {
                _mm256_xor_si256(s[4 * g + m], w[m])
            } else {
                w[m]
            };
        }
    }
}

/// Write a word-sliced state into eight 32-word rows (`rows[l]` is lane `l`).
///
/// # Safety
/// The CPU must support AVX2 and every `rows[l]` must be valid for writing 32 `u32`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_rows(rows: &[*mut u32; LANES], s: &[__m256i; 32]) {
    for g in 0..8 {
        let r = transpose4([s[4 * g], s[4 * g + 1], s[4 * g + 2], s[4 * g + 3]]);
        for (l, r) in r.iter().enumerate() {
            _mm_storeu_si128(rows[l].add(4 * g) as *mut __m128i, _mm256_castsi256_si128(*r));
            _mm_storeu_si128(
                rows[l + 4].add(4 * g) as *mut __m128i,
                _mm256_extracti128_si256::<1>(*r),
            );
        }
    }
}

/// The eight rows of entry `i` (first loop) in a group's scratch `v`.
///
/// # Safety
/// `v` must be valid for `(i + 1) * 8` chunks.
#[inline(always)]
unsafe fn entry_rows(v: *mut u32, i: usize) -> [*mut u32; LANES] {
    let base = v.add(i * LANES * 32);
    std::array::from_fn(|l| base.add(l * 32))
}

/// The rows the second loop reads next: lane `l` reads its own entry `j_l = word 16 & (n - 1)`.
///
/// # Safety
/// The CPU must support AVX2 and `v` must be valid for `8 * n` chunks, `mask = n - 1`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn next_rows(s: &[__m256i; 32], mask: __m256i, v: *const u32) -> [*const u32; LANES] {
    let mut js = [0u32; LANES];
    _mm256_storeu_si256(js.as_mut_ptr() as *mut __m256i, _mm256_and_si256(s[16], mask));
    std::array::from_fn(|l| v.add((js[l] as usize * LANES + l) * 32))
}

/// Ask for both cache lines of each of the eight rows.
///
/// # Safety
/// The CPU must support AVX2 (a prefetch never faults; the rows are in bounds anyway).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn prefetch_rows(rows: &[*const u32; LANES]) {
    for r in rows {
        _mm_prefetch::<_MM_HINT_T0>(*r as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(r.add(16) as *const i8);
    }
}

/// # Safety
/// The CPU must support AVX2, `n` must be a power of two and `v` must be valid for reading and
/// writing `8 * n` chunks.
#[target_feature(enable = "avx2")]
unsafe fn romix8_avx2(x: &mut [Chunk; LANES], n: usize, v: *mut AlignedChunk) {
    let v = v as *mut u32;
    let mut s = [_mm256_setzero_si256(); 32];
    load_rows::<false>(&std::array::from_fn(|l| x[l].as_ptr()), &mut s);
    for i in 0..n {
        store_rows(&entry_rows(v, i), &s);
        block_mix(&mut s);
    }
    let mask = _mm256_set1_epi32((n - 1) as i32);
    for _ in 0..n {
        load_rows::<true>(&next_rows(&s, mask, v), &mut s);
        block_mix(&mut s);
    }
    store_rows(&std::array::from_fn(|l| x[l].as_mut_ptr()), &s);
}

/// # Safety
/// The CPU must support AVX2, `n` must be a power of two and `v` must be valid for reading and
/// writing `16 * n` chunks.
#[target_feature(enable = "avx2")]
unsafe fn romix16_avx2(x: &mut [Chunk; 2 * LANES], n: usize, v: *mut AlignedChunk) {
    // Group 0 is lanes 0..8 with scratch v[..8n], group 1 lanes 8..16 with v[8n..16n].
    let v0 = v as *mut u32;
    let v1 = v.add(n * LANES) as *mut u32;
    let mut s0 = [_mm256_setzero_si256(); 32];
    let mut s1 = [_mm256_setzero_si256(); 32];
    load_rows::<false>(&std::array::from_fn(|l| x[l].as_ptr()), &mut s0);
    load_rows::<false>(&std::array::from_fn(|l| x[LANES + l].as_ptr()), &mut s1);
    for i in 0..n {
        store_rows(&entry_rows(v0, i), &s0);
        block_mix(&mut s0);
        store_rows(&entry_rows(v1, i), &s1);
        block_mix(&mut s1);
    }
    let mask = _mm256_set1_epi32((n - 1) as i32);
    let mut rows0 = next_rows(&s0, mask, v0);
    let mut rows1 = next_rows(&s1, mask, v1);
    prefetch_rows(&rows1);
    for _ in 0..n {
        load_rows::<true>(&rows0, &mut s0);
        block_mix(&mut s0);
        rows0 = next_rows(&s0, mask, v0);
        prefetch_rows(&rows0);
        load_rows::<true>(&rows1, &mut s1);
        block_mix(&mut s1);
        rows1 = next_rows(&s1, mask, v1);
        prefetch_rows(&rows1);
    }
    store_rows(&std::array::from_fn(|l| x[l].as_mut_ptr()), &s0);
    store_rows(&std::array::from_fn(|l| x[LANES + l].as_mut_ptr()), &s1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrypt::portable::romix;

    fn inputs<const L: usize>(n: usize) -> [Chunk; L] {
        std::array::from_fn(|l| {
            std::array::from_fn(|k| {
                (l as u32).wrapping_mul(0x9e37_79b9) ^ (k as u32).wrapping_mul(0x85eb_ca6b) ^ n as u32
            })
        })
    }

    fn scalar<const L: usize>(mut x: [Chunk; L], n: usize) -> [Chunk; L] {
        let mut v = vec![[0u32; 32]; n];
        for c in x.iter_mut() {
            romix(c, n, &mut v);
        }
        x
    }

    #[test]
    fn avx2_equals_scalar_romix() {
        if !available() {
            return;
        }
        for n in [2usize, 4, 16, 64, 1024] {
            let mut x = inputs::<8>(n);
            let expect = scalar(x, n);
            let mut v = vec![AlignedChunk::default(); n * LANES];
            romix8(&mut x, n, &mut v);
            assert_eq!(x, expect, "romix8 n = {n}");

            let mut x = inputs::<16>(n);
            let expect = scalar(x, n);
            let mut v = vec![AlignedChunk::default(); 2 * n * LANES];
            romix16(&mut x, n, &mut v);
            assert_eq!(x, expect, "romix16 n = {n}");
        }
    }
}
